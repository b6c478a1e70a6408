"""bench.results.columns: one record per CSV column drives the CSV, the tables, the charts and the docs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from bench.report import analysis, cells, plots, tables
from bench.results import columns
from bench.results import store as results

ROOT = Path(__file__).resolve().parents[2]


def test_docs_column_list_is_generated() -> None:
    # regenerate with: python -m bench.results.columns > docs/columns.md
    assert (ROOT / "docs" / "columns.md").read_text(encoding="utf-8") == columns.markdown()


def test_every_consumer_reads_the_records() -> None:
    """Adding a column is one record: the CSV header, the row fields with their defaults, the
    comparison frame, the charts' input check and the docs all follow ``columns.COLUMNS``."""
    assert results.COLUMNS == columns.NAMES
    fields = {f.name: f for f in dataclasses.fields(results.ResultRow)}
    for record in columns.COLUMNS:
        if record.default is not columns.REQUIRED:
            assert fields[record.name].default == record.default, record.name
        assert f"| `{record.name}` |" in columns.markdown()
    assert set(results.ADDED_COLUMNS) == {c.name for c in columns.COLUMNS if c.added}
    renamed = {"latency_ms_median": "median_ms", "latency_ms_median_ci_low": "ci_low_ms"}
    renamed["latency_ms_median_ci_high"] = "ci_high_ms"
    assert [renamed.get(n, n) for n in columns.NAMES] == analysis.TABLE_COLUMNS[: len(columns.NAMES)]
    # a number column is right-aligned in every table that shows it
    cell = {
        name: cells.record_cell(columns.BY_NAME[name]) for name in ("throughput_ips", "runtime", "load_s")
    }
    assert cell["throughput_ips"].numeric and not cell["runtime"].numeric
    assert cell["load_s"]({"load_s": 0.12345}) == "0.123"  # the record's format ".3f"
    assert plots.ok_rows.__doc__ and "read_results" in plots.ok_rows.__doc__


def test_an_extra_record_becomes_a_field_with_its_default() -> None:
    record = columns.Column("joules_per_image", float, None, "J", "energy per image", ".3f",
                            shown={"memory": "J / image"}, optional=True)  # fmt: skip
    row_type = results.row_class((*columns.COLUMNS, record))
    assert row_type.fields()[-1] == "joules_per_image"
    row = row_type(run_id="r", timestamp_utc="t", target="model", runtime="x", device="cpu", batch_size=1,
                   threads=1, warmup=1, rounds=1, iterations=1)  # fmt: skip
    assert row.joules_per_image is None and row.status == "ok"
    assert columns._line(record) == (
        "| `joules_per_image` | number, >= 0, may be empty | J | energy per image | memory (J / image) |"
    )
    # the record alone puts it in the memory table: CSV order, its format, dropped when empty
    shown = cells.layout("memory", columns=(*columns.COLUMNS, record))
    assert list(shown)[-1] == "J / image" and "J / image" not in tables.MEMORY_SHOWN
    line = {name: float("nan") for name in columns.NAMES} | {"host": "vm", "runtime": "x", "device": "cpu"}
    frame = pd.DataFrame([line | {"joules_per_image": 0.01234, "status": "ok", "reason": "", "timing": "compute",
                                  "precision": "fp32", "execution_provider": ""}])  # fmt: skip
    assert tables.simple_cells(frame, shown)["J / image"] == ["0.012"]
    assert "J / image" not in tables.simple_cells(frame.assign(joules_per_image=float("nan")), shown)


def test_the_records_name_known_tables_and_formats() -> None:
    """Every ``shown`` names a table of ``columns.TABLES``, every table shows a CSV column, and
    every display format resolves."""
    named = {table for record in columns.COLUMNS for table in record.shown}
    assert named == set(columns.TABLES)
    for record in columns.COLUMNS:
        # an unknown spec reaches format(), which raises ValueError
        assert cells.column_format(record.fmt)(record.dtype(1)), record.name
    assert cells.column_format("%")(0.99312) == "99.31" and cells.column_format("MB")(3_302_223) == "3.3"
    assert cells.column_format("+%")(-0.123) == "-12%" and cells.column_format("yes/no")(1.0) == "yes"
