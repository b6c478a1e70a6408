"""``deepmnist history [RESULTS...] [-o DIR]``: each machine's runs over time, with detected steps.

Every results CSV given (a folder: its ``<UTC time>-<host>*.csv`` runs) is one run. Runs are grouped
by ``machine_id`` (``bench.results.machine``: timings of different machines are never one series), ordered
by time, then commit. The chosen rows (default: the whole model, every runtime x device x timing x
precision, at batch 1 and at the run's best batch, the ``offline`` row) make one series each: ms
per image (the median / batch size) with its 95% CI, per run.

Steps (``detect_steps``), after asv's step detection (``asv.step_detect``): the series is fitted by
a piecewise-constant function minimising the noise-weighted L1 cost ``sum_i |y_i - mu| / sigma_i``
(``sigma_i`` from run i's CI, so a noisy run moves the fit less) plus ``gamma`` per segment, solved
exactly by dynamic programming; ``gamma`` is chosen as asv does, minimising ``beta * k + ln(cost)``
over a range of penalties, with ``beta = 4 ln(n) / n``, here with the cost floored at what noise
alone gives (``NOISE_COST`` per run, in sigma units) so fitting noise is not rewarded. A change
between two fitted levels is reported only if it is beyond the noise: the levels differ by more
than ``STEP_Z`` combined standard errors of the two segments and by more than ``MIN_STEP``.

Writes ``<DIR>/<machine_id>.png`` (``chart_name``: a machine_id that is not a plain name gets a
hashed one) per machine with at least two runs (one panel per chosen batch,
one line per runtime, CIs as bars, steps marked) and ``<DIR>/steps.md`` (the machines, their runs,
and each step: series, size, the run and commit where it starts, the commit before it), and prints
the Markdown. Bad input (a file of another schema, a single run, NaN medians, a run of an unknown
machine: no fingerprint, no peak, a DIR of other files: ``models.outputs.claim_folder``) ends
with one line and exit status 2. The Markdown escapes HTML in every value read from the runs.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.cells import markdown_code, markdown_text
from bench.report.plots import add_legend, new_figure, runtime_colours, save_figure
from bench.results.machine import Machine, MachineError, machine_of_run
from bench.results.store import ResultsError, check_distinct_runs, read_results
from models.atomic import atomic_write_text
from models.errors import UserError, parse_int
from models.outputs import claim_folder, inside, safe_name, write_marker

Z95 = 1.959964  # a 95% CI spans about +-1.96 standard errors
NOISE_COST = math.sqrt(2 / math.pi)  # E|x| / sigma of Gaussian noise: the L1 cost per run of noise alone
STEP_Z = 3.0  # a step's size must exceed this many combined standard errors of its two segments
# ... and this fraction of the level: the CIs are within one run, and runs of one machine differ
# by a few percent more than they say (another tenant, the memory layout of the process)
MIN_STEP = 0.05
RUN_NAME = re.compile(r"\d{8}T\d{6}Z-.+\.csv")  # a run written by the benchmark (results.write_results)
SERIES_KEY = ["runtime", "device", "timing", "precision", "execution_provider", "threads", "target", "batch"]


class HistoryError(UserError):
    """Bad input to ``history`` or ``report``: no runs, one run only, mixed files, NaN values."""


@dataclass(frozen=True)
class Run:
    path: Path
    frame: pd.DataFrame
    machine: Machine
    time: str  # the first row's timestamp_utc
    commit: str
    shown: str = ""  # how a report names the run where its file name is not enough (``name``)

    @property
    def name(self) -> str:
        """The run's file name, or what ``shown`` says (the report: the path, where two runs
        share a file name)."""
        return self.shown or self.path.name

    @property
    def label(self) -> str:
        return f"{self.time[:16].replace('T', ' ')} {self.commit[:8] or '?'}"


@dataclass(frozen=True)
class Step:
    series: str
    index: int  # the first run of the new level
    before: float  # the fitted levels, ms per image
    after: float

    @property
    def change(self) -> float:
        return self.after / self.before - 1


@dataclass
class MachineHistory:
    machine: Machine
    runs: list[Run]
    series: dict[str, pd.DataFrame] = field(default_factory=dict)  # label -> one line per run
    steps: list[Step] = field(default_factory=list)


# ----------------------------------------------------------------------------- step detection


def _weighted_median(y: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(y, kind="stable")
    cumulative = np.cumsum(w[order])
    return float(y[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def _segment_costs(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cost[i, j], level[i, j]: the weighted L1 cost and weighted median of ``y[i:j]`` (j > i)."""
    n = len(y)
    cost = np.full((n + 1, n + 1), np.inf)
    level = np.full((n + 1, n + 1), np.nan)
    for i in range(n):
        for j in range(i + 1, n + 1):
            mu = _weighted_median(y[i:j], w[i:j])
            level[i, j] = mu
            cost[i, j] = float(np.sum(w[i:j] * np.abs(y[i:j] - mu)))
    return cost, level


