"""bench.stats: exact statistics on fixed samples."""

from __future__ import annotations

import math

import pytest

from bench.stats import Latency, gflops, throughput

ONE_TO_TEN_S = [k / 1000 for k in (7, 1, 10, 4, 2, 9, 3, 8, 6, 5)]  # 1..10 ms, unsorted


def test_latency_one_to_ten_ms() -> None:
    lat = Latency.from_values(ONE_TO_TEN_S)
    expected = {
        "mean": 5.5,
        "median": 5.5,
        "min": 1.0,
        "max": 10.0,
        "stddev": math.sqrt(82.5 / 9),  # sum of squared deviations 82.5, ddof=1
        "p90": 9.1,  # rank 0.9 * 9 = 8.1: 9 + 0.1 * (10 - 9)
        "p99": 9.91,  # rank 0.99 * 9 = 8.91
    }
    for name, value in expected.items():
        assert getattr(lat, name) == pytest.approx(value, rel=1e-12), name
    assert lat.n == 10
    assert lat.stddev == pytest.approx(3.0276503540974917, rel=1e-12)


def test_latency_even_median_and_odd_count() -> None:
    assert Latency.from_values([0.004, 0.001, 0.002]).median == pytest.approx(2.0)
    assert Latency.from_values([0.004, 0.001, 0.002, 0.003]).median == pytest.approx(2.5)


def test_latency_single_sample() -> None:
    lat = Latency.from_values([0.0025])
    assert lat == Latency(mean=2.5, median=2.5, min=2.5, max=2.5, stddev=0.0, p90=2.5, p99=2.5, n=1)


def test_latency_is_frozen() -> None:
    lat = Latency.from_values([0.001])
    with pytest.raises(AttributeError):
        lat.mean = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ([], "no latency samples"),
        ([0.001, -0.001], "finite and >= 0"),
        ([0.001, math.nan], "finite and >= 0"),
        ([math.inf], "finite and >= 0"),
        ([[0.001, 0.002]], "flat sequence"),
    ],
)
def test_latency_rejects_bad_samples(samples: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Latency.from_values(samples)


def test_throughput_and_gflops() -> None:
    assert throughput(64, 2.0) == pytest.approx(32_000.0)
    assert throughput(1, 0.5) == pytest.approx(2_000.0)
    # the whole network: 27,767,808 FLOP per image, batch 64 in 2 ms
    assert gflops(27_767_808, 64, 2.0) == pytest.approx(888.569856)
    assert gflops(0, 64, 2.0) == 0.0


@pytest.mark.parametrize(("batch", "median_ms"), [(0, 1.0), (1, 0.0), (1, -1.0), (1, math.nan)])
def test_throughput_rejects_bad_input(batch: int, median_ms: float) -> None:
    with pytest.raises(ValueError):
        throughput(batch, median_ms)
