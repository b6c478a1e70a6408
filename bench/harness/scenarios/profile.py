"""Scenario profile: the whole model under the runtime's own profiler, after the batch rounds of
the profile batch size (``--profile-batch``), one row per layer (``models.layers``) and one for the
whole call (target model)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from bench.harness.case import Case
from bench.harness.gone import WorkerGone
from bench.harness.scenarios.base import Scenario
from bench.runtimes.base import Profilable

if TYPE_CHECKING:
    from bench.harness.options import BenchConfig


def profiled(config: BenchConfig, case: Case) -> bool:
    """Whether the group of ``case`` is followed by the profile: whole model, batch scenario,
    compute timing, the profile batch size."""
    return (
        config.profile
        and case.target == "model"
        and case.scenario == "batch"
        and case.timing == "compute"
        and case.batch_size == config.resolved_profile_batch
    )


def measure_one(driver: Any, launcher: Any, case: Case) -> None:
    """The profile rows of one prepared case."""
    config = driver.config
    profile_case = dataclasses.replace(case, scenario="profile")
    message = {"op": "profile", "case_id": case.id, "batch": case.batch_size, "calls": config.profile_calls}
    try:
        reply = driver.call(launcher, case, message)
    except WorkerGone as e:
        driver.gone_row(profile_case, e)
        return
    if "skipped" in reply:
        driver.row(profile_case, status="skipped", reason=reply["skipped"])
        return
    if "failed" in reply or "error" in reply:
        driver.row(profile_case, status="failed", reason=reply.get("failed") or reply["error"])
        return
    provider = driver.result.row(case)
    for layer, ms in reply["layers"].items():
        target = "model" if layer == "total" else layer
        driver.row(
            dataclasses.replace(profile_case, target=target),
            latency_ms_median=ms,
            rounds=1,
            iterations=config.profile_calls,
            execution_provider=provider.execution_provider if provider else "",
        )


def profile(worker: Any, case_id: str, batch: int, calls: int) -> dict[str, Any]:
    """The worker's side: ``calls`` calls of the reference batch under the runtime's profiler,
    answered as ms per call by layer, or why there is none."""
    prepared = worker.entries[case_id].prepared
    if not isinstance(prepared, Profilable):
        return {"skipped": f"{worker.runtime} has no per-layer profiler in this harness"}
    x_host, _ = worker.data.reference("model", batch)
    try:
        return {"layers": prepared.profile(x_host, calls)}
    except Exception as e:
        return {"failed": f"profiler: {type(e).__name__}: {e}".splitlines()[0][:300]}


SCENARIO = Scenario("profile", worker_ops={"profile": profile})