def _partition(cost: np.ndarray, gamma: float) -> list[int]:
    """Segment ends minimising sum(cost) + gamma x segments (exact dynamic programming)."""
    n = cost.shape[0] - 1
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    previous = np.zeros(n + 1, dtype=int)
    for j in range(1, n + 1):
        totals = best[:j] + cost[:j, j] + gamma
        previous[j] = int(np.argmin(totals))
        best[j] = totals[previous[j]]
    ends, j = [], n
    while j > 0:
        ends.append(j)
        j = previous[j]
    return ends[::-1]


def detect_steps(values: Sequence[float], sigmas: Sequence[float]) -> list[tuple[int, float, float]]:
    """Steps of a series: (index of the first point of the new level, level before, level after).

    ``sigmas``: each point's standard error (> 0). See the module docstring for the method.
    """
    y, sigma = np.asarray(values, dtype=float), np.asarray(sigmas, dtype=float)
    n = len(y)
    if n < 2:
        return []
    w = 1 / sigma
    cost, level = _segment_costs(y, w)
    beta = 4 * math.log(n) / n
    floor = NOISE_COST * n
    gamma_0 = max(cost[0, n], floor)
    best: tuple[float, list[int]] | None = None
    for gamma in gamma_0 * np.logspace(-3, 0, 31):
        ends = _partition(cost, gamma)
        starts = [0, *ends[:-1]]
        total = sum(cost[s, e] for s, e in zip(starts, ends, strict=True))
        objective = beta * len(ends) + math.log(max(total, floor))
        if best is None or objective < best[0] - 1e-12:
            best = (objective, ends)
    assert best is not None
    ends = best[1]
    starts = [0, *ends[:-1]]
    steps = []
    for (s0, e0), (s1, e1) in zip(
        zip(starts, ends, strict=True), zip(starts[1:], ends[1:], strict=True), strict=False
    ):
        a, b = level[s0, e0], level[s1, e1]
        # standard error of a segment's level: the points' typical sigma / sqrt(points)
        se = math.hypot(
            np.median(sigma[s0:e0]) / math.sqrt(e0 - s0), np.median(sigma[s1:e1]) / math.sqrt(e1 - s1)
        )
        if abs(b - a) > STEP_Z * se and abs(b / a - 1) > MIN_STEP:
            steps.append((s1, float(a), float(b)))
    return steps


# ----------------------------------------------------------------------------- runs and series


def find_runs(paths: Sequence[str]) -> list[Path]:
    """The CSVs named, and each folder's run CSVs (``RUN_NAME``; other CSVs there are not runs)."""
    found = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if RUN_NAME.fullmatch(p.name))
        elif path.exists():
            found.append(path)
        else:
            raise HistoryError(f"{path}: no such file or folder")
    if not found:
        raise HistoryError(f"{', '.join(paths)}: no results CSVs (<UTC time>-<host>.csv) found")
    return found


def load_run(path: Path) -> Run:

    try:
        frame = read_results(path)
        machine = machine_of_run(path, frame)
    except (ResultsError, MachineError) as e:
        raise HistoryError(str(e)) from None
    if frame.empty:
        raise HistoryError(f"{path}: no rows")
    if frame["run_id"].nunique() > 1:
        raise HistoryError(
            f"{path}: rows of {frame['run_id'].nunique()} runs; history takes one run per file"
        )
    ok = frame[frame["status"] == "ok"]
    bad = ok[
        ~np.isfinite(ok["latency_ms_median"]) | (ok["latency_ms_median"] < 0)
    ]  # a profile share may be 0
    if not bad.empty:
        line = bad.iloc[0]
        raise HistoryError(
            f"{path}: an ok row ({line['target']}, {line['runtime']}, batch {line['batch_size']}) has "
            f"median {float(line['latency_ms_median'])}; expected a number >= 0"
        )
    first = frame.sort_values("timestamp_utc").iloc[0]
    return Run(path, frame, machine, str(first["timestamp_utc"]), str(first["git_commit"]))


