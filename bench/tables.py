"""The text of ``deepmnist compare``: the frames of ``bench.analysis`` as plain-text or Markdown
tables (and the HTML report's cells, ``bench.report_html``).

``render``: one results frame as the tables of a run, in this order: offline (best throughput per
runtime), single-stream latency, then a heading per target and batch size with one line per runtime
x device (x timing, x execution provider, x threads), fastest first, parity (the whole model's
worst max |diff|, agreement and accuracy per runtime x device x precision), the scenario tables
(``bench.scenarios``), where the time goes (profile), cold start, memory, isolation and last "not
run, and why". Speedup is throughput relative to ``torch-eager`` on the same host, device, timing
kind and thread count. ``vs fastest`` ranks each ok line against the fastest ok line of its table on
the same host, device and timing kind: a line whose median's 95% confidence interval overlaps the
fastest one's is ``within noise`` (not ranked), else slower by ``+N%``. Failed rows are listed with
their reason.

``render_changes``: a ``change_table`` (two runs) as a heading per target and batch size, old and
new median with their CIs, the change and whether it is beyond noise; ``regression_line`` and
``peak_note``: the lines of a ``--fail-slower`` gate's report.

A table is headings -> cells: each ``_Cell`` makes a line's text; a CSV column's cell takes its
format and alignment from its record (``bench.columns``). The ``*_SHOWN`` dicts say which cells
each table shows, in order. A ``Table`` is one titled table's cells, drawn as text here and as HTML
by ``bench.report_html`` (the scenario tables, where the time goes, the run time).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
from tabulate import tabulate

from bench.analysis import BASELINE, comparison_tables, parity_summary, profile_breakdown
from bench.columns import BY_NAME, ISOLATION_TOLERANCE
from models.layers import PROFILE_SEGMENTS

if TYPE_CHECKING:
    from bench.machine import Machine


def _number(fmt: str, suffix: str = "") -> Callable[[float], str]:
    return lambda value: "" if math.isnan(value) else format(value, fmt) + suffix


def _ms(value: float) -> str:
    # 4 significant digits (0.01234, 2.500, 123.4); no exponent for the (unlikely) calls over a second
    return _number("#.4g" if value < 1000 else ",.0f")(value)


def _ms_ci(median: float, low: float, high: float) -> str:
    """``1.234 [1.200, 1.270]``: the median and its 95% CI in ms (just the median if no CI)."""
    if math.isnan(median) or math.isnan(low) or math.isnan(high):
        return _ms(median)
    return f"{_ms(median)} [{_ms(low)}, {_ms(high)}]"


def _percent_change(ratio_minus_one: float) -> str:
    """``+23%``, ``+4.5%``, ``-12%``: a relative change, given as new / old - 1."""
    pct = ratio_minus_one * 100
    return format(pct, "+.0f" if abs(pct) >= 9.95 else "+.1f") + "%"


def _vs_fastest(line: Mapping[str, Any]) -> str:
    if line["status"] != "ok":
        return ""
    if line["fastest"]:
        return "fastest"
    return "within noise" if line["within_noise"] else _percent_change(line["vs_fastest"])


def _cv(line: Mapping[str, Any]) -> str:
    # the CV in percent, flagged where the spread is too large to trust small differences
    cv = line["cv"]
    return "" if math.isnan(cv) else f"{cv * 100:.1f}" + (" noisy" if line["noisy"] == 1 else "")


class _Cell:
    """A table column: its cell text from one line, and whether it is a number (right-aligned)."""

    def __init__(self, text: Callable[[Mapping[str, Any]], str], numeric: bool = True) -> None:
        self.text, self.numeric = text, numeric

    def __call__(self, line: Mapping[str, Any]) -> str:
        return self.text(line)


def _format(spec: str) -> Callable[[Any], str]:
    """A column record's display format (bench.columns.Column.fmt) as a function."""
    return {"": str, "ms": _ms}.get(spec) or _number(spec)


def _column(name: str, fmt: Callable[[Any], str] | None = None) -> _Cell:
    """The cell of column ``name``: a CSV column takes its format and alignment from its record
    (``fmt`` overrides the format); a column computed here (speedup, ...) is a number."""
    record = BY_NAME.get(name)
    fmt = fmt or (_format(record.fmt) if record else str)
    return _Cell(lambda line: fmt(line[name]), record.numeric if record else True)


