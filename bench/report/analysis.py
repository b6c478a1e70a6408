"""The comparisons behind ``deepmnist compare``, as pandas frames: frames in, frames out, no text.

- ``comparison_tables``: one results frame (``bench.results.store.read_results``) -> one line per
  measurement with its speedup over ``BASELINE`` (same ``_KEY``), its distance from the fastest line
  of its peers (``_PEERS``) and whether its median's 95% CI overlaps the fastest one's.
- ``change_table`` / ``regressions``: two results frames -> one line per ``CHANGE_KEY`` with old and
  new median, the change and whether it is beyond noise; the lines a ``--fail-slower`` gate fails
  (``regressions``, ``broken_lines``, ``missing_lines``).
- ``normalize_by_peak``: times scaled by the ratio of the two runs' measured peaks.
- ``profile_breakdown``: the profiled ms of each layer beside the standalone and whole-model medians.
- ``parity_summary``: per runtime x device x precision, the whole model's worst difference from
  eager PyTorch, argmax agreement and accuracy over its ok lines.
- ``full_loop_lines``, ``server_best``, ``settings_answer``: the frames behind the scenario tables
  (``bench.report.scenario_tables``): the full loop beside the preloaded tensor, the highest server rate under
  the bound, the fastest threads x streams setting.
- ``select``, ``repeated_keys``: the selection and the check of the command's input.

The text of these frames (tables, notes) is ``bench.report.tables``; the command is ``bench.report.compare``.
Torch-free, like both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pandas as pd

from bench.results.columns import NAMES, ROW_KEY
from bench.results.store import SCENARIOS
from models.layers import LAYER_NAMES, PROFILE_SEGMENTS

if TYPE_CHECKING:
    from bench.results.machine import Machine

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
# What identifies one measurement across two results files (bench.results.columns.ROW_KEY within one).
CHANGE_KEY = [name for name in ROW_KEY if name not in ("run_id", "target_qps", "streams")]
_CI = {"latency_ms_median_ci_low": "ci_low_ms", "latency_ms_median_ci_high": "ci_high_ms"}
_RENAMED = {"latency_ms_median": "median_ms", **_CI}
# The comparison frame: every CSV column (bench.results.columns; the median and its CI renamed), then the
# columns computed here.
TABLE_COLUMNS = [
    *(_RENAMED.get(name, name) for name in NAMES),
    "vs_fastest",  # median / fastest median - 1 (0.23: 23% slower); NaN unless ok
    "fastest",  # the fastest ok line of its peers
    "within_noise",  # its CI overlaps the fastest line's CI (False when either CI is unknown)
    "speedup",  # throughput / the baseline's throughput on the same host, device, timing, threads
]


def _overlap(low_a: pd.Series, high_a: pd.Series, low_b: pd.Series, high_b: pd.Series) -> pd.Series:
    """Whether intervals [low_a, high_a] and [low_b, high_b] overlap; False if any bound is NaN."""
    return (low_a <= high_b) & (low_b <= high_a)


def comparison_tables(df: pd.DataFrame) -> pd.DataFrame:
    """From a results frame (``read_results``), one line per measurement with the compared numbers.

    Columns ``TABLE_COLUMNS``; sorted by target ("model" first, then the order in the file),
    batch size, then median latency (fastest first; skipped and failed rows last).
    """
    table = df.rename(columns=_RENAMED).assign(_line=range(len(df)))
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

    targets = ["model", *(t for t in dict.fromkeys(table["target"]) if t != "model")]
    order = table["target"].map({t: i for i, t in enumerate(targets)})
    scenario = table["scenario"].map({s: i for i, s in enumerate(SCENARIOS)})
    return table.assign(_scenario=scenario, _order=order).sort_values(
        ["_scenario", "_order", "batch_size", *then], na_position="last", kind="stable"
    )


def profile_breakdown(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per host x profiled batch size x runtime x device of the ``profile`` rows of a
    ``comparison_tables`` frame: each layer's profiled ms per call inside the whole model
    (``PROFILE_SEGMENTS`` columns), ``profiled_sum``, the sum of the standalone layer timings
    (``standalone_sum``: ``batch`` rows, compute timing, same batch; NaN unless every layer has one)
    and the whole-model median (``whole_model``), all ms. A line none of whose rows is ok has its
    first row's ``status`` and ``reason`` and NaN numbers."""
    profile = comparison[comparison["scenario"] == "profile"]
    batch_rows = comparison[(comparison["scenario"] == "batch") & (comparison["status"] == "ok")]
    lines = []
    for (host, batch, runtime, device), rows in profile.groupby(
        ["host", "batch_size", "runtime", "device"], sort=False
    ):
        ok = rows[rows["status"] == "ok"]
        line = {"host": host, "batch_size": batch, "runtime": runtime, "device": device}
        if ok.empty:
            lines.append({**line, "status": rows["status"].iloc[0], "reason": rows["reason"].iloc[0]})
            continue
        ms = dict(zip(ok["target"], ok["median_ms"], strict=True))
        for segment in PROFILE_SEGMENTS:
            line[segment] = ms.get(segment, math.nan)
        line["profiled_sum"] = sum(ms.get(segment, 0.0) for segment in PROFILE_SEGMENTS)
        same = batch_rows[
            (batch_rows["host"] == host) & (batch_rows["runtime"] == runtime)
            & (batch_rows["device"] == device) & (batch_rows["batch_size"] == batch)
            & (batch_rows["timing"] == "compute")
        ]  # fmt: skip
        layers = same[same["target"].isin(LAYER_NAMES)]
        complete = layers["target"].nunique() == len(LAYER_NAMES)
        line["standalone_sum"] = layers["median_ms"].sum() if complete else math.nan
        whole = same.loc[same["target"] == "model", "median_ms"]
        line["whole_model"] = whole.iloc[0] if len(whole) else math.nan
        lines.append({**line, "status": "ok", "reason": ""})
    numbers = [*PROFILE_SEGMENTS, "profiled_sum", "standalone_sum", "whole_model"]
    columns = ["host", "batch_size", "runtime", "device", *numbers, "status", "reason"]
    return pd.DataFrame(lines, columns=columns).astype(dict.fromkeys(numbers, float))


