"""The benchmark matrix: runtime x device x target x batch size (x timing on CUDA).

Each case is checked against eager PyTorch on CPU before it is timed; a runtime that cannot run
on a device is skipped with the reason, and the reason is in the CSV too.
"""

from __future__ import annotations

import pytest

from bench.core import Case, Context, ParityError, run_case, skip_reason


def test_case(case: Case, bench_ctx: Context, benchmark) -> None:
    reason = skip_reason(case)
    if reason:
        bench_ctx.row(case, status="skipped", reason=reason)
        pytest.skip(reason)
    try:
        run_case(case, bench_ctx, benchmark)
    except ParityError:
        raise
    except Exception as e:
        bench_ctx.row(case, status="failed", reason=f"{type(e).__name__}: {e}".splitlines()[0][:300])
        raise
