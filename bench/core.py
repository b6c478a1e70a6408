"""The harness core: the matrix, the clock, interleaved rounds, parity, accuracy and the rows.

A *group* is every selected case with the same target, batch size, device, timing and scenario:
the runtimes compared in one table. A group is measured at once, when its first test runs: each
case is prepared (``load_s``), compiled if its runtime compiles (``compile_s``), called once
(``first_inference_ms``) and checked against eager PyTorch on CPU; then the runtimes are timed in
interleaved rounds (A B C, B C A, C A B, ...) so drift of the machine over the group's span
affects them all alike. Each round starts with ``round_warmup`` untimed calls, so a runtime does
not pay for the caches the one before it left. The clock is chosen by device: ``time.perf_counter``
on CPU, a CUDA-event clock that synchronises on CUDA. Loading, session creation and input staging
stay outside the timed region.

Each test of the matrix then reports its case's samples through pytest-benchmark (its tables and
``--benchmark-json`` see the same numbers as the CSV).

Scenarios (after MLPerf LoadGen): ``batch`` (fixed batch size, rounds of calls), ``single-stream``
(batch 1, queries one after another, each timed alone), ``offline`` (derived at the end: the batch
size with the highest throughput), ``profile`` (the whole model under the runtime's profiler, split
into its layers).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.results import ResultRow
from bench.runtimes import DEVICES, RUNTIMES, Artifacts, Prepared, tolerance
from bench.stats import Latency
from models.data import MNIST, to_input
from models.network import LAYER_NAMES, MODEL_FLOPS, layer_spec, trace_layers
from models.paths import REPO_ROOT

TARGETS = ("model", *LAYER_NAMES)
SINGLE_STREAM_BLOCKS = 10  # single-stream queries come in this many interleaved blocks per runtime
BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}  # activations and weights


@dataclass(frozen=True)
class BenchConfig:
    runtimes: tuple[str, ...] = tuple(RUNTIMES)
    devices: tuple[str, ...] = DEVICES
    targets: tuple[str, ...] = TARGETS
    batch_sizes: tuple[int, ...] = (1, 64, 256)
    threads: int = 0  # intra-op threads; 0 = all cores (os.cpu_count())
    warmup: int = 10  # untimed calls per case before calibration and timing
    rounds: int = 0  # timed rounds per case; 0 = as many as fit in max_time (at least min_rounds)
    iterations: int = 0  # calls per round; 0 = enough for a round to last as long as the group's slowest call
    min_rounds: int = 10
    max_rounds: int = 1000
    min_round_time: float = (
        0.02  # s; long enough that the warm-up at the start of a round stays a small overhead
    )
    max_time: float = 1.0  # s of timed calls per case (when rounds = 0)
    interleave: bool = True  # False: each case's rounds back to back (no drift protection, no cross-talk)
    round_warmup: float = 0.005  # s of untimed calls (at least one) at the start of each interleaved round
    end_to_end: bool = True  # also time CUDA with host<->device copies (labelled end_to_end)
    accuracy: bool = True  # classify the full test set per runtime x device
    single_stream: bool = True  # the single-stream scenario (whole model, batch 1) when "model" is a target
    single_stream_queries: int = 1000  # at least this many queries per runtime ...
    single_stream_max_time: float = 10.0  # ... unless they would take longer than this (s); then fewer
    profile: bool = True  # split the whole model's time into its layers with each runtime's profiler
    profile_batch: int = 0  # batch size profiled; 0 = the largest of batch_sizes
    profile_calls: int = 20  # calls under the profiler
    roofline: bool = True  # measure each device's float32 peak and copy bandwidth at the start
    results_dir: str = str(REPO_ROOT / "results")

    def __post_init__(self) -> None:
        unknown = [r for r in self.runtimes if r not in RUNTIMES]
        if unknown:
            raise ValueError(f"unknown runtime(s) {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}")
        bad_devices = [d for d in self.devices if d not in DEVICES]
        if bad_devices:
            raise ValueError(f"unknown device(s) {', '.join(bad_devices)}; choose from {', '.join(DEVICES)}")
        bad_targets = [t for t in self.targets if t not in TARGETS]
        if bad_targets:
            raise ValueError(f"unknown target(s) {', '.join(bad_targets)}; choose from {', '.join(TARGETS)}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch sizes must be >= 1, got {self.batch_sizes}")
        counts = (
            "threads",
            "warmup",
            "rounds",
            "iterations",
            "round_warmup",
            "profile_batch",
            "min_round_time",
        )
        negative = [name for name in counts if getattr(self, name) < 0]
        if negative:
            raise ValueError(f"{', '.join(negative)} must not be negative")
        if self.single_stream_queries < 1 or self.profile_calls < 1:
            raise ValueError("single_stream_queries and profile_calls must be >= 1")

    @property
    def resolved_threads(self) -> int:
        return self.threads or os.cpu_count() or 1

    @property
    def resolved_profile_batch(self) -> int:
        return self.profile_batch or max(self.batch_sizes)


@dataclass(frozen=True)
class Case:
    target: str
    runtime: str
    device: str
    batch_size: int
    timing: str = "compute"  # "end_to_end": host input, copies to and from the device included
    scenario: str = "batch"  # or "single-stream"

    @property
    def id(self) -> str:
        suffix = "" if self.timing == "compute" else "-e2e"
        scenario = "" if self.scenario == "batch" else f"-{self.scenario}"
        return f"{self.target}-b{self.batch_size}-{self.runtime}-{self.device}{suffix}{scenario}"

    @property
    def group(self) -> str:
        """The comparison group: the runtimes timed together, in interleaved rounds."""
        scenario = "" if self.scenario == "batch" else f" {self.scenario}"
        timing = "" if self.timing == "compute" else " end_to_end"
        return f"{self.target} batch={self.batch_size} {self.device}{timing}{scenario}"


def cases(config: BenchConfig) -> Iterator[Case]:
    """Every combination (runtimes innermost, so a group's cases are adjacent); CUDA ones also with
    end-to-end timing. On CPU the input already lives in host memory, so compute timing is end to
    end there. Then the single-stream scenario: whole model, batch 1, per runtime x device."""
    timings = ("compute", "end_to_end") if config.end_to_end else ("compute",)
    for target in config.targets:
        for batch in config.batch_sizes:
            for device in config.devices:
                for timing in timings if device == "cuda" else ("compute",):
                    for runtime in config.runtimes:
                        yield Case(target, runtime, device, batch, timing)
    if config.single_stream and "model" in config.targets:
        for device in config.devices:
            for timing in timings if device == "cuda" else ("compute",):
                for runtime in config.runtimes:
                    yield Case("model", runtime, device, 1, timing, "single-stream")


def skip_reason(case: Case) -> str | None:
    runtime = RUNTIMES[case.runtime]
    targets = getattr(runtime, "targets", None)
    if targets is not None and case.target not in targets:
        return f"{case.runtime} runs {', '.join(targets)} only"
    return runtime.supports(case.device)


def precision_of(runtime: str) -> str:
    return getattr(RUNTIMES[runtime], "precision", "fp32")


# ----------------------------------------------------------------------------- clocks


_cuda_base: list[Any] = []


def cuda_event_clock() -> float:
    """Seconds since the first call, from CUDA events on the current stream; synchronises, so a
    difference of two calls spans all GPU work queued between them (the timer for CUDA cases)."""
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    event.synchronize()
    if not _cuda_base:
        _cuda_base.append(event)
        return 0.0
    return _cuda_base[0].elapsed_time(event) / 1e3  # elapsed_time is in ms


def clock_for(device: str) -> Callable[[], float]:
    return cuda_event_clock if device == "cuda" else time.perf_counter


# ----------------------------------------------------------------------------- one prepared case


class ParityError(AssertionError):
    pass


@dataclass
class Entry:
    """One case of a group, prepared and checked: what is timed, and what was learned before."""

    case: Case
    prepared: Prepared
    fn: Callable[[], Any]  # one call: one batch (or one single-stream query)
    max_abs_diff: float
    load_s: float  # s
    compile_s: float | None  # s; None when the runtime does not compile per shape
    first_inference_ms: float  # ms
    per_call: float = 0.0  # s, estimated before timing
    iterations: int = 1  # calls per sample
    block: int = 1  # samples per interleaved round
    durations: list[float] = field(default_factory=list)  # s, one per sample of `iterations` calls

    def run_round(self, clock: Callable[[], float], warm: float) -> None:
        # Untimed calls first, for at least `warm` s: the caches hold this runtime's weights again,
        # and thread pools of the runtime timed before (spinning workers) have gone quiet.
        start = clock()
        self.fn()
        while clock() - start < warm:
            self.fn()
        self.prepared.sync()
        for _ in range(self.block):
            start = clock()
            for _ in range(self.iterations):
                self.fn()
            self.durations.append(clock() - start)

    @property
    def samples(self) -> list[float]:
        """Seconds per call, one value per sample."""
        return [d / self.iterations for d in self.durations]


def prepare_entry(case: Case, ctx: Context) -> Entry:
    """Prepare (timed as load_s), compile (compile_s), first call (first_inference_ms), parity gate.

    Raises ``ParityError`` (after recording a failed row) when the output is wrong."""
    config = ctx.config
    clock = clock_for(case.device)
    x_host, expected = ctx.reference(case.target, case.batch_size)
    start = time.perf_counter()
    prepared = RUNTIMES[case.runtime].prepare(
        case.target, case.device, ctx.artifacts, config.resolved_threads
    )
    prepared.sync()
    load_s = time.perf_counter() - start
    x_dev = prepared.to_device(x_host)
    compile_s = None
    if hasattr(prepared, "compile"):
        start = clock()
        prepared.compile(x_dev)
        compile_s = clock() - start
    if case.timing == "compute":
        fn: Callable[[], Any] = lambda: prepared.run(x_dev)  # noqa: E731 - input stays on the device
    else:
        fn = lambda: prepared.to_host(prepared.run(prepared.to_device(x_host)))  # noqa: E731
    start = clock()
    out = fn()
    first_ms = (clock() - start) * 1e3
    got = out if case.timing == "end_to_end" else prepared.to_host(out)
    diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else math.inf
    limit = tolerance(case.runtime, case.device)
    cold = {"load_s": load_s, "compile_s": compile_s, "first_inference_ms": first_ms}
    if not diff <= limit:
        reason = f"output differs from eager PyTorch on CPU: max |diff| {diff:.3g} > tolerance {limit:g}"
        ctx.row(case, execution_provider=prepared.execution_provider, max_abs_diff=diff, status="failed",
                reason=reason, **cold)  # fmt: skip
        raise ParityError(f"{case.id}: {reason}")
    for _ in range(config.warmup):
        fn()
    prepared.sync()
    per_call = max(_median_call(fn, clock), 1e-7)
    return Entry(case, prepared, fn, diff, load_s, compile_s, first_ms, per_call)


def _median_call(fn: Callable[[], Any], clock: Callable[[], float], calls: int = 5) -> float:
    """Seconds per call: the median of a few single calls, so one hiccup does not set the plan."""
    times = []
    for _ in range(calls):
        start = clock()
        fn()
        times.append(clock() - start)
    return float(np.median(times))


# ----------------------------------------------------------------------------- interleaved rounds


def plan(entries: list[Entry], config: BenchConfig, scenario: str = "batch") -> int:
    """Set each entry's iterations and block; return the number of interleaved rounds.

    batch: every round lasts about as long as the group's slowest call (at least min_round_time),
    so each runtime gets the same share of the group's time; rounds fill max_time.
    single-stream: one query per sample, queries in SINGLE_STREAM_BLOCKS blocks per runtime, at
    least single_stream_queries per runtime unless they would take over single_stream_max_time.
    """
    if scenario == "single-stream":
        for e in entries:
            queries = min(config.single_stream_queries, int(config.single_stream_max_time / e.per_call))
            queries = max(queries, SINGLE_STREAM_BLOCKS)
            e.iterations, e.block = 1, math.ceil(queries / SINGLE_STREAM_BLOCKS)
        return SINGLE_STREAM_BLOCKS
    round_time = max([config.min_round_time, *(e.per_call for e in entries)])
    for e in entries:
        e.iterations = config.iterations or max(1, round(round_time / e.per_call))
    if config.rounds:
        return config.rounds
    return int(min(config.max_rounds, max(config.min_rounds, config.max_time / round_time)))


def interleave(
    entries: list[Entry], rounds: int, clock: Callable[[], float], warm: float, rotate: bool = True
) -> list[str]:
    """Run ``rounds`` rounds over the entries, each round starting one entry further on (A B C,
    B C A, C A B, ...) so no runtime always follows the same one; ``rotate=False``: all rounds of
    A, then of B, ... (``--no-interleave``). Returns the order (case ids)."""
    order = []
    if rotate:
        schedule = [entries[(r + k) % len(entries)] for r in range(rounds) for k in range(len(entries))]
    else:
        schedule = [entry for entry in entries for _ in range(rounds)]
    for entry in schedule:
        entry.run_round(clock, warm)
        order.append(entry.case.id)
    return order


# ----------------------------------------------------------------------------- the session context


@dataclass
class Context:
    """Session-wide state: artifacts, test data, reference outputs, accuracy cache, rows, groups."""

    config: BenchConfig
    artifacts: Artifacts
    mnist: MNIST
    environment: dict[str, str]
    run_id: str
    timestamp: str
    selected: list[Case] = field(default_factory=list)  # the cases pytest will run, in order
    rooflines: dict[str, Any] = field(default_factory=dict)  # device -> bench.roofline.Roofline
    rows: list[ResultRow] = field(default_factory=list)
    single_stream_samples: dict[str, list[float]] = field(default_factory=dict)  # "runtime/device" -> ms
    _outcomes: dict[Case, Entry | BaseException] = field(default_factory=dict)
    _inputs: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    _accuracy: dict[tuple[str, str], tuple[float, float] | str] = field(default_factory=dict)

    def reference(self, target: str, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """(input, eager CPU output) for ``target``: the first ``batch`` test images, carried through
        the network by eager PyTorch up to the layer, so each layer sees real activations."""
        key = (target, batch)
        if key not in self._inputs:
            x = to_input(self.mnist.test_images[:batch])  # (B, 1, 28, 28)
            net = self.artifacts.net
            acts = trace_layers(net, x)
            if target == "model":
                self._inputs[key] = (x.numpy(), acts[LAYER_NAMES[-1]][1].numpy())
            else:
                layer_in, layer_out = acts[target]
                self._inputs[key] = (layer_in.numpy().copy(), layer_out.numpy())
        return self._inputs[key]

    def accuracy(self, runtime: str, device: str, prepared: Prepared) -> tuple[float, float]:
        """(accuracy, argmax agreement with eager CPU) on all 10,000 test images, once per pair."""
        key = (runtime, device)
        if key not in self._accuracy:
            labels = self.mnist.test_labels
            preds, refs = [], []
            for start in range(0, len(labels), 500):
                x = to_input(self.mnist.test_images[start : start + 500]).numpy()
                preds.append(prepared.to_host(prepared.run(prepared.to_device(x))).argmax(1))
                with torch.no_grad():
                    refs.append(self.artifacts.net(torch.from_numpy(x)).argmax(1).numpy())
            pred, ref = np.concatenate(preds), np.concatenate(refs)
            self._accuracy[key] = (float((pred == labels).mean()), float((pred == ref).mean()))
        return self._accuracy[key]

    def row(self, case: Case, latency: Latency | None = None, **values: Any) -> ResultRow:
        """Record the row of ``case`` (timing columns from ``latency``, ceilings of its device)."""
        defaults = {"warmup": self.config.warmup, "rounds": 0, "iterations": 0}
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
            threads=self.config.resolved_threads,
            **{**defaults, **values},
        )
        if latency is not None:
            row = row.with_latency(latency, flops(case.target) or None)
            row = self._with_roofline(row)
        self.rows.append(row)
        return row

    def _with_roofline(self, row: ResultRow) -> ResultRow:
        roof = self.rooflines.get(row.device)
        if roof is None:
            return row
        from bench.roofline import arithmetic_intensity

        size = BYTES_PER_ELEMENT.get(row.precision, 4)
        intensity = arithmetic_intensity(row.target, row.batch_size, bytes_per_element=size)
        return row.with_roofline(roof.peak_for(row.precision), roof.bandwidth_gbs, intensity)

    # ------------------------------------------------------------------------- groups

    def outcome(self, case: Case) -> Entry | BaseException:
        """The measured entry of ``case`` (or the exception that stopped it); measures its group
        (the selected, runnable cases with the same group key) when first asked."""
        if case not in self._outcomes:
            group = [c for c in self.selected if c.group == case.group and skip_reason(c) is None]
            self.measure_group(group if case in group else [case])
        return self._outcomes.pop(case)

    def measure_group(self, group: list[Case]) -> None:
        entries = []
        for case in group:
            try:
                entries.append(prepare_entry(case, self))
            except ParityError as e:
                self._outcomes[case] = e
            except Exception as e:
                self.row(case, status="failed", reason=f"{type(e).__name__}: {e}".splitlines()[0][:300])
                self._outcomes[case] = e
        if entries:
            scenario = entries[0].case.scenario
            rounds = plan(entries, self.config, scenario)
            clock = clock_for(entries[0].case.device)
            interleave(entries, rounds, clock, self.config.round_warmup, self.config.interleave)
            for entry in entries:
                entry.prepared.sync()
                self._record(entry)
                self._outcomes[entry.case] = entry
            first = entries[0].case
            if self._profiled_group(first):
                for entry in entries:
                    self._profile(entry)

    def _record(self, entry: Entry) -> None:
        case, samples = entry.case, entry.samples
        accuracy = agreement = None
        if case.target == "model" and self.config.accuracy:
            accuracy, agreement = self.accuracy(case.runtime, case.device, entry.prepared)
        if case.scenario == "single-stream":
            key = f"{case.runtime}/{case.device}" + ("" if case.timing == "compute" else "/end_to_end")
            self.single_stream_samples[key] = [s * 1e3 for s in samples]
        self.row(
            case,
            latency=Latency.from_values(samples),
            execution_provider=entry.prepared.execution_provider,
            rounds=len(entry.durations),
            iterations=entry.iterations,
            load_s=entry.load_s,
            compile_s=entry.compile_s,
            first_inference_ms=entry.first_inference_ms,
            accuracy=accuracy,
            agreement=agreement,
            max_abs_diff=entry.max_abs_diff,
        )

    # ------------------------------------------------------------------------- profile scenario

    def _profiled_group(self, case: Case) -> bool:
        return (
            self.config.profile
            and case.target == "model"
            and case.scenario == "batch"
            and case.timing == "compute"
            and case.batch_size == self.config.resolved_profile_batch
        )

    def _profile(self, entry: Entry) -> None:
        """Rows of the profile scenario: the whole model under the runtime's profiler, per layer."""
        case = dataclasses.replace(entry.case, scenario="profile")
        profile = getattr(entry.prepared, "profile", None)
        if profile is None:
            reason = f"{case.runtime} has no per-layer profiler in this harness"
            self.row(case, status="skipped", reason=reason)
            return
        x_host, _ = self.reference("model", case.batch_size)
        try:
            layers = profile(x_host, self.config.profile_calls)
        except Exception as e:
            self.row(case, status="failed", reason=f"profiler: {type(e).__name__}: {e}".splitlines()[0][:300])
            return
        for layer, ms in layers.items():
            target = "model" if layer == "total" else layer
            self.row(
                dataclasses.replace(case, target=target),
                latency_ms_median=ms,
                rounds=1,
                iterations=self.config.profile_calls,
                execution_provider=entry.prepared.execution_provider,
            )


# ----------------------------------------------------------------------------- derived rows


def offline_rows(rows: Iterable[ResultRow]) -> list[ResultRow]:
    """The offline scenario: per host x runtime x device x timing x threads, a copy of the ok
    whole-model batch row with the highest throughput (the batch size that gives it included)."""
    best: dict[tuple, ResultRow] = {}
    for row in rows:
        if row.status != "ok" or row.scenario != "batch" or row.target != "model":
            continue
        key = (row.host, row.runtime, row.device, row.timing, row.threads, row.precision)
        if key not in best or (row.throughput_ips or 0) > (best[key].throughput_ips or 0):
            best[key] = row
    return [dataclasses.replace(row, scenario="offline") for row in best.values()]


def calibrate(fn: Callable[[], Any], clock: Callable[[], float], config: BenchConfig) -> tuple[int, int]:
    """(rounds, iterations) for one function alone: a round lasts >= min_round_time; all rounds
    fit in max_time (the self-check's timing; the matrix plans whole groups with ``plan``)."""
    start = clock()
    fn()
    fn()
    per_call = max((clock() - start) / 2, 1e-7)  # s
    iterations = config.iterations or max(1, math.ceil(config.min_round_time / per_call))
    rounds = config.rounds or int(
        min(config.max_rounds, max(config.min_rounds, config.max_time / (per_call * iterations)))
    )
    return rounds, iterations


def flops(target: str) -> int:
    return MODEL_FLOPS if target == "model" else layer_spec(target).flops


def record_samples(benchmark: Any, entry: Entry) -> None:
    """Hand the entry's interleaved samples to pytest-benchmark, so its tables and JSON show them.

    pytest-benchmark times one function per test; interleaving needs the group timed together,
    so the samples are added the way ``BenchmarkFixture.pedantic`` adds its own (``_make_stats``
    then ``update`` per round, pytest-benchmark 4 and 5)."""
    case = entry.case
    benchmark.group = case.group
    benchmark.extra_info.update(
        runtime=case.runtime, device=case.device, target=case.target, batch_size=case.batch_size,
        scenario=case.scenario, timing=case.timing, interleaved=True,
    )  # fmt: skip
    if benchmark.disabled:
        return
    stats = benchmark._make_stats(entry.iterations)
    for duration in entry.durations:
        stats.update(duration)
    benchmark._mode = "interleaved rounds (deepmnist-bench)"


def config_dict(config: BenchConfig) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d["threads_resolved"] = config.resolved_threads
    return d


def parse_list(text: str | None, kind: type = str) -> tuple | None:
    if text is None:
        return None
    return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
