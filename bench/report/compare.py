"""``deepmnist compare RESULTS.csv... [--markdown] [--merge] [--fail-slower PCT]``: results as tables.

One file: the run's tables (``bench.report.tables.render``), one per target and batch size, one line per
runtime x device, fastest first, with its speedup over ``torch-eager`` and how it ranks against the
fastest line or is within noise of it.

Two files (OLD.csv NEW.csv): a change table, one line per measurement key
(``bench.report.analysis.CHANGE_KEY``), with old and new median, the change and whether it is beyond noise
(the two CIs do not overlap); ``--fail-slower PCT`` makes it a regression gate, which also fails
on a line ok in OLD and failed, crashed or timed out in NEW, and on a line measured in OLD that NEW
lacks or skipped (unless ``--allow-missing``). The two runs'
machines (``bench.results.machine``) are printed, one line each, when they differ; when their
``machine_id`` or measured peaks differ (or nothing says they are the same), the gate refuses raw
times (exit 2) unless ``--normalize peak`` (time x each run's own peak) or
``--allow-different-machines``. ``--merge`` with several files (say, one per host) shows them as one
set of tables instead. One run given twice (two files of one ``run_id``) is refused.

This module is the command only: its arguments, reading the files, the checks of what it was given
and the exit status. The frames are ``bench.report.analysis``, their text ``bench.report.tables``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pandas as pd

from bench.report.analysis import (
    BROKEN,
    CHANGE_KEY,
    GATED_SCENARIOS,
    UNCOMPARED_SCENARIOS,
    broken_lines,
    change_table,
    missing_lines,
    normalize_by_peak,
    peak_precisions,
    regressions,
    repeated_keys,
    select,
)
from bench.report.durations import read_durations, render_durations
from bench.report.tables import (
    peak_note,
    regression_line,
    render,
    render_changes,
    skipped_summary,
    status_line,
)
from bench.results.machine import MachineError, differences, machine_of_run
from bench.results.store import ResultsError, check_distinct_runs, read_results
from models.errors import UserError, parse_list

if TYPE_CHECKING:
    from bench.results.machine import Machine


class CompareError(UserError):
    """Bad ``compare`` arguments: an impossible combination of files and options, a bad threshold."""


# The largest --fail-slower: a line 11x slower (beyond noise) still fails the gate. Beyond it a
# threshold lets every slowdown pass, and a typo of many digits (which float() reads as inf) too.
MAX_THRESHOLD = 1000.0


def parse_threshold(text: str) -> float:
    """``--fail-slower``: a percentage, ``10%`` or ``10`` (both 10 percent; ``0.1`` is 0.1 percent),
    at most ``MAX_THRESHOLD``."""
    shown = text if len(text) <= 24 else f"{text[:20]}... ({len(text)} characters)"
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*%?\s*", text)
    if not match:
        raise CompareError(
            f"--fail-slower {shown!r}: expected a percentage such as 10% or 10 (both mean 10 percent)"
        )
    value = float(match.group(1))
    if not value <= MAX_THRESHOLD:  # inf too
        raise CompareError(
            f"--fail-slower {shown!r}: at most {MAX_THRESHOLD:g} (percent); a larger threshold "
            "passes every slowdown"
        )
    return value


def _load(path: str, args: argparse.Namespace) -> pd.DataFrame:
    """``read_results(path)`` narrowed to the selected targets, devices and batch sizes."""

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

    repeated = repeated_keys(df)
    if not repeated.empty:
        first = repeated.iloc[0]
        raise ResultsError(
            f"{path}: {len(repeated)} rows share a measurement key, e.g. "
            f"{', '.join(f'{k}={first[k]}' for k in CHANGE_KEY)}; cannot tell which to compare"
        )
    return df


def _check_arguments(paths: Iterable[str], merge: bool, threshold: float | None, allow_missing: bool) -> None:
    count = len(list(paths))
    if allow_missing and threshold is None:
        raise CompareError("--allow-missing goes with --fail-slower (it lets the gate pass lines NEW lacks)")
    if threshold is not None and merge:
        raise CompareError("--fail-slower compares two files (OLD.csv NEW.csv); it does not go with --merge")
    if threshold is not None and count != 2:
        raise CompareError(f"--fail-slower needs two results CSVs, OLD.csv NEW.csv; got {count}")
    if count > 2 and not merge:
        raise CompareError(
            f"{count} results CSVs: give one (tables), two (OLD.csv NEW.csv: what changed) "
            "or --merge to show several (say, one per host) as one set of tables"
        )


def _normalized(
    old: pd.DataFrame, new: pd.DataFrame, old_machine: Machine, new_machine: Machine, new_path: str
) -> tuple[pd.DataFrame, str]:
    """``--normalize peak``: NEW's times scaled by the ratio of the two runs' peaks
    (``bench.report.analysis.normalize_by_peak``) and the line saying so. CompareError if a device timed
    in both lacks a peak."""
    used = peak_precisions(old, new, old_machine, new_machine)
    for device in sorted({device for device, _ in used}):
        for machine in (old_machine, new_machine):
            if math.isnan(machine.peak(device)):
                raise CompareError(
                    f"--normalize peak: {machine.source} has no measured {device} peak "
                    "(a run with --no-roofline, or written before rooflines); cannot normalize its "
                    f"{device} times"
                )
    scaled = normalize_by_peak(new, old_machine, new_machine, used)
    return scaled, peak_note(used, old_machine, new_machine, new_path)


def _machine_lines(args: argparse.Namespace, old: pd.DataFrame, new: pd.DataFrame):
    """(the two runs' machines, the text saying how they differ, why raw times cannot be gated)."""

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
        new, note = _normalized(old, new, old_machine, new_machine, new_path)
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
    # a line that was measured and no longer is fails the gate, whatever the threshold: a crash is
    # not "no slower"
    broken, missing = broken_lines(changes), missing_lines(changes)
    gated = (
        "" if changes["scenario"].isin(GATED_SCENARIOS).all() else f" ({', '.join(GATED_SCENARIOS)} lines)"
    )
    # nothing in common (say, a CPU run and a CUDA-only run) is bad input, not a failed gate: no
    # line ok in OLD that NEW ran (ok, failed, crashed or timed out)
    ran = changes["status_old"].eq("ok") & changes["status_new"].isin(("ok", *BROKEN))
    if not ran.any():
        print(text, end="")
        raise CompareError(
            f"--fail-slower: no line was measured (ok) in both {old_path} and {new_path}; nothing to gate"
        )
    slower = regressions(changes, threshold)
    basis = " in time x peak" if args.normalize == "peak" else ""
    if slower.empty:
        text += f"\nno line slower by more than {threshold:g}%{basis} beyond noise{gated}\n"
    else:
        text += f"\nslower by more than {threshold:g}%{basis} beyond noise{gated} ({len(slower)}):\n"
        text += "\n".join(regression_line(line) for line in slower.to_dict("records")) + "\n"
    if not broken.empty:
        text += f"\nok in OLD, failed, crashed or timed out in NEW{gated} ({len(broken)}):\n"
        text += "\n".join(status_line(line) for line in broken.to_dict("records")) + "\n"
    if not missing.empty:
        allowed = " (allowed by --allow-missing)" if args.allow_missing else "; --allow-missing accepts them"
        text += f"\nmeasured in OLD, missing or skipped in NEW{gated} ({len(missing)}){allowed}:\n"
        text += "\n".join(status_line(line) for line in missing.to_dict("records")) + "\n"
    print(text, end="")
    failed = not slower.empty or not broken.empty or (not missing.empty and not args.allow_missing)
    return 1 if failed else 0


def cmd_compare(args: argparse.Namespace) -> int:

    threshold = parse_threshold(args.fail_slower) if args.fail_slower is not None else None
    _check_arguments(args.results, args.merge, threshold, args.allow_missing)
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
    check_distinct_runs(zip(args.results, frames, strict=True))  # a run given twice would count twice
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
        "with --fail-slower, exit status 1 if a line got slower beyond noise, was ok and now failed, "
        "crashed or timed out, or is missing from NEW (unless --allow-missing). --merge: several CSVs "
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
        "--allow-missing",
        action="store_true",
        help="with --fail-slower: pass lines measured in OLD that NEW lacks or skipped (they are "
        "listed); without it they fail the gate, as lines ok in OLD and failed, crashed or timed out "
        "in NEW always do",
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
