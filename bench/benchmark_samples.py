"""Handing pytest-benchmark samples timed elsewhere: the one place its internals are used.

pytest-benchmark times one function per test; the matrix times a group's runtimes together in
interleaved rounds (``bench.harness.run``), so each test hands over samples it did not time. There is no
public call for that (``pedantic`` times a function itself), so ``record_samples`` does what
``BenchmarkFixture.pedantic`` does with its own samples: ``_make_stats(iterations)``, then
``update`` per sample, and it marks the fixture used (``_mode``) so pytest-benchmark neither
warns that the fixture was unused nor lets it be used again. Checked against the installed
pytest-benchmark by ``tests/cli/test_benchmark_samples.py``, which fails when this stops working.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MODE = "interleaved rounds (deepmnist-bench)"  # how pytest-benchmark names the fixture's use


def record_samples(benchmark: Any, iterations: int, durations: Sequence[float]) -> None:
    """Give ``benchmark`` (pytest-benchmark's fixture) ``durations``: seconds per sample of
    ``iterations`` calls each; its tables and JSON then show them as one benchmark's rounds."""
    if benchmark.disabled:
        return
    stats = benchmark._make_stats(iterations)
    for duration in durations:
        stats.update(duration)
    benchmark._mode = MODE
