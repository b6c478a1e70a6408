"""Self-check of the harness itself (run with ``deepmnist bench --self-check`` or
``pytest bench/test_selfcheck.py --benchmark-only --self-check``); not part of the matrix.

1. Overhead: an empty call timed through the harness (pytest-benchmark's pedantic loop with the
   harness's calibration) must cost under 5 microseconds a call.
2. Agreement: the harness's median for one real combination (whole model, torch-eager, CPU,
   batch 64) must agree with an independent ``torch.utils.benchmark.Timer`` within 10%.
"""

from __future__ import annotations

import pytest
import torch.utils.benchmark as tb

from bench.core import BenchConfig, Case, calibrate, clock_for
from bench.runtimes import RUNTIMES

pytestmark = pytest.mark.selfcheck


def test_harness_overhead(benchmark) -> None:
    config = BenchConfig(max_time=0.5)
    noop = lambda: None  # noqa: E731
    rounds, iterations = calibrate(noop, clock_for("cpu"), config)
    benchmark.group = "self-check"
    benchmark.pedantic(noop, rounds=rounds, iterations=iterations)
    median_us = benchmark.stats.stats.median * 1e6
    benchmark.extra_info["overhead_us"] = median_us
    print(f"\nharness overhead: {median_us:.3f} us per call ({rounds} rounds x {iterations} calls)")
    assert median_us < 5.0, f"timing an empty call costs {median_us:.2f} us, above 5 us"


def test_agrees_with_torch_timer(benchmark, bench_ctx) -> None:
    case = Case("model", "torch-eager", "cpu", 64)
    threads = bench_ctx.config.resolved_threads
    prepared = RUNTIMES[case.runtime].prepare(case.target, case.device, bench_ctx.artifacts, threads)
    x_host, _ = bench_ctx.reference(case.target, case.batch_size)
    x = prepared.to_device(x_host)
    fn = lambda: prepared.run(x)  # noqa: E731
    for _ in range(10):
        fn()
    rounds, iterations = calibrate(fn, clock_for("cpu"), BenchConfig(max_time=2.0))
    benchmark.group = "self-check"
    benchmark.pedantic(fn, rounds=rounds, iterations=iterations)
    ours = benchmark.stats.stats.median
    timer = tb.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    theirs = timer.blocked_autorange(min_run_time=2.0).median
    ratio = ours / theirs
    benchmark.extra_info.update(harness_ms=ours * 1e3, torch_timer_ms=theirs * 1e3, ratio=ratio)
    print(
        f"\nharness median {ours * 1e3:.3f} ms vs torch.utils.benchmark.Timer {theirs * 1e3:.3f} ms: x{ratio:.3f}"
    )
    assert abs(ratio - 1) <= 0.10, f"harness and torch.utils.benchmark.Timer disagree by {abs(ratio - 1):.1%}"
