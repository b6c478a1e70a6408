"""How long each step of a run took: the artifacts check, the rooflines, each comparison group.

``deepmnist bench`` records them in the run's ``.json`` sidecar under ``durations_s`` and prints
them under "run time" in the Markdown; ``deepmnist compare RUN.csv`` prints them again from the
sidecar, and ``deepmnist report`` shows them in the run's section (runs written before the record
existed have none, and no such table). Wall-clock seconds of this run on this machine: they move
with the machine's speed (docs/machines-and-history.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.tables import Table

KEY = "durations_s"  # the sidecar's key


@dataclass
class Durations:
    artifacts: float = 0.0  # s: checking (or building) the data, checkpoint and export
    roofline: float = 0.0  # s: measuring each device's peaks and bandwidth
    groups: list[dict[str, Any]] = field(default_factory=list)  # {group, cases, seconds}, in run order
    measured: float = 0.0  # s: from the first group's start to the last group's end

    def group(self, name: str, cases: int, started: float) -> float:
        """Record the group ``name`` that began at ``started`` (``time.perf_counter``); its seconds."""
        seconds = time.perf_counter() - started
        self.groups.append({"group": name, "cases": cases, "seconds": round(seconds, 1)})
        return seconds

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in values.items()}


def read_durations(csv_path: str | Path) -> dict[str, Any] | None:
    """The ``durations_s`` of the run whose CSV is ``csv_path``; None when its sidecar has none
    (older runs) or cannot be read (the tables go on without it)."""
    try:
        sidecar = json.loads(Path(csv_path).with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = sidecar.get(KEY) if isinstance(sidecar, Mapping) else None
    return found if isinstance(found, Mapping) and isinstance(found.get("groups"), list) else None


def durations_table(durations: Mapping[str, Any]) -> Table:
    """The "run time" table: one line per step, seconds and share of the whole, then the total."""
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
    title = "run time: seconds per step of this run (wall clock, this machine)"
    return Table(title, cells, frozenset({"cases", "seconds", "share"}))


def render_durations(durations: Mapping[str, Any], markdown: bool = False) -> str:
    """The "run time" section (``durations_table``) as text."""
    return durations_table(durations).text(markdown) + "\n"