_SHOWN: dict[str, _Cell] = {  # heading -> cell of a line, in order
    "host": _column("host"),
    "runtime": _column("runtime"),
    "precision": _column("precision"),
    "device": _column("device"),
    "timing": _column("timing"),
    "provider": _column("execution_provider", lambda v: v.removesuffix("ExecutionProvider")),
    "threads": _column("threads"),
    "median ms [95% CI]": _Cell(
        lambda line: _ms_ci(line["median_ms"], line["ci_low_ms"], line["ci_high_ms"])
    ),
    "vs fastest": _Cell(_vs_fastest),
    "CV %": _Cell(_cv),
    "images/s": _column("throughput_ips"),
    "GFLOP/s": _column("gflops"),
    "% of peak": _column("pct_of_peak"),
    f"vs {BASELINE}": _column("speedup", _number(".2f", "x")),
    "accuracy %": _column("accuracy_pct", _number(".2f")),
    "agreement %": _column("agreement_pct", _number(".2f")),
}
# dropped when all empty
_OPTIONAL = ("provider", "vs fastest", "CV %", "% of peak", "accuracy %", "agreement %")


def _status(status: str, reason: str) -> str:
    # one line: a multi-line reason (say, an exception's message) would break the table
    return status if status == "ok" else f"{status}: {' '.join(reason.split())}"


def _cells(
    group: pd.DataFrame, shown: Mapping[str, Callable[[Mapping[str, Any]], str]]
) -> dict[str, list[str]]:
    """Heading -> cells, less the columns that say nothing in this group: a single host,
    all-"compute" timing, and optional columns with no value (no provider, no accuracy: layers)."""
    lines = group.to_dict("records")
    cells = {heading: [cell(line) for line in lines] for heading, cell in shown.items()}
    if "host" in cells and group["host"].nunique() <= 1:
        del cells["host"]
    if "timing" in cells and (group["timing"] == "compute").all():
        del cells["timing"]
    if "precision" in cells and (group["precision"] == "fp32").all():
        del cells["precision"]
    for heading in _OPTIONAL:
        if heading in cells and not any(cells[heading]):
            del cells[heading]
    return cells


def _tabulate(cells: dict[str, list[str]], markdown: bool, numeric: Collection[str] | None = None) -> str:
    """``numeric``: the headings shown right-aligned (default ``_NUMERIC``, this module's tables)."""
    if markdown:
        cells = {h: [cell.replace("|", "\\|") for cell in column] for h, column in cells.items()}
    numeric = _NUMERIC if numeric is None else numeric
    align = ["right" if h in numeric else "left" for h in cells]
    return tabulate(
        cells,
        headers="keys",
        tablefmt="pipe" if markdown else "simple",  # pipe: what DataFrame.to_markdown writes
        disable_numparse=True,
        colalign=align,
    )


def _group_table(group: pd.DataFrame, markdown: bool) -> str:
    return _tabulate(_with_status(_cells(group, _SHOWN), group), markdown)


def _title(text: str, markdown: bool) -> str:
    return f"### {text}" if markdown else f"{text}\n{'=' * len(text)}"


@dataclass(frozen=True)
class Table:
    """One titled table as cells (heading -> column of cell texts) and the headings that are
    numbers: what the text (``text``) and the HTML report (``bench.report_html``) both draw."""

    title: str
    cells: dict[str, list[str]]
    numeric: frozenset[str]

    @classmethod
    def of(cls, title: str, lines: pd.DataFrame, shown: Mapping[str, _Cell]) -> Table:
        """Each line of ``lines`` through the cells of ``shown``."""
        records = lines.to_dict("records")
        cells = {heading: [cell(line) for line in records] for heading, cell in shown.items()}
        return cls(title, cells, frozenset(heading for heading, cell in shown.items() if cell.numeric))

    def text(self, markdown: bool) -> str:
        return f"{_title(self.title, markdown)}\n\n{_tabulate(self.cells, markdown, self.numeric)}"


def group_title(scenario: str, target: str, batch: int) -> str:
    """The heading of one scenario x target x batch size table: ``model, batch 1, single-stream``."""
    return f"{target}, batch {batch}" + ("" if scenario == "batch" else f", {scenario}")


