"""The benchmark matrix: runtime x device x target x batch size (x timing on CUDA, x scenario).

One test per case. ``bench.harness.run.run`` measures all selected cases at once (each runtime in its own
worker process, the runtimes of a group in interleaved rounds); each test reports its case: the
samples go to pytest-benchmark, a skipped case is skipped with its reason, and a failed, crashed
or timed-out case fails with the reason of its row (the CSV has the same).
"""

from __future__ import annotations

import pytest

from bench import benchmark_samples
from bench.conftest import Skipped
from bench.harness.matrix import Case


def test_case(case: Case | Skipped, bench_run, benchmark) -> None:
    if isinstance(case, Skipped):  # the run wrote their rows, each with this reason
        pytest.skip(f"{case.reason} ({len(case.cases)} cases)")
    row = bench_run.row(case)
    if row is None:
        pytest.fail(f"{case.id}: no row (the run was interrupted before it)")
    if row.status == "skipped":
        pytest.skip(row.reason)
    if row.status != "ok":
        pytest.fail(f"{case.id}: {row.status}: {row.reason}", pytrace=False)
    if case.id in bench_run.measured:  # server and streams rows have no rounds of samples
        record_samples(benchmark, bench_run.measured[case.id])


def record_samples(benchmark, measured) -> None:
    """Hand the case's samples to pytest-benchmark, so its tables and JSON show them (the group is
    the comparison group, as in the CSV)."""
    case = measured.case
    benchmark.group = case.group
    benchmark.extra_info.update(
        runtime=case.runtime, device=case.device, target=case.target, batch_size=case.batch_size,
        scenario=case.scenario, timing=case.timing, interleaved=True,
    )  # fmt: skip
    benchmark_samples.record_samples(benchmark, measured.iterations, measured.durations)
