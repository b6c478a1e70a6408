"""How long each step of a run took: the artifacts check, the rooflines, each comparison group.

``deepmnist bench`` records them in the run's ``.json`` sidecar under ``durations_s`` and prints
them under "run time" in the Markdown; ``deepmnist compare RUN.csv`` prints them again from the
sidecar, and ``deepmnist report`` shows them in the run's section (runs written before the record
existed have none, and no such table). Wall-clock seconds of this run on this machine: they move
with the machine's speed (docs/machines-and-history.md).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.stats import min_samples

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bench.core import Case
    from bench.tables import Table

KEY = "durations_s"  # the sidecar's key


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


def read_durations(csv_path: str | Path) -> dict[str, Any] | None:
    """The ``durations_s`` of the run whose CSV is ``csv_path``; None when it has no sidecar or its
    sidecar none (older runs); SidecarError (``bench.sidecar``) for a sidecar of the wrong types."""
    from bench.sidecar import read_sidecar

    sidecar = read_sidecar(csv_path)
    return None if sidecar is None else sidecar.get(KEY)


def durations_tables(durations: Mapping[str, Any]) -> list[Table]:
    """The "run time" tables: seconds and share of the whole by scenario, then one line per step
    with the total."""
    from bench.tables import Table

    steps = [
        ("artifacts (data, checkpoint, export: checked or built)", "", durations.get("artifacts", 0.0)),
        ("rooflines (peaks and bandwidth)", "", durations.get("roofline", 0.0)),
        *((g["group"], g["cases"], g["seconds"]) for g in durations["groups"]),
    ]
    total = sum(seconds for _, _, seconds in steps)
    cells = {
        "step (comparison group)": [what for what, _, _ in steps] + ["total"],
        "cases": [str(cases) for _, cases, _ in steps] + [str(sum(c for _, c, _ in steps if c != ""))],
        "seconds": [f"{seconds:,.1f}" for _, _, seconds in steps] + [f"{total:,.1f}"],
        "share": [f"{100 * seconds / total:.0f}%" if total else "" for _, _, seconds in steps] + ["100%"],
    }
    kinds: dict[str, list[float]] = {"artifacts and rooflines": [steps[0][2], steps[1][2]]}
    for g in durations["groups"]:
        kinds.setdefault(g.get("kind", g["group"]), []).append(g["seconds"])
    summary = {
        "what (and the option that adds it)": list(kinds),
        "groups": ["", *(str(len(v)) for v in list(kinds.values())[1:])],
        "seconds": [f"{sum(v):,.1f}" for v in kinds.values()],
        "share": [f"{100 * sum(v) / total:.0f}%" if total else "" for v in kinds.values()],
    }
    title = "run time by scenario: seconds (wall clock, this machine)"
    by_kind = Table(title, summary, frozenset({"groups", "seconds", "share"}))
    title = "run time: seconds per step of this run (wall clock, this machine)"
    return [by_kind, Table(title, cells, frozenset({"cases", "seconds", "share"}))]


def render_durations(durations: Mapping[str, Any], markdown: bool = False) -> str:
    """The "run time" sections (``durations_tables``) as text."""
    return "\n\n".join(table.text(markdown) for table in durations_tables(durations)) + "\n"
