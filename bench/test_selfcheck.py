"""Self-check of the harness itself (``deepmnist bench --self-check`` prints the same checks;
``pytest bench/ --benchmark-only --self-check`` runs them as tests); not part of the matrix.
The checks live in ``bench.checks.selfcheck``; these tests only hold them to their budgets."""

from __future__ import annotations

import statistics

import pytest

from bench.checks import selfcheck

pytestmark = pytest.mark.selfcheck


def test_harness_overhead() -> None:
    overhead = selfcheck.harness_overhead_us()
    print(f"\nharness overhead: {overhead:.3f} us per call")
    assert overhead < selfcheck.OVERHEAD_BUDGET_US


def test_agrees_with_torch_timer(bench_config) -> None:
    ours, theirs = selfcheck.torch_timer_ratio(bench_config)
    print(f"\nround loop {ours * 1e3:.3f} ms vs torch.utils.benchmark.Timer {theirs * 1e3:.3f} ms")
    assert abs(ours / theirs - 1) <= selfcheck.TIMER_TOLERANCE


def test_ipc_round_trip_is_under_one_percent_of_a_round(bench_config) -> None:
    median = statistics.median(selfcheck.ipc_round_trip(bench_config))
    print(f"\nIPC round trip: {median * 1e6:.0f} us")
    assert median < selfcheck.IPC_BUDGET * bench_config.min_round_time


def test_isolated_agrees_with_alone(bench_config) -> None:
    result, ok = selfcheck.check_isolation(bench_config)
    assert ok, [(r.runtime, r.batch_size, r.vs_alone) for r in result.rows if r.vs_alone is not None]
