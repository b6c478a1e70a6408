"""How long each step of a run took: the artifacts check, the rooflines, each comparison group.

``deepmnist bench`` records them in the run's ``.json`` sidecar under ``durations_s``
(``bench.results.sidecar.DURATIONS_KEY``); ``bench.report.durations`` reads and draws them.
Wall-clock seconds of this run on this machine: they move with the machine's speed
(docs/machines-and-history.md).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from bench.results.stats import min_samples

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bench.harness.matrix import Case


@dataclass
class Durations:
    artifacts: float = 0.0  # s: checking (or building) the data, checkpoint and export
    roofline: float = 0.0  # s: measuring each device's peaks and bandwidth
    groups: list[dict[str, Any]] = field(default_factory=list)  # {group, kind, cases, seconds}, in order
    measured: float = 0.0  # s: from the first group's start to the last group's end

    def group(self, group: Sequence[Case], started: float, single_stream_queries: int) -> float:
        """Record the comparison group ``group`` that began at ``started`` (``time.perf_counter``);
        its seconds."""
        seconds = time.perf_counter() - started
        kind = kind_of(group[0], single_stream_queries)
        self.groups.append(
            {"group": group[0].group, "kind": kind, "cases": len(group), "seconds": round(seconds, 1)}
        )
        return seconds

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in values.items()}


def kind_of(case: Case, single_stream_queries: int) -> str:
    """What a group measures, and the option that adds it to a run (docs/scenarios.md)."""
    if case.scenario == "server":
        return "server sweep (--server)"
    if case.scenario == "streams":
        return "threads x streams (--streams)"
    if case.scenario == "single-stream":
        return f"single-stream, {single_stream_queries:,} queries per runtime" + (
            " (--tails)" if single_stream_queries >= min_samples(99.9) else ""
        )
    if case.timing == "full_loop":
        return "whole model, full loop (--full-loop)"
    return "whole model, fixed batch" if case.target == "model" else "layers, fixed batch"
