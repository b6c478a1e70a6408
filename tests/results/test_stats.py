"""bench.results.stats: exact statistics on fixed samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.results.stats import (
    NOISY_CV,
    Latency,
    bootstrap_intervals,
    gflops,
    median_ci,
    min_samples,
    throughput,
)

ONE_TO_TEN_S = [k / 1000 for k in (7, 1, 10, 4, 2, 9, 3, 8, 6, 5)]  # 1..10 ms, unsorted


def test_latency_one_to_ten_ms() -> None:
    lat = Latency.from_values(ONE_TO_TEN_S)
    expected = {
        "mean": 5.5,
        "median": 5.5,
        "min": 1.0,
        "max": 10.0,
        "stddev": math.sqrt(82.5 / 9),  # sum of squared deviations 82.5, ddof=1
        "p90": None,  # 10 samples: none of the tails has 10 samples beyond it
        "p99": None,
        "p999": None,
    }
    for name, value in expected.items():
        assert getattr(lat, name) == (value if value is None else pytest.approx(value, rel=1e-12)), name
    assert lat.n == 10
    assert lat.stddev == pytest.approx(3.0276503540974917, rel=1e-12)


def test_latency_even_median_and_odd_count() -> None:
    assert Latency.from_values([0.004, 0.001, 0.002]).median == pytest.approx(2.0)
    assert Latency.from_values([0.004, 0.001, 0.002, 0.003]).median == pytest.approx(2.5)


def test_latency_single_sample() -> None:
    lat = Latency.from_values([0.0025])
    assert lat == Latency(
        mean=2.5,
        median=2.5,
        min=2.5,
        max=2.5,
        stddev=0.0,
        p90=None,
        p99=None,
        p999=None,
        n=1,
        median_ci_low=2.5,
        median_ci_high=2.5,
        cv=0.0,
    )
    assert not lat.noisy


def test_percentiles_of_one_to_thousand_ms() -> None:
    """1..1000 ms; numpy's linear interpolation at rank q * 999; p99.9 needs 10,000 samples."""
    lat = Latency.from_values([k / 1000 for k in range(1000, 0, -1)])
    assert (lat.median, lat.p90, lat.p99) == pytest.approx((500.5, 900.1, 990.01))
    assert lat.p999 is None and lat.p999_ci_low is None
    assert lat.note == "p99.9 not reported: 1,000 samples, a percentile needs 10 beyond it (p99.9 10,000)"
    assert lat.p99_ci_low <= lat.p99 <= lat.p99_ci_high


def test_minimum_samples_per_percentile_and_boundaries() -> None:
    assert (min_samples(90), min_samples(99), min_samples(99.9)) == (100, 1000, 10000)
    ms = _lognormal_s(999)
    assert Latency.from_values(ms).p99 is None and Latency.from_values(ms[:99]).p90 is None
    assert Latency.from_values(_lognormal_s(1000)).p99 is not None
    assert Latency.from_values(_lognormal_s(100)).p90 is not None


def test_tail_intervals_match_resampled_percentiles_and_hold_the_estimate() -> None:
    values = _lognormal_s(10_000) * 1e3
    lat = Latency.from_values(values / 1e3)
    assert lat.note == "" and lat.p999 is not None
    for q, est, low, high in ((99, lat.p99, lat.p99_ci_low, lat.p99_ci_high),
                              (99.9, lat.p999, lat.p999_ci_low, lat.p999_ci_high)):  # fmt: skip
        assert low <= est <= high and low < high
        assert bootstrap_intervals(values, [q])[q] == (low, high)
    # the index trick equals np.percentile of each resample (a small sample, all draws in memory)
    few = values[:300]
    picks = np.random.default_rng(0).integers(0, few.size, size=(2000, few.size), dtype=np.int32)
    expected = np.percentile(np.percentile(np.sort(few)[picks], 99, axis=1), [2.5, 97.5])
    assert bootstrap_intervals(few, [99])[99] == pytest.approx(tuple(expected), rel=1e-12)
    assert lat.p999_ci_high - lat.p999_ci_low > lat.p99_ci_high - lat.p99_ci_low  # rarer: wider


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


def test_cv_and_noisy_on_fixed_numbers() -> None:
    lat = Latency.from_values(ONE_TO_TEN_S)
    assert lat.cv == pytest.approx(math.sqrt(82.5 / 9) / 5.5, rel=1e-12)  # 0.5505: noisy
    assert lat.noisy and NOISY_CV == 0.10
    steady = Latency.from_values([0.0010, 0.0011, 0.0009])  # stddev 0.1 ms, mean 1 ms: cv 0.1, not above
    assert steady.cv == pytest.approx(0.1, rel=1e-12)
    assert not Latency.from_values([0.0010, 0.00105, 0.00095]).noisy
    assert Latency.from_values([0.0, 0.0]).cv == 0.0  # mean 0: no division by zero


def _lognormal_s(n: int) -> np.ndarray:
    """``n`` latencies around 1 ms with 20% spread, in seconds, from a fixed generator."""
    return np.random.default_rng(12345).lognormal(mean=0.0, sigma=0.2, size=n) / 1e3


def test_bootstrap_ci_contains_the_median_narrows_and_is_deterministic() -> None:
    few, many = Latency.from_values(_lognormal_s(20)), Latency.from_values(_lognormal_s(2000))
    for lat in (few, many):
        assert lat.median_ci_low <= lat.median <= lat.median_ci_high
        assert lat.min <= lat.median_ci_low < lat.median_ci_high <= lat.max
    assert (many.median_ci_high - many.median_ci_low) < (few.median_ci_high - few.median_ci_low) / 3
    again = Latency.from_values(_lognormal_s(2000))
    assert (again.median_ci_low, again.median_ci_high) == (many.median_ci_low, many.median_ci_high)


def test_bootstrap_ci_equals_resampled_medians() -> None:
    # the index trick in median_ci gives exactly np.median of each resample (same generator, same draws)
    values = _lognormal_s(101) * 1e3
    picks = np.random.default_rng(0).integers(0, values.size, size=(2000, values.size), dtype=np.int32)
    expected = np.percentile(np.median(np.sort(values)[picks], axis=1), [2.5, 97.5])
    assert median_ci(values) == pytest.approx(tuple(expected), rel=1e-15)
    assert median_ci(np.array([3.0])) == (3.0, 3.0)