def load_runs(paths: Sequence[str]) -> list[Run]:
    """``load_run`` of each of ``find_runs(paths)``; HistoryError if one run is given twice (a file
    named twice, or in a folder and by name, or a copy: one ``run_id``), which would be counted
    twice. Runs of one file name in two folders are two runs (their run ids differ)."""

    runs = [load_run(path) for path in find_runs(paths)]
    try:
        check_distinct_runs((run.path, run.frame) for run in runs)
    except ResultsError as e:
        raise HistoryError(str(e)) from None
    return runs


def chosen_rows(
    run: Run, targets: Sequence[str], batches: Sequence[str], runtimes: Sequence[str] | None
) -> pd.DataFrame:
    """The run's ok rows of the chosen series, with ``batch`` (``1``, ``best``, ...), ``ms`` per
    image and ``sigma`` (its standard error, from the CI; NaN where the run has no CI)."""
    frame = run.frame  # from read_results: older CSVs' missing columns hold their defaults
    frame = frame[(frame["status"] == "ok") & frame["target"].isin(targets)]
    if runtimes:
        frame = frame[frame["runtime"].isin(runtimes)]
    parts = []
    for batch in batches:
        if batch == "best":
            rows = frame[frame["scenario"] == "offline"]
            if rows.empty:  # a run from before the offline rows: the batch row of highest throughput
                batch_rows = frame[frame["scenario"] == "batch"]
                keys = [k for k in SERIES_KEY if k not in ("batch",)]
                best = batch_rows.sort_values("throughput_ips", ascending=False, kind="stable")
                rows = best.drop_duplicates(keys)
        else:
            rows = frame[(frame["scenario"] == "batch") & (frame["batch_size"] == int(batch))]
        parts.append(rows.assign(batch=batch))
    rows = pd.concat(parts, ignore_index=True)
    per_image = rows["batch_size"].astype(float)
    rows = rows.assign(
        ms=rows["latency_ms_median"] / per_image,
        low=rows["latency_ms_median_ci_low"] / per_image,
        high=rows["latency_ms_median_ci_high"] / per_image,
    )
    return rows.assign(sigma=(rows["high"] - rows["low"]) / (2 * Z95))


def series_label(key: dict) -> str:
    parts = [str(key["runtime"]), str(key["device"])]
    if key["precision"] != "fp32" and str(key["precision"]) not in str(key["runtime"]):
        parts.append(str(key["precision"]))
    if key["timing"] != "compute":
        parts.append(str(key["timing"]))
    provider = str(key["execution_provider"]).removesuffix("ExecutionProvider")
    if provider and provider.lower() != str(key["device"]):  # not "cpu, CPU"
        parts.append(provider)
    if key["target"] != "model":
        parts.append(str(key["target"]))
    parts.append(f"{key['threads']} threads")
    batch = key["batch"]
    return ", ".join(parts) + (", best batch" if batch == "best" else f", batch {batch}")


def build_history(
    paths: Sequence[str],
    targets: Sequence[str] = ("model",),
    batches: Sequence[str] = ("1", "best"),
    runtimes: Sequence[str] | None = None,
) -> list[MachineHistory]:
    """Runs grouped by machine (ordered by time, then commit), their series and detected steps.

    HistoryError when no machine has two runs (there is no history to draw).
    """
    return histories_of(load_runs(paths), targets, batches, runtimes)


def histories_of(
    runs: Sequence[Run],
    targets: Sequence[str] = ("model",),
    batches: Sequence[str] = ("1", "best"),
    runtimes: Sequence[str] | None = None,
) -> list[MachineHistory]:
    """``build_history`` of runs already loaded."""
    ids = {}
    for run in runs:
        ids.setdefault(run.machine.machine_id, []).append(run)
    if all(len(group) < 2 for group in ids.values()):
        raise HistoryError(
            f"{len(runs)} run(s) of {len(ids)} machine(s) ({', '.join(sorted(ids))}): history needs "
            "at least two runs of one machine"
        )
    histories = []
    for machine_runs in ids.values():
        machine_runs.sort(key=lambda r: (r.time, r.commit))
        history = MachineHistory(machine_runs[-1].machine, machine_runs)
        rows = pd.concat(
            [
                chosen_rows(run, targets, batches, runtimes).assign(run=i)
                for i, run in enumerate(machine_runs)
            ],
            ignore_index=True,
        )
        if rows.empty:
            histories.append(history)
            continue
        for key, series in rows.groupby(SERIES_KEY, sort=True, dropna=False):
            label = series_label(dict(zip(SERIES_KEY, key, strict=True)))
            series = series.sort_values("run").drop_duplicates("run")
            history.series[label] = series
            if len(series) < 2:
                continue
            sigma = series["sigma"].to_numpy(dtype=float)
            # a run without a CI (an older file): the series' typical sigma, else 5% of the value
            known = sigma[np.isfinite(sigma) & (sigma > 0)]
            fallback = np.median(known) if known.size else np.nan
            sigma = np.where(np.isfinite(sigma) & (sigma > 0), sigma, fallback)
            ms = series["ms"].to_numpy(dtype=float)
            sigma = np.where(np.isfinite(sigma), sigma, 0.05 * ms)
            for index, before, after in detect_steps(ms, sigma):
                history.steps.append(Step(label, int(series["run"].iloc[index]), before, after))
        histories.append(history)
    histories.sort(key=lambda h: (-len(h.runs), h.machine.machine_id))
    return histories


