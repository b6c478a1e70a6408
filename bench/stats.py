"""Latency statistics, throughput and GFLOP/s: the one place the harness computes them.

Samples come in seconds (``time.perf_counter`` differences per call); every latency reported is
in milliseconds. Throughput and GFLOP/s are based on the median, which a few slow outliers
(a page fault, a scheduler hiccup) do not move.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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
    n: int

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
        p90, p99 = np.percentile(ms, [90, 99])
        return cls(
            mean=float(ms.mean()),
            median=float(np.median(ms)),
            min=float(ms.min()),
            max=float(ms.max()),
            stddev=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
            p90=float(p90),
            p99=float(p99),
            n=int(ms.size),
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
