"""The committed reference runs (results/*.csv) read, write and render as they did.

The Markdown snapshots under tests/reference/ were rendered by ``render`` (now ``bench.report.tables.render``) before the
column records (bench/results/columns.py) replaced the lists in results, compare and plots; a refactor that
changes a cell, a heading, an alignment or a row order fails here. The order of a table's columns
may change (since the records say which tables show them, a table shows its CSV columns in CSV
order), so each table is compared as heading -> (alignment, cells).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.report.tables import render
from bench.results.store import read_results, read_rows, write_results

ROOT = Path(__file__).resolve().parents[2]
REFERENCES = ("20261128T161345Z-cuda-h200", "20261128T124047Z-vm")


@pytest.mark.parametrize("stem", REFERENCES)
def test_rows_round_trip(stem: str, tmp_path: Path) -> None:
    rows = read_rows(ROOT / "results" / f"{stem}.csv")
    written = write_results(rows, tmp_path, {"host": "vm"}, {})
    assert read_rows(written) == rows
    pd.testing.assert_frame_equal(read_results(written), read_results(ROOT / "results" / f"{stem}.csv"))


def _sections(markdown: str) -> list[object]:
    """The text's blocks in order: each line outside a table as itself, each pipe table as
    {heading: (alignment, cells)}, so that only the order of its columns is free."""
    blocks: list[object] = []
    table: list[list[str]] = []

    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip("|").split("|")]

    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            table.append(cells(line))
            continue
        if table:
            header, align, *body = table
            blocks.append({h: (align[i], [row[i] for row in body]) for i, h in enumerate(header)})
            table = []
        blocks.append(line)
    return blocks


@pytest.mark.parametrize("stem", REFERENCES)
def test_measured_tables_unchanged(stem: str) -> None:
    df = read_results(ROOT / "results" / f"{stem}.csv")
    expected = (ROOT / "tests" / "reference" / f"{stem}.tables.md").read_text(encoding="utf-8")
    assert _sections(render(df[df["status"] != "skipped"], markdown=True)) == _sections(expected)


def test_the_comparison_sees_a_changed_cell() -> None:
    text = (ROOT / "tests" / "reference" / "20261128T124047Z-vm.tables.md").read_text(encoding="utf-8")
    first = next(line for line in text.splitlines() if line.startswith("| torch"))
    changed = first.replace("torch", "tarch", 1)
    assert _sections(text.replace(first, changed, 1)) != _sections(text)
    swapped = "|".join(reversed(first.split("|")))
    assert _sections(text.replace(first, swapped, 1)) != _sections(text)  # cells under other headings


def test_skipped_runtimes_are_named_once_after_the_tables() -> None:
    df = read_results(ROOT / "results" / "20261128T161345Z-cuda-h200.csv")
    text = render(df, markdown=True)
    tables, not_run = text.split("### not run, and why\n\n")
    assert "skipped" not in tables  # the tables list what ran
    skipped = df[df["status"] == "skipped"]
    pairs = skipped[["runtime", "device", "execution_provider"]].drop_duplicates()
    lines = not_run.strip().splitlines()
    assert len(lines) == len(pairs) and len(lines) < len(skipped) / 3
    for runtime, device in pairs[["runtime", "device"]].itertuples(index=False):
        assert sum(line.startswith(f"- {runtime} ") and f" on {device}" in line for line in lines) == 1
