"""A worker: one runtime on one device, preparing its cases and timing them when told to.

The parent (``bench.harness.run``) holds the plan and sends one command at a time; the worker answers each
with a small dict. ``Worker.handle`` is the whole protocol, the same in a worker process
(``python -m bench.harness.worker_main FD``, started by ``bench.harness.launch.ProcessWorker``) and inline:

================  ===========================================  =====================================
command ``op``    arguments                                    answer
================  ===========================================  =====================================
``ping``          (none; the self-check times round trips)     ``{}``
``modules``       (none)                                       ``modules``: what this process imported
``prepare``       ``case``                                     cold-start figures, parity, ``per_call``
``round``         ``case_id, iterations, block, warm``         ``durations`` (s, one per sample)
``finish``        ``case_id, accuracy``                        CPU time per call, memory, accuracy
``alone``         ``case_id, seconds``                         ``median`` s per call, a plain loop
``release``       ``case_id``                                  ``{}`` (the prepared runtime is freed)
================  ===========================================  =====================================

The scenarios add their own commands (``bench.harness.scenarios``: ``profile``, ``streams``,
``pin``, and ``serve``, which streams on the connection itself).

A command that raises answers ``{"error": "Type: message"}``; a wrong output answers ``{"failed":
reason}``. Test images, reference inputs and outputs and the eager-PyTorch predictions are the
run's shared files (``bench.harness.shared_data``), mapped, not copied: nothing large crosses the pipe, and
this module imports neither torch nor the data code, so a worker carries only its runtime.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.harness import memory
from bench.harness.case import Case
from bench.harness.clock import clock_for
from bench.harness.scenarios import WORKER_OPS
from bench.harness.scenarios.full_loop import full_loop
from bench.harness.scenarios.server import answer_queries
from bench.harness.shared_data import SharedData, to_input
from bench.runtimes import RUNTIMES, Artifacts, Prepared, tolerance
from bench.runtimes.base import LOADED_FILES, Compilable, SelfTimed

ACCURACY_BATCH = 500  # test images per call of the accuracy run


@dataclass(frozen=True)
class Settings:
    """What a worker needs of the run's config."""

    threads: int  # intra-op threads of a case that names none (the config's resolved count)
    warmup: int  # untimed calls after the parity gate


@dataclass
class Entry:
    """One prepared case: what is timed, and what the rounds have measured so far."""

    case: Case
    prepared: Prepared
    fn: Callable[[], Any]  # one call: one batch (or one single-stream query)
    clock: Callable[[], float]
    cpu_s: float = 0.0  # user + sys of this process over the timed calls, s
    calls: int = 0  # timed calls so far
    durations: list[float] = field(default_factory=list)  # s, one per sample
    x: Any = None  # the device-resident input (what a SelfTimed runtime times itself on)
    streams: list[Callable[[], Any]] = field(default_factory=list)  # scenario streams: one call each

    def run_round(self, iterations: int, block: int, warm: float) -> list[float]:
        """``block`` samples of ``iterations`` calls each, after at least ``warm`` s of untimed calls
        (the caches hold this runtime's weights again). Returns the samples' durations (s)."""
        if isinstance(self.prepared, SelfTimed):  # clocked in the runtime's own process (Node, a page)
            calls = self.prepared.time_calls(self.x, block * iterations, warm)
            durations = [sum(calls[k * iterations : (k + 1) * iterations]) for k in range(block)]
            self.calls += block * iterations
            self.durations += durations
            return durations
        clock = self.clock
        start = clock()
        self.fn()
        while clock() - start < warm:
            self.fn()
        self.prepared.sync()
        durations = []
        cpu = time.process_time()  # all threads of this process; read outside the timed span
        for _ in range(block):
            start = clock()
            for _ in range(iterations):
                self.fn()
            durations.append(clock() - start)
        self.cpu_s += time.process_time() - cpu
        self.calls += block * iterations
        self.durations += durations
        return durations