# ----------------------------------------------------------------------------- output


def steps_markdown(histories: Sequence[MachineHistory]) -> str:
    lines = ["# Benchmark history", ""]
    lines += [
        "Each machine's runs in time order; a step is a change of level beyond the noise "
        "(noise-weighted step detection as asv's; `bench/report/history.py`). Values are ms per image "
        "(median / batch size).",
        "",
    ]

    def cell(value: object) -> str:  # a value read from a run, in a table
        return markdown_text(value).replace("|", "\\|")

    def code(value: object) -> str:
        return markdown_code(value).replace("|", "\\|")

    for history in histories:
        m = history.machine
        lines += [f"## Machine {markdown_text(m.machine_id)}", "", markdown_text(m.describe()), ""]
        # each run's own peaks: a machine shared with other work shows it here first
        lines += ["| # | time (UTC) | commit | file | measured peaks |", "|---:|---|---|---|---|"]
        for i, run in enumerate(history.runs):
            peaks = ", ".join(f"{d} {p:,.0f} GFLOP/s" for d, (p, _) in sorted(run.machine.peaks.items()))
            lines.append(
                f"| {i} | {cell(run.time)} | {code(run.commit[:12] or '?')} | {code(run.path.name)} | "
                f"{cell(peaks or '?')} |"
            )
        lines.append("")
        if len(history.runs) < 2:
            lines += ["One run: no trend yet.", ""]
            continue
        if not history.steps:
            lines += [f"No step beyond the noise in {len(history.series)} series.", ""]
            continue
        lines += [
            f"Steps ({len(history.steps)} in {len(history.series)} series):",
            "",
            "| series | from run | change | ms per image | first commit with it | last commit before |",
            "|---|---:|---:|---|---|---|",
        ]
        for step in sorted(history.steps, key=lambda s: (s.index, s.series)):
            run, before = history.runs[step.index], history.runs[step.index - 1]
            lines.append(
                f"| {cell(step.series)} | {step.index} ({cell(run.time)}) | {step.change * 100:+.1f}% | "
                f"{step.before:.4g} -> {step.after:.4g} | {code(run.commit[:12])} | {code(before.commit[:12])} |"
            )
        lines.append("")
    return "\n".join(lines)


