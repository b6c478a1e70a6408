"""The run as a library: ``run(config) -> Run``. Nothing here needs pytest.

1. plan: the cases of the config (or the ones given), grouped (``bench.harness.matrix``); skipped cases
   get their row and reason at once;
2. artifacts (built if missing), the environment, and each device's roofline, measured before
   any worker exists;
3. per group, in order: each runtime's worker (``bench.harness.launch``, one per runtime x device, a
   fresh process for each group) prepares its case (cold start, parity), the parent plans the
   rounds and drives them interleaved across the workers (A B C, B C A, ...), each worker sending
   back its samples; then each worker reports CPU time, memory and accuracy (once per runtime),
   the profiled group runs under the profilers, and the group's workers end;
4. the rows come back in the ``Run``; ``bench.report.write.write_run`` turns them into CSV,
   Markdown, JSON sidecar and plots.

A worker that crashes or exceeds ``case_timeout`` gives its remaining cases ``crashed`` or
``timeout`` rows; the others go on. Ctrl-C (or SIGTERM, raised as ``models.errors.Terminated``
by the CLI) ends the workers; the run comes back with the rows measured so far and the
interruption (``Run.interruption``), for the caller to write and then exit 130 (143).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bench.harness.durations import Durations
from bench.harness.gone import WorkerGone
from bench.harness.launch import Launcher
from bench.harness.matrix import (
    BYTES_PER_ELEMENT,
    Case,
    cases,
    flops,
    offline_rows,
    precision_of,
    skip_reason,
)
from bench.harness.memory import RunMemory
from bench.harness.options import BenchConfig, config_dict
from bench.harness.prepare import ensure_artifacts, write_shared_data
from bench.harness.roofline import arithmetic_intensity, measure_roofline, rows_above_own_roof
from bench.harness.rounds import Planned
from bench.harness.scenarios import MEASURE
from bench.harness.scenarios.base import Measured
from bench.harness.worker import Settings, Worker
from bench.results.environment import collect_environment
from bench.results.sidecar import DURATIONS_KEY
from bench.results.stats import Latency
from bench.results.store import ResultRow, RunRecord, new_run_id, utc_timestamp
from bench.runtimes import RUNTIMES
from bench.runtimes.device import check_device
from bench.runtimes.torch_base import set_threads
from models.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated

FAILED = ("failed", "crashed", "timeout")  # statuses that make the run's exit code 1


@dataclass
class Run:
    config: BenchConfig
    rows: list[ResultRow] = field(default_factory=list)
    measured: dict[str, Measured] = field(default_factory=dict)  # case id -> samples
    path: Path | None = None  # the CSV (None: not written)
    plots: list[Path] = field(default_factory=list)
    tables: str = ""  # the tables as text (bench.report.write draws them with the Markdown)
    interruption: BaseException | None = None  # the Ctrl-C (or SIGTERM) that ended the measuring
    single_stream_samples: dict[str, list[float]] = field(default_factory=dict)  # "runtime/device" -> ms
    rooflines: dict[str, Any] = field(default_factory=dict)  # device -> Roofline, the higher of the passes
    roofline_passes: list[dict[str, Any]] = field(default_factory=list)  # before and after the groups
    environment: dict[str, str] = field(default_factory=dict)
    artifacts: Any = None  # bench.runtimes.Artifacts the run measured
    fallback: str | None = None  # the results went to the temporary folder instead: why, and where
    durations: Durations = field(default_factory=Durations)  # s per step (the sidecar's durations_s)
    memory: RunMemory = field(default_factory=RunMemory)  # the whole run's peak (the sidecar's run_memory)
    self_check: dict[str, Any] = field(default_factory=dict)  # the self-check's other lines (its sidecar)

    def row(self, case: Case, scenario: str | None = None) -> ResultRow | None:
        """The row of ``case`` (of ``scenario``, if given, else the case's own)."""
        want = scenario or case.scenario
        threads = case.threads or self.config.resolved_threads
        for row in self.rows:
            if (row.target, row.runtime, row.device, row.batch_size, row.timing, row.scenario) == (
                case.target, case.runtime, case.device, case.batch_size, case.timing, want,
            ) and row.threads in (threads, 1 if want == "server" else threads) and row.streams in (
                None, case.streams,
            ):  # fmt: skip
                return row  # server: the first rate's row
        return None

    def record(self) -> RunRecord:
        """What the run stores: its rows with the derived offline rows, the settings and the
        sidecar's facts."""
        manifest = self.artifacts.manifest
        settings = config_dict(self.config)
        settings["artifacts"] = {
            "checkpoint": manifest.checkpoint,
            "checkpoint_sha256": manifest.checkpoint_sha256,
            "test_accuracy": manifest.test_accuracy,
            "export": str(manifest.folder),
        }
        extra = {
            "rooflines": {d: dataclasses.asdict(r) for d, r in self.rooflines.items()},
            "roofline_passes": [
                {d: dataclasses.asdict(r) for d, r in p.items()} for p in self.roofline_passes
            ],
            "single_stream_samples_ms": self.single_stream_samples,
            "interrupted": self.interrupted,
            DURATIONS_KEY: self.durations.as_dict(),
            "run_memory": self.memory.as_dict(),
            **({"self_check": self.self_check} if self.self_check else {}),
        }
        rows = [*self.rows, *offline_rows(self.rows)]
        return RunRecord(
            rows, self.config.results_dir, self.environment, settings, extra, self.memory.describe()
        )

    @property
    def interrupted(self) -> bool:
        return self.interruption is not None

    @property
    def exit_code(self) -> int:
        """0: every case ok or skipped; 1: some failed, crashed or timed out; 130: interrupted
        (143: terminated, SIGTERM)."""
        if self.interruption is not None:
            return EXIT_TERMINATED if isinstance(self.interruption, Terminated) else EXIT_INTERRUPTED
        return 1 if self.fallback or any(row.status in FAILED for row in self.rows) else 0


def time_to_first_result(start_s: float, load_s: float, compile_s: float | None, first_ms: float) -> float:
    """s: the worker's start, the runtime's load, its compile and its first call (the cold start
    columns), what a command-line app's user waits for one result."""
    return start_s + load_s + (compile_s or 0.0) + first_ms / 1e3


def groups_of(selected: Sequence[Case]) -> list[list[Case]]:
    """The selected cases by comparison group, in order of first appearance."""
    out: dict[str, list[Case]] = {}
    for case in selected:
        out.setdefault(case.group, []).append(case)
    return list(out.values())


class _Driver:
    """One run's state: the config, the launcher, the rows."""

    def __init__(self, config: BenchConfig, out: TextIO | None, environment, run_id, timestamp, rooflines):
        self.config, self.out = config, out
        self.environment, self.run_id, self.timestamp = environment, run_id, timestamp
        self.result = Run(config, rooflines=rooflines, environment=environment)
        # (runtime, device, threads) -> its worker's (start_s, harness_s); None for inline workers
        self.started: dict[tuple[str, str, int], tuple[float | None, float | None]] = {}
        self.accuracy: dict[
            tuple[str, str, int], dict[str, float]
        ] = {}  # the same key -> accuracy, agreement

    def say(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)

    # ------------------------------------------------------------------------- rows

    def row(self, case: Case, latency: Latency | None = None, **values: Any) -> ResultRow:
        defaults = {"warmup": self.config.warmup, "rounds": 0, "iterations": 0}
        threads = values.pop("threads", case.threads or self.config.resolved_threads)
        start_s, harness_s = self.started.get((case.runtime, case.device, case.threads), (None, None))
        if "start_s" in values:  # a runtime in a host process started in prepare (SelfTimed): the
            host = values.pop("start_s")  # worker around it is the harness's
            harness_s = None if start_s is None else start_s + (harness_s or 0.0)
            start_s = host
        row = ResultRow.create(
            self.environment,
            run_id=self.run_id,
            timestamp_utc=self.timestamp,
            target=case.target,
            runtime=case.runtime,
            device=case.device,
            precision=precision_of(case.runtime),
            timing=case.timing,
            scenario=case.scenario,
            batch_size=case.batch_size,
            threads=threads,
            streams=case.streams,
            launcher=self.config.launcher,
            start_s=start_s,
            harness_s=harness_s,
            **{**defaults, **values},
        )
        if row.load_s is not None and row.first_inference_ms is not None and start_s is not None:
            total = time_to_first_result(start_s, row.load_s, row.compile_s, row.first_inference_ms)
            row = dataclasses.replace(row, time_to_first_result_s=total)
        server = case.scenario == "server"  # its throughput is the rate achieved, not 1 / median
        if latency is not None:
            row = row.with_latency(latency, None if server else flops(case.target) or None)
            if server:
                row = dataclasses.replace(row, throughput_ips=row.achieved_qps)
            roof = None if server else self.result.rooflines.get(row.device)
            if roof is not None:
                size = BYTES_PER_ELEMENT.get(row.precision, 4)
                intensity = arithmetic_intensity(row.target, row.batch_size, bytes_per_element=size)
                row = row.with_roofline(roof.peak_for(row.precision), roof.bandwidth_gbs, intensity)
        self.result.rows.append(row)
        return row

    def reroof(self, rooflines: dict[str, Any]) -> None:
        """The run's roofs are now ``rooflines``: every row with a roof takes its device's new one."""
        self.result.rooflines = rooflines
        for i, row in enumerate(self.result.rows):
            roof = rooflines.get(row.device)
            if row.peak_gflops is not None and roof is not None:
                peak = roof.peak_for(row.precision)
                self.result.rows[i] = row.with_roofline(peak, roof.bandwidth_gbs, row.arithmetic_intensity)

    def rows_above_roof(self) -> list[str]:
        """The rows whose GFLOP/s exceed their own roof (bench.harness.roofline.rows_above_own_roof), described."""

        rooflines = {d: dataclasses.asdict(r) for d, r in self.result.rooflines.items()}
        return rows_above_own_roof([dataclasses.asdict(r) for r in self.result.rows], rooflines)

    def gone_row(self, case: Case, gone: WorkerGone, **values: Any) -> None:
        self.row(case, status=gone.status, reason=gone.reason, **values)

    # ------------------------------------------------------------------------- one group

    def call(self, launcher: Launcher, case: Case, message: dict[str, Any]) -> dict[str, Any]:
        return launcher.call(case.runtime, case.device, message, self.config.case_timeout, case.threads)

    def measure_group(self, launcher: Launcher, group: list[Case]) -> None:
        entries: list[Planned] = []
        cold: dict[str, dict[str, Any]] = {}
        for case in group:
            try:
                worker = launcher.worker(case.runtime, case.device, case.threads)
                self.started[(case.runtime, case.device, case.threads)] = (worker.start_s, worker.harness_s)
                reply = self.call(launcher, case, {"op": "prepare", "case": case})
            except WorkerGone as e:
                self.gone_row(case, e)
                continue
            if "error" in reply:
                self.row(case, status="failed", reason=reply["error"])
                continue
            if "skipped" in reply:
                self.row(case, status="skipped", reason=reply["skipped"])
                continue
            if "failed" in reply:
                reason = reply.pop("failed")
                self.row(case, status="failed", reason=reason, **reply)
                continue
            cold[case.id] = reply
            entries.append(Planned(case, reply.pop("per_call")))
        if entries:
            MEASURE[entries[0].case.scenario](self, launcher, entries, cold)


# ----------------------------------------------------------------------------- the run


def _remaining(left: Sequence[list[Case]], elapsed: float, done: int) -> str:
    """What remains of the run after ``done`` groups in ``elapsed`` s: the groups and cases left, and
    an estimate at the mean pace so far (groups differ in length, so it is rough)."""
    if not left:
        return "no groups left"
    cases_left = sum(len(group) for group in left)
    eta = elapsed / done * len(left)
    about = f"{eta:.0f} s" if eta < 120 else f"{eta / 60:.0f} min"
    groups = "1 group" if len(left) == 1 else f"{len(left)} groups"
    return f"{groups} ({cases_left} cases) left, about {about} at the pace so far"


def make_launcher(config: BenchConfig, artifacts: Any, mnist: Any, selected: Sequence[Case]) -> Launcher:
    """A launcher for ``config.launcher``, with the run's shared data (``bench.harness.shared_data``) for
    the (target, batch size) pairs of ``selected`` written once, in a temporary folder the
    launcher removes when it closes."""
    import tempfile

    folder = tempfile.TemporaryDirectory(prefix="deepmnist-shared-")
    pairs = {(case.target, case.batch_size) for case in selected}
    data = write_shared_data(folder.name, artifacts, mnist, sorted(pairs))
    settings = Settings(threads=config.resolved_threads, warmup=config.warmup)
    export = artifacts.manifest.folder

    def inline(runtime: str, device: str) -> Worker:
        return Worker(runtime, device, settings, artifacts, data)

    def spec(runtime: str, device: str) -> dict[str, Any]:
        return {  # plain values: the worker reads them before it imports anything (bench.harness.worker_main)
            "runtime": runtime,
            "device": device,
            "module": RUNTIMES.module_of(runtime),
            "settings": dataclasses.asdict(settings),
            "artifacts": None if config.artifacts is None else str(config.artifacts),
            "export_dir": str(export),
            "data": folder.name,
            "sys_path": [p for p in sys.path if p],
        }

    return Launcher(config.launcher, make_inline=inline, spec=spec, owns=folder, data=data)


def run(
    config: BenchConfig,
    selected: Sequence[Case] | None = None,
    *,
    out: TextIO | None = sys.stderr,
) -> Run:
    """Measure ``selected`` (default: every case of ``config``); the rows are in memory, and
    ``bench.report.write.write_run`` writes them. Ctrl-C (or SIGTERM) ends the measuring: the run
    comes back with ``interrupted`` set and the rows so far (exit code 130).

    ``out`` gets progress lines (None: quiet)."""

    selected = list(cases(config) if selected is None else selected)
    durations = Durations()
    started = time.perf_counter()
    artifacts, mnist = ensure_artifacts(config.artifacts)
    durations.artifacts = time.perf_counter() - started
    started = time.perf_counter()
    rooflines = measure_rooflines(config, out) if config.roofline else {}
    durations.roofline = time.perf_counter() - started
    driver = _Driver(config, out, collect_environment(), new_run_id(), utc_timestamp(), rooflines)
    driver.result.durations = durations
    runnable = []
    for case in selected:
        reason = skip_reason(case)
        if case.scenario == "server" and config.launcher != "process":
            reason = "the server scenario needs worker processes (--launcher process)"
        if reason:
            driver.row(case, status="skipped", reason=reason)
        else:
            runnable.append(case)
    launcher = make_launcher(config, artifacts, mnist, runnable)
    groups = groups_of(runnable)
    started = time.perf_counter()
    try:
        for number, group in enumerate(groups, 1):
            driver.say(f"[{number}/{len(groups)}] {group[0].group}: {', '.join(c.runtime for c in group)}")
            group_started = time.perf_counter()
            driver.measure_group(launcher, group)
            for case in group:  # a finished group's workers end: the next group starts fresh ones
                launcher.end(case.runtime, case.device, case.threads)
            seconds = durations.group(group, group_started, config.single_stream_queries)
            driver.say(
                f"  {seconds:.1f} s; {_remaining(groups[number:], time.perf_counter() - started, number)}"
            )
        launcher.close()
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (models.errors.Terminated): the same way out
        launcher.close(kill=True)
        driver.result.interruption = e
    except BaseException:
        launcher.close(kill=True)
        raise
    durations.measured = time.perf_counter() - started
    driver.result.memory = launcher.memory
    driver.say(f"measured {len(groups)} groups in {durations.measured:.1f} s")
    driver.say(launcher.memory.describe())
    if rooflines and not driver.result.interrupted:
        started = time.perf_counter()
        driver.say("rooflines again, after the groups (each roof: the higher of the two passes)")
        again = measure_rooflines(config, out)
        passes = [rooflines, again]
        driver.reroof(higher_roofs(rooflines, again))
        # a row above its own roof means every pass so far met a slow minute of a drifting machine:
        # measure again (at most EXTRA_ROOF_PASSES times) rather than publish a row above its roof
        above = driver.rows_above_roof()
        while above and len(passes) < 2 + EXTRA_ROOF_PASSES:
            driver.say(f"{len(above)} rows above their roof ({above[0]}): rooflines again")
            passes.append(measure_rooflines(config, out))
            driver.reroof(higher_roofs(driver.result.rooflines, passes[-1]))
            above = driver.rows_above_roof()
        if above:
            driver.say(
                f"{len(above)} rows still above their roof after {len(passes)} passes: {'; '.join(above)}"
            )
        durations.roofline += time.perf_counter() - started
        driver.result.roofline_passes = passes
    result = driver.result
    result.artifacts = artifacts
    if result.interrupted:
        name = type(result.interruption).__name__
        driver.say(f"interrupted ({name}): returning the {len(result.rows)} rows measured so far")
    return result


EXTRA_ROOF_PASSES = 2  # roof passes after the second, while a row stands above its own roof


def higher_roofs(rooflines: dict, again: dict) -> dict:
    """Each device's roofs the higher of ``rooflines`` and ``again`` (bench.harness.roofline.Roofline.higher)."""
    return {d: roof.higher(again[d]) if d in again else roof for d, roof in rooflines.items()}


def measure_rooflines(config: BenchConfig, out: TextIO | None = None) -> dict:
    """Each available device's float32 peak (the best of its candidate kernels, bench.harness.roofline), the
    roof of each other precision and the copy bandwidth, measured now (same run)."""

    set_threads(max(config.thread_counts))  # the roof of the rows with the most threads (--threads 1,2: 2)
    rooflines = {}
    for device in config.devices:
        if check_device(device) is None:
            roof = rooflines[device] = measure_roofline(device)
            others = "".join(f", {p} {v:,.0f}" for p, v in roof.precision_peaks.items())
            best = max((v, how) for how, v in roof.peaks.items() if v == roof.peak_gflops)[1]
            if out is not None:
                print(
                    f"roofline {device}: peak {roof.peak_gflops:,.0f} GFLOP/s (float32, {best}{others}), "
                    f"bandwidth {roof.bandwidth_gbs:,.1f} GB/s (copy)",
                    file=out,
                )
    return rooflines
