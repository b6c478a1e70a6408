"""Scenario server (``--server``, after MLPerf LoadGen's): Poisson arrivals of batch-1 queries at
rising rates up to each runtime's back-to-back capacity, latency from scheduled arrival to result;
one row per rate, from the lowest, until two rates in a row miss --latency-bound. The load
generator and the pinning are ``bench.harness.server``; this is the driver's side and the worker's."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.harness import server as load
from bench.harness.case import Case
from bench.harness.gone import WorkerGone
from bench.harness.rounds import Planned
from bench.harness.scenarios.base import Scenario, cold_columns
from bench.results.stats import Latency

if TYPE_CHECKING:
    from bench.harness.options import BenchConfig


def cases(
    config: BenchConfig, per_runtime: list[tuple[str, int]], timings: tuple[str, ...]
) -> Iterator[Case]:
    if config.server and "model" in config.targets:
        for device in config.devices:
            for runtime in config.runtimes:
                yield Case("model", runtime, device, 1, "end_to_end", "server")


def measure(driver: Any, launcher: Any, entries: list[Planned], cold: dict[str, dict[str, Any]]) -> None:
    for entry in entries:
        _serve(driver, launcher, entry.case, cold[entry.case.id])
        with contextlib.suppress(WorkerGone):
            driver.call(launcher, entry.case, {"op": "release", "case_id": entry.case.id})


def _serve(driver: Any, launcher: Any, case: Case, cold: dict[str, Any]) -> None:
    """One runtime: pin, measure its batch-1 rate, then one row per target rate."""
    config, cold = driver.config, cold_columns(cold)
    everywhere = load.cores()
    pinned = len(everywhere) >= 2
    generator_core, worker_core = everywhere[:2] if pinned else (None, None)
    parent_before = None
    try:
        unpinned = driver.call(launcher, case, {"op": "alone", "case_id": case.id, "seconds": 0.5})["median"]
        if pinned:
            driver.call(launcher, case, {"op": "pin", "cpus": [worker_core]})
            parent_before = load.pin([generator_core])
        per_call = driver.call(launcher, case, {"op": "alone", "case_id": case.id, "seconds": 0.5})["median"]
    except WorkerGone as e:
        driver.gone_row(case, e, **cold)
        return
    except KeyError:  # an "error" answer
        driver.row(case, status="failed", reason="could not time its batch-1 call", **cold)
        return
    capacity = 1.0 / per_call  # queries/s one pinned worker answers back to back
    if pinned:
        how = (
            f"worker on core {worker_core}, load generator on core {generator_core}: batch-1 call "
            f"{per_call * 1e3:.3g} ms pinned vs {unpinned * 1e3:.3g} ms unpinned "
            f"({(per_call / unpinned - 1) * 100:+.0f}%)"
        )
    else:
        how = f"not pinned (one core available); batch-1 call {per_call * 1e3:.3g} ms"
    driver.say(f"  server {case.runtime}/{case.device}: {capacity:,.0f} queries/s back to back; {how}")
    over = 0
    try:
        for k, fraction in enumerate(config.server_rates):
            rate = fraction * capacity
            n = load.queries_for(rate, config.server_queries, config.server_min_time, config.server_max_time)
            arrivals = load.schedule(rate, n, config.server_seed + k)

            # results all back within twice the time to answer every query back to back (>= 60 s)
            wait = min(config.case_timeout, max(60.0, 2 * n * per_call))

            def talk(conn, arrivals=arrivals, wait=wait):
                ready = conn.recv()
                if not ready.get("ready"):
                    raise RuntimeError(ready.get("error", "the worker did not start serving"))
                return load.drive(conn, arrivals, wait)

            message = {"op": "serve", "case_id": case.id, "queries": n}
            try:
                (latencies, lag), reply = launcher.stream(
                    case.runtime, case.device, message, talk, config.case_timeout, case.threads
                )
            except WorkerGone as e:
                driver.gone_row(case, e, **cold)
                return
            notes = [f"{fraction:g} x {capacity:,.0f}/s", how]
            notes.append(f"load generator late by {np.percentile(lag, 99) * 1e6:,.0f} us at p99")
            if n < config.server_queries:
                notes.append(f"{n:,} queries: --server-max-time {config.server_max_time:g} s at this rate")
            row = driver.row(
                case,
                latency=Latency.from_values(latencies),
                target_qps=rate,
                achieved_qps=load.achieved_qps(arrivals, latencies),
                latency_bound_ms=config.latency_bound,
                threads=1,
                rounds=n,
                iterations=1,
                note="; ".join(notes),
                **cold,
                **reply,
            )
            p99 = row.latency_ms_p99
            over = over + 1 if p99 is None or p99 >= config.latency_bound else 0
            if over >= load.STOP_AFTER and k + 1 < len(config.server_rates):
                note = f"{row.note}; sweep stopped: {over} rates in a row over the bound"
                driver.result.rows[-1] = dataclasses.replace(row, note=note)
                break
    finally:
        if parent_before is not None:
            load.pin(parent_before)
            with contextlib.suppress(WorkerGone):
                driver.call(launcher, case, {"op": "pin", "cpus": everywhere})


def pin(worker: Any, cpus: list[int]) -> dict[str, Any]:
    """The worker's side: pin every thread of this worker to ``cpus``; answers the cores it had."""
    return {"before": load.pin(cpus)}


def answer_queries(worker: Any, conn: Any, case_id: str, queries: int) -> None:
    """The worker's side of ``serve``, on the connection itself: answer ``queries`` queries read
    from ``conn`` one at a time, in arrival order, each with its index and the time its result was
    back; then a dict with the CPU time per query."""
    fn = worker.entries[case_id].fn
    conn.send({"ready": True})
    cpu = time.process_time()
    for _ in range(queries):
        (index,) = load.QUERY.unpack(conn.recv_bytes())
        fn()
        conn.send_bytes(load.RESULT.pack(index, time.perf_counter()))
    conn.send({"cpu_ms_per_call": (time.process_time() - cpu) / queries * 1e3})


SCENARIO = Scenario("server", cases, measure, {"pin": pin})
