"""The interleaved rounds of a comparison group: how many calls a sample holds, how many samples a
round, and in which order the runtimes take their rounds. Light on purpose: the scenarios that time
rounds (``bench.harness.scenarios``) load it in every worker too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.harness.options import BenchConfig

SINGLE_STREAM_BLOCKS = 10  # single-stream queries come in this many interleaved blocks per runtime


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


def calibrate(fn: Callable[[], Any], clock: Callable[[], float], config: BenchConfig) -> tuple[int, int]:
    """(rounds, iterations) for one function alone: a round lasts >= min_round_time; all rounds
    fit in max_time (the self-check's timing; the matrix plans whole groups with ``plan``)."""
    start = clock()
    fn()
    fn()
    per_call = max((clock() - start) / 2, 1e-7)  # s
    iterations = config.iterations or max(1, math.ceil(config.min_round_time / per_call))
    return _rounds(config, per_call * iterations), iterations
