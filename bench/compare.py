"""``deepmnist compare RESULTS.csv [--markdown]``: the results as comparison tables.

One table per target and batch size, one line per runtime x device (x timing, x execution
provider, x threads), fastest first. Speedup is throughput relative to ``torch-eager`` on the same
device, timing kind and thread count. Skipped and failed rows are listed with their reason.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

import pandas as pd
from tabulate import tabulate

BASELINE = "torch-eager"
_KEY = ["target", "batch_size", "device", "timing", "threads"]  # what a speedup compares like with like
TABLE_COLUMNS = [
    "target",
    "batch_size",
    "runtime",
    "device",
    "timing",
    "execution_provider",
    "threads",
    "median_ms",
    "throughput_ips",
    "gflops",
    "speedup",
    "accuracy_pct",
    "agreement_pct",
    "status",
    "reason",
]


def comparison_tables(df: pd.DataFrame) -> pd.DataFrame:
    """From a results frame (``read_results``), one line per measurement with the compared numbers.

    Columns ``TABLE_COLUMNS``; sorted by target ("model" first, then the order in the file),
    batch size, then median latency (fastest first; skipped and failed rows last).
    """
    table = df.rename(columns={"latency_ms_median": "median_ms"}).assign(
        accuracy_pct=df["accuracy"] * 100,
        agreement_pct=df["agreement"] * 100,
    )
    ok = table["status"] == "ok"
    baseline = (
        table.loc[ok & (table["runtime"] == BASELINE), [*_KEY, "throughput_ips"]]
        .drop_duplicates(_KEY)
        .rename(columns={"throughput_ips": "baseline_ips"})
    )
    table = table.merge(baseline, on=_KEY, how="left")
    table["speedup"] = table["throughput_ips"] / table["baseline_ips"]
    targets = ["model", *(t for t in dict.fromkeys(table["target"]) if t != "model")]
    table["_order"] = table["target"].map({t: i for i, t in enumerate(targets)})
    table = table.sort_values(["_order", "batch_size", "median_ms"], na_position="last", kind="stable")
    return table[TABLE_COLUMNS].reset_index(drop=True)


def _number(fmt: str, suffix: str = "") -> Callable[[float], str]:
    return lambda value: "" if math.isnan(value) else format(value, fmt) + suffix


def _ms(value: float) -> str:
    # 4 significant digits (0.01234, 2.500, 123.4); no exponent for the (unlikely) calls over a second
    return _number("#.4g" if value < 1000 else ",.0f")(value)


_SHOWN: dict[str, tuple[str, Callable[[Any], str]]] = {  # heading -> (column, formatter), in order
    "runtime": ("runtime", str),
    "device": ("device", str),
    "timing": ("timing", str),
    "provider": ("execution_provider", lambda v: v.removesuffix("ExecutionProvider")),
    "threads": ("threads", str),
    "median ms": ("median_ms", _ms),
    "images/s": ("throughput_ips", _number(",.0f")),
    "GFLOP/s": ("gflops", _number(".2f")),
    f"vs {BASELINE}": ("speedup", _number(".2f", "x")),
    "accuracy %": ("accuracy_pct", _number(".2f")),
    "agreement %": ("agreement_pct", _number(".2f")),
}
_NUMERIC = {"threads", "median ms", "images/s", "GFLOP/s", f"vs {BASELINE}", "accuracy %", "agreement %"}


def _status(status: str, reason: str) -> str:
    # one line: a multi-line reason (say, an exception's message) would break the table
    return status if status == "ok" else f"{status}: {' '.join(reason.split())}"


def _group_table(group: pd.DataFrame, markdown: bool) -> str:
    shown = {heading: [fmt(v) for v in group[column]] for heading, (column, fmt) in _SHOWN.items()}
    # columns that say nothing in this group: all-"compute" timing, no provider, no accuracy (layers)
    if (group["timing"] == "compute").all():
        del shown["timing"]
    for heading in ("provider", "accuracy %", "agreement %"):
        if not any(shown[heading]):
            del shown[heading]
    shown["status"] = [_status(s, r) for s, r in zip(group["status"], group["reason"], strict=True)]
    if markdown:
        shown = {h: [cell.replace("|", "\\|") for cell in cells] for h, cells in shown.items()}
    align = ["right" if h in _NUMERIC else "left" for h in shown]
    return tabulate(
        shown,
        headers="keys",
        tablefmt="pipe" if markdown else "simple",  # pipe: what DataFrame.to_markdown writes
        disable_numparse=True,
        colalign=align,
    )


def render(df: pd.DataFrame, markdown: bool = False) -> str:
    """Text of the tables, a heading per target and batch size; ``df`` from ``comparison_tables``
    (a results frame straight from ``read_results`` is converted first)."""
    if "latency_ms_median" in df.columns:
        df = comparison_tables(df)
    parts = []
    for (target, batch), group in df.groupby(["target", "batch_size"], sort=False):
        title = f"{target}, batch {batch}"
        parts.append(f"### {title}" if markdown else f"{title}\n{'=' * len(title)}")
        parts.append(_group_table(group, markdown))
    return "\n\n".join(parts) + "\n"


def select(df: pd.DataFrame, targets=None, devices=None, batch_sizes=None) -> pd.DataFrame:
    """Rows of the given targets, devices and batch sizes (None: all)."""
    keep = pd.Series(True, index=df.index)
    for column, wanted in (("target", targets), ("device", devices), ("batch_size", batch_sizes)):
        if wanted:
            keep &= df[column].isin(wanted)
    return df[keep]


def skipped_summary(df: pd.DataFrame) -> str:
    """One line per distinct skip reason with its count (for tables that hide skipped rows)."""
    skipped = df[df["status"] == "skipped"]
    counts = skipped.groupby("reason", sort=True).size()
    return "\n".join(f"- skipped ({n} combinations): {reason}" for reason, n in counts.items())


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.core import parse_list
    from bench.results import ResultsError, read_results

    df = read_results(args.results)
    df = select(df, parse_list(args.targets), parse_list(args.devices), parse_list(args.batch_sizes, int))
    if df.empty:
        raise ResultsError(f"{args.results}: no rows match the selection")
    shown = df[df["status"] != "skipped"] if args.hide_skipped else df
    text = render(shown, markdown=args.markdown) if not shown.empty else ""
    if args.hide_skipped and (df["status"] == "skipped").any():
        text += ("\n" if text else "") + skipped_summary(df) + "\n"
    print(text, end="")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare",
        help="print a results CSV as comparison tables",
        description="Print a results CSV as comparison tables: per target and batch size, the median "
        "latency, throughput, GFLOP/s and speedup vs torch-eager of each runtime and device.",
    )
    p.add_argument("results", metavar="RESULTS.csv", help="a CSV written by the benchmark (results/*.csv)")
    p.add_argument("--markdown", action="store_true", help="Markdown tables instead of plain text")
    p.add_argument("--targets", help="only these targets (comma-separated)")
    p.add_argument("--devices", help="only these devices (comma-separated)")
    p.add_argument("--batch-sizes", help="only these batch sizes (comma-separated)")
    p.add_argument(
        "--hide-skipped", action="store_true", help="one line per skip reason instead of skipped rows"
    )
    p.set_defaults(func=cmd_compare)
    return p
