"""``deepmnist compare RESULTS.csv... [--markdown] [--merge] [--fail-slower PCT]``: results as tables.

One file: one table per target and batch size, one line per runtime x device (x timing, x execution
provider, x threads), fastest first. Speedup is throughput relative to ``torch-eager`` on the same
host, device, timing kind and thread count. ``vs fastest`` ranks each ok line against the fastest
ok line of its table on the same host, device and timing kind: a line whose median's 95% confidence
interval overlaps the fastest one's is ``within noise`` (not ranked), else slower by ``+N%``.
Skipped and failed rows are listed with their reason.

Two files (OLD.csv NEW.csv): a change table, one line per measurement key (``CHANGE_KEY``), with old
and new median, the change and whether it is beyond noise (the two CIs do not overlap);
``--fail-slower PCT`` makes it a regression gate. The two runs' machines (``bench.machine``) are
printed, one line each, when they differ; when their ``machine_id`` or measured peaks differ (or
nothing says they are the same), the gate refuses raw times (exit 2) unless ``--normalize peak``
(time x each run's own peak) or ``--allow-different-machines``. ``--merge`` with several files (say,
one per host) shows them as one set of tables instead.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
from tabulate import tabulate

from bench.columns import BY_NAME, ISOLATION_TOLERANCE, NAMES
from models.errors import UserError
from models.layers import LAYER_NAMES, PROFILE_SEGMENTS

if TYPE_CHECKING:
    from bench.machine import Machine

BASELINE = "torch-eager"
_KEY = [
    "host",
    "scenario",
    "target",
    "batch_size",
    "device",
    "timing",
    "threads",
]  # what a speedup compares like with like
_PEERS = ["host", "scenario", "target", "batch_size", "device", "timing"]  # ranked against the fastest
# What identifies one measurement across two results files.
CHANGE_KEY = [
    "host",
    "scenario",
    "target",
    "runtime",
    "device",
    "timing",
    "batch_size",
    "threads",
    "precision",
    "execution_provider",
]
_CI = {"latency_ms_median_ci_low": "ci_low_ms", "latency_ms_median_ci_high": "ci_high_ms"}
_RENAMED = {"latency_ms_median": "median_ms", **_CI}
# The comparison frame: every CSV column (bench.columns; the median and its CI renamed), then the
# columns computed here.
TABLE_COLUMNS = [
    *(_RENAMED.get(name, name) for name in NAMES),
    "vs_fastest",  # median / fastest median - 1 (0.23: 23% slower); NaN unless ok
    "fastest",  # the fastest ok line of its peers
    "within_noise",  # its CI overlaps the fastest line's CI (False when either CI is unknown)
    "speedup",  # throughput / the baseline's throughput on the same host, device, timing, threads
    "accuracy_pct",
    "agreement_pct",
]


class CompareError(UserError):
    """Bad ``compare`` arguments: an impossible combination of files and options, a bad threshold."""


def _overlap(low_a: pd.Series, high_a: pd.Series, low_b: pd.Series, high_b: pd.Series) -> pd.Series:
    """Whether intervals [low_a, high_a] and [low_b, high_b] overlap; False if any bound is NaN."""
    return (low_a <= high_b) & (low_b <= high_a)


def comparison_tables(df: pd.DataFrame) -> pd.DataFrame:
    """From a results frame (``read_results``), one line per measurement with the compared numbers.

    Columns ``TABLE_COLUMNS``; sorted by target ("model" first, then the order in the file),
    batch size, then median latency (fastest first; skipped and failed rows last).
    """
    table = df.rename(columns=_RENAMED).assign(
        accuracy_pct=df["accuracy"] * 100,
        agreement_pct=df["agreement"] * 100,
        _line=range(len(df)),
    )
    ok = table["status"] == "ok"
    baseline = (
        table.loc[ok & (table["runtime"] == BASELINE), [*_KEY, "throughput_ips"]]
        .drop_duplicates(_KEY)
        .rename(columns={"throughput_ips": "baseline_ips"})
    )
    fastest = (
        table.loc[ok, [*_PEERS, "median_ms", "ci_low_ms", "ci_high_ms", "_line"]]
        .sort_values("median_ms", kind="stable")
        .drop_duplicates(_PEERS)
        .rename(columns=lambda c: c if c in _PEERS else f"_fastest_{c}")
    )
    table = table.merge(baseline, on=_KEY, how="left").merge(fastest, on=_PEERS, how="left")
    table["speedup"] = table["throughput_ips"] / table["baseline_ips"]
    table["vs_fastest"] = table["median_ms"] / table["_fastest_median_ms"] - 1
    table["fastest"] = table["_line"] == table["_fastest__line"]
    table["within_noise"] = (table["status"] == "ok") & _overlap(
        table["ci_low_ms"], table["ci_high_ms"], table["_fastest_ci_low_ms"], table["_fastest_ci_high_ms"]
    )
    return _target_sorted(table, ["median_ms"])[TABLE_COLUMNS].reset_index(drop=True)


def _target_sorted(table: pd.DataFrame, then: list[str]) -> pd.DataFrame:
    """Sorted by scenario (SCENARIOS order), target ("model" first, then the order in the frame),
    batch size, then ``then``."""
    from bench.results import SCENARIOS

    targets = ["model", *(t for t in dict.fromkeys(table["target"]) if t != "model")]
    order = table["target"].map({t: i for i, t in enumerate(targets)})
    scenario = table["scenario"].map({s: i for i, s in enumerate(SCENARIOS)})
    return table.assign(_scenario=scenario, _order=order).sort_values(
        ["_scenario", "_order", "batch_size", *then], na_position="last", kind="stable"
    )


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


def _sections(df: pd.DataFrame, markdown: bool, table: Callable[[pd.DataFrame, bool], str]) -> str:
    """A heading per scenario, target and batch size (in the frame's order), each followed by
    ``table(group)``."""
    parts = []
    for (scenario, target, batch), group in df.groupby(["scenario", "target", "batch_size"], sort=False):
        title = f"{target}, batch {batch}" + ("" if scenario == "batch" else f", {scenario}")
        parts.append(_title(title, markdown))
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
_EMPTY_DROPPED = ("compile s", "start s", "to first result s", "CUDA peak MiB", "RSS after load MiB",
                  "peak RSS MiB", "CPU ms / call", "cores busy", "model MB", "note")  # fmt: skip


def _simple_table(
    shown: Mapping[str, Callable[[Mapping[str, Any]], str]],
) -> Callable[[pd.DataFrame, bool], str]:
    def table(group: pd.DataFrame, markdown: bool) -> str:
        cells = _cells(group, shown)
        for heading in _EMPTY_DROPPED:
            if heading in cells and not any(cells[heading]):
                del cells[heading]
        return _tabulate(_with_status(cells, group), markdown)

    return table


def _profile_table(comparison: pd.DataFrame, markdown: bool) -> str:
    """Per runtime x device: each layer's profiled ms per call inside the whole model, their sum,
    the sum of the standalone layer timings and the whole-model median, all at the profiled batch."""
    profile = comparison[comparison["scenario"] == "profile"]
    batch_rows = comparison[(comparison["scenario"] == "batch") & (comparison["status"] == "ok")]
    parts = []
    for (host, batch), group in profile.groupby(["host", "batch_size"], sort=False):
        lines = []
        for (runtime, device), rows in group.groupby(["runtime", "device"], sort=False):
            ok = rows[rows["status"] == "ok"]
            line = {"host": host, "runtime": runtime, "device": device}
            if ok.empty:
                line["status"] = _status(rows["status"].iloc[0], rows["reason"].iloc[0])
                lines.append(line)
                continue
            ms = dict(zip(ok["target"], ok["median_ms"], strict=True))
            for segment in PROFILE_SEGMENTS:
                line[segment] = _ms(ms.get(segment, math.nan))
            line["profiled sum"] = _ms(sum(ms.get(segment, 0.0) for segment in PROFILE_SEGMENTS))
            same = batch_rows[
                (batch_rows["host"] == host) & (batch_rows["runtime"] == runtime)
                & (batch_rows["device"] == device) & (batch_rows["batch_size"] == batch)
                & (batch_rows["timing"] == "compute")
            ]  # fmt: skip
            layers = same[same["target"].isin(LAYER_NAMES)]
            complete = layers["target"].nunique() == len(LAYER_NAMES)
            line["standalone sum"] = _ms(layers["median_ms"].sum()) if complete else ""
            whole = same.loc[same["target"] == "model", "median_ms"]
            line["whole model"] = _ms(whole.iloc[0]) if len(whole) else ""
            line["status"] = "ok"
            lines.append(line)
        headings = [
            "host",
            "runtime",
            "device",
            *_PROFILE_NUMBERS,
        ]
        cells = {h: [line.get(h, "") for line in lines] for h in [*headings, "status"]}
        if len({line["host"] for line in lines}) <= 1:
            del cells["host"]
        parts.append(_title(f"where the time goes: model, batch {batch}, ms per call by layer", markdown))
        parts.append(_tabulate(cells, markdown))
    return "\n\n".join(parts) + "\n" if parts else ""


def render(df: pd.DataFrame, markdown: bool = False) -> str:
    """Text of the tables: offline (best throughput per runtime), single-stream latency, then a
    heading per target and batch size, where the time goes (profile), cold start, memory, and last
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
    if "latency_ms_median" in _frame.columns and "full_loop" in set(_frame["timing"]):
        from bench.scenarios import full_loop_table

        parts.append(full_loop_table(_frame, markdown))
    if "latency_ms_median" in _frame.columns and "streams" in set(_frame["scenario"]):
        from bench.scenarios import settings_tables

        parts.append(settings_tables(_frame, markdown))
    if "latency_ms_median" in _frame.columns and "server" in set(_frame["scenario"]):
        from bench.scenarios import server_tables

        parts.append(server_tables(_frame, markdown))
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


# ----------------------------------------------------------------------------- two files: changes


def change_table(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """One line per ``CHANGE_KEY`` found in either results frame (keys must be unique in each).

    Columns: the key; ``median_ms``, ``ci_low_ms``, ``ci_high_ms``, ``status`` and ``reason`` with
    suffixes ``_old`` and ``_new``; ``presence`` (``both``, ``added``: only in new, ``removed``: only
    in old); ``change`` (new / old median - 1, NaN unless ok in both); ``noise_known`` (both CIs
    present) and ``beyond_noise`` (the CIs do not overlap; False when unknown).
    """
    wanted = [*CHANGE_KEY, "latency_ms_median", *_CI, "status", "reason"]
    old, new = (frame[wanted].rename(columns=_RENAMED) for frame in (old, new))
    table = old.merge(
        new, on=CHANGE_KEY, how="outer", suffixes=("_old", "_new"), indicator="presence", sort=False
    )
    table["presence"] = table["presence"].map({"both": "both", "left_only": "removed", "right_only": "added"})
    both_ok = (table["status_old"] == "ok") & (table["status_new"] == "ok")
    table["change"] = (table["median_ms_new"] / table["median_ms_old"] - 1).where(both_ok)
    bounds = table[["ci_low_ms_old", "ci_high_ms_old", "ci_low_ms_new", "ci_high_ms_new"]]
    table["noise_known"] = both_ok & bounds.notna().all(axis=1)
    overlap = _overlap(*(table[c] for c in bounds.columns))
    table["beyond_noise"] = table["noise_known"] & ~overlap
    return _target_sorted(table, ["host", "runtime", "device", "timing", "execution_provider", "threads"])


# Scenarios a gate judges. ``offline`` rows are copies of a ``batch`` row and ``profile`` rows break
# the whole model down under a profiler (the layers are timed alone in ``batch``): gating them too
# listed one slowdown two or three times.
GATED_SCENARIOS = ("batch", "single-stream")
UNCOMPARED_SCENARIOS = ("server", "streams")  # left out of the two-file change table


def regressions(changes: pd.DataFrame, threshold_pct: float) -> pd.DataFrame:
    """Lines of ``change_table`` (of ``GATED_SCENARIOS``) slower by more than ``threshold_pct``
    percent and beyond noise, each measurement once.

    Where a file has no CIs (written before they existed), noise is unknown and the threshold alone
    decides: a gate should not pass because the evidence is missing.
    """
    slower = changes["change"] * 100 > threshold_pct
    gated = changes["scenario"].isin(GATED_SCENARIOS)
    return changes[gated & slower & (changes["beyond_noise"] | ~changes["noise_known"])]


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
# The "where the time goes" table: ms per layer and their sums, all numbers.
_PROFILE_NUMBERS = (*PROFILE_SEGMENTS, "profiled sum", "standalone sum", "whole model")
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


def _describe(line: Mapping[str, Any]) -> str:
    """One line of a regression list: what was measured, old -> new median, change."""
    scenario = "" if line["scenario"] == "batch" else line["scenario"]
    what = [line["host"], scenario, line["target"], f"batch {line['batch_size']}", line["runtime"]]
    what += [line["device"]]
    what += [line["timing"], line["execution_provider"], f"{line['threads']} threads", line["precision"]]
    return (
        f"- {', '.join(str(w) for w in what if w)}: {_ms(line['median_ms_old'])} -> "
        f"{_ms(line['median_ms_new'])} ms ({_percent_change(line['change'])})"
    )


def parse_threshold(text: str) -> float:
    """``--fail-slower``: a percentage, ``10%`` or ``10`` (both 10 percent; ``0.1`` is 0.1 percent)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*%?\s*", text)
    if not match:
        raise CompareError(
            f"--fail-slower {text!r}: expected a percentage such as 10% or 10 (both mean 10 percent)"
        )
    return float(match.group(1))


# ----------------------------------------------------------------------------- selection, CLI


def select(df: pd.DataFrame, targets=None, devices=None, batch_sizes=None) -> pd.DataFrame:
    """Rows of the given targets, devices and batch sizes (None: all). The per-layer ``profile``
    rows are a breakdown of the whole model, so they go with target ``model``."""
    keep = pd.Series(True, index=df.index)
    for column, wanted in (("target", targets), ("device", devices), ("batch_size", batch_sizes)):
        if wanted:
            match = df[column].isin(wanted)
            if column == "target" and "model" in wanted and "scenario" in df.columns:
                match |= df["scenario"] == "profile"
            keep &= match
    return df[keep]


def skipped_summary(df: pd.DataFrame) -> str:
    """One line per distinct skip reason with its count (for tables that hide skipped rows)."""
    skipped = df[df["status"] == "skipped"]
    counts = skipped.groupby("reason", sort=True).size()
    return "\n".join(f"- skipped ({n} combinations): {reason}" for reason, n in counts.items())


def _load(path: str, args: argparse.Namespace) -> pd.DataFrame:
    """``read_results(path)`` narrowed to the selected targets, devices and batch sizes."""
    from bench.options import parse_list
    from bench.results import ResultsError, read_results

    df = read_results(path)
    df = select(
        df,
        parse_list(args.targets, str, "--targets"),
        parse_list(args.devices, str, "--devices"),
        parse_list(args.batch_sizes, int, "--batch-sizes"),
    )
    if df.empty:
        raise ResultsError(f"{path}: no rows match the selection")
    return df


def _unique_keys(df: pd.DataFrame, path: str) -> pd.DataFrame:
    from bench.results import ResultsError

    repeated = df[df.duplicated(CHANGE_KEY, keep=False)]
    if not repeated.empty:
        first = repeated.iloc[0]
        raise ResultsError(
            f"{path}: {len(repeated)} rows share a measurement key, e.g. "
            f"{', '.join(f'{k}={first[k]}' for k in CHANGE_KEY)}; cannot tell which to compare"
        )
    return df


def _check_arguments(paths: Iterable[str], merge: bool, threshold: float | None) -> None:
    count = len(list(paths))
    if threshold is not None and merge:
        raise CompareError("--fail-slower compares two files (OLD.csv NEW.csv); it does not go with --merge")
    if threshold is not None and count != 2:
        raise CompareError(f"--fail-slower needs two results CSVs, OLD.csv NEW.csv; got {count}")
    if count > 2 and not merge:
        raise CompareError(
            f"{count} results CSVs: give one (tables), two (OLD.csv NEW.csv: what changed) "
            "or --merge to show several (say, one per host) as one set of tables"
        )


_TIMES = ("latency_ms_median", "latency_ms_median_ci_low", "latency_ms_median_ci_high")


def normalize_by_peak(
    old: pd.DataFrame, new: pd.DataFrame, old_machine: Machine, new_machine: Machine, new_path: str
) -> tuple[pd.DataFrame, str]:
    """``new`` with each line's times scaled by NEW's peak / OLD's peak of its device and precision,
    so a change compares time x the run's own peak (a runtime that keeps its share of its machine's
    peak does not change), and a line saying so. CompareError if a device timed in both lacks a peak.

    A precision without a measured roof in both runs (``Roofline.precision_peaks``; runs written
    before those existed have none) is scaled by the float32 peaks, and the line says which.
    """
    ok_old, ok_new = old[old["status"] == "ok"], new[new["status"] == "ok"]
    timed = sorted(set(ok_old["device"]) & set(ok_new["device"]))
    for device in timed:
        for machine in (old_machine, new_machine):
            if math.isnan(machine.peak(device)):
                raise CompareError(
                    f"--normalize peak: {machine.source} has no measured {device} peak "
                    "(a run with --no-roofline, or written before rooflines); cannot normalize its "
                    f"{device} times"
                )
    factors, by_fp32 = {}, set()
    pairs = ok_new.loc[ok_new["device"].isin(timed), ["device", "precision"]].drop_duplicates()
    for device, precision in sorted(pairs.itertuples(index=False, name=None)):
        own = all(m.has_precision_peak(device, precision) for m in (old_machine, new_machine))
        used = precision if own else "fp32"
        if not own:
            by_fp32.add(f"{device} {precision}")
        factors[device, precision] = new_machine.peak(device, used) / old_machine.peak(device, used)
    keys = pd.MultiIndex.from_frame(new[["device", "precision"]])
    scale = pd.Series([factors.get(key, 1.0) for key in keys], index=new.index)
    scaled = new.assign(**{column: new[column] * scale for column in _TIMES})

    def ratio(device: str, precision: str) -> str:
        a, b = new_machine.peak(device, precision), old_machine.peak(device, precision)
        label = device if precision == "fp32" else f"{device} {precision}"
        return f"{label} x{a / b:.3g} ({a:,.0f} / {b:,.0f} GFLOP/s)"

    shown = [(d, "fp32") for d in timed] + sorted(
        k for k in factors if k[1] != "fp32" and " ".join(k) not in by_fp32
    )
    note = f"normalized by peak: {new_path}'s times x (its peak / OLD's peak): {', '.join(ratio(*k) for k in shown)}"
    if by_fp32:
        note += f"; {', '.join(sorted(by_fp32))} lines by the float32 peak (no roof of their precision in both runs)"
    return scaled, note


def _machine_lines(args: argparse.Namespace, old: pd.DataFrame, new: pd.DataFrame):
    """(the two runs' machines, the text saying how they differ, why raw times cannot be gated)."""
    from bench.machine import MachineError, differences, machine_of_run

    old_path, new_path = args.results
    try:
        old_machine, new_machine = machine_of_run(old_path, old), machine_of_run(new_path, new)
    except MachineError as e:
        if args.fail_slower is not None or args.normalize:
            raise
        return None, None, f"machines unknown: {e}\n\n", []  # the change table does not need them
    text = ""
    if old_machine.describe() != new_machine.describe():
        text = f"OLD {old_machine.describe()}\nNEW {new_machine.describe()}\n\n"
    return old_machine, new_machine, text, differences(old_machine, new_machine)


def _cmd_changes(
    args: argparse.Namespace, old: pd.DataFrame, new: pd.DataFrame, threshold: float | None
) -> int:
    old_path, new_path = args.results
    # server rows (one per measured rate) and streams rows (one per stream count) repeat the key;
    # their own tables compare them (docs/scenarios.md), not this one
    old, new = (frame[~frame["scenario"].isin(UNCOMPARED_SCENARIOS)] for frame in (old, new))
    old, new = _unique_keys(old, old_path), _unique_keys(new, new_path)
    old_machine, new_machine, machines, reasons = _machine_lines(args, old, new)
    notes = []
    if args.normalize == "peak":
        new, note = normalize_by_peak(old, new, old_machine, new_machine, new_path)
        notes.append(note)
    elif threshold is not None and reasons:
        if not args.allow_different_machines:
            print(machines, end="")
            raise CompareError(
                f"--fail-slower: not gating raw times of {old_path} and {new_path}: {'; '.join(reasons)}. "
                "--normalize peak compares time x each run's own peak; --allow-different-machines "
                "gates raw times anyway"
            )
        print(
            f"deepmnist compare: warning: gating raw times although {'; '.join(reasons)} "
            "(--allow-different-machines)",
            file=sys.stderr,
        )
    changes = change_table(old, new)
    if args.hide_skipped:  # drop lines skipped (or absent) on both sides
        skipped = (
            changes[["status_old", "status_new"]].isin(["skipped"])
            | changes[["status_old", "status_new"]].isna()
        )
        changes = changes[~skipped.all(axis=1)]
    text = f"{old_path} -> {new_path}\n\n" + machines + "".join(f"{note}\n\n" for note in notes)
    text += render_changes(changes, args.markdown) if not changes.empty else ""
    if threshold is None:
        print(text, end="")
        return 0
    if not changes["change"].notna().any():
        print(text, end="")
        raise CompareError(
            f"--fail-slower: no line was measured (ok) in both {old_path} and {new_path}; nothing to gate"
        )
    slower = regressions(changes, threshold)
    basis = " in time x peak" if args.normalize == "peak" else ""
    gated = (
        "" if changes["scenario"].isin(GATED_SCENARIOS).all() else f" ({', '.join(GATED_SCENARIOS)} lines)"
    )
    if slower.empty:
        text += f"\nno line slower by more than {threshold:g}%{basis} beyond noise{gated}\n"
    else:
        text += f"\nslower by more than {threshold:g}%{basis} beyond noise{gated} ({len(slower)}):\n"
        text += "\n".join(_describe(line) for line in slower.to_dict("records")) + "\n"
    print(text, end="")
    return 1 if not slower.empty else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.durations import read_durations, render_durations

    threshold = parse_threshold(args.fail_slower) if args.fail_slower is not None else None
    _check_arguments(args.results, args.merge, threshold)
    pair_only = [
        f
        for f, on in (
            ("--normalize", args.normalize),
            ("--allow-different-machines", args.allow_different_machines),
        )
        if on
    ]
    if pair_only and (args.merge or len(args.results) != 2):
        raise CompareError(f"{pair_only[0]} compares two files (OLD.csv NEW.csv), without --merge")
    frames = [_load(path, args) for path in args.results]
    if len(frames) == 2 and not args.merge:
        return _cmd_changes(args, *frames, threshold)
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    shown = df[df["status"] != "skipped"] if args.hide_skipped else df
    text = render(shown, markdown=args.markdown) if not shown.empty else ""
    if args.hide_skipped and (df["status"] == "skipped").any():
        text += ("\n" if text else "") + skipped_summary(df) + "\n"
    durations = read_durations(args.results[0]) if len(args.results) == 1 else None
    if durations is not None:  # the whole run's, whatever the selection
        text += ("\n" if text else "") + render_durations(durations, markdown=args.markdown)
    print(text, end="")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare",
        help="print results CSVs as comparison tables, or what changed between two",
        description="One results CSV: comparison tables, per target and batch size, of the median "
        "latency with its 95%% confidence interval, how it ranks against the fastest line (or within "
        "noise of it), throughput, GFLOP/s and speedup vs torch-eager of each runtime and device. "
        "Two (OLD.csv NEW.csv): the change of each line's median and whether it is beyond noise; "
        "with --fail-slower, exit status 1 if a line got slower beyond noise. --merge: several CSVs "
        "(say, one per host) as one set of tables.",
    )
    p.add_argument(
        "results",
        metavar="RESULTS.csv",
        nargs="+",
        help="CSVs written by the benchmark (results/*.csv): one, two (OLD NEW) or, with --merge, several",
    )
    p.add_argument("--markdown", action="store_true", help="Markdown tables instead of plain text")
    p.add_argument("--targets", help="only these targets (comma-separated)")
    p.add_argument("--devices", help="only these devices (comma-separated)")
    p.add_argument("--batch-sizes", help="only these batch sizes (comma-separated)")
    p.add_argument(
        "--hide-skipped", action="store_true", help="one line per skip reason instead of skipped rows"
    )
    p.add_argument(
        "--merge", action="store_true", help="show several CSVs as one set of tables (host column)"
    )
    p.add_argument(
        "--fail-slower",
        metavar="PCT",
        help="with OLD.csv NEW.csv: exit 1 if a line is slower by more than PCT percent (10%% or 10) "
        "and beyond noise (the CIs of its medians do not overlap)",
    )
    p.add_argument(
        "--normalize",
        choices=["peak"],
        help="with OLD.csv NEW.csv: compare time x each run's own measured peak of the device "
        "(from its sidecar), so runs of different machines can be gated",
    )
    p.add_argument(
        "--allow-different-machines",
        action="store_true",
        help="with --fail-slower: gate raw times even when the machines or their measured peaks "
        "differ (a warning says so)",
    )
    p.set_defaults(func=cmd_compare)
    return p