PARITY_KEY = ["host", "runtime", "device", "precision", "execution_provider"]


def parity_summary(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per ``PARITY_KEY`` of the ok whole-model lines of a ``comparison_tables`` frame (every
    scenario, timing, batch size and thread count): the largest ``max_abs_diff`` (each line's is
    over its own batch of test images, against eager PyTorch on the CPU), the lowest
    ``agreement`` and ``accuracy`` (each over all 10,000 test images) and the
    ``batch_sizes`` those lines ran, as text ("1, 64, 256"). Lines with none of the three figures
    (profile rows) are left out. Sorted by that largest difference, then runtime."""
    figures = ["max_abs_diff", "agreement", "accuracy"]
    model = comparison[(comparison["target"] == "model") & (comparison["status"] == "ok")]
    model = model[model[figures].notna().any(axis=1)]
    summary = (
        model.groupby(PARITY_KEY, sort=False)
        .agg(
            max_abs_diff=("max_abs_diff", "max"),
            agreement=("agreement", "min"),
            accuracy=("accuracy", "min"),
            batch_sizes=("batch_size", lambda b: ", ".join(str(n) for n in sorted(set(b)))),
        )
        .reset_index()
    )
    return summary.sort_values(["max_abs_diff", "runtime"], na_position="last", kind="stable").reset_index(
        drop=True
    )


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


BROKEN = ("failed", "crashed", "timeout")  # statuses of a line that ran and did not give a measurement


def broken_lines(changes: pd.DataFrame) -> pd.DataFrame:
    """Lines of ``change_table`` (of ``GATED_SCENARIOS``) ok in OLD and failed, crashed or timed
    out in NEW: a gate fails on them whatever the threshold."""
    gated = changes["scenario"].isin(GATED_SCENARIOS)
    return changes[gated & (changes["status_old"] == "ok") & changes["status_new"].isin(BROKEN)]


def missing_lines(changes: pd.DataFrame) -> pd.DataFrame:
    """Lines of ``change_table`` (of ``GATED_SCENARIOS``) measured (ok) in OLD and absent from NEW
    or skipped there: NEW no longer measures them. (``offline`` lines are left out with the other
    ungated scenarios: their batch size is the best one of each run, so it moves between runs.)"""
    gated = changes["scenario"].isin(GATED_SCENARIOS)
    gone = (changes["presence"] == "removed") | (changes["status_new"] == "skipped")
    return changes[gated & (changes["status_old"] == "ok") & gone]


def repeated_keys(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of a results frame that share their ``CHANGE_KEY`` with another row (``change_table``
    cannot tell which to compare)."""
    return df[df.duplicated(CHANGE_KEY, keep=False)]


_TIMES = ("latency_ms_median", "latency_ms_median_ci_low", "latency_ms_median_ci_high")


def peak_precisions(
    old: pd.DataFrame, new: pd.DataFrame, old_machine: Machine, new_machine: Machine
) -> dict[tuple[str, str], str]:
    """(device, precision) of each ok line of ``new`` on a device with ok lines in both frames ->
    the precision whose peaks scale it: its own where both runs measured a roof of it
    (``Roofline.precision_peaks``; runs written before those existed have none), else ``fp32``.
    Sorted by device and precision."""
    ok_old, ok_new = old[old["status"] == "ok"], new[new["status"] == "ok"]
    timed = set(ok_old["device"]) & set(ok_new["device"])
    pairs = ok_new.loc[ok_new["device"].isin(timed), ["device", "precision"]].drop_duplicates()
    return {
        (device, precision): precision
        if all(m.has_precision_peak(device, precision) for m in (old_machine, new_machine))
        else "fp32"
        for device, precision in sorted(pairs.itertuples(index=False, name=None))
    }


def normalize_by_peak(
    new: pd.DataFrame, old_machine: Machine, new_machine: Machine, used: dict[tuple[str, str], str]
) -> pd.DataFrame:
    """``new`` with each line's times (median and its CI) x NEW's peak / OLD's peak of its device in
    the precision ``used`` gives it (``peak_precisions``; lines not in it unscaled), so a change
    compares time x the run's own peak: a runtime that keeps its share of its machine's peak does not
    change."""
    factors = {key: new_machine.peak(key[0], p) / old_machine.peak(key[0], p) for key, p in used.items()}
    keys = pd.MultiIndex.from_frame(new[["device", "precision"]])
    scale = pd.Series([factors.get(key, 1.0) for key in keys], index=new.index)
    return new.assign(**{column: new[column] * scale for column in _TIMES})


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


# ----------------------------------------------------------------------------- scenarios (bench.report.scenario_tables draws them)

_FULL_LOOP_SERIES = ["host", "runtime", "precision", "device", "threads", "batch_size"]


def full_loop_lines(df: pd.DataFrame) -> pd.DataFrame:
    """Per runtime x device x batch size with an ok full_loop row: the preloaded-tensor median
    (timing compute), the full-loop median (ms) and full loop / preloaded."""
    ok = df[(df["status"] == "ok") & (df["scenario"] == "batch") & (df["target"] == "model")]
    full = ok[ok["timing"] == "full_loop"][[*_FULL_LOOP_SERIES, "latency_ms_median", "throughput_ips"]]
    pre = ok[ok["timing"] == "compute"][[*_FULL_LOOP_SERIES, "latency_ms_median", "throughput_ips"]]
    lines = full.merge(pre, on=_FULL_LOOP_SERIES, how="left", suffixes=("_full", "_pre"))
    lines["ratio"] = lines["latency_ms_median_full"] / lines["latency_ms_median_pre"]
    return lines.sort_values(["device", "batch_size", "latency_ms_median_full"], kind="stable")


_SERVER_SERIES = ["host", "runtime", "precision", "device"]


def server_best(df: pd.DataFrame) -> pd.DataFrame:
    """Per runtime x device of the server scenario: the highest target rate whose p99 stays under
    the run's bound (NaN when none does), its p99 and achieved rate, and how many rates ran."""
    ok = df[(df["status"] == "ok") & (df["scenario"] == "server")]
    lines = []
    for key, group in ok.groupby(_SERVER_SERIES, sort=False):
        bound = float(group["latency_bound_ms"].iloc[0])
        best = highest_under_bound(zip(group["target_qps"], group["latency_ms_p99"], strict=True), bound)
        line = dict(zip(_SERVER_SERIES, key, strict=True))
        at = group[group["target_qps"] == best].iloc[0] if best is not None else None
        line.update(
            bound_ms=bound,
            best_qps=best if best is not None else math.nan,
            p99_ms=at["latency_ms_p99"] if at is not None else math.nan,
            achieved_qps=at["achieved_qps"] if at is not None else math.nan,
            rates=len(group),
            top_qps=float(group["target_qps"].max()),
        )
        lines.append(line)
    columns = [*_SERVER_SERIES, "bound_ms", "best_qps", "p99_ms", "achieved_qps", "rates", "top_qps"]
    return pd.DataFrame(lines, columns=columns).sort_values("best_qps", ascending=False, na_position="last")


def settings_answer(df: pd.DataFrame) -> pd.DataFrame:
    """Per runtime x device of scenario streams: the threads x streams setting with the lowest
    median batch-1 latency and the one with the highest throughput (queries/s over all streams)."""
    ok = df[(df["status"] == "ok") & (df["scenario"] == "streams")]
    lines = []
    for (runtime, precision, device), group in ok.groupby(["runtime", "precision", "device"], sort=False):
        fast = group.loc[group["latency_ms_median"].idxmin()]
        busy = group.loc[group["throughput_ips"].idxmax()]
        lines.append({
            "runtime": runtime, "precision": precision, "device": device, "settings": len(group),
            "latency_threads": int(fast["threads"]), "latency_streams": int(fast["streams"]),
            "latency_ms": float(fast["latency_ms_median"]),
            "throughput_threads": int(busy["threads"]), "throughput_streams": int(busy["streams"]),
            "throughput_qps": float(busy["throughput_ips"]),
        })  # fmt: skip
    return pd.DataFrame(lines)


def highest_under_bound(lines: Iterable[tuple[float, float | None]], bound_ms: float) -> float | None:
    """The highest target rate whose p99 (ms; None: too few queries to tell) is under ``bound_ms``."""
    ok = [rate for rate, p99 in lines if p99 is not None and not math.isnan(p99) and p99 < bound_ms]
    return max(ok) if ok else None
