"""Tables of the scenarios beyond the fixed-batch rounds (docs/scenarios.md): the full loop beside
the preloaded-tensor timing. Input: a results frame (``bench.results.read_results``)."""

from __future__ import annotations

import math

import pandas as pd

_SERIES = ["host", "runtime", "precision", "device", "threads", "batch_size"]


def _fmt(value: float, spec: str) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def full_loop_lines(df: pd.DataFrame) -> pd.DataFrame:
    """Per runtime x device x batch size with an ok full_loop row: the preloaded-tensor median
    (timing compute), the full-loop median (ms) and full loop / preloaded."""
    ok = df[(df["status"] == "ok") & (df["scenario"] == "batch") & (df["target"] == "model")]
    full = ok[ok["timing"] == "full_loop"][[*_SERIES, "latency_ms_median", "throughput_ips"]]
    pre = ok[ok["timing"] == "compute"][[*_SERIES, "latency_ms_median", "throughput_ips"]]
    lines = full.merge(pre, on=_SERIES, how="left", suffixes=("_full", "_pre"))
    lines["ratio"] = lines["latency_ms_median_full"] / lines["latency_ms_median_pre"]
    return lines.sort_values(["device", "batch_size", "latency_ms_median_full"], kind="stable")


def full_loop_table(df: pd.DataFrame, markdown: bool = False) -> str:
    """ "" when the frame has no full-loop rows."""
    from bench.compare import _tabulate, _title

    lines = full_loop_lines(df)
    if lines.empty:
        return ""
    cells = {
        "runtime": lines["runtime"].tolist(),
        "precision": lines["precision"].tolist(),
        "device": lines["device"].tolist(),
        "batch": [str(b) for b in lines["batch_size"]],
        "preloaded ms": [_fmt(v, ".4g") for v in lines["latency_ms_median_pre"]],
        "full loop ms": [_fmt(v, ".4g") for v in lines["latency_ms_median_full"]],
        "full / preloaded": [_fmt(v, ".2f") + ("x" if not math.isnan(v) else "") for v in lines["ratio"]],
        "preloaded images/s": [_fmt(v, ",.0f") for v in lines["throughput_ips_pre"]],
        "full loop images/s": [_fmt(v, ",.0f") for v in lines["throughput_ips_full"]],
    }
    title = "full loop vs preloaded tensor: model (new uint8 batch per call, /255, reshape, run, argmax)"
    return _title(title, markdown) + "\n\n" + _tabulate(cells, markdown)
