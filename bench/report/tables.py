"""The text of ``deepmnist compare``: the frames of ``bench.report.analysis`` as plain-text or Markdown
tables (and the HTML report's cells, ``bench.report.html``).

``render``: one results frame as the tables of a run, in this order: offline (best throughput per
runtime), single-stream latency, then a heading per target and batch size with one line per runtime
x device (x timing, x execution provider, x threads), fastest first, parity (the whole model's
worst max |diff|, agreement and accuracy per runtime x device x precision), the scenario tables
(``bench.report.scenario_tables``), where the time goes (profile), cold start, memory, isolation and last "not
run, and why". Speedup is throughput relative to ``torch-eager`` on the same host, device, timing
kind and thread count. ``vs fastest`` ranks each ok line against the fastest ok line of its table on
the same host, device and timing kind: a line whose median's 95% confidence interval overlaps the
fastest one's is ``within noise`` (not ranked), else slower by ``+N%``. Failed rows are listed with
their reason.

``render_changes``: a ``change_table`` (two runs) as a heading per target and batch size, old and
new median with their CIs, the change and whether it is beyond noise; ``regression_line``,
``status_line`` and ``peak_note``: the lines of a ``--fail-slower`` gate's report.

A table is headings -> cells: each ``Cell`` makes a line's text. Which CSV columns a table shows,
under which heading, is said by their records (``bench.results.columns.Column.shown``), which also give
each cell its format, its alignment and whether an empty one is dropped; ``layout`` builds a
table's cells from them, in CSV order, and places the cells computed here (CIs, ranks, ratios). A ``Table`` is one titled table's cells, drawn as text here and as HTML
by ``bench.report.html`` (the scenario tables, where the time goes, the run time).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from bench.report.analysis import BASELINE, comparison_tables, parity_summary, profile_breakdown
from bench.report.cells import (
    Cell,
    Table,
    ci_cell,
    layout,
    markdown_text,
    ms_ci,
    ms_text,
    number_format,
    percent_change,
    tabulate_cells,
    title_text,
)
from bench.report.scenario_tables import scenario_sections
from bench.results.columns import BY_NAME, isolation_verdict
from models.layers import PROFILE_SEGMENTS

if TYPE_CHECKING:
    from bench.results.machine import Machine


def _vs_fastest(line: Mapping[str, Any]) -> str:
    if line["status"] != "ok":
        return ""
    if line["fastest"]:
        return "fastest"
    return "within noise" if line["within_noise"] else percent_change(line["vs_fastest"])


def _cv(line: Mapping[str, Any]) -> str:
    # the CV in percent, flagged where the spread is too large to trust small differences
    cv = line["cv"]
    return "" if math.isnan(cv) else f"{cv * 100:.1f}" + (" noisy" if line["noisy"] == 1 else "")


def _median_ci(line: Mapping[str, Any]) -> str:
    return ms_ci(line["median_ms"], line["ci_low_ms"], line["ci_high_ms"])


_VS_FASTEST = Cell(_vs_fastest, optional=True)
SHOWN = layout(
    "batch",
    ("threads", "median ms [95% CI]", Cell(_median_ci)),
    ("median ms [95% CI]", "vs fastest", _VS_FASTEST),
    ("vs fastest", "CV %", Cell(_cv, optional=True)),
    ("pct_of_peak", f"vs {BASELINE}", Cell(lambda line: number_format(".2f", "x")(line["speedup"]))),
)


def _status(status: str, reason: str) -> str:
    # one line: a multi-line reason (say, an exception's message) would break the table
    return status if status == "ok" else f"{status}: {' '.join(reason.split())}"


def _says_nothing(cell: Cell, group: pd.DataFrame, texts: list[str]) -> bool:
    """A cell that says nothing in this group: a single host, every line at its record's default
    (timing compute, precision fp32), or an optional cell with no value."""
    if cell.key == "host":
        return group["host"].nunique() <= 1
    if cell.key in ("timing", "precision"):
        return bool((group[cell.key] == BY_NAME[cell.key].default).all())
    return cell.optional and not any(texts)


def shown_cells(group: pd.DataFrame, shown: Mapping[str, Cell]) -> dict[str, list[str]]:
    """Heading -> cells, less the columns that say nothing in this group (``_says_nothing``)."""
    lines = group.to_dict("records")
    cells = {heading: [cell(line) for line in lines] for heading, cell in shown.items()}
    return {h: texts for h, texts in cells.items() if not _says_nothing(shown[h], group, texts)}


def group_title(scenario: str, target: str, batch: int) -> str:
    """The heading of one scenario x target x batch size table: ``model, batch 1, single-stream``."""
    return f"{target}, batch {batch}" + ("" if scenario == "batch" else f", {scenario}")


def _sections(df: pd.DataFrame, markdown: bool, table: Callable[[pd.DataFrame, bool], str]) -> str:
    """A heading per scenario, target and batch size (in the frame's order), each followed by
    ``table(group)``."""
    parts = []
    for (scenario, target, batch), group in df.groupby(["scenario", "target", "batch_size"], sort=False):
        parts.append(title_text(group_title(scenario, target, batch), markdown))
        parts.append(table(group, markdown))
    return "\n\n".join(parts) + "\n"


def _with_status(cells: dict[str, list[str]], group: pd.DataFrame) -> dict[str, list[str]]:
    cells["status"] = [_status(s, r) for s, r in zip(group["status"], group["reason"], strict=True)]
    return cells


OFFLINE_SHOWN = layout("offline")
SINGLE_STREAM_SHOWN = layout(
    "single-stream",
    ("rounds", "p50 ms [95% CI]", Cell(_median_ci)),
    ("latency_ms_p90", "p99 ms [95% CI]", ci_cell("latency_ms_p99")),
    ("p99 ms [95% CI]", "p99.9 ms [95% CI]", ci_cell("latency_ms_p999")),
    ("p99.9 ms [95% CI]", "vs fastest", _VS_FASTEST),
)
COLD_SHOWN = layout(
    "cold start",
    ("time_to_first_result_s", "steady median ms", Cell(lambda line: ms_text(line["median_ms"]))),
    (
        "steady median ms",
        "first / steady",
        Cell(lambda line: number_format(".1f", "x")(line["first_inference_ms"] / line["median_ms"])),
    ),
)
MEMORY_SHOWN = layout(
    "memory",
    # CPU time and wall time over the same timed calls (the mean wall time: CPU time is a total too)
    (
        "model_bytes",
        "cores busy",
        Cell(
            lambda line: number_format(".2f")(line["cpu_ms_per_call"] / line["latency_ms_mean"]),
            optional=True,
        ),
    ),
)
_ISOLATION_SHOWN = layout(
    "isolation",
    ("threads", "isolated median ms [95% CI]", Cell(_median_ci)),
    # vs_alone: the distance from the range of the alone medians (bench.checks.selfcheck.alone_range)
    (
        "alone_spread",
        "check",
        Cell(lambda line: isolation_verdict(line["vs_alone"], line["alone_spread"]), numeric=False),
    ),
)
_PARITY_SHOWN = layout(
    "parity", ("max_abs_diff", "batch sizes", Cell(lambda line: line["batch_sizes"], numeric=False))
)
PARITY_TITLE = "parity: whole model vs eager PyTorch on the CPU (worst over the batch sizes)"


def simple_cells(group: pd.DataFrame, shown: Mapping[str, Cell]) -> dict[str, list[str]]:
    """``shown_cells``, then each line's status."""
    return _with_status(shown_cells(group, shown), group)


def _simple_table(shown: Mapping[str, Cell]) -> Callable[[pd.DataFrame, bool], str]:
    def table(group: pd.DataFrame, markdown: bool) -> str:
        return tabulate_cells(simple_cells(group, shown), markdown, NUMERIC)

    return table


# The "where the time goes" table: after the runtime and device, ms per layer and their sums, each
# heading -> its column of ``profile_breakdown``.
_PROFILE_NUMBERS = {
    **{segment: segment for segment in PROFILE_SEGMENTS},
    "profiled sum": "profiled_sum",
    "standalone sum": "standalone_sum",
    "whole model": "whole_model",
}
_PROFILE_SHOWN = layout(
    "profile",
    *(
        (after, heading, Cell(lambda line, column=column: ms_text(line[column])))
        for after, (heading, column) in zip(
            ["device", *_PROFILE_NUMBERS], _PROFILE_NUMBERS.items(), strict=False
        )
    ),
)


def profile_sections(comparison: pd.DataFrame) -> list[Table]:
    """Per runtime x device: each layer's profiled ms per call inside the whole model, their sum,
    the sum of the standalone layer timings and the whole-model median, all at the profiled batch
    (``profile_breakdown``); one table per host x batch size."""
    tables = []
    for (_, batch), group in profile_breakdown(comparison).groupby(["host", "batch_size"], sort=False):
        cells = simple_cells(group, _PROFILE_SHOWN)
        title = f"where the time goes: model, batch {batch}, ms per call by layer"
        tables.append(Table(title, cells, frozenset(_PROFILE_NUMBERS)))
    return tables


def _profile_table(comparison: pd.DataFrame, markdown: bool) -> str:
    """The text of ``profile_sections``; "" without profile rows."""
    tables = profile_sections(comparison)
    return "\n\n".join(table.text(markdown) for table in tables) + "\n" if tables else ""


def parity_sections(comparison: pd.DataFrame) -> list[Table]:
    """One line per runtime x device x precision of the whole model (``parity_summary``): the
    largest max |diff| over its ok lines, the lowest agreement and accuracy; none if no ok line has
    any of them."""
    summary = parity_summary(comparison)
    if summary.empty:
        return []
    cells = shown_cells(summary, _PARITY_SHOWN)
    return [Table(PARITY_TITLE, cells, frozenset(NUMERIC))]


def render(df: pd.DataFrame, markdown: bool = False) -> str:
    """Text of the tables: offline (best throughput per runtime), single-stream latency, then a
    heading per target and batch size, parity (``parity_summary``), the scenario tables, where the
    time goes (profile), cold start, memory, isolation, and last
    "not run, and why": each skipped runtime x device once, with its reason (``not_run``).
    ``df`` from ``comparison_tables`` (a results frame from ``read_results`` is converted first)."""
    frame = df  # the results frame (the scenario tables read its own columns)
    if "latency_ms_median" in df.columns:
        df = comparison_tables(df)
    return _render(df, frame, markdown)


def render_both(frame: pd.DataFrame) -> tuple[str, str]:
    """``render`` of a results frame as text and as Markdown, from one ``comparison_tables``."""
    compared = comparison_tables(frame)
    return _render(compared, frame, markdown=False), _render(compared, frame, markdown=True)


def _render(df: pd.DataFrame, frame: pd.DataFrame, markdown: bool) -> str:
    skipped = df[df["status"] == "skipped"]
    df = df[df["status"] != "skipped"]  # the tables list what ran (failures too); skips go last
    parts = []
    offline = df[df["scenario"] == "offline"]
    if not offline.empty:
        parts.append(title_text("offline: best throughput over the batch sizes (whole model)", markdown))
        parts.append(
            _simple_table(OFFLINE_SHOWN)(offline.sort_values("throughput_ips", ascending=False), markdown)
        )
    single = df[df["scenario"] == "single-stream"]
    if not single.empty:
        parts.append(_sections(single, markdown, _simple_table(SINGLE_STREAM_SHOWN)).rstrip("\n"))
    batch = df[df["scenario"] == "batch"]
    if not batch.empty:
        parts.append(_sections(batch, markdown, _simple_table(SHOWN)).rstrip("\n"))
    parts += [table.text(markdown) for table in parity_sections(df)]
    parts += [table.text(markdown) for table in scenario_sections(frame)]
    profile = _profile_table(df, markdown)
    if profile:
        parts.append(profile.rstrip("\n"))
    cold = batch[(batch["target"] == "model") & (batch["status"] == "ok")]
    if not cold.empty and cold["load_s"].notna().any():
        smallest = cold[cold["batch_size"] == cold["batch_size"].min()]
        title = f"cold start: model, batch {smallest['batch_size'].iloc[0]} (process start, prepare, compile, first call)"
        parts.append(title_text(title, markdown))
        parts.append(_simple_table(COLD_SHOWN)(smallest, markdown))
    if not cold.empty and cold["rss_after_load_mb"].notna().any():
        title = "memory and CPU time: model (per worker process, cores busy = CPU time / wall time)"
        parts.append(title_text(title, markdown))
        parts.append(_simple_table(MEMORY_SHOWN)(cold, markdown))
    isolated = cold[cold["vs_alone"].notna()] if not cold.empty else cold
    if not isolated.empty:
        title = "isolation: whole model, isolated interleaved median vs timed alone (deepmnist bench --self-check)"
        parts.append(title_text(title, markdown))
        parts.append(
            _simple_table(_ISOLATION_SHOWN)(isolated.sort_values(["batch_size", "median_ms"]), markdown)
        )
    if not skipped.empty:
        parts.append(title_text("not run, and why", markdown))
        parts.append(not_run(skipped, markdown))
    return "\n\n".join(parts) + "\n"


def not_run(skipped: pd.DataFrame, markdown: bool = False) -> str:
    """One line per runtime x device (x execution provider, x host when several) that was skipped,
    with each distinct reason and how many cases (target x batch size x timing x scenario) it cost."""
    hosts = skipped["host"].nunique() > 1
    lines = []
    keys = ["host", "runtime", "device", "execution_provider"]
    for (host, runtime, device, provider), rows in skipped.groupby(keys, sort=False):
        what = runtime + (f" ({provider.removesuffix('ExecutionProvider')})" if provider else "")
        what += f" on {device}" + (f" @{host}" if hosts else "")
        counts = rows.groupby("reason", sort=False).size()
        why = "; ".join(
            f"{' '.join(reason.split())} ({n} case{'s' if n > 1 else ''})" for reason, n in counts.items()
        )
        line = f"- {what}: {why}"
        lines.append(markdown_text(line) if markdown else line)
    return "\n".join(lines)


def _change_cell(line: Mapping[str, Any]) -> str:
    if line["presence"] != "both":
        return line["presence"]
    if not math.isnan(line["change"]):
        return percent_change(line["change"])
    old, new = line["status_old"], line["status_new"]
    return old if old == new else f"{old} -> {new}"


def _noise_cell(line: Mapping[str, Any]) -> str:
    if not line["noise_known"]:
        return ""
    return "beyond noise" if line["beyond_noise"] else "within noise"


def _side(suffix: str) -> Callable[[Mapping[str, Any]], str]:
    def cell(line: Mapping[str, Any]) -> str:
        median = line[f"median_ms{suffix}"]
        return ms_ci(median, line[f"ci_low_ms{suffix}"], line[f"ci_high_ms{suffix}"])

    return cell


_CHANGE_SHOWN = layout(
    "changes",
    ("threads", "old ms [95% CI]", Cell(_side("_old"))),
    ("old ms [95% CI]", "new ms [95% CI]", Cell(_side("_new"))),
    ("new ms [95% CI]", "change", Cell(_change_cell)),
    ("change", "noise", Cell(_noise_cell, numeric=False, optional=True)),
)
# Headings shown right-aligned, in every table (the HTML report's too).
NUMERIC = frozenset(
    heading
    for shown in (
        SHOWN,
        OFFLINE_SHOWN,
        SINGLE_STREAM_SHOWN,
        COLD_SHOWN,
        MEMORY_SHOWN,
        _ISOLATION_SHOWN,
        _PARITY_SHOWN,
        _CHANGE_SHOWN,
        _PROFILE_SHOWN,
    )
    for heading, cell in shown.items()
    if cell.numeric
)


def _change_group_table(group: pd.DataFrame, markdown: bool) -> str:
    return tabulate_cells(shown_cells(group, _CHANGE_SHOWN), markdown, NUMERIC)


def render_changes(changes: pd.DataFrame, markdown: bool = False) -> str:
    """Text of a ``change_table``, a heading per target and batch size."""
    return _sections(changes, markdown, _change_group_table)


def _what(line: Mapping[str, Any]) -> str:
    """What a line of a change table measured: host, scenario, target, batch, runtime, ..."""
    scenario = "" if line["scenario"] == "batch" else line["scenario"]
    what = [line["host"], scenario, line["target"], f"batch {line['batch_size']}", line["runtime"]]
    what += [line["device"]]
    what += [line["timing"], line["execution_provider"], f"{line['threads']} threads", line["precision"]]
    return ", ".join(str(w) for w in what if w)


def regression_line(line: Mapping[str, Any]) -> str:
    """One line of a regression list: what was measured, old -> new median, change."""
    return (
        f"- {_what(line)}: {ms_text(line['median_ms_old'])} -> "
        f"{ms_text(line['median_ms_new'])} ms ({percent_change(line['change'])})"
    )


def status_line(line: Mapping[str, Any]) -> str:
    """One line of a list of lines a gate lost: what was measured, old -> new status (``missing``
    where NEW has no such line) and NEW's reason, first line, at most 120 characters."""
    new = line["status_new"] if isinstance(line["status_new"], str) else "missing"
    reason = str(line["reason_new"]).splitlines()[0][:120] if isinstance(line["reason_new"], str) else ""
    return f"- {_what(line)}: {line['status_old']} -> {new}" + (f" ({reason})" if reason else "")


def skipped_summary(df: pd.DataFrame) -> str:
    """One line per distinct skip reason with its count (for tables that hide skipped rows)."""
    skipped = df[df["status"] == "skipped"]
    counts = skipped.groupby("reason", sort=True).size()
    return "\n".join(f"- skipped ({n} combinations): {reason}" for reason, n in counts.items())


def peak_note(
    used: Mapping[tuple[str, str], str], old_machine: Machine, new_machine: Machine, new_path: str
) -> str:
    """The line saying how ``normalize_by_peak`` scaled NEW's times: each device's float32 peak ratio,
    each other precision scaled by its own, and the lines scaled by the float32 peak instead."""

    def ratio(device: str, precision: str) -> str:
        a, b = new_machine.peak(device, precision), old_machine.peak(device, precision)
        label = device if precision == "fp32" else f"{device} {precision}"
        return f"{label} x{a / b:.3g} ({a:,.0f} / {b:,.0f} GFLOP/s)"

    timed = sorted({device for device, _ in used})
    by_fp32 = {f"{device} {precision}" for (device, precision), peak in used.items() if peak != precision}
    shown = [(d, "fp32") for d in timed] + sorted(
        k for k in used if k[1] != "fp32" and " ".join(k) not in by_fp32
    )
    note = f"normalized by peak: {new_path}'s times x (its peak / OLD's peak): {', '.join(ratio(*k) for k in shown)}"
    if by_fp32:
        note += f"; {', '.join(sorted(by_fp32))} lines by the float32 peak (no roof of their precision in both runs)"
    return note