def _sections(df: pd.DataFrame, markdown: bool, table: Callable[[pd.DataFrame, bool], str]) -> str:
    """A heading per scenario, target and batch size (in the frame's order), each followed by
    ``table(group)``."""
    parts = []
    for (scenario, target, batch), group in df.groupby(["scenario", "target", "batch_size"], sort=False):
        parts.append(_title(group_title(scenario, target, batch), markdown))
        parts.append(table(group, markdown))
    return "\n\n".join(parts) + "\n"


def _with_status(cells: dict[str, list[str]], group: pd.DataFrame) -> dict[str, list[str]]:
    cells["status"] = [_status(s, r) for s, r in zip(group["status"], group["reason"], strict=True)]
    return cells


_OFFLINE_SHOWN = {
    **{h: _SHOWN[h] for h in ("host", "runtime", "precision", "device", "timing", "provider", "threads")},
    "best batch": _column("batch_size"),
    "images/s": _SHOWN["images/s"],
    "GFLOP/s": _SHOWN["GFLOP/s"],
    "% of peak": _SHOWN["% of peak"],
    "accuracy %": _SHOWN["accuracy %"],
}
_SINGLE_STREAM_SHOWN = {
    **{h: _SHOWN[h] for h in ("host", "runtime", "precision", "device", "timing", "provider", "threads")},
    "queries": _column("rounds"),
    "p50 ms [95% CI]": _SHOWN["median ms [95% CI]"],
    "p90 ms": _column("latency_ms_p90"),
    "p99 ms [95% CI]": _Cell(
        lambda line: _ms_ci(
            line["latency_ms_p99"], line["latency_ms_p99_ci_low"], line["latency_ms_p99_ci_high"]
        )
    ),
    "p99.9 ms [95% CI]": _Cell(
        lambda line: _ms_ci(
            line["latency_ms_p999"], line["latency_ms_p999_ci_low"], line["latency_ms_p999_ci_high"]
        )
    ),
    "vs fastest": _SHOWN["vs fastest"],
    "accuracy %": _SHOWN["accuracy %"],
    "note": _column("note"),  # "" in older files (read_results fills the default)
}
_COLD_SHOWN = {
    **{h: _SHOWN[h] for h in ("host", "runtime", "precision", "device", "timing", "provider", "threads")},
    "start s": _column("start_s"),
    "load s": _column("load_s"),
    "compile s": _column("compile_s"),
    "first call ms": _column("first_inference_ms"),
    "to first result s": _column("time_to_first_result_s"),
    "steady median ms": _column("median_ms", _ms),
    "first / steady": _Cell(lambda line: _number(".1f", "x")(line["first_inference_ms"] / line["median_ms"])),
}
_MEMORY_SHOWN = {
    **{h: _SHOWN[h] for h in ("host", "runtime", "precision", "device", "timing", "provider", "threads")},
    "batch": _column("batch_size"),
    "model MB": _column("model_bytes", lambda v: _number(".1f")(v / 1e6)),
    "RSS after load MiB": _column("rss_after_load_mb"),
    "peak RSS MiB": _column("peak_rss_mb"),
    "CUDA peak MiB": _column("cuda_peak_allocated_mb"),
    "CPU ms / call": _column("cpu_ms_per_call"),
    "wall ms / call (mean)": _column("latency_ms_mean"),
    # both over the same timed calls (the mean, not the median: CPU time is a total too)
    "cores busy": _Cell(lambda line: _number(".2f")(line["cpu_ms_per_call"] / line["latency_ms_mean"])),
}
_ISOLATION_SHOWN = {
    **{h: _SHOWN[h] for h in ("host", "runtime", "precision", "device", "provider", "threads")},
    "batch": _column("batch_size"),
    "isolated median ms [95% CI]": _SHOWN["median ms [95% CI]"],
    # distance from the range of the two alone medians (bench.selfcheck.alone_range), 0 inside
    "vs alone": _column("vs_alone", lambda v: "" if math.isnan(v) else _percent_change(v)),
    "check": _Cell(
        lambda line: "ok" if abs(line["vs_alone"]) <= ISOLATION_TOLERANCE else "FAIL", numeric=False
    ),
    "runtime passes": _Cell(lambda line: {1: "yes", 0: "no"}.get(line["isolation_ok"], ""), numeric=False),
}
_PARITY_SHOWN = {
    **{h: _SHOWN[h] for h in ("host", "runtime", "precision", "device", "provider")},
    "max abs diff": _column("max_abs_diff"),
    "agreement %": _SHOWN["agreement %"],
    "accuracy %": _SHOWN["accuracy %"],
    "batch sizes": _Cell(lambda line: line["batch_sizes"], numeric=False),
}
PARITY_TITLE = "parity: whole model vs eager PyTorch on the CPU (worst over the batch sizes)"
_EMPTY_DROPPED = ("compile s", "start s", "to first result s", "CUDA peak MiB", "RSS after load MiB",
                  "peak RSS MiB", "CPU ms / call", "cores busy", "model MB", "note")  # fmt: skip


