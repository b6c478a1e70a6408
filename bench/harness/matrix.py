"""The matrix and its timing plan: cases, groups, the clock, interleaved rounds, derived rows.

A *case* is one target x runtime x device x batch size (x timing, x scenario). A *group* is every
selected case with the same target, batch size, device, timing and scenario: the runtimes compared
in one table, timed together in interleaved rounds (A B C, B C A, C A B, ...) so drift of the
machine over the group's span affects them all alike. ``bench.harness.run`` drives the rounds across the
workers (``bench.harness.worker``), one worker per runtime x device; this module only plans them.

The clock is chosen by device (``bench.harness.clock``). Loading, session creation and input staging stay outside the timed region.

Scenarios (after MLPerf LoadGen): ``batch`` (fixed batch size, rounds of calls), ``single-stream``
(batch 1, queries one after another, each timed alone), ``offline`` (derived at the end: the batch
size with the highest throughput), ``profile`` (the whole model under the runtime's profiler, split
into its layers), ``server`` (``--server``: Poisson arrivals at a swept rate, ``bench.harness.server``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.harness.case import Case
from bench.harness.options import TARGETS, BenchConfig, config_dict, parse_list
from bench.runtimes import RUNTIMES
from models.layers import MODEL_FLOPS, layer_spec

if TYPE_CHECKING:  # workers import this module: no pandas (bench.results.store) there
    from bench.results.store import ResultRow

__all__ = ["TARGETS", "BenchConfig", "Case", "config_dict", "parse_list"]

SINGLE_STREAM_BLOCKS = 10  # single-stream queries come in this many interleaved blocks per runtime
BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}  # activations and weights


def cases(config: BenchConfig) -> Iterator[Case]:
    """Every case that can exist: ``_combinations`` less a runtime's targets that its registry entry
    does not list (``Runtime.targets``: torch-compile runs model and conv2 only). What can exist but
    not here (no CUDA device, a package not installed) stays, and is skipped with its reason."""
    for case in _combinations(config):
        targets = RUNTIMES[case.runtime].targets
        if targets is None or case.target in targets:
            yield case


def _combinations(config: BenchConfig) -> Iterator[Case]:
    """Every combination (runtimes innermost, so a group's cases are adjacent); CUDA ones also with
    end-to-end timing. On CPU the input already lives in host memory, so compute timing is end to
    end there. Then (``--full-loop``) the whole model with timing full_loop, then the single-stream
    scenario: whole model, batch 1, per runtime x device."""
    timings = ("compute", "end_to_end") if config.end_to_end else ("compute",)
    counts = config.thread_counts
    # one count: threads 0 (the config's; case ids as before); several: each case names its count
    per_runtime = [(r, t if len(counts) > 1 else 0) for t in counts for r in config.runtimes]
    for target in config.targets:
        for batch in config.batch_sizes:
            for device in config.devices:
                for timing in timings if device == "cuda" else ("compute",):
                    for runtime, threads in per_runtime:
                        yield Case(target, runtime, device, batch, timing, threads=threads)
    if config.full_loop and "model" in config.targets:
        for batch in config.batch_sizes:
            for device in config.devices:
                for runtime, threads in per_runtime:
                    yield Case("model", runtime, device, batch, "full_loop", threads=threads)
    if config.single_stream and "model" in config.targets:
        for device in config.devices:
            for timing in timings if device == "cuda" else ("compute",):
                for runtime, threads in per_runtime:
                    yield Case("model", runtime, device, 1, timing, "single-stream", threads=threads)
    if config.streams and "model" in config.targets:
        for device in config.devices:
            for streams in config.streams:
                for runtime, threads in per_runtime:
                    yield Case("model", runtime, device, 1, "end_to_end", "streams", threads, streams)
    if config.server and "model" in config.targets:
        for device in config.devices:
            for runtime in config.runtimes:
                yield Case("model", runtime, device, 1, "end_to_end", "server")


def skip_reason(case: Case) -> str | None:
    runtime = RUNTIMES[case.runtime]
    if runtime.targets is not None and case.target not in runtime.targets:
        return f"{case.runtime} runs {', '.join(runtime.targets)} only"
    return runtime.supports(case.device)


def precision_of(runtime: str) -> str:
    return RUNTIMES[runtime].precision


# ----------------------------------------------------------------------------- interleaved rounds


@dataclass
class Planned:
    """One prepared case of a group as the plan sees it: its estimated cost, then its share."""

    case: Any  # Case
    per_call: float  # s, estimated before timing
    iterations: int = 1  # calls per sample
    block: int = 1  # samples per interleaved round


def plan(entries: list[Planned], config: BenchConfig, scenario: str = "batch") -> int:
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
    return _rounds(config, round_time)


def _rounds(config: BenchConfig, round_time: float) -> int:
    """Timed rounds of a case: --rounds, else as many as fill --max-time, within --min-rounds and
    --max-rounds, and never none (a case without a sample has no row to show)."""
    if config.rounds:
        return config.rounds
    return max(1, int(min(config.max_rounds, max(config.min_rounds, config.max_time / round_time))))


def schedule(count: int, rounds: int, rotate: bool = True) -> list[int]:
    """The order in which ``count`` entries take their ``rounds`` rounds (indexes): each round
    starts one entry further on (A B C, B C A, C A B, ...) so no runtime always follows the same
    one; ``rotate=False``: all rounds of A, then of B, ... (``--no-interleave``)."""
    if rotate:
        return [(r + k) % count for r in range(rounds) for k in range(count)]
    return [k for k in range(count) for _ in range(rounds)]


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
    return _rounds(config, per_call * iterations), iterations


def flops(target: str) -> int:
    return MODEL_FLOPS if target == "model" else layer_spec(target).flops
