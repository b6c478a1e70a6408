"""The benchmark matrix: runtime x device x target x batch size (x timing on CUDA, x scenario).

Each case is checked against eager PyTorch on CPU before it is timed; a runtime that cannot run
a case is skipped with the reason, and the reason is in the CSV too. The runtimes of one group
(same target, batch size, device, timing and scenario) are timed together, in interleaved rounds,
when the group's first test runs; each test then reports its own case.
"""

from __future__ import annotations

import pytest

from bench.core import Case, Context, record_samples, skip_reason


def test_case(case: Case, bench_ctx: Context, benchmark) -> None:
    reason = skip_reason(case)
    if reason:
        bench_ctx.row(case, status="skipped", reason=reason)
        pytest.skip(reason)
    outcome = bench_ctx.outcome(case)
    if isinstance(outcome, BaseException):
        raise outcome
    record_samples(benchmark, outcome)
