"""The harness core: the matrix, the clock, calibration, parity, accuracy and one case's row.

Timing goes through pytest-benchmark's ``pedantic`` (the one timing loop, used by both
``pytest bench/ --benchmark-only`` and ``deepmnist bench``, which runs that same suite) with the
clock chosen by device: ``time.perf_counter`` on CPU (or pytest-benchmark's ``--benchmark-timer``),
and a CUDA-event clock that synchronises on CUDA. Loading, session creation and input staging
happen in ``Runtime.prepare`` / ``to_device``, outside the timed region.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
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


@dataclass(frozen=True)
class BenchConfig:
    runtimes: tuple[str, ...] = tuple(RUNTIMES)
    devices: tuple[str, ...] = DEVICES
    targets: tuple[str, ...] = TARGETS
    batch_sizes: tuple[int, ...] = (1, 64, 256)
    threads: int = 0  # intra-op threads; 0 = all cores (os.cpu_count())
    warmup: int = 10  # untimed calls before calibration and timing
    rounds: int = 0  # timed rounds; 0 = as many as fit in max_time (at least min_rounds)
    iterations: int = 0  # calls per round; 0 = enough for a round to last min_round_time
    min_rounds: int = 10
    max_rounds: int = 1000
    min_round_time: float = 0.002  # s
    max_time: float = 1.0  # s of timed calls per case (when rounds = 0)
    end_to_end: bool = True  # also time CUDA with host<->device copies (labelled end_to_end)
    accuracy: bool = True  # classify the full test set per runtime x device
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
        if min(self.threads, self.warmup, self.rounds, self.iterations) < 0:
            raise ValueError("threads, warmup, rounds and iterations must not be negative")

    @property
    def resolved_threads(self) -> int:
        return self.threads or os.cpu_count() or 1


@dataclass(frozen=True)
class Case:
    target: str
    runtime: str
    device: str
    batch_size: int
    timing: str = "compute"  # "end_to_end": host input, copies to and from the device included

    @property
    def id(self) -> str:
        suffix = "" if self.timing == "compute" else "-e2e"
        return f"{self.target}-b{self.batch_size}-{self.runtime}-{self.device}{suffix}"

    @property
    def group(self) -> str:
        return f"{self.target} batch={self.batch_size}"


def cases(config: BenchConfig) -> Iterator[Case]:
    """Every combination; CUDA ones also with end-to-end timing. On CPU the input already lives
    in host memory, so compute timing is end to end there."""
    for target in config.targets:
        for batch in config.batch_sizes:
            for device in config.devices:
                for runtime in config.runtimes:
                    yield Case(target, runtime, device, batch)
                    if device == "cuda" and config.end_to_end:
                        yield Case(target, runtime, device, batch, "end_to_end")


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


# ----------------------------------------------------------------------------- inputs and references


@dataclass
class Context:
    """Session-wide state: artifacts, test data, reference outputs, accuracy cache, rows."""

    config: BenchConfig
    artifacts: Artifacts
    mnist: MNIST
    environment: dict[str, str]
    run_id: str
    timestamp: str
    rows: list[ResultRow] = field(default_factory=list)
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
        """Record the row of ``case`` (with its timing columns filled from ``latency``, if given)."""
        defaults = {"warmup": self.config.warmup, "rounds": 0, "iterations": 0}
        row = ResultRow.create(
            self.environment,
            run_id=self.run_id,
            timestamp_utc=self.timestamp,
            target=case.target,
            runtime=case.runtime,
            device=case.device,
            timing=case.timing,
            batch_size=case.batch_size,
            threads=self.config.resolved_threads,
            **{**defaults, **values},
        )
        if latency is not None:
            row = row.with_latency(latency, flops(case.target) or None)
        self.rows.append(row)
        return row


# ----------------------------------------------------------------------------- one case


class ParityError(AssertionError):
    pass


def calibrate(fn: Callable[[], Any], clock: Callable[[], float], config: BenchConfig) -> tuple[int, int]:
    """(rounds, iterations): a round lasts >= min_round_time; all rounds fit in max_time."""
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


def run_case(case: Case, ctx: Context, benchmark: Any) -> ResultRow:
    """Prepare, check parity, time with ``benchmark.pedantic``, and record the row.

    Raises ``ParityError`` (after recording a failed row) when the output is wrong."""
    config = ctx.config
    runtime = RUNTIMES[case.runtime]
    prepared = runtime.prepare(case.target, case.device, ctx.artifacts, config.resolved_threads)
    x_host, expected = ctx.reference(case.target, case.batch_size)
    x_dev = prepared.to_device(x_host)
    got = prepared.to_host(prepared.run(x_dev))
    diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else math.inf
    limit = tolerance(case.runtime, case.device)
    provider = prepared.execution_provider
    if not diff <= limit:
        reason = f"output differs from eager PyTorch on CPU: max |diff| {diff:.3g} > tolerance {limit:g}"
        ctx.row(case, execution_provider=provider, max_abs_diff=diff, status="failed", reason=reason)
        raise ParityError(f"{case.id}: {reason}")

    if case.timing == "compute":
        fn: Callable[[], Any] = lambda: prepared.run(x_dev)  # noqa: E731 - input stays on the device
    else:
        fn = lambda: prepared.to_host(prepared.run(prepared.to_device(x_host)))  # noqa: E731
    clock = clock_for(case.device)
    for _ in range(config.warmup):
        fn()
    prepared.sync()
    rounds, iterations = calibrate(fn, clock, config)
    benchmark.group = case.group
    benchmark.extra_info.update(
        runtime=case.runtime, device=case.device, target=case.target, batch_size=case.batch_size
    )
    benchmark.pedantic(fn, rounds=rounds, iterations=iterations, warmup_rounds=0)
    prepared.sync()

    accuracy = agreement = None
    if case.target == "model" and config.accuracy:
        accuracy, agreement = ctx.accuracy(case.runtime, case.device, prepared)
    samples = benchmark.stats.stats.data  # s per call, one value per round
    return ctx.row(
        case,
        latency=Latency.from_values(samples),
        execution_provider=provider,
        rounds=rounds,
        iterations=iterations,
        accuracy=accuracy,
        agreement=agreement,
        max_abs_diff=diff,
    )


def skip_reason(case: Case) -> str | None:
    return RUNTIMES[case.runtime].supports(case.device)


def config_dict(config: BenchConfig) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d["threads_resolved"] = config.resolved_threads
    return d


def parse_list(text: str | None, kind: type = str) -> tuple | None:
    if text is None:
        return None
    return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
