"""Scenario streams (``--streams N,...``): N threads in one worker, each with its own session,
send batch-1 queries back to back for --max-time s; one row per runtime x N: the latency of every
query, throughput = queries / wall time, CPU time per query (docs/scenarios.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

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
    if config.streams and "model" in config.targets:
        for device in config.devices:
            for streams in config.streams:
                for runtime, threads in per_runtime:
                    yield Case("model", runtime, device, 1, "end_to_end", "streams", threads, streams)


def measure(driver: Any, launcher: Any, entries: list[Planned], cold: dict[str, dict[str, Any]]) -> None:
    for entry in entries:
        _concurrent(driver, launcher, entry.case, cold[entry.case.id])
        with contextlib.suppress(WorkerGone):
            driver.call(launcher, entry.case, {"op": "release", "case_id": entry.case.id})


def _concurrent(driver: Any, launcher: Any, case: Case, cold: dict[str, Any]) -> None:
    config = driver.config
    cold = cold_columns(cold)
    message = {"op": "streams", "case_id": case.id, "seconds": config.max_time}
    try:
        reply = driver.call(launcher, case, message)
    except WorkerGone as e:
        driver.gone_row(case, e, **cold)
        return
    if "error" in reply:
        driver.row(case, status="failed", reason=reply["error"], **cold)
        return
    queries = len(reply["latencies"])
    if not queries:
        reason = f"no query finished within --max-time {config.max_time:g} s"
        driver.row(case, status="failed", reason=reason, **cold)
        return
    per_stream = ", ".join(str(n) for n in reply["per_stream"])
    row = driver.row(
        case,
        latency=Latency.from_values(reply["latencies"]),
        rounds=queries,
        iterations=1,
        cpu_ms_per_call=reply["cpu_s"] / queries * 1e3,
        note=f"{case.streams} stream(s), queries per stream: {per_stream}",
        **cold,
    )
    driver.result.rows[-1] = dataclasses.replace(row, throughput_ips=queries / reply["wall"])


def streams(worker: Any, case_id: str, seconds: float) -> dict[str, Any]:
    """The worker's side: every stream of the case (a thread each, its own session) sends batch-1
    queries back to back for ``seconds``; answers each query's latency (s), the wall time from the
    common start to the last stream's end (s) and the CPU time of this process over it (s)."""
    entry = worker.entries[case_id]
    barrier = threading.Barrier(len(entry.streams) + 1)
    times: list[list[float]] = [[] for _ in entry.streams]
    ends = [0.0] * len(entry.streams)

    def stream(k: int, fn: Callable[[], Any]) -> None:
        barrier.wait()
        end = time.perf_counter() + seconds
        out = times[k]
        while True:
            start = time.perf_counter()
            fn()
            now = time.perf_counter()
            out.append(now - start)
            if now >= end:
                break
        ends[k] = now

    threads = [threading.Thread(target=stream, args=(k, fn)) for k, fn in enumerate(entry.streams)]
    for thread in threads:
        thread.start()
    cpu = time.process_time()
    start = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    return {
        "latencies": [t for each in times for t in each],
        "per_stream": [len(each) for each in times],
        "wall": max(ends) - start,
        "cpu_s": time.process_time() - cpu,
    }


SCENARIO = Scenario("streams", cases, measure, {"streams": streams})
