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
new median with their CIs, the change and whether it is beyond noise; ``regression_line``,
``status_line`` and ``peak_note``: the lines of a ``--fail-slower`` gate's report.

A table is headings -> cells: each ``_Cell`` makes a line's text. Which CSV columns a table shows,
under which heading, is said by their records (``bench.columns.Column.shown``), which also give
each cell its format, its alignment and whether an empty one is dropped; ``layout`` builds a
table's cells from them, in CSV order, and places the cells computed here (CIs, ranks, ratios). A ``Table`` is one titled table's cells, drawn as text here and as HTML
by ``bench.report_html`` (the scenario tables, where the time goes, the run time).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
from tabulate import tabulate

from bench.analysis import BASELINE, comparison_tables, parity_summary, profile_breakdown
from bench.columns import BY_NAME, COLUMNS, Column, isolation_verdict
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
    """A table column: its cell text from one line, whether it is a number (right-aligned), whether
    a table drops it when no line has a value, and ``key``: the CSV column it shows ("" for a cell
    computed here)."""

    def __init__(
        self,
        text: Callable[[Mapping[str, Any]], str],
        numeric: bool = True,
        optional: bool = False,
        key: str = "",
    ) -> None:
        self.text, self.numeric, self.optional, self.key = text, numeric, optional, key

    def __call__(self, line: Mapping[str, Any]) -> str:
        return self.text(line)


def _format(spec: str) -> Callable[[Any], str]:
    """A column record's display format (bench.columns.Column.fmt) as a function: a format spec
    (",.0f"), or one of "" (str), "ms" (``_ms``), "%" (a fraction as a percentage), "+%" (a signed
    change, ``_percent_change``), "MB" (bytes as MB), "provider" (ONNX Runtime's execution provider
    less its "ExecutionProvider" suffix), "yes/no" (a 1/0 flag)."""
    named: dict[str, Callable[[Any], str]] = {
        "": str,
        "ms": _ms,
        "%": lambda v: _number(".2f")(v * 100),
        "+%": lambda v: "" if math.isnan(v) else _percent_change(v),
        "MB": lambda v: _number(".1f")(v / 1e6),
        "provider": lambda v: v.removesuffix("ExecutionProvider"),
        "yes/no": lambda v: {1: "yes", 0: "no"}.get(v, ""),
    }
    return named.get(spec) or _number(spec)


def _record_cell(record: Column) -> _Cell:
    """A CSV column's cell: format, alignment and whether it is optional from its record."""
    fmt = _format(record.fmt)
    return _Cell(lambda line: fmt(line[record.name]), record.numeric, record.optional, record.name)


def layout(
    table: str, *computed: tuple[str, str, _Cell], columns: Sequence[Column] = COLUMNS
) -> dict[str, _Cell]:
    """Heading -> cell of ``table`` (a name of ``bench.columns.TABLES``), in order: the CSV columns
    whose records show them there (``Column.shown``), in CSV order, and each computed cell
    ``(after, heading, cell)`` right after the column name or computed heading ``after``.
    ``columns``: the records (a test adds one)."""
    items = [(c.name, c.shown[table], _record_cell(c)) for c in columns if table in c.shown]
    for after, heading, cell in computed:
        keys = [key for key, _, _ in items]
        if after not in keys:
            raise ValueError(
                f"table {table!r}: {heading!r} is placed after {after!r}, which it does not show"
            )
        items.insert(keys.index(after) + 1, (heading, heading, cell))
    return {heading: cell for _, heading, cell in items}


def _median_ci(line: Mapping[str, Any]) -> str:
    return _ms_ci(line["median_ms"], line["ci_low_ms"], line["ci_high_ms"])


def _ci(column: str) -> _Cell:
    """``p99 ms [95% CI]``-style cell of a latency column with its ``_ci_low``/``_ci_high``."""
    return _Cell(lambda line: _ms_ci(line[column], line[f"{column}_ci_low"], line[f"{column}_ci_high"]))


_VS_FASTEST = _Cell(_vs_fastest, optional=True)
_SHOWN = layout(
    "batch",
    ("threads", "median ms [95% CI]", _Cell(_median_ci)),
    ("median ms [95% CI]", "vs fastest", _VS_FASTEST),
    ("vs fastest", "CV %", _Cell(_cv, optional=True)),
    ("pct_of_peak", f"vs {BASELINE}", _Cell(lambda line: _number(".2f", "x")(line["speedup"]))),
)


def _status(status: str, reason: str) -> str:
    # one line: a multi-line reason (say, an exception's message) would break the table
    return status if status == "ok" else f"{status}: {' '.join(reason.split())}"


def _says_nothing(cell: _Cell, group: pd.DataFrame, texts: list[str]) -> bool:
    """A cell that says nothing in this group: a single host, every line at its record's default
    (timing compute, precision fp32), or an optional cell with no value."""
    if cell.key == "host":
        return group["host"].nunique() <= 1
    if cell.key in ("timing", "precision"):
        return bool((group[cell.key] == BY_NAME[cell.key].default).all())
    return cell.optional and not any(texts)


def _cells(group: pd.DataFrame, shown: Mapping[str, _Cell]) -> dict[str, list[str]]:
    """Heading -> cells, less the columns that say nothing in this group (``_says_nothing``)."""
    lines = group.to_dict("records")
    cells = {heading: [cell(line) for line in lines] for heading, cell in shown.items()}
    return {h: texts for h, texts in cells.items() if not _says_nothing(shown[h], group, texts)}