class Worker:
    """The cases of one runtime on one device (and one thread count)."""

    def __init__(
        self,
        runtime: str,
        device: str,
        settings: Settings,
        artifacts: Artifacts,
        data: SharedData,
        rss_before_runtime: float | None = None,
    ) -> None:
        self.runtime, self.device, self.settings = runtime, device, settings
        self.artifacts, self.data = artifacts, data
        # MiB, the process's resident set before its runtime was imported (None: not a fresh
        # process of its own, as inline): what prepare's RSS is the runtime's footprint over
        self.rss_before_runtime = rss_before_runtime
        self.entries: dict[str, Entry] = {}

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message["op"]
        args = {k: v for k, v in message.items() if k != "op"}
        try:
            return _OPS[op](self, **args)
        except Exception as e:
            return {"error": f"{type(e).__name__}: {e}".splitlines()[0][:300]}

    # ------------------------------------------------------------------------- commands

    def ping(self) -> dict[str, Any]:
        return {}

    def modules(self) -> dict[str, Any]:
        """Every module this process has imported (``sys.modules``): what the worker carries."""
        import sys

        return {"modules": sorted(sys.modules)}

    def prepare(self, case: Case) -> dict[str, Any]:
        """Prepare (load_s), compile (compile_s), first call (first_inference_ms), parity gate,
        warm-up, then an estimate of one call (per_call, s) for the plan."""
        settings = self.settings
        clock = clock_for(case.device)
        x_host, expected = self.data.reference(case.target, case.batch_size)
        loaded = len(LOADED_FILES)
        start = time.perf_counter()
        threads = 1 if case.scenario == "server" else case.threads or settings.threads  # server: one core
        prepared = RUNTIMES[case.runtime].prepare(case.target, case.device, self.artifacts, threads)
        # streams: one more session per further stream, each answering its own requests
        others = [RUNTIMES[case.runtime].prepare(case.target, case.device, self.artifacts, threads)
                  for _ in range(case.streams - 1)]  # fmt: skip
        prepared.sync()
        load_s = time.perf_counter() - start
        tree = memory.tree_mb(os.getpid())  # this process and what the runtime started (Node, a browser)
        rss = None if tree is None else tree[0]
        # torch runtimes load no export file: their size is the checkpoint's (the weights)
        files = LOADED_FILES[loaded:] or [self.artifacts.checkpoint()]
        x_dev = prepared.to_device(x_host)
        compile_s = None
        if isinstance(prepared, Compilable):
            start = clock()
            prepared.compile(x_dev)
            compile_s = clock() - start
        if case.timing == "compute":
            fn: Callable[[], Any] = lambda: prepared.run(x_dev)  # noqa: E731 - input stays on the device
        elif case.timing == "full_loop" or case.scenario in ("server", "streams"):
            if isinstance(prepared, SelfTimed):
                return {"skipped": f"{case.runtime} runs in another process and times its own calls: "
                        "a Python loop around it would time the inter-process call"}  # fmt: skip
            fn = full_loop(prepared, self.data.images, case.batch_size)
            if case.scenario in ("server", "streams"):  # one query: host input to host output
                fn = lambda: prepared.to_host(prepared.run(prepared.to_device(x_host)))  # noqa: E731
        else:
            fn = lambda: prepared.to_host(prepared.run(prepared.to_device(x_host)))  # noqa: E731
        start = clock()
        out = fn()
        first_ms = (clock() - start) * 1e3
        if case.timing == "full_loop":  # parity on the reference batch, through the same conversion
            out = prepared.to_host(prepared.run(prepared.to_device(x_host)))
        got = out if case.timing != "compute" else prepared.to_host(out)
        diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else math.inf
        limit = tolerance(case.runtime, case.device)
        hosted: dict[str, Any] = {}
        runtime_mb = None if rss is None or self.rss_before_runtime is None else rss - self.rss_before_runtime
        if isinstance(prepared, SelfTimed):  # its host started in prepare: the runtime's start and memory
            load_s -= prepared.host_start_s
            hosted["start_s"] = prepared.host_start_s
            children = memory.tree_mb(os.getpid(), include_root=False)
            runtime_mb = None if children is None else children[0]
        cold = {
            **hosted,
            "execution_provider": prepared.execution_provider,
            "load_s": load_s,
            "compile_s": compile_s,
            "first_inference_ms": first_ms,
            "rss_after_load_mb": rss,
            "runtime_rss_mb": runtime_mb,
            "model_bytes": sum(_size(path) for path in dict.fromkeys(files)),
            "max_abs_diff": diff,
        }
        if not diff <= limit:
            reason = f"output differs from eager PyTorch on CPU: max |diff| {diff:.3g} > tolerance {limit:g}"
            return {"failed": reason, **cold}
        # every further stream's session compiled and warmed too: a compile inside the timed window
        # would stall that stream (one query) and halve the throughput of the setting
        queries = [_query(p, x_host) for p in others]
        for other, query in zip(others, queries, strict=True):
            if isinstance(other, Compilable):
                other.compile(other.to_device(x_host))
            for _ in range(settings.warmup):
                query()
            other.sync()
        for _ in range(settings.warmup):
            fn()
        prepared.sync()
        if isinstance(prepared, SelfTimed):
            per_call = max(float(np.median(prepared.time_calls(x_dev, 5, 0.0))), 1e-7)
        else:
            per_call = max(_median_call(fn, clock), 1e-7)
        self.entries[case.id] = Entry(case, prepared, fn, clock, x=x_dev)
        self.entries[case.id].streams = [fn, *queries]
        memory.reset_cuda_peak(case.device)  # the CUDA peak covers the case's rounds only
        return {**cold, "per_call": per_call}

    def round(self, case_id: str, iterations: int, block: int, warm: float) -> dict[str, Any]:
        return {"durations": self.entries[case_id].run_round(iterations, block, warm)}

    def finish(self, case_id: str, accuracy: bool) -> dict[str, Any]:
        entry = self.entries[case_id]
        entry.prepared.sync()
        result = {
            # a SelfTimed runtime computes in another process, whose CPU time this worker cannot see
            "cpu_ms_per_call": entry.cpu_s / entry.calls * 1e3
            if entry.calls and not isinstance(entry.prepared, SelfTimed)
            else None,
            "peak_rss_mb": _tree_peak(),
            "cuda_peak_allocated_mb": memory.cuda_peak_allocated_mb(entry.case.device),
        }
        if accuracy:
            result["accuracy"], result["agreement"] = self.accuracy(entry.prepared)
        return result

    def accuracy(self, prepared: Prepared) -> tuple[float, float]:
        """(accuracy, argmax agreement with eager CPU) on all 10,000 test images (the driver asks
        once per runtime x device x threads)."""
        labels, images = self.data.labels, self.data.images
        preds = []
        for start in range(0, len(labels), ACCURACY_BATCH):
            x = to_input(images[start : start + ACCURACY_BATCH])
            preds.append(prepared.to_host(prepared.run(prepared.to_device(x))).argmax(1))
        pred = np.concatenate(preds)
        return float((pred == labels).mean()), float((pred == self.data.reference_argmax).mean())

    def alone(self, case_id: str, seconds: float, warm: float = 0.0) -> dict[str, Any]:
        """A plain perf_counter loop, nothing of the rounds' machinery: ``warm`` s of untimed calls,
        then the median over blocks of calls lasting >= 20 ms each, for ``seconds`` in all (the
        self-check's reference)."""
        entry = self.entries[case_id]
        if isinstance(entry.prepared, SelfTimed):  # its own clock, as in the rounds
            per_call = float(np.median(entry.prepared.time_calls(entry.x, 5, 0.0)))
            calls = max(5, math.ceil(seconds / max(per_call, 1e-7)))
            times = entry.prepared.time_calls(entry.x, calls, warm)
            return {"median": float(np.median(times)), "samples": len(times)}
        end = time.perf_counter() + warm
        while time.perf_counter() < end:
            entry.fn()
        per_call = max(_median_call(entry.fn, entry.clock), 1e-7)
        calls = max(1, math.ceil(0.02 / per_call))
        times, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end or len(times) < 5:
            start = entry.clock()
            for _ in range(calls):
                entry.fn()
            times.append((entry.clock() - start) / calls)
        return {"median": float(np.median(times)), "samples": len(times)}

    def release(self, case_id: str) -> dict[str, Any]:
        import gc

        self.entries.pop(case_id, None)
        gc.collect()
        return {}