def _simple_cells(
    group: pd.DataFrame, shown: Mapping[str, Callable[[Mapping[str, Any]], str]]
) -> dict[str, list[str]]:
    """``_cells`` less the ``_EMPTY_DROPPED`` columns with no value, then each line's status."""
    cells = _cells(group, shown)
    for heading in _EMPTY_DROPPED:
        if heading in cells and not any(cells[heading]):
            del cells[heading]
    return _with_status(cells, group)


def _simple_table(
    shown: Mapping[str, Callable[[Mapping[str, Any]], str]],
) -> Callable[[pd.DataFrame, bool], str]:
    def table(group: pd.DataFrame, markdown: bool) -> str:
        return _tabulate(_simple_cells(group, shown), markdown)

    return table


# The "where the time goes" table: heading -> column of ``profile_breakdown``, ms per layer and their
# sums, all numbers.
_PROFILE_NUMBERS = {
    **{segment: segment for segment in PROFILE_SEGMENTS},
    "profiled sum": "profiled_sum",
    "standalone sum": "standalone_sum",
    "whole model": "whole_model",
}


def profile_sections(comparison: pd.DataFrame) -> list[Table]:
    """Per runtime x device: each layer's profiled ms per call inside the whole model, their sum,
    the sum of the standalone layer timings and the whole-model median, all at the profiled batch
    (``profile_breakdown``); one table per host x batch size."""
    tables = []
    for (_, batch), group in profile_breakdown(comparison).groupby(["host", "batch_size"], sort=False):
        cells = {h: list(group[h]) for h in ("host", "runtime", "device")}
        for heading, column in _PROFILE_NUMBERS.items():
            cells[heading] = [_ms(value) for value in group[column]]
        cells = _with_status(cells, group)
        if group["host"].nunique() <= 1:
            del cells["host"]
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
    cells = _cells(summary, _PARITY_SHOWN)
    return [Table(PARITY_TITLE, cells, frozenset(_NUMERIC))]


def render(df: pd.DataFrame, markdown: bool = False) -> str:
    """Text of the tables: offline (best throughput per runtime), single-stream latency, then a
    heading per target and batch size, parity (``parity_summary``), the scenario tables, where the
    time goes (profile), cold start, memory, isolation, and last
    "not run, and why": each skipped runtime x device once, with its reason (``not_run``).
    ``df`` from ``comparison_tables`` (a results frame from ``read_results`` is converted first)."""
    _frame = df  # the results frame (the scenario tables read its own columns)
    if "latency_ms_median" in df.columns:
        df = comparison_tables(df)
    skipped = df[df["status"] == "skipped"]
    df = df[df["status"] != "skipped"]  # the tables list what ran (failures too); skips go last
    parts = []
    offline = df[df["scenario"] == "offline"]
    if not offline.empty:
        parts.append(_title("offline: best throughput over the batch sizes (whole model)", markdown))
        parts.append(
            _simple_table(_OFFLINE_SHOWN)(offline.sort_values("throughput_ips", ascending=False), markdown)
        )
    single = df[df["scenario"] == "single-stream"]
    if not single.empty:
        parts.append(_sections(single, markdown, _simple_table(_SINGLE_STREAM_SHOWN)).rstrip("\n"))
    batch = df[df["scenario"] == "batch"]
    if not batch.empty:
        parts.append(_sections(batch, markdown, _group_table).rstrip("\n"))
    parts += [table.text(markdown) for table in parity_sections(df)]
    from bench.scenarios import scenario_sections

    parts += [table.text(markdown) for table in scenario_sections(_frame)]
    profile = _profile_table(df, markdown)
    if profile:
        parts.append(profile.rstrip("\n"))
    cold = batch[(batch["target"] == "model") & (batch["status"] == "ok")]
    if not cold.empty and cold["load_s"].notna().any():
        smallest = cold[cold["batch_size"] == cold["batch_size"].min()]
        title = f"cold start: model, batch {smallest['batch_size'].iloc[0]} (process start, prepare, compile, first call)"
        parts.append(_title(title, markdown))
        parts.append(_simple_table(_COLD_SHOWN)(smallest, markdown))
    if not cold.empty and cold["rss_after_load_mb"].notna().any():
        title = "memory and CPU time: model (per worker process; cores busy = CPU time / wall time)"
        parts.append(_title(title, markdown))
        parts.append(_simple_table(_MEMORY_SHOWN)(cold, markdown))
    isolated = cold[cold["vs_alone"].notna()] if not cold.empty else cold
    if not isolated.empty:
        title = "isolation: whole model, isolated interleaved median vs timed alone (deepmnist bench --self-check)"
        parts.append(_title(title, markdown))
        parts.append(
            _simple_table(_ISOLATION_SHOWN)(isolated.sort_values(["batch_size", "median_ms"]), markdown)
        )
    if not skipped.empty:
        parts.append(_title("not run, and why", markdown))
        parts.append(not_run(skipped))
    return "\n\n".join(parts) + "\n"


