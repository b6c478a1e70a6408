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


# ----------------------------------------------------------------------------- server

_SERVER_SERIES = ["host", "runtime", "precision", "device"]


def server_best(df: pd.DataFrame) -> pd.DataFrame:
    """Per runtime x device of the server scenario: the highest target rate whose p99 stays under
    the run's bound (NaN when none does), its p99 and achieved rate, and how many rates ran."""
    from bench.server import highest_under_bound

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


def server_tables(df: pd.DataFrame, markdown: bool = False) -> str:
    """The answer (highest rate under the bound per runtime), then every rate; "" without server rows."""
    from bench.compare import _ms_ci, _tabulate, _title

    best = server_best(df)
    if best.empty:
        return ""
    bound = best["bound_ms"].iloc[0]
    answer = {
        "runtime": best["runtime"].tolist(),
        "precision": best["precision"].tolist(),
        "device": best["device"].tolist(),
        f"highest queries/s with p99 < {bound:g} ms": [_fmt(v, ",.0f") or "none" for v in best["best_qps"]],
        "achieved queries/s": [_fmt(v, ",.0f") for v in best["achieved_qps"]],
        "p99 ms there": [_fmt(v, ".3g") for v in best["p99_ms"]],
        "rates run": [str(v) for v in best["rates"]],
        "highest rate tried": [_fmt(v, ",.0f") for v in best["top_qps"]],
    }
    rows = df[(df["status"] == "ok") & (df["scenario"] == "server")].sort_values(
        ["device", "runtime", "target_qps"], kind="stable"
    )
    detail = {
        "runtime": rows["runtime"].tolist(),
        "device": rows["device"].tolist(),
        "target q/s": [_fmt(v, ",.0f") for v in rows["target_qps"]],
        "achieved q/s": [_fmt(v, ",.0f") for v in rows["achieved_qps"]],
        "queries": [str(v) for v in rows["rounds"]],
        "p50 ms": [_fmt(v, ".3g") for v in rows["latency_ms_median"]],
        "p99 ms [95% CI]": [
            _ms_ci(*v)
            for v in zip(
                rows["latency_ms_p99"],
                rows["latency_ms_p99_ci_low"],
                rows["latency_ms_p99_ci_high"],
                strict=True,
            )
        ],
        "p99.9 ms [95% CI]": [
            _ms_ci(*v)
            for v in zip(
                rows["latency_ms_p999"],
                rows["latency_ms_p999_ci_low"],
                rows["latency_ms_p999_ci_high"],
                strict=True,
            )
        ],
        f"p99 < {bound:g} ms": [
            "" if math.isnan(p) else "yes" if p < b else "no"
            for p, b in zip(rows["latency_ms_p99"], rows["latency_bound_ms"], strict=True)
        ],
        "note": rows["note"].fillna("").tolist(),
    }
    return "\n\n".join(
        [
            _title(
                f"server: highest arrival rate whose p99 stays under {bound:g} ms (batch-1 queries)", markdown
            ),
            _tabulate(answer, markdown),
            _title("server: every rate (latency from scheduled arrival to result)", markdown),
            _tabulate(detail, markdown),
        ]
    )


def server_chart(ok: pd.DataFrame, path, colours) -> object | None:
    """p99 latency against achieved queries/s, one line per runtime x device, the bound dashed."""
    from bench.plots import _OTHER_COLOUR, _figure, _save, _where

    if not {"latency_ms_p99", "achieved_qps", "latency_bound_ms"} <= set(ok.columns):
        return None  # a file written before the server scenario existed
    data = ok[(ok["scenario"] == "server") & ok["latency_ms_p99"].notna()]
    if data.empty:
        return None
    fig = _figure()
    ax = fig.subplots()
    for (runtime, device), line in data.sort_values("target_qps").groupby(["runtime", "device"], sort=False):
        ax.plot(line["achieved_qps"], line["latency_ms_p99"], marker="o", color=colours.get(runtime, _OTHER_COLOUR),
                label=f"{runtime} ({device})")  # fmt: skip
    bound = float(data["latency_bound_ms"].iloc[0])
    ax.axhline(bound, color="black", linestyle="--", linewidth=1, label=f"bound {bound:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("achieved queries/s (Poisson arrivals, batch 1)")
    ax.set_ylabel("p99 latency, ms (scheduled arrival to result)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"Deep MNIST server scenario: {_where(data)}", fontsize=10)
    return _save(fig, path)


# ----------------------------------------------------------------------------- threads x streams


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


def settings_tables(df: pd.DataFrame, markdown: bool = False) -> str:
    """Which threads x streams setting is fastest, per runtime, then every setting; "" without rows."""
    from bench.compare import _ms_ci, _tabulate, _title

    answer = settings_answer(df)
    if answer.empty:
        return ""
    cells = {
        "runtime": answer["runtime"].tolist(),
        "precision": answer["precision"].tolist(),
        "device": answer["device"].tolist(),
        "settings tried": [str(v) for v in answer["settings"]],
        "lowest batch-1 latency: threads x streams": [
            f"{t} x {s}" for t, s in zip(answer["latency_threads"], answer["latency_streams"], strict=True)
        ],
        "p50 ms": [_fmt(v, ".3g") for v in answer["latency_ms"]],
        "highest throughput: threads x streams": [
            f"{t} x {s}"
            for t, s in zip(answer["throughput_threads"], answer["throughput_streams"], strict=True)
        ],
        "queries/s": [_fmt(v, ",.0f") for v in answer["throughput_qps"]],
    }
    rows = df[(df["status"] == "ok") & (df["scenario"] == "streams")].sort_values(
        ["device", "runtime", "threads", "streams"], kind="stable"
    )
    detail = {
        "runtime": rows["runtime"].tolist(),
        "device": rows["device"].tolist(),
        "threads": [str(v) for v in rows["threads"]],
        "streams": [str(int(v)) for v in rows["streams"]],
        "queries": [str(v) for v in rows["rounds"]],
        "queries/s": [_fmt(v, ",.0f") for v in rows["throughput_ips"]],
        "p50 ms [95% CI]": [
            _ms_ci(*v)
            for v in zip(
                rows["latency_ms_median"],
                rows["latency_ms_median_ci_low"],
                rows["latency_ms_median_ci_high"],
                strict=True,
            )
        ],
        "p99 ms [95% CI]": [
            _ms_ci(*v)
            for v in zip(
                rows["latency_ms_p99"],
                rows["latency_ms_p99_ci_low"],
                rows["latency_ms_p99_ci_high"],
                strict=True,
            )
        ],
        "CPU ms / query": [_fmt(v, ".3g") for v in rows["cpu_ms_per_call"]],
        "note": rows["note"].fillna("").tolist(),
    }
    return "\n\n".join(
        [
            _title(
                "threads x streams: the fastest setting per runtime (whole model, batch-1 queries)", markdown
            ),
            _tabulate(cells, markdown),
            _title("threads x streams: every setting", markdown),
            _tabulate(detail, markdown),
        ]
    )
