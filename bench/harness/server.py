"""The server scenario (after MLPerf LoadGen): queries arrive at a target rate, one at a time.

- Arrivals: seeded exponential gaps (a Poisson process) at ``rate`` queries/s; ``schedule`` gives
  each query's arrival, s after the start. Seed ``--server-seed`` + the rate's index, so a rerun
  replays the same arrivals.
- Latency: from a query's **scheduled** arrival to its result (the worker's clock when its output
  is back on the host), so time spent waiting behind earlier queries counts. Both processes read
  ``time.perf_counter`` (CLOCK_MONOTONIC on Linux: one clock for the whole machine).
- The load generator lives in the parent (``drive``): it sends each query's index when its time
  comes (a 4-byte message) and reads results as they come back; the worker (``Worker.serve``)
  answers each query in arrival order, batch 1, host input to host output.
- Pinning: the parent (every thread of it) to one core, the worker (every thread) to another
  (``pin``); the worker's runtime uses one intra-op thread. The worker's batch-1 call is timed
  before and after pinning and both go in the row's note: that is the cost of pinning.
- Rates: ``--server-rates`` fractions of the worker's pinned batch-1 throughput (1 / its median
  call). Each rate runs ``queries_for`` queries: at least ``--server-queries`` and
  ``--server-min-time`` seconds of arrivals, at most ``--server-max-time`` seconds (fewer queries
  then, and the p99 may be empty: bench.results.stats.min_samples). After two rates in a row whose p99 is
  over ``--latency-bound`` (or missing) the sweep stops: the queue only grows beyond.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import struct
import time
from collections.abc import Iterable
from multiprocessing.connection import Connection

import numpy as np

QUERY = struct.Struct("<I")  # parent -> worker: the query's index
RESULT = struct.Struct("<Id")  # worker -> parent: the index, perf_counter when its result was back
START_DELAY = 0.05  # s from the go to the first arrival: the loop is running by then
STOP_AFTER = 2  # rates in a row over the bound before the sweep stops


def schedule(rate: float, queries: int, seed: int) -> np.ndarray:
    """Arrival times (s from the start) of ``queries`` queries at ``rate`` queries/s on average:
    the running sum of seeded exponential gaps (the first query arrives after the first gap)."""
    if not rate > 0 or queries < 1:
        raise ValueError(f"rate must be > 0 and queries >= 1, got {rate}, {queries}")
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=queries)
    return np.cumsum(gaps)


def queries_for(rate: float, min_queries: int, min_time: float, max_time: float) -> int:
    """Queries at one rate: >= min_queries and >= min_time s of arrivals, <= max_time s of them."""
    wanted = max(min_queries, math.ceil(rate * min_time))
    return max(1, min(wanted, math.floor(rate * max_time)))


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def pin(cpus: Iterable[int]) -> list[int]:
    """Pin every thread of this process to ``cpus``; return the set it had before (of this thread)."""
    before = cores()
    cpus = set(cpus)
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError, PermissionError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task), cpus)
    return before


def drive(conn: Connection, arrivals: np.ndarray, timeout: float) -> tuple[np.ndarray, np.ndarray]:
    """Send query ``i`` at ``start + arrivals[i]`` on ``conn`` and collect the results; return each
    query's latency (s, result time minus scheduled arrival, in query order) and how late each
    was sent (s; the load generator's own lag, part of the latency).

    The worker has been told to serve ``len(arrivals)`` queries and has answered that it is ready.
    A reader thread takes the results as they come, so the worker never waits to send one (a
    socket holds only a few hundred small messages: a sender that stopped reading while the
    worker is behind would deadlock both). A late send (the sender fell behind) is sent at once:
    its latency still counts from its scheduled time. TimeoutError if the results are not all
    back ``timeout`` s after the last arrival.
    """
    import threading

    n = len(arrivals)
    done, lag = np.full(n, np.nan), np.zeros(n)
    failure: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(n):
                data = conn.recv_bytes()
                if len(data) != RESULT.size:  # the worker's answer instead of a result: it failed
                    raise RuntimeError(str(pickle.loads(data).get("error", "the worker stopped serving")))
                index, finished = RESULT.unpack(data)
                done[index] = finished
        except BaseException as e:  # handed to the sending thread, which raises it
            failure.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    start = time.perf_counter() + START_DELAY
    due = start + arrivals
    for i in range(n):
        while (wait := due[i] - time.perf_counter()) > 0:
            # sleep() wakes late by tens of us: sleep until 1 ms before, then yield until due
            time.sleep(wait - 0.001 if wait > 0.002 else 0)
        lag[i] = time.perf_counter() - due[i]
        conn.send_bytes(QUERY.pack(i))
        if failure:
            break
    reader.join(max(due[-1] - time.perf_counter(), 0) + timeout)
    if failure:
        raise failure[0]
    if reader.is_alive():
        missing = int(np.isnan(done).sum())
        raise TimeoutError(f"{missing} of {n} results not back {timeout:g} s after the last arrival")
    return done - due, lag


def achieved_qps(arrivals: np.ndarray, latencies: np.ndarray) -> float:
    """Queries completed per second, from the first arrival to the last result."""
    finished = arrivals + latencies
    span = float(finished.max() - arrivals[0])
    return len(arrivals) / span if span > 0 else math.inf
