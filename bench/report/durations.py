"""The "run time" tables of a run: how long each step took (``bench.harness.durations`` records them).

``deepmnist bench`` prints them under "run time" in the Markdown; ``deepmnist compare RUN.csv``
prints them again from the sidecar, and ``deepmnist report`` shows them in the run's section (runs
written before the record existed have none, and no such table).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.report.cells import Table
from bench.results.sidecar import DURATIONS_KEY, read_sidecar


def read_durations(csv_path: str | Path) -> dict[str, Any] | None:
    """The ``durations_s`` of the run whose CSV is ``csv_path``; None when it has no sidecar or its
    sidecar none (older runs); SidecarError (``bench.results.sidecar``) for a sidecar of the wrong types."""
    sidecar = read_sidecar(csv_path)
    return None if sidecar is None else sidecar.get(DURATIONS_KEY)


def durations_tables(durations: Mapping[str, Any]) -> list[Table]:
    """The "run time" tables: seconds and share of the whole by scenario, then one line per step
    with the total."""
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