def history_chart(history: MachineHistory, path: Path) -> Path | None:
    """One panel per chosen batch: each series' ms per image per run with CI bars; steps marked."""
    from matplotlib.ticker import FuncFormatter

    if len(history.runs) < 2 or not history.series:
        return None
    batches = sorted({s["batch"].iloc[0] for s in history.series.values()}, key=lambda b: (b == "best", b))
    fig = new_figure(height=2.6 * len(batches) + 0.8)
    axes = fig.subplots(len(batches), 1, squeeze=False)[:, 0]
    colours = runtime_colours({s["runtime"].iloc[0] for s in history.series.values()})
    stepped = {step.series: step for step in history.steps}
    x_labels = [run.label for run in history.runs]
    for ax, batch in zip(axes, batches, strict=True):
        handles, labels = [], []
        for label, series in history.series.items():
            if series["batch"].iloc[0] != batch:
                continue
            colour = colours[series["runtime"].iloc[0]]
            x, y = series["run"].to_numpy(), series["ms"].to_numpy()
            err = np.vstack([y - series["low"].to_numpy(), series["high"].to_numpy() - y])
            err = np.where(np.isfinite(err), err, 0.0)
            handle = ax.errorbar(
                x, y, yerr=err, color=colour, marker="o", markersize=3, capsize=2, linewidth=1
            )
            handles.append(handle)
            labels.append(label.rsplit(", ", 1)[0] + (" (step)" if label in stepped else ""))
        for step in history.steps:
            if history.series[step.series]["batch"].iloc[0] == batch:
                ax.axvline(step.index - 0.5, color="red", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
        ax.set_ylabel("ms per image")
        ax.set_title("best batch (offline)" if batch == "best" else f"batch {batch}", fontsize=9)
        ax.set_xticks(range(len(x_labels)), x_labels, rotation=20, ha="right", fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        if handles:
            add_legend(ax, handles, labels)
    shown = "".join(c if c.isprintable() else "?" for c in history.machine.machine_id)  # no NUL glyphs
    fig.suptitle(f"machine {shown}: whole model over time (red: steps)", fontsize=10)
    return save_figure(fig, path)


def chart_name(machine: Machine) -> str:
    """A machine's chart file name: its machine_id as ``models.outputs.safe_name`` makes it (the
    12 hex digits as they are; a derived ``~`` id, or one from a damaged or hostile sidecar
    (``../..``, ``/abs``, a NUL), as its plain characters and a hash)."""
    return f"{safe_name(machine.machine_id)}.png"


def write_history(histories: Sequence[MachineHistory], out: Path) -> list[Path]:
    """Each machine's chart (``chart_name``) and steps.md into ``out``; every path is checked to
    lie inside it."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for history in histories:
        chart = history_chart(history, inside(out, out / chart_name(history.machine)))
        if chart:
            written.append(chart)
    summary = out / "steps.md"
    atomic_write_text(summary, steps_markdown(histories))
    return [*written, summary]


def _list(text: str | None) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()] if text else []


def _is_history(folder: Path) -> bool:
    """A history folder written before the marker existed: its steps.md is the command's."""
    steps = folder / "steps.md"
    try:
        if steps.is_symlink() or not steps.is_file():
            return False
        with steps.open("rb") as f:
            return f.read(64).startswith(b"# Benchmark history\n")
    except OSError:
        return False


def _owned_by_history(relative: str, is_folder: bool) -> bool:
    """What the command writes into its folder: steps.md and a PNG per machine, nothing deeper."""
    return not is_folder and "/" not in relative and (relative == "steps.md" or relative.endswith(".png"))


def _batch(text: str, option: str) -> str:
    """One ``--batch-sizes`` item: 'best' or a batch size (``models.errors.parse_int``), as text."""

    if text == "best":
        return text
    try:
        size = parse_int(text)
    except ValueError:
        size = 0
    if size < 1:
        raise HistoryError(
            f"--batch-sizes {option!r}: {text!r} is neither a batch size (an integer >= 1) nor 'best'"
        )
    return str(size)


def cmd_history(args: argparse.Namespace) -> int:
    batches = [_batch(batch, args.batch_sizes) for batch in _list(args.batch_sizes) or ["1", "best"]]
    paths = args.results or ["results"]
    first = Path(paths[0])
    out = Path(args.out) if args.out else (first if first.is_dir() else first.parent) / "history"
    claim_folder(
        out, command="history", what="history", option="-o", recognise=_is_history, owns=_owned_by_history
    )
    histories = build_history(paths, _list(args.targets) or ["model"], batches, _list(args.runtimes) or None)
    written = write_history(histories, out)
    write_marker(out, "history")
    print(steps_markdown(histories))
    for path in written:
        print(f"wrote {path}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "history",
        help="each machine's runs over time, with steps beyond the noise (PNG per machine, Markdown)",
        description="Groups results CSVs by machine_id, orders them by time and commit, and draws "
        "each chosen series (default: whole model, each runtime, batch 1 and the best batch) with "
        "its CIs, marking steps beyond the noise (noise-weighted step detection as asv's).",
    )
    p.add_argument(
        "results",
        metavar="RESULTS",
        nargs="*",
        help="results CSVs or folders of them (default: results/)",
    )
    p.add_argument(
        "-o", "--out", metavar="DIR", help="where the PNGs and steps.md go (default: RESULTS/history)"
    )
    p.add_argument("--targets", help="targets (comma-separated; default model)")
    p.add_argument("--batch-sizes", help="batch sizes, or 'best' (comma-separated; default 1,best)")
    p.add_argument("--runtimes", help="only these runtimes (comma-separated; default all)")
    p.set_defaults(func=cmd_history)
    return p
