"""Latency statistics, throughput and GFLOP/s: the one place the harness computes them.

Samples come in seconds (``time.perf_counter`` differences per call); every latency reported is
in milliseconds. Throughput and GFLOP/s are based on the median, which a few slow outliers
(a page fault, a scheduler hiccup) do not move.

How far the median can be trusted: a percentile-bootstrap 95% confidence interval of the median
(``BOOTSTRAP_RESAMPLES`` resamples from ``numpy.random.default_rng(BOOTSTRAP_SEED)``, so the same
samples always give the same interval), and the coefficient of variation (stddev / mean); a
measurement with a CV above ``NOISY_CV`` is flagged as noisy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed: the interval is a function of the samples alone, reproducible run to run
CI_LEVEL = 0.95
NOISY_CV = 0.10  # coefficient of variation above which a measurement is flagged noisy


def is_noisy(cv: float) -> bool:
    """True if a coefficient of variation says the measurement is noisy (``cv > NOISY_CV``)."""
    return cv > NOISY_CV


def median_ci(values: np.ndarray) -> tuple[float, float]:
    """Percentile-bootstrap ``CI_LEVEL`` confidence interval of the median of ``values`` (any unit).

    Vectorised: the values are sorted once, so the median of a resample is read off the middle
    order statistics of its sorted *indices* (np.partition on one int32 array, no per-resample
    sort), equal to np.median of the resampled values.
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = ordered.size
    if n == 1:
        return float(ordered[0]), float(ordered[0])
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    picks = rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n), dtype=np.int32)
    lo, hi = (n - 1) // 2, n // 2  # the middle position(s): equal for odd n
    picks = np.partition(picks, [lo, hi], axis=1)
    medians = (ordered[picks[:, lo]] + ordered[picks[:, hi]]) / 2
    tail = (1 - CI_LEVEL) / 2 * 100  # percent in each tail: 2.5
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Latency:
    """Summary of per-call latencies, all in milliseconds; ``n`` is the number of samples."""

    mean: float
    median: float
    min: float
    max: float
    stddev: float  # sample standard deviation (ddof=1); 0.0 for a single sample
    p90: float  # percentiles: numpy's default linear interpolation
    p99: float
    p999: float  # 99.9th percentile; meaningful with >= 1000 samples (single-stream)
    n: int
    median_ci_low: float  # bootstrap 95% confidence interval of the median (see median_ci)
    median_ci_high: float
    cv: float  # coefficient of variation, stddev / mean (unitless); 0.0 when the mean is 0

    @property
    def noisy(self) -> bool:
        """True if the spread is too large to trust small differences (``cv > NOISY_CV``)."""
        return is_noisy(self.cv)

    @classmethod
    def from_values(cls, samples_s: Sequence[float]) -> Latency:
        """Summarise per-call times given in seconds."""
        values = np.asarray(samples_s, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"latency samples must be a flat sequence, got shape {values.shape}")
        if values.size == 0:
            raise ValueError("no latency samples: at least one timed call is needed")
        bad = values[~np.isfinite(values) | (values < 0)]
        if bad.size:
            raise ValueError(
                f"latency samples must be finite and >= 0 seconds; got {bad.size} bad value(s), "
                f"first {bad[0]!r}"
            )
        ms = values * 1e3
        p90, p99, p999 = np.percentile(ms, [90, 99, 99.9])
        mean = float(ms.mean())
        stddev = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
        ci_low, ci_high = median_ci(ms)
        return cls(
            mean=mean,
            median=float(np.median(ms)),
            min=float(ms.min()),
            max=float(ms.max()),
            stddev=stddev,
            p90=float(p90),
            p99=float(p99),
            p999=float(p999),
            n=int(ms.size),
            median_ci_low=ci_low,
            median_ci_high=ci_high,
            cv=stddev / mean if mean > 0 else 0.0,
        )


def throughput(batch_size: int, median_ms: float) -> float:
    """Images per second for one call of ``batch_size`` images taking ``median_ms``."""
    if batch_size <= 0:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    if not (math.isfinite(median_ms) and median_ms > 0):
        raise ValueError(f"median latency must be a positive number of ms, got {median_ms!r}")
    return batch_size / (median_ms / 1e3)


def gflops(flops_per_image: float, batch_size: int, median_ms: float) -> float:
    """GFLOP/s (1e9 FLOP per second; a multiply-add counts as 2 FLOP), from the median latency."""
    if flops_per_image < 0:
        raise ValueError(f"FLOP per image must be >= 0, got {flops_per_image}")
    return flops_per_image * throughput(batch_size, median_ms) / 1e9
