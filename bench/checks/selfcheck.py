"""``deepmnist bench --self-check``: is the harness measuring the runtimes, and only them?

0. Overhead: an empty call timed through the worker's round loop must cost under
   ``OVERHEAD_BUDGET_US`` a call; and the round loop's median for one real combination (whole model,
   torch-eager, CPU, batch 64) must agree with ``torch.utils.benchmark.Timer`` within 10%.
1. IPC round trip: an empty command to a worker process as the parent sends every round (resume
   with SIGCONT, send, answer, suspend with SIGSTOP); its median must stay under 1% of a round
   (``min_round_time``, 20 ms by default).
2. Isolation: for every CPU runtime of the config that runs the whole model, the median of the
   isolated interleaved run (all runtimes in their worker processes, rounds interleaved) must
   agree within ``ISOLATION_TOLERANCE`` with the same runtime timed alone: a fresh worker
   process, no other worker alive, a plain perf_counter loop over the same model file. Whole
   model at batch 1 and 64. The runtime is timed alone in ``ALONE_PASSES`` passes in a row in
   one fresh process before the interleaved run, and again after it, and the isolated median is
   compared with the range of those medians: on a shared VM the same runtime alone drifts by more
   than the tolerance within seconds, and the interleaved run lies between the two sets in time.
   Each line's verdict (``bench.results.columns.isolation_verdict``): ``ok`` when the isolated median is within the tolerance of
   the range and the range itself spans at most the tolerance (``alone_spread``, max / min - 1);
   ``FAIL`` when it lies beyond the tolerance of the range (the machine's own variation does not
   explain it); ``undecided`` when it is within but the range is wider than the tolerance: the
   runtime alone does not repeat within the tolerance on this machine, so a 7% agreement can be
   neither shown nor refuted there. The interleaved run is written as a results CSV with
   ``vs_alone`` and ``alone_spread`` per row and ``isolation_ok`` per runtime: 1 when every line
   is ok, 0 when one fails, empty when none fails and one is undecided.

3. Cold start and memory: for every CPU runtime of the config, the harness's cold start (a fresh
   worker process: ``time_to_first_result_s``, and the peak resident memory of the worker, or of
   the host process a runtime starts, Node's or a browser's) against a bare program doing the same work with the runtime's library alone
   (``bench.runtimes.bare``, the adapter's ``bare``), in ``COLD_PAIRS`` alternating turns, medians
   compared: ok within ``COLD_TIME_TOLERANCE_S`` and ``COLD_MEMORY_TOLERANCE_MB``. A runtime with
   no bare program (onnxruntime-web, in a browser the harness serves) has no verdict, and says
   why. The lines go to the printed report and the sidecar (``self_check.cold_start``).

Exit status 0 when every check passes, 1 otherwise (an undecided isolation line included).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
import time
from typing import Any, TextIO

from bench.harness.launch import Launcher
from bench.harness.matrix import Case, skip_reason
from bench.harness.memory import tree_mb
from bench.harness.options import BenchConfig
from bench.harness.prepare import ensure_artifacts
from bench.harness.run import make_launcher, run, time_to_first_result
from bench.harness.worker import Entry
from bench.report.write import write_run
from bench.results.columns import ISOLATION_TOLERANCE, isolation_verdict
from bench.runtimes import RUNTIMES
from bench.runtimes.bare import run_bare
from bench.runtimes.base import HasBare

ISOLATION_BATCHES = (1, 64)
ALONE_PASSES = 3  # alone medians per fresh process, in a row: the machine's own repeatability
# s of untimed calls before the alone loop: a fresh process's first calls (thread pools waking,
# allocator growth, TorchScript's profiling runs) are slower than the steady state the rounds see
ALONE_WARM_S = 1.0
IPC_BUDGET = 0.01  # a round trip may cost this fraction of a round
IPC_CALLS = 200
OVERHEAD_BUDGET_US = 5.0
TIMER_TOLERANCE = 0.10
COLD_PAIRS = 3  # harness and bare program, alternating, per runtime
COLD_TIME_TOLERANCE_S = 0.15  # the harness's time to first result over the bare program's, at most
COLD_MEMORY_TOLERANCE_MB = 40  # the harness worker's peak resident memory over the bare program's, at most


class _Host:
    """A prepared runtime with nothing on a device (the overhead check's empty call)."""

    execution_provider = ""

    def sync(self) -> None:
        pass


def harness_overhead_us(calls: int = 1000, samples: int = 50) -> float:
    """Median microseconds per empty call, timed by the worker's round loop."""

    entry = Entry(Case("model", "none", "cpu", 1), _Host(), lambda: None, time.perf_counter)
    entry.run_round(calls, samples, warm=0.0)
    return statistics.median(entry.durations) / calls * 1e6


def torch_timer_ratio(config: BenchConfig, seconds: float = 2.0, turns: int = 4) -> tuple[float, float]:
    """(round loop median, torch.utils.benchmark.Timer median), s per call: torch-eager, model, b64.
    The two take ``turns`` turns of ``seconds / turns`` each, alternating, so that a machine whose
    speed drifts from one second to the next (a shared VM) slows both alike."""
    import torch.utils.benchmark as tb

    artifacts, mnist = ensure_artifacts(config.artifacts)
    case = Case("model", "torch-eager", "cpu", 64)
    inline = make_launcher(dataclasses.replace(config, launcher="inline"), artifacts, mnist, [case])
    reply = inline.call(case.runtime, case.device, {"op": "prepare", "case": case}, config.case_timeout)
    worker = inline.worker(case.runtime, case.device).worker
    entry = worker.entries[case.id]
    iterations = max(1, round(config.min_round_time / reply["per_call"]))
    timer = tb.Timer(stmt="fn()", globals={"fn": entry.fn}, num_threads=config.resolved_threads)
    theirs: list[float] = []
    for _ in range(turns):
        end = time.perf_counter() + seconds / turns
        while time.perf_counter() < end:
            entry.run_round(iterations, 1, config.round_warmup)
        theirs += timer.blocked_autorange(min_run_time=seconds / turns).times
    ours = statistics.median(entry.durations) / iterations
    inline.close()
    return ours, statistics.median(theirs)


def ipc_round_trip(config: BenchConfig, runtime: str = "torch-eager", calls: int = IPC_CALLS) -> list[float]:
    """Seconds per empty command (``ping``) to a fresh worker process, as ``Launcher.call`` sends it."""

    artifacts, mnist = ensure_artifacts(config.artifacts)
    launcher: Launcher = make_launcher(dataclasses.replace(config, launcher="process"), artifacts, mnist, [])
    try:
        launcher.worker(runtime, "cpu")
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            launcher.call(runtime, "cpu", {"op": "ping"}, config.case_timeout)
            times.append(time.perf_counter() - start)
        return times
    finally:
        launcher.close()


def timed_alone(config: BenchConfig, case: Case, seconds: float, artifacts: Any, mnist: Any) -> list[float]:
    """``ALONE_PASSES`` medians, s per call, of ``case`` in a fresh worker process with no other
    worker alive, ``seconds`` each, one after the other (``artifacts``, ``mnist``: from
    ``ensure_artifacts``, verified once for all the cases)."""

    launcher: Launcher = make_launcher(
        dataclasses.replace(config, launcher="process"), artifacts, mnist, [case]
    )
    try:
        reply = launcher.call(case.runtime, case.device, {"op": "prepare", "case": case}, config.case_timeout)
        if "per_call" not in reply:
            raise RuntimeError(f"{case.id}: {reply.get('failed') or reply.get('error')}")
        medians = []
        for i in range(ALONE_PASSES):
            warm = ALONE_WARM_S if i == 0 else 0.0
            message = {"op": "alone", "case_id": case.id, "seconds": seconds, "warm": warm}
            medians.append(launcher.call(case.runtime, case.device, message, config.case_timeout)["median"])
        return medians
    finally:
        launcher.close()


@dataclasses.dataclass(frozen=True)
class ColdLine:
    """One runtime's cold start and memory: harness (a fresh worker) against its bare program;
    medians over ``COLD_PAIRS`` turns each (s, MiB)."""

    runtime: str
    harness_s: float | None = None  # time_to_first_result_s
    bare_s: float | None = None
    harness_extra_s: float | None = None  # harness_s: the worker's own start-up, in neither
    harness_peak_mb: float | None = None  # the worker's and its children's peaks
    bare_peak_mb: float | None = None
    harness_runtime_mb: float | None = None  # runtime_rss_mb
    bare_runtime_mb: float | None = None
    verdict: str = ""  # ok, FAIL, or "none: <why>"

    @property
    def ok(self) -> bool:
        return self.verdict == "ok" or self.verdict.startswith("none")


def cold_start_lines(config: BenchConfig, out: TextIO | None = sys.stdout) -> list[ColdLine]:
    """The cold-start check of every CPU runtime of ``config`` that runs the whole model (module
    docstring, 3); one fresh worker at a time, no other alive, then its bare program."""

    checked = isolation_config(config)
    artifacts, mnist = ensure_artifacts(checked.artifacts)
    selected = [Case("model", runtime, "cpu", 1) for runtime in checked.runtimes]
    launcher = make_launcher(checked, artifacts, mnist, selected)
    x = launcher.data.input_path("model", 1)
    lines = []
    try:
        for case in selected:
            adapter = RUNTIMES[case.runtime]
            if not isinstance(adapter, HasBare):
                lines.append(ColdLine(case.runtime, verdict=f"none: {case.runtime} has no bare program "
                                      "(it runs in a browser page the harness serves)"))  # fmt: skip
                continue
            harness: list[tuple[float, float, float, float]] = []
            bare = []
            try:
                for _ in range(COLD_PAIRS):
                    worker = launcher.worker(case.runtime, "cpu")
                    reply = launcher.call(
                        case.runtime, "cpu", {"op": "prepare", "case": case}, config.case_timeout
                    )
                    if "per_call" not in reply:
                        raise RuntimeError(reply.get("failed") or reply.get("error") or reply.get("skipped"))
                    # a runtime in a host process (Node, a browser) started in prepare: its start is the
                    # host's, its memory the host's; the worker around it is the harness's
                    hosted = "start_s" in reply
                    start = reply["start_s"] if hosted else worker.start_s
                    extra = worker.harness_s + (worker.start_s if hosted else 0.0)
                    total = time_to_first_result(
                        start, reply["load_s"], reply["compile_s"], reply["first_inference_ms"]
                    )
                    tree = tree_mb(worker.pid, include_root=not hosted)
                    peak = math.nan if tree is None else tree[1]
                    harness.append((total, extra, peak, reply["runtime_rss_mb"]))
                    launcher.end(case.runtime, "cpu")
                    bare.append(run_bare(adapter.bare("model", artifacts, checked.resolved_threads, x)))
            except Exception as e:
                launcher.end(case.runtime, "cpu")
                lines.append(ColdLine(case.runtime, verdict=f"FAIL: {type(e).__name__}: {e}"[:300]))
                continue
            h = [statistics.median(column) for column in zip(*harness, strict=True)]
            b_s = statistics.median(r.time_to_first_result_s for r in bare)
            b_peak = statistics.median(r.peak_rss_mb for r in bare)
            b_runtime = statistics.median(r.runtime_rss_mb for r in bare)
            ok = h[0] - b_s <= COLD_TIME_TOLERANCE_S and h[2] - b_peak <= COLD_MEMORY_TOLERANCE_MB
            lines.append(
                ColdLine(case.runtime, h[0], b_s, h[1], h[2], b_peak, h[3], b_runtime, "ok" if ok else "FAIL")
            )
            if out is not None:
                print(f"  cold start {case.runtime}: {lines[-1].verdict}", file=out, flush=True)
    finally:
        launcher.close()
    return lines


def print_cold_lines(lines: list[ColdLine], out: TextIO) -> None:
    print(
        f"\ncold start and memory: a fresh worker vs the runtime's bare program (bench.runtimes.bare), whole model, "
        f"batch 1, cpu, medians of {COLD_PAIRS} alternating turns: ok within {COLD_TIME_TOLERANCE_S:g} s "
        f"to first result and {COLD_MEMORY_TOLERANCE_MB} MiB of peak memory",
        file=out,
    )
    print(
        f"{'runtime':28} {'harness s':>9} {'bare s':>7} {'+harness s':>10} {'peak MiB':>8} {'bare':>6} "
        f"{'runtime MiB':>11} {'bare':>6}  check",
        file=out,
    )

    def cell(value: float | None, fmt: str, width: int) -> str:
        return f"{value:>{width}{fmt}}" if value is not None else " " * (width - 1) + "-"

    for line in lines:
        print(
            f"{line.runtime:28} {cell(line.harness_s, '.2f', 9)} {cell(line.bare_s, '.2f', 7)} "
            f"{cell(line.harness_extra_s, '.2f', 10)} {cell(line.harness_peak_mb, ',.0f', 8)} "
            f"{cell(line.bare_peak_mb, ',.0f', 6)} {cell(line.harness_runtime_mb, ',.0f', 11)} "
            f"{cell(line.bare_runtime_mb, ',.0f', 6)}  {line.verdict}",
            file=out,
        )


def isolation_config(config: BenchConfig) -> BenchConfig:
    """The interleaved run of the check: whole model, CPU, batch 1 and 64, isolated workers."""
    cpu = tuple(
        r for r in config.runtimes if skip_reason(Case("model", r, "cpu", ISOLATION_BATCHES[0])) is None
    )
    return dataclasses.replace(
        config,
        runtimes=cpu,
        devices=("cpu",),
        targets=("model",),
        batch_sizes=ISOLATION_BATCHES,
        launcher="process",
        single_stream=False,
        profile=False,
        accuracy=False,
        roofline=False,
        self_check=False,
    )


def alone_range(isolated: float, *alone: float) -> float:
    """The isolated median's signed distance from the range of the alone medians, as a fraction of
    the nearer end: 0 inside [min, max], ``isolated / max - 1`` above, ``isolated / min - 1`` below."""
    low, high = min(alone), max(alone)
    if isolated > high:
        return isolated / high - 1
    if isolated < low:
        return isolated / low - 1
    return 0.0


def runtime_passes(verdicts: list[str]) -> int | None:
    """``isolation_ok`` of a runtime from its lines' verdicts: 0 if one fails, None (empty) if one
    is undecided, else 1."""
    if "FAIL" in verdicts:
        return 0
    return None if "undecided" in verdicts else 1


def _time_all_alone(checked: BenchConfig, cases: list[Case], seconds: float) -> dict[str, list[float]]:
    """Each case's alone medians, s per call (one fresh worker at a time); failures left out."""

    artifacts, mnist = ensure_artifacts(checked.artifacts)
    alone = {}
    for case in cases:
        try:
            alone[case.id] = timed_alone(checked, case, seconds, artifacts, mnist)
        except Exception as e:  # a runtime that cannot run is reported by the interleaved run
            print(
                f"{case.id}: not timed alone: {type(e).__name__}: {e}".splitlines()[0][:300], file=sys.stderr
            )
    return alone


def check_isolation(config: BenchConfig, out: TextIO | None = sys.stdout, cold: list[ColdLine] | None = None):
    """Time each case alone, run the isolated interleaved matrix, time each case alone again, flag
    the rows; returns the Run (rows with ``vs_alone``, ``alone_spread`` and ``isolation_ok``; the
    cold-start lines ``cold``, if given, in its sidecar) and whether every runtime passed (every
    line ok)."""

    checked = isolation_config(config)
    cases = [
        Case("model", runtime, "cpu", batch)
        for batch in checked.batch_sizes
        for runtime in checked.runtimes
        if skip_reason(Case("model", runtime, "cpu", batch)) is None
    ]
    seconds = max(checked.max_time, 0.5)
    if out is not None:
        print(f"timing {len(cases)} cases alone (before the interleaved run)", file=out, flush=True)
    before = _time_all_alone(checked, cases, seconds)
    result = run(checked, out=out)
    if out is not None:
        print(f"timing {len(cases)} cases alone (after the interleaved run)", file=out, flush=True)
    after = _time_all_alone(checked, cases, seconds)
    verdicts: dict[str, list[str]] = {}
    lines = []
    for i, row in enumerate(result.rows):
        if row.status != "ok" or row.scenario != "batch":
            continue
        case_id = Case(row.target, row.runtime, row.device, row.batch_size).id
        if case_id not in before or case_id not in after:
            verdicts.setdefault(row.runtime, []).append("FAIL")  # no reference: not proven
            continue
        alone = [t * 1e3 for t in before[case_id] + after[case_id]]
        vs_alone = alone_range(row.latency_ms_median, *alone)
        spread = max(alone) / min(alone) - 1
        verdict = isolation_verdict(vs_alone, spread)
        verdicts.setdefault(row.runtime, []).append(verdict)
        result.rows[i] = dataclasses.replace(row, vs_alone=vs_alone, alone_spread=spread)
        lines.append((row.runtime, row.batch_size, row.latency_ms_median, alone, spread, vs_alone, verdict))
    passes = {rt: runtime_passes(v) for rt, v in verdicts.items()}
    result.rows = [
        dataclasses.replace(r, isolation_ok=passes[r.runtime]) if r.runtime in passes else r
        for r in result.rows
    ]
    if cold:
        result.self_check["cold_start"] = [dataclasses.asdict(line) for line in cold]
    write_run(result, out)
    if out is not None:
        print(
            f"\nisolation: whole model on cpu, isolated interleaved median vs timed alone (fresh process, "
            f"no other worker; {ALONE_PASSES} passes before and {ALONE_PASSES} after the interleaved run): ok "
            f"within {ISOLATION_TOLERANCE:.0%} of the alone range; undecided where the alone passes themselves "
            f"spread wider than {ISOLATION_TOLERANCE:.0%}",
            file=out,
        )
        print(
            f"{'runtime':28} {'batch':>5} {'isolated ms':>12} {'alone min ms':>13} {'alone max ms':>13} "
            f"{'spread':>7} {'diff':>7}  check",
            file=out,
        )
        for runtime, batch, isolated, alone, spread, vs, verdict in lines:
            print(
                f"{runtime:28} {batch:>5} {isolated:>12.4g} {min(alone):>13.4g} {max(alone):>13.4g} "
                f"{spread:>+7.1%} {vs:>+7.1%}  {verdict}",
                file=out,
            )
        counts = {v: sum(line[-1] == v for line in lines) for v in ("ok", "undecided", "FAIL")}
        print(", ".join(f"{n} {v}" for v, n in counts.items()) + f" of {len(lines)} lines", file=out)
        for row in result.rows:
            if row.status != "ok":
                print(f"{row.runtime} batch {row.batch_size}: {row.status}: {row.reason}", file=out)
        print(f"results: {result.path}", file=out)
    ok = bool(passes) and all(p == 1 for p in passes.values())
    ok = ok and all(r.status in ("ok", "skipped") for r in result.rows)
    return result, ok


def self_check(config: BenchConfig, out: TextIO = sys.stdout) -> int:
    overhead = harness_overhead_us()
    overhead_ok = overhead < OVERHEAD_BUDGET_US
    print(f"harness overhead: {overhead:.3f} us per empty call (budget {OVERHEAD_BUDGET_US:g} us): "
          f"{'ok' if overhead_ok else 'FAIL'}", file=out)  # fmt: skip
    ours, theirs = torch_timer_ratio(config)
    timer_ok = abs(ours / theirs - 1) <= TIMER_TOLERANCE
    print(f"torch-eager, model, batch 64: round loop {ours * 1e3:.3f} ms vs torch.utils.benchmark.Timer "
          f"{theirs * 1e3:.3f} ms: x{ours / theirs:.3f} (within {TIMER_TOLERANCE:.0%}): "
          f"{'ok' if timer_ok else 'FAIL'}", file=out)  # fmt: skip
    times = ipc_round_trip(config)
    median = statistics.median(times)
    share = median / config.min_round_time
    ipc_ok = share < IPC_BUDGET
    print(
        f"IPC round trip (empty command: resume, send, answer, suspend), {len(times)} calls: "
        f"median {median * 1e6:.0f} us, p90 {statistics.quantiles(times, n=10)[-1] * 1e6:.0f} us "
        f"= {share:.2%} of a {config.min_round_time * 1e3:g} ms round (budget {IPC_BUDGET:.0%}): "
        f"{'ok' if ipc_ok else 'FAIL'}",
        file=out,
    )
    cold = cold_start_lines(config, out)
    print_cold_lines(cold, out)
    _, isolation_ok = check_isolation(config, out, cold)
    cold_ok = all(line.ok for line in cold)
    return 0 if overhead_ok and timer_ok and ipc_ok and cold_ok and isolation_ok else 1
