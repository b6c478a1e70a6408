"""Scenario batch: each case's fixed-size batches timed in interleaved rounds with the other
runtimes of its comparison group (``bench.harness.rounds``); one row per case with the latency
statistics, its accuracy (once per runtime x device x threads) and the worker's CPU time and memory.
The single-stream and full-loop scenarios are timed by the same rounds."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from bench.harness.case import Case
from bench.harness.gone import WorkerGone
from bench.harness.rounds import Planned, plan, schedule
from bench.harness.scenarios import profile
from bench.harness.scenarios.base import Measured, Scenario, cold_columns
from bench.results.stats import Latency

if TYPE_CHECKING:
    from bench.harness.options import BenchConfig

# (driver, case, samples in s) -> the row's note; what a scenario timed by these rounds adds
OnSamples = Callable[[Any, Case, list[float]], str]


def cases(
    config: BenchConfig, per_runtime: list[tuple[str, int]], timings: tuple[str, ...]
) -> Iterator[Case]:
    """Every target x batch size x device (x timing on CUDA) x runtime, runtimes innermost so a
    group's cases are adjacent. On CPU the input already lives in host memory, so compute timing
    is end to end there."""
    for target in config.targets:
        for batch in config.batch_sizes:
            for device in config.devices:
                for timing in timings if device == "cuda" else ("compute",):
                    for runtime, threads in per_runtime:
                        yield Case(target, runtime, device, batch, timing, threads=threads)


def measure(driver: Any, launcher: Any, entries: list[Planned], cold: dict[str, dict[str, Any]]) -> None:
    measure_rounds(driver, launcher, entries, cold)


def measure_rounds(
    driver: Any,
    launcher: Any,
    entries: list[Planned],
    cold: dict[str, dict[str, Any]],
    on_samples: OnSamples | None = None,
) -> None:
    """The group's rounds, then each case's row, the profile (``bench.harness.scenarios.profile``)
    where it is asked for, and last each case's release."""
    config = driver.config
    rounds = plan(entries, config, entries[0].case.scenario)
    durations: dict[str, list[float]] = {e.case.id: [] for e in entries}
    alive = {e.case.id for e in entries}
    for index in schedule(len(entries), rounds, config.interleave):
        entry = entries[index]
        case = entry.case
        if case.id not in alive:
            continue
        message = {"op": "round", "case_id": case.id, "iterations": entry.iterations,
                   "block": entry.block, "warm": config.round_warmup}  # fmt: skip
        try:
            reply = driver.call(launcher, case, message)
        except WorkerGone as e:
            alive.discard(case.id)
            driver.gone_row(case, e, **cold_columns(cold[case.id]))
            continue
        if "error" in reply:
            alive.discard(case.id)
            driver.row(case, status="failed", reason=reply["error"], **cold_columns(cold[case.id]))
            continue
        durations[case.id] += reply["durations"]
    for entry in entries:
        if entry.case.id in alive:
            _finish(driver, launcher, entry, durations[entry.case.id], cold[entry.case.id], on_samples)
    if profile.profiled(config, entries[0].case):
        for entry in entries:
            if entry.case.id in alive:
                profile.measure_one(driver, launcher, entry.case)
    for entry in entries:
        if entry.case.id in alive:
            # its rows are written; should it die now, its later cases get the crash rows
            with contextlib.suppress(WorkerGone):
                driver.call(launcher, entry.case, {"op": "release", "case_id": entry.case.id})


def _finish(
    driver: Any,
    launcher: Any,
    entry: Planned,
    durations: list[float],
    cold: dict[str, Any],
    on_samples: OnSamples | None,
) -> None:
    case = entry.case
    # the accuracy run (10,000 images) once per runtime x device x threads: the same weights and
    # inputs give the same classes in every group's fresh worker
    key = (case.runtime, case.device, case.threads)
    wants_accuracy = case.target == "model" and driver.config.accuracy and key not in driver.accuracy
    try:
        reply = driver.call(launcher, case, {"op": "finish", "case_id": case.id, "accuracy": wants_accuracy})
    except WorkerGone as e:
        driver.gone_row(case, e, **cold_columns(cold))
        return
    if "error" in reply:
        driver.row(case, status="failed", reason=reply["error"], **cold_columns(cold))
        return
    if wants_accuracy:
        driver.accuracy[key] = {"accuracy": reply["accuracy"], "agreement": reply["agreement"]}
    elif case.target == "model" and key in driver.accuracy:
        reply.update(driver.accuracy[key])
    samples = [d / entry.iterations for d in durations]
    if not samples:  # never silently: a row that says so (plan() gives every case a round)
        driver.row(case, status="failed", reason="no timed call: 0 rounds were run", **cold_columns(cold))
        return
    note = on_samples(driver, case, samples) if on_samples is not None else ""
    driver.result.measured[case.id] = Measured(case, durations, entry.iterations)
    driver.row(
        case,
        note=note,
        latency=Latency.from_values(samples),
        rounds=len(durations),
        iterations=entry.iterations,
        **cold,
        **reply,
    )


SCENARIO = Scenario("batch", cases, measure)