_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")  # what opens an HTML tag, comment or declaration


def markdown_text(value: object) -> str:
    """A value read from data, as Markdown text: a ``<`` that could open HTML (``<script>``,
    ``</b>``, ``<!--``) becomes ``&lt;``, so a Markdown viewer shows the text and runs nothing;
    other text is unchanged (``p99 < 10 ms`` stays as it is)."""
    return _TAG_START.sub("&lt;", str(value))


def markdown_code(value: object) -> str:
    """A value as a Markdown code span (shown literally: no HTML in it); a backtick in it becomes a
    quote, so the value cannot end the span and continue as Markdown."""
    return "`" + str(value).replace("`", "'") + "`"


def _tabulate(cells: dict[str, list[str]], markdown: bool, numeric: Collection[str] | None = None) -> str:
    """``numeric``: the headings shown right-aligned (default ``_NUMERIC``, this module's tables).
    Markdown cells are ``markdown_text`` with ``|`` escaped."""
    if markdown:
        cells = {
            h: [markdown_text(cell).replace("|", "\\|") for cell in column] for h, column in cells.items()
        }
    numeric = _NUMERIC if numeric is None else numeric
    align = ["right" if h in numeric else "left" for h in cells]
    return tabulate(
        cells,
        headers="keys",
        tablefmt="pipe" if markdown else "simple",  # pipe: what DataFrame.to_markdown writes
        disable_numparse=True,
        colalign=align,
    )


def _title(text: str, markdown: bool) -> str:
    return f"### {markdown_text(text)}" if markdown else f"{text}\n{'=' * len(text)}"


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


_OFFLINE_SHOWN = layout("offline")
_SINGLE_STREAM_SHOWN = layout(
    "single-stream",
    ("rounds", "p50 ms [95% CI]", _Cell(_median_ci)),
    ("latency_ms_p90", "p99 ms [95% CI]", _ci("latency_ms_p99")),
    ("p99 ms [95% CI]", "p99.9 ms [95% CI]", _ci("latency_ms_p999")),
    ("p99.9 ms [95% CI]", "vs fastest", _VS_FASTEST),
)
_COLD_SHOWN = layout(
    "cold start",
    ("time_to_first_result_s", "steady median ms", _Cell(lambda line: _ms(line["median_ms"]))),
    (
        "steady median ms",
        "first / steady",
        _Cell(lambda line: _number(".1f", "x")(line["first_inference_ms"] / line["median_ms"])),
    ),
)
_MEMORY_SHOWN = layout(
    "memory",
    # CPU time and wall time over the same timed calls (the mean wall time: CPU time is a total too)
    (
        "model_bytes",
        "cores busy",
        _Cell(lambda line: _number(".2f")(line["cpu_ms_per_call"] / line["latency_ms_mean"]), optional=True),
    ),
)
_ISOLATION_SHOWN = layout(
    "isolation",
    ("threads", "isolated median ms [95% CI]", _Cell(_median_ci)),
    # vs_alone: the distance from the range of the alone medians (bench.selfcheck.alone_range)
    (
        "alone_spread",
        "check",
        _Cell(lambda line: isolation_verdict(line["vs_alone"], line["alone_spread"]), numeric=False),
    ),
)
_PARITY_SHOWN = layout(
    "parity", ("max_abs_diff", "batch sizes", _Cell(lambda line: line["batch_sizes"], numeric=False))
)
PARITY_TITLE = "parity: whole model vs eager PyTorch on the CPU (worst over the batch sizes)"


def _simple_cells(group: pd.DataFrame, shown: Mapping[str, _Cell]) -> dict[str, list[str]]:
    """``_cells``, then each line's status."""
    return _with_status(_cells(group, shown), group)


def _simple_table(shown: Mapping[str, _Cell]) -> Callable[[pd.DataFrame, bool], str]:
    def table(group: pd.DataFrame, markdown: bool) -> str:
        return _tabulate(_simple_cells(group, shown), markdown)

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
        (after, heading, _Cell(lambda line, column=column: _ms(line[column])))
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
        cells = _simple_cells(group, _PROFILE_SHOWN)
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
        parts.append(_sections(batch, markdown, _simple_table(_SHOWN)).rstrip("\n"))
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
        title = "memory and CPU time: model (per worker process, cores busy = CPU time / wall time)"
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


_CHANGE_SHOWN = layout(
    "changes",
    ("threads", "old ms [95% CI]", _Cell(_side("_old"))),
    ("old ms [95% CI]", "new ms [95% CI]", _Cell(_side("_new"))),
    ("new ms [95% CI]", "change", _Cell(_change_cell)),
    ("change", "noise", _Cell(_noise_cell, numeric=False, optional=True)),
)
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
        _PROFILE_SHOWN,
    )
    for heading, cell in shown.items()
    if cell.numeric
)


def _change_group_table(group: pd.DataFrame, markdown: bool) -> str:
    return _tabulate(_cells(group, _CHANGE_SHOWN), markdown)


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
        f"- {_what(line)}: {_ms(line['median_ms_old'])} -> "
        f"{_ms(line['median_ms_new'])} ms ({_percent_change(line['change'])})"
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