def not_run(skipped: pd.DataFrame) -> str:
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
        lines.append(f"- {what}: {why}")
    return "\n".join(lines)


def _change_cell(line: Mapping[str, Any]) -> str:
    if line["presence"] != "both":
        return line["presence"]
    if not math.isnan(line["change"]):
        return _percent_change(line["change"])
    old, new = line["status_old"], line["status_new"]
    return old if old == new else f"{old} -> {new}"


def _noise_cell(line: Mapping[str, Any]) -> str:
    if not line["noise_known"]:
        return ""
    return "beyond noise" if line["beyond_noise"] else "within noise"


def _side(suffix: str) -> Callable[[Mapping[str, Any]], str]:
    def cell(line: Mapping[str, Any]) -> str:
        median = line[f"median_ms{suffix}"]
        return _ms_ci(median, line[f"ci_low_ms{suffix}"], line[f"ci_high_ms{suffix}"])

    return cell


_CHANGE_SHOWN: dict[str, _Cell] = {
    **{h: _SHOWN[h] for h in ("host", "runtime", "device", "timing", "provider", "threads")},
    "old ms [95% CI]": _Cell(_side("_old")),
    "new ms [95% CI]": _Cell(_side("_new")),
    "change": _Cell(_change_cell),
    "noise": _Cell(_noise_cell, numeric=False),
}
# Headings shown right-aligned, in every table (the HTML report's too).
_NUMERIC = frozenset(
    heading
    for shown in (
        _SHOWN,
        _OFFLINE_SHOWN,
        _SINGLE_STREAM_SHOWN,
        _COLD_SHOWN,
        _MEMORY_SHOWN,
        _ISOLATION_SHOWN,
        _PARITY_SHOWN,
        _CHANGE_SHOWN,
    )
    for heading, cell in shown.items()
    if cell.numeric
).union(_PROFILE_NUMBERS)


def _change_group_table(group: pd.DataFrame, markdown: bool) -> str:
    cells = _cells(group, _CHANGE_SHOWN)
    if not any(cells["noise"]):
        del cells["noise"]
    return _tabulate(cells, markdown)


def render_changes(changes: pd.DataFrame, markdown: bool = False) -> str:
    """Text of a ``change_table``, a heading per target and batch size."""
    return _sections(changes, markdown, _change_group_table)


def regression_line(line: Mapping[str, Any]) -> str:
    """One line of a regression list: what was measured, old -> new median, change."""
    scenario = "" if line["scenario"] == "batch" else line["scenario"]
    what = [line["host"], scenario, line["target"], f"batch {line['batch_size']}", line["runtime"]]
    what += [line["device"]]
    what += [line["timing"], line["execution_provider"], f"{line['threads']} threads", line["precision"]]
    return (
        f"- {', '.join(str(w) for w in what if w)}: {_ms(line['median_ms_old'])} -> "
        f"{_ms(line['median_ms_new'])} ms ({_percent_change(line['change'])})"
    )


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
