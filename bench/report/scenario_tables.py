"""Tables of the scenarios beyond the fixed-batch rounds (docs/scenarios.md): the full loop beside
the preloaded-tensor timing, the server sweep, threads x streams. Input: a results frame
(``bench.results.store.read_results``); the frames behind the tables (``full_loop_lines``,
``server_best``, ``settings_answer``) are ``bench.report.analysis``'s. Which CSV columns a table shows, and
their format, come from the columns' records (``bench.results.columns``), as in ``bench.report.tables``.

Each scenario's ``*_sections`` gives its tables as ``bench.report.cells.Table`` (title, cells): the text
of ``deepmnist compare`` and the run's Markdown (``*_table(s)``, via ``bench.report.tables.render``) and
the HTML report (``bench.report.html``) draw the same ones; ``scenario_sections`` lists them all,
in the order the text shows them."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from bench.report.analysis import full_loop_lines, server_best, settings_answer
from bench.report.cells import Cell, Table, ci_cell, column_format, layout, number_format
from bench.results.columns import BY_NAME


def _as(column: str, key: str) -> Cell:
    """The cell of ``key``, a value derived here from CSV column ``column``: shown in its format."""
    fmt = column_format(BY_NAME[column].fmt)
    return Cell(lambda line: fmt(line[key]), BY_NAME[column].numeric)


def _text(tables: list[Table], markdown: bool) -> str:
    return "\n\n".join(table.text(markdown) for table in tables)


def scenario_sections(df: pd.DataFrame) -> list[Table]:
    """Every scenario table of a results frame: full loop, threads x streams, server (each only
    where the frame has its rows)."""
    if "latency_ms_median" not in df.columns:  # a comparison frame, not a results frame
        return []
    tables = []
    if "full_loop" in set(df["timing"]):
        tables += full_loop_sections(df)
    if "streams" in set(df["scenario"]):
        tables += settings_sections(df)
    if "server" in set(df["scenario"]):
        tables += server_sections(df)
    return tables


_FULL_LOOP_SHOWN = layout(
    "full loop",
    ("batch_size", "preloaded ms", _as("latency_ms_median", "latency_ms_median_pre")),
    ("preloaded ms", "full loop ms", _as("latency_ms_median", "latency_ms_median_full")),
    ("full loop ms", "full / preloaded", Cell(lambda line: number_format(".2f", "x")(line["ratio"]))),
    ("full / preloaded", "preloaded images/s", _as("throughput_ips", "throughput_ips_pre")),
    ("preloaded images/s", "full loop images/s", _as("throughput_ips", "throughput_ips_full")),
)


def full_loop_sections(df: pd.DataFrame) -> list[Table]:
    """[] when the frame has no full-loop rows."""
    lines = full_loop_lines(df)
    if lines.empty:
        return []
    title = "full loop vs preloaded tensor: model (new uint8 batch per call, /255, reshape, run, argmax)"
    return [Table.of(title, lines, _FULL_LOOP_SHOWN)]


def full_loop_table(df: pd.DataFrame, markdown: bool = False) -> str:
    """ "" when the frame has no full-loop rows."""
    return _text(full_loop_sections(df), markdown)


# ----------------------------------------------------------------------------- server


def _under_bound(line: Mapping[str, float]) -> str:
    p99 = line["latency_ms_p99"]
    return "" if math.isnan(p99) else "yes" if p99 < line["latency_bound_ms"] else "no"


def server_sections(df: pd.DataFrame) -> list[Table]:
    """The answer (highest rate under the bound per runtime), then every rate; [] without server rows."""
    best = server_best(df)
    if best.empty:
        return []
    bound = best["bound_ms"].iloc[0]
    rate = column_format(BY_NAME["target_qps"].fmt)
    highest = f"highest queries/s with p99 < {bound:g} ms"
    answer = layout(
        "server best",
        ("precision", highest, Cell(lambda line: rate(line["best_qps"]) or "none")),
        ("achieved_qps", "p99 ms there", _as("latency_ms_p99", "p99_ms")),
        ("p99 ms there", "rates run", Cell(lambda line: str(line["rates"]))),
        ("rates run", "highest rate tried", _as("target_qps", "top_qps")),
    )
    rows = df[(df["status"] == "ok") & (df["scenario"] == "server")].sort_values(
        ["device", "runtime", "target_qps"], kind="stable"
    )
    detail = layout(
        "server",
        ("latency_ms_median", "p99 ms [95% CI]", ci_cell("latency_ms_p99")),
        ("p99 ms [95% CI]", "p99.9 ms [95% CI]", ci_cell("latency_ms_p999")),
        ("achieved_qps", f"p99 < {bound:g} ms", Cell(_under_bound, numeric=False)),
    )
    return [
        Table.of(
            f"server: highest arrival rate whose p99 stays under {bound:g} ms (batch-1 queries)", best, answer
        ),
        Table.of("server: every rate (latency from scheduled arrival to result)", rows, detail),
    ]


def server_tables(df: pd.DataFrame, markdown: bool = False) -> str:
    """The answer (highest rate under the bound per runtime), then every rate; "" without server rows."""
    return _text(server_sections(df), markdown)


def settings_sections(df: pd.DataFrame) -> list[Table]:
    """Which threads x streams setting is fastest, per runtime, then every setting; [] without rows."""
    answer = settings_answer(df)
    if answer.empty:
        return []
    shown = layout(
        "streams best",
        ("precision", "settings tried", Cell(lambda line: str(line["settings"]))),
        (
            "settings tried",
            "lowest batch-1 latency: threads x streams",
            Cell(lambda line: f"{line['latency_threads']} x {line['latency_streams']}", numeric=False),
        ),
        ("lowest batch-1 latency: threads x streams", "p50 ms", _as("latency_ms_median", "latency_ms")),
        (
            "p50 ms",
            "highest throughput: threads x streams",
            Cell(lambda line: f"{line['throughput_threads']} x {line['throughput_streams']}", numeric=False),
        ),
        ("highest throughput: threads x streams", "queries/s", _as("throughput_ips", "throughput_qps")),
    )
    rows = df[(df["status"] == "ok") & (df["scenario"] == "streams")].sort_values(
        ["device", "runtime", "threads", "streams"], kind="stable"
    )
    detail = layout(
        "streams",
        ("rounds", "p50 ms [95% CI]", ci_cell("latency_ms_median")),
        ("p50 ms [95% CI]", "p99 ms [95% CI]", ci_cell("latency_ms_p99")),
    )
    return [
        Table.of(
            "threads x streams: the fastest setting per runtime (whole model, batch-1 queries)", answer, shown
        ),
        Table.of("threads x streams: every setting", rows, detail),
    ]


def settings_tables(df: pd.DataFrame, markdown: bool = False) -> str:
    """Which threads x streams setting is fastest, per runtime, then every setting; "" without rows."""
    return _text(settings_sections(df), markdown)