_OPS: dict[str, Callable[..., dict[str, Any]]] = {
    **WORKER_OPS,  # the scenarios' commands (bench.harness.scenarios)
    **{
        name: getattr(Worker, name)
        for name in (
            "ping",
            "modules",
            "prepare",
            "round",
            "finish",
            "alone",
            "release",
        )
    },
}


def _query(prepared: Prepared, x_host: np.ndarray) -> Callable[[], Any]:
    return lambda: prepared.to_host(prepared.run(prepared.to_device(x_host)))


def _tree_peak() -> float | None:
    """MiB: the peak resident set of this process since its start, plus each process it started."""
    tree = memory.tree_mb(os.getpid())
    return None if tree is None else tree[1]


def _size(path: Any) -> int:
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _median_call(fn: Callable[[], Any], clock: Callable[[], float], calls: int = 5) -> float:
    """Seconds per call: the median of a few single calls, so one hiccup does not set the plan."""
    times = []
    for _ in range(calls):
        start = clock()
        fn()
        times.append(clock() - start)
    return float(np.median(times))


def serve(worker: Worker, conn: Any) -> int:
    """Answer the parent's commands on ``conn`` until it says ``exit`` or is gone (the worker
    process's loop, ``bench.harness.worker_main``)."""
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent is gone
            return 0
        if message["op"] == "exit":
            return 0
        if message["op"] == "serve":  # streams on the connection itself (bench.harness.server)
            try:
                answer_queries(worker, conn, message["case_id"], message["queries"])
            except Exception as e:
                conn.send({"error": f"{type(e).__name__}: {e}".splitlines()[0][:300]})
            continue
        conn.send(worker.handle(message))
