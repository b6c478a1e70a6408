"""Latency statistics, throughput and GFLOP/s: the one place the harness computes them.

Samples come in seconds (``time.perf_counter`` differences per call); every latency reported is
in milliseconds. Throughput and GFLOP/s are based on the median, which a few slow outliers
(a page fault, a scheduler hiccup) do not move.

How far the median can be trusted: a percentile-bootstrap 95% confidence interval of the median
(``BOOTSTRAP_RESAMPLES`` resamples from ``numpy.random.default_rng(BOOTSTRAP_SEED)``, so the same
samples always give the same interval), and the coefficient of variation (stddev / mean); a
measurement with a CV above ``NOISY_CV`` is flagged as noisy.

Tails you can trust: a percentile q is reported only from at least ``TAIL_BEYOND`` samples beyond
it, that is ``min_samples(q) = TAIL_BEYOND / (1 - q / 100)`` samples: p90 needs 100, p99 1,000,
p99.9 10,000. With fewer the value is None (an empty CSV cell) and ``Latency.note`` says why.
p99 and p99.9, where reported, get the same bootstrap interval as the median.
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
TAIL_BEYOND = 10  # samples a percentile needs beyond it before it is reported (see min_samples)
TAIL_PERCENTILES = {"p90": 90.0, "p99": 99.0, "p999": 99.9}  # Latency field -> percentile


def min_samples(q: float) -> int:
    """Samples needed to report percentile ``q`` (0-100): TAIL_BEYOND of them beyond it.
    90 -> 100, 99 -> 1,000, 99.9 -> 10,000 (rounded first: 10 / 0.001 is 10000.000000000002)."""
    return math.ceil(round(TAIL_BEYOND * 100 / (100 - q), 6))


def tail_note(n: int) -> str:
    """Why tail percentiles are empty for ``n`` samples ("" if every one is reported)."""
    missing = [f"p{q:g}" for q in TAIL_PERCENTILES.values() if n < min_samples(q)]
    if not missing:
        return ""
    need = ", ".join(f"p{q:g} {min_samples(q):,}" for q in TAIL_PERCENTILES.values() if n < min_samples(q))
    return (
        f"{'/'.join(missing)} not reported: {n:,} samples, a percentile needs {TAIL_BEYOND} beyond it "
        f"({need})"
    )


def is_noisy(cv: float) -> bool:
    """True if a coefficient of variation says the measurement is noisy (``cv > NOISY_CV``)."""
    return cv > NOISY_CV


def bootstrap_intervals(values: np.ndarray, qs: Sequence[float]) -> dict[float, tuple[float, float]]:
    """Percentile-bootstrap ``CI_LEVEL`` confidence interval of each percentile ``q`` in ``qs``
    (0-100, numpy's linear interpolation; 50 is the median) of ``values`` (any unit).

    Vectorised: the values are sorted once, so a percentile of a resample is read off order
    statistics of its sorted *indices* (one np.partition of one int32 array for all ``qs``, no
    per-resample sort), equal to np.percentile of the resampled values. The same resamples serve
    every ``q``.
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = ordered.size
    if n == 1:
        return {q: (float(ordered[0]), float(ordered[0])) for q in qs}
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    picks = rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n), dtype=np.int32)
    ranks = {q: (n - 1) * q / 100 for q in qs}
    positions = sorted({k for r in ranks.values() for k in (math.floor(r), math.ceil(r))})
    picks = np.partition(picks, positions, axis=1)
    tail = (1 - CI_LEVEL) / 2 * 100  # percent in each tail: 2.5
    out = {}
    for q, rank in ranks.items():
        lo, hi = math.floor(rank), math.ceil(rank)
        low_v, high_v = ordered[picks[:, lo]], ordered[picks[:, hi]]
        # the median as np.median computes it (mean of the middle two); others interpolated linearly
        mid = (low_v + high_v) / 2
        estimates = mid if q == 50 else low_v + (rank - lo) * (high_v - low_v)
        low, high = np.percentile(estimates, [tail, 100 - tail])
        out[q] = (float(low), float(high))
    return out


def median_ci(values: np.ndarray) -> tuple[float, float]:
    """Percentile-bootstrap ``CI_LEVEL`` confidence interval of the median of ``values``."""
    return bootstrap_intervals(values, [50])[50]


@dataclass(frozen=True)
class Latency:
    """Summary of per-call latencies, all in milliseconds; ``n`` is the number of samples."""

    mean: float
    median: float
    min: float
    max: float
    stddev: float  # sample standard deviation (ddof=1); 0.0 for a single sample
    p90: float | None  # percentiles, numpy's linear interpolation; None below min_samples(q)
    p99: float | None
    p999: float | None  # 99.9th percentile
    n: int
    median_ci_low: float  # bootstrap 95% confidence interval of the median (see median_ci)
    median_ci_high: float
    cv: float  # coefficient of variation, stddev / mean (unitless); 0.0 when the mean is 0
    p99_ci_low: float | None = None  # bootstrap 95% intervals of p99 and p99.9, where reported
    p99_ci_high: float | None = None
    p999_ci_low: float | None = None
    p999_ci_high: float | None = None

    @property
    def note(self) -> str:
        """Which tail percentiles are empty and why ("" if none is)."""
        return tail_note(self.n)

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
        n = int(ms.size)
        tails = {
            name: float(np.percentile(ms, q)) if n >= min_samples(q) else None
            for name, q in TAIL_PERCENTILES.items()
        }
        qs = [50.0, *(TAIL_PERCENTILES[name] for name in ("p99", "p999") if tails[name] is not None)]
        intervals = bootstrap_intervals(ms, qs)
        cis: dict[str, float | None] = {}
        for name in ("p99", "p999"):
            low, high = intervals.get(TAIL_PERCENTILES[name], (None, None))
            cis[f"{name}_ci_low"], cis[f"{name}_ci_high"] = low, high
        mean = float(ms.mean())
        stddev = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
        ci_low, ci_high = intervals[50.0]
        return cls(
            mean=mean,
            median=float(np.median(ms)),
            min=float(ms.min()),
            max=float(ms.max()),
            stddev=stddev,
            **tails,
            n=n,
            median_ci_low=ci_low,
            median_ci_high=ci_high,
            cv=stddev / mean if mean > 0 else 0.0,
            **cis,
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
