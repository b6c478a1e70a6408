"""The matrix: cases, their skip reasons, derived rows.

A *case* is one target x runtime x device x batch size (x timing, x scenario). A *group* is every
selected case with the same target, batch size, device, timing and scenario: the runtimes compared
in one table, timed together in interleaved rounds (A B C, B C A, C A B, ...) so drift of the
machine over the group's span affects them all alike. Each scenario (``bench.harness.scenarios``,
after MLPerf LoadGen) adds its cases; ``bench.harness.rounds`` plans the rounds, and
``bench.harness.run`` drives them across the workers (``bench.harness.worker``), one worker per
runtime x device. ``offline`` is derived here at the end: the batch size with the highest
throughput.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from bench.harness.case import Case
from bench.harness.options import TARGETS, BenchConfig, config_dict, parse_list
from bench.harness.scenarios import SCENARIOS
from bench.runtimes import RUNTIMES
from models.layers import MODEL_FLOPS, layer_spec

if TYPE_CHECKING:  # workers import this module: no pandas (bench.results.store) there
    from bench.results.store import ResultRow

__all__ = ["TARGETS", "BenchConfig", "Case", "config_dict", "parse_list"]

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
    """Every combination, scenario by scenario (``bench.harness.scenarios.SCENARIOS``), runtimes
    innermost so a group's cases are adjacent; CUDA ones also with end-to-end timing."""
    timings = ("compute", "end_to_end") if config.end_to_end else ("compute",)
    counts = config.thread_counts
    # one count: threads 0 (the config's; case ids as before); several: each case names its count
    per_runtime = [(r, t if len(counts) > 1 else 0) for t in counts for r in config.runtimes]
    for scenario in SCENARIOS:
        if scenario.cases is not None:
            yield from scenario.cases(config, per_runtime, timings)


def skip_reason(case: Case) -> str | None:
    runtime = RUNTIMES[case.runtime]
    if runtime.targets is not None and case.target not in runtime.targets:
        return f"{case.runtime} runs {', '.join(runtime.targets)} only"
    return runtime.supports(case.device)


def precision_of(runtime: str) -> str:
    return RUNTIMES[runtime].precision


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


def flops(target: str) -> int:
    return MODEL_FLOPS if target == "model" else layer_spec(target).flops
