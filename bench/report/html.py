"""``deepmnist report RESULTS... -o DIR``: a static HTML site of results, openable from the disk.

``DIR/index.html`` holds everything but the images, with its CSS and the table-sorting script
inline: no CDN, no server, no network (open it with ``file://``). Sections:

- machines: each run's fingerprint (``bench.results.machine``), unknown parts of older runs said so;
- per run: its charts (each PNG beside its CSV, else drawn now by ``bench.report.plots``: throughput,
  layers, roofline, memory, single-stream, server) and the tables of ``deepmnist compare RUN.csv``
  (the same cells, ``bench.report.tables`` and ``bench.report.scenario_tables``: offline, single-stream, each batch
  size, full loop vs preloaded, threads x streams, server, where the time goes, the run time;
  layers alone folded), every table sortable by clicking a column header (numbers sort as numbers, empty cells
  last);
- history and steps (``bench.report.history``), when a machine has two runs or more;
- the portability table(s), ``portability-*.csv`` in a RESULTS folder or named, shown as they are;
- cold start, and memory where a run has memory columns.

The site is built in a temporary folder beside DIR and renamed into place, so DIR is either the
old report or the new one, never half of one. DIR must be new, empty or an earlier report (its
``.deepmnist-output`` marker, or the index.html of a report made before the marker) holding
nothing else (``models.outputs.claim_folder``); chart names come from ``safe_name`` and are
checked to lie inside DIR; a chart beside a CSV is copied only when it is a regular PNG file, never
through a symbolic link.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import html
import io
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from bench.report import tables
from bench.report.analysis import comparison_tables
from bench.report.cells import Cell
from bench.report.durations import durations_tables, read_durations
from bench.report.history import HistoryError, Run, chart_name, histories_of, load_runs, write_history
from bench.report.plots import CHARTS, PlotError, read_samples, write_plots
from bench.report.scenario_tables import scenario_sections
from bench.results.machine import RECORDED_FIELDS
from models.atomic import atomic_write_bytes
from models.errors import UserError
from models.files import read_text_limited
from models.outputs import claim_folder, inside, safe_name, write_marker

if TYPE_CHECKING:
    from bench.report.cells import Table

PORTABILITY = "portability-*.csv"
_PNG = b"\x89PNG\r\n\x1a\n"
_CHART_MAX_BYTES = 32 << 20
_SIGNATURE = "Written by <code>deepmnist report</code>"  # in every index.html the command writes

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { font-size: 1.05em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 12.5px; }
th, td { border: 1px solid #ddd; padding: 2px 6px; white-space: nowrap; }
th { background: #f0f3f7; cursor: pointer; user-select: none; position: sticky; top: 0; }
th[aria-sort=ascending]::after { content: " \\25B2"; } th[aria-sort=descending]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
img.chart { width: 49%; min-width: 480px; border: 1px solid #eee; margin: 0.3em 0; vertical-align: top; }
.wide { overflow-x: auto; }
.note { color: #666; } code { background: #f4f4f4; padding: 0 3px; }
details { margin: 0.5em 0 1em; } summary { cursor: pointer; font-weight: 600; }
"""

# Click a header: sort that table's rows by the column, ascending, then descending. A cell sorts by
# the first number in its text ("1,234.5 [1.2, 1.3]" -> 1234.5, "+23%" -> 23, "fastest" as text);
# empty cells go last either way.
_JS = r"""
function cellKey(td) {
  const text = td.textContent.trim();
  if (text === "") return null;
  const m = text.replace(/,/g, "").match(/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?/i);
  return m ? Number(m[0]) : text.toLowerCase();
}
function sortTable(th) {
  const table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
  const ascending = th.getAttribute("aria-sort") !== "ascending";
  for (const other of th.parentNode.cells) other.removeAttribute("aria-sort");
  th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const rows = Array.from(body.rows).map((tr, i) => [cellKey(tr.cells[col]), i, tr]);
  rows.sort((a, b) => {
    if (a[0] === null || b[0] === null) return (a[0] === null) - (b[0] === null) || a[1] - b[1];
    const kind = (typeof a[0] === "number") - (typeof b[0] === "number");
    if (kind) return -kind;  // numbers before text
    const order = a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1];
    return ascending ? order : -order;
  });
  for (const [, , tr] of rows) body.appendChild(tr);
}
document.addEventListener("click", (e) => {
  const th = e.target.closest("table.sortable th");
  if (th) sortTable(th);
});
"""


class ReportError(UserError):
    """Bad input to ``report``: no runs, an unreadable portability table, a DIR that is a file."""


def _e(value: object) -> str:
    return html.escape(str(value))


def html_table(cells: Mapping[str, Sequence[str]], numeric: set[str] | frozenset[str] = frozenset()) -> str:
    """A sortable table from heading -> column of cell texts."""
    headings = list(cells)
    rows = zip(*(cells[h] for h in headings), strict=True)
    head = "".join(f"<th scope=col>{_e(h)}</th>" for h in headings)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class=num>{_e(c)}</td>" if h in numeric else f"<td>{_e(c)}</td>"
            for h, c in zip(headings, row, strict=True)
        )
        + "</tr>"
        for row in rows
    )
    table = f"<table class=sortable><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f"<div class=wide>{table}</div>"


def _table_html(table: Table) -> str:
    return f"<h3>{_e(table.title)}</h3>" + html_table(table.cells, table.numeric)


def _run_tables(run: Run) -> str:
    """The run's tables, in the order of ``deepmnist compare RUN.csv``: offline, single-stream, model
    per batch size, the scenario tables (full loop, threads x streams, server: ``bench.report.scenario_tables``),
    where the time goes, the run time (``bench.harness.durations``, when its sidecar has one), then the
    layers alone (folded). Cold start and memory have sections of their own."""

    table = comparison_tables(run.frame)
    table = table[table["status"] != "skipped"]
    parts, folded = [], []

    def add(title: str, cells: dict[str, list[str]], into: list[str]) -> None:
        into.append(f"<h3>{_e(title)}</h3>" + html_table(cells, tables.NUMERIC))

    offline = table[table["scenario"] == "offline"].sort_values("throughput_ips", ascending=False)
    if not offline.empty:
        title = "offline: best throughput over the batch sizes (whole model)"
        add(title, tables.simple_cells(offline, tables.OFFLINE_SHOWN), parts)
    # server and streams rows have tables of their own (scenario_sections), profile rows theirs
    # (profile_sections)
    for scenario in ("single-stream", "batch"):
        rows = table[table["scenario"] == scenario]
        for (target, batch), group in rows.groupby(["target", "batch_size"], sort=False):
            if scenario == "single-stream":
                cells = tables.simple_cells(group, tables.SINGLE_STREAM_SHOWN)
            else:
                cells = tables.simple_cells(group, tables.SHOWN)
            add(tables.group_title(scenario, target, batch), cells, parts if target == "model" else folded)
    parts += [_table_html(section) for section in tables.parity_sections(table)]
    parts += [_table_html(section) for section in scenario_sections(run.frame)]
    parts += [_table_html(section) for section in tables.profile_sections(table)]
    durations = read_durations(run.path)
    if durations is not None:
        parts += [_table_html(section) for section in durations_tables(durations)]
    text = "".join(parts)
    if folded:
        text += f"<details><summary>layers alone ({len(folded)} tables)</summary>{''.join(folded)}</details>"
    return text


def summary_table(runs: Sequence[Run]) -> str:
    """Every run's best throughput per runtime (its ``offline`` rows), one table across the runs."""

    lines = []
    for run in runs:
        table = comparison_tables(run.frame)
        offline = table[(table["scenario"] == "offline") & (table["status"] == "ok")]
        lines.append(offline.assign(run=run.name, machine=run.machine.machine_id))
    offline = pd.concat(lines, ignore_index=True).sort_values("throughput_ips", ascending=False)
    if offline.empty:
        return ""
    shown = {
        "run": Cell(lambda line: line["run"], numeric=False),
        "machine": Cell(lambda line: line["machine"], numeric=False),
        **{h: f for h, f in tables.OFFLINE_SHOWN.items() if h != "host"},
    }
    cells = tables.shown_cells(offline, shown)
    return (
        "<p class=note>The whole model at each runtime's best batch size (the <code>offline</code> "
        "rows), all runs in one table; compare runs of different machines by % of peak, not by "
        "time.</p>" + html_table(cells, tables.NUMERIC)
    )


def cold_start_table(run: Run) -> str:

    table = comparison_tables(run.frame)
    cold = table[(table["scenario"] == "batch") & (table["target"] == "model") & (table["status"] == "ok")]
    if cold.empty or not cold["load_s"].notna().any():
        return ""
    smallest = cold[cold["batch_size"] == cold["batch_size"].min()]
    # less the columns a run has no value in: compile s, or start s in runs made before workers
    cells = tables.simple_cells(smallest, tables.COLD_SHOWN)
    batch = smallest["batch_size"].iloc[0]
    return f"<h3>{_e(run.name)}: model, batch {batch}</h3>" + html_table(cells, tables.NUMERIC)


def memory_table(run: Run) -> str:
    """A run's memory and CPU-time table (the Markdown's ``memory`` table: whole model, ok rows of
    the batch scenario), where the run measured memory."""

    table = comparison_tables(run.frame)
    rows = table[(table["scenario"] == "batch") & (table["target"] == "model") & (table["status"] == "ok")]
    if rows.empty or not rows["rss_after_load_mb"].notna().any():
        return ""
    cells = tables.simple_cells(rows, tables.MEMORY_SHOWN)
    return f"<h3>{_e(run.name)}</h3>" + html_table(cells, tables.NUMERIC)


def portability_tables(paths: Sequence[Path]) -> str:
    parts = []
    for path in paths:
        try:
            rows = list(csv.reader(io.StringIO(read_text_limited(path, "a portability table"), newline="")))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise ReportError(f"{path}: cannot read the portability table ({e})") from None
        if not rows or not rows[0]:
            raise ReportError(f"{path}: empty portability table (no header)")
        header, body = rows[0], rows[1:]
        bad = next((i for i, r in enumerate(body, 2) if len(r) != len(header)), None)
        if bad is not None:
            raise ReportError(f"{path}, line {bad}: {len(body[bad - 2])} cells, expected {len(header)}")
        cells = {h: [r[i] for r in body] for i, h in enumerate(header)}
        parts.append(f"<h3>{_e(path.name)}</h3>" + html_table(cells))
    return "".join(parts)


def machines_table(runs: Sequence[Run]) -> str:

    cells: dict[str, list[str]] = {"run": [], "machine_id": []}
    for name in (*RECORDED_FIELDS, "peaks"):
        cells[name] = []
    for run in runs:
        m = run.machine
        cells["run"].append(run.name)
        cells["machine_id"].append(m.machine_id)
        for name in RECORDED_FIELDS:
            value = m.record.get(name)
            if name in m.unknown:
                text = "unknown"
            elif isinstance(value, list):
                text = " ".join(str(v) for v in value) or "none"
            else:
                text = "" if value is None else str(value)
            cells[name].append(text)
        cells["peaks"].append(
            "; ".join(f"{d} {p:,.0f} GFLOP/s, {b:,.1f} GB/s" for d, (p, b) in sorted(m.peaks.items()))
            or "unknown"
        )
    return html_table(cells)


def _charts(run: Run, out: Path, chart_stem: str) -> list[str]:
    """The run's charts as paths relative to ``out``, named ``charts/<chart_stem>-<chart>.png``
    (``chart_stem``: one per run): each one copied from beside its CSV, else drawn now
    (``bench.report.plots.write_plots``; a chart without data is not drawn)."""

    folder = out / "charts"
    folder.mkdir(exist_ok=True)
    stem = run.path.with_suffix("")
    name_of = safe_name(chart_stem)  # one per run, sanitised (a plain name stays as it is)
    written = {}
    for chart in CHARTS:
        copy = inside(out, folder / f"{name_of}-{chart}.png")
        if _copy_chart(Path(f"{stem}-{chart}.png"), copy):
            written[chart] = copy
    missing = [chart for chart in CHARTS if chart not in written]
    if missing:
        try:
            samples = read_samples(run.path.with_suffix(".json"))
            for path in write_plots(run.frame, inside(out, folder / name_of), samples, missing):
                written[path.stem.removeprefix(f"{name_of}-")] = inside(out, path)
        except PlotError:
            pass
    return [str(written[chart].relative_to(out)) for chart in CHARTS if chart in written]


def _copy_chart(source: Path, target: Path) -> bool:
    """Copy a chart from beside its CSV; False (drawn anew instead) when there is none. A chart
    that is a symbolic link, not a regular file or not a PNG is not copied (a warning says so):
    nothing is read through a link into the report."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    except OSError as e:
        why = "a symbolic link" if source.is_symlink() else (e.strerror or str(e))
        print(
            f"deepmnist report: warning: {source}: {why}; not copied, the chart is drawn anew",
            file=sys.stderr,
        )
        return False
    with os.fdopen(fd, "rb") as f:
        regular = stat.S_ISREG(os.fstat(f.fileno()).st_mode)
        data = f.read(_CHART_MAX_BYTES + 1) if regular else b""
    if not regular or not data.startswith(_PNG) or len(data) > _CHART_MAX_BYTES:
        what = (
            "not a regular file" if not regular else "not a PNG" if not data.startswith(_PNG) else "too large"
        )
        print(
            f"deepmnist report: warning: {source}: {what}; not copied, the chart is drawn anew",
            file=sys.stderr,
        )
        return False
    atomic_write_bytes(target, data)
    return True


def _history_section(runs: Sequence[Run], out: Path) -> str:

    try:
        histories = histories_of(runs)
    except HistoryError as e:  # one run per machine: no history, which the section says
        return f"<p class=note>No history: {_e(e)}</p>"
    written = write_history(histories, out / "history")
    parts = []
    for history in histories:
        if len(history.runs) < 2:
            continue
        m = history.machine
        parts.append(f"<h3>machine {_e(m.machine_id)}</h3><p class=note>{_e(m.describe())}</p>")
        png = out / "history" / chart_name(m)
        if png in written:
            parts.append(
                f"<img class=chart alt='history of {_e(m.machine_id)}' src='{_e(png.relative_to(out))}'>"
            )
        cells: dict[str, list[str]] = {
            "series": [],
            "from run": [],
            "time": [],
            "change": [],
            "ms per image": [],
            "commit": [],
            "commit before": [],
        }
        for step in sorted(history.steps, key=lambda s: (s.index, s.series)):
            run, before = history.runs[step.index], history.runs[step.index - 1]
            cells["series"].append(step.series)
            cells["from run"].append(str(step.index))
            cells["time"].append(run.time)
            cells["change"].append(f"{step.change * 100:+.1f}%")
            cells["ms per image"].append(f"{step.before:.4g} -> {step.after:.4g}")
            cells["commit"].append(run.commit[:12])
            cells["commit before"].append(before.commit[:12])
        if history.steps:
            parts.append(html_table(cells, {"from run", "change"}))
        else:
            parts.append(f"<p>No step beyond the noise in {len(history.series)} series.</p>")
    return (
        "".join(parts)
        + "<p class=note>Steps in Markdown: <a href='history/steps.md'>history/steps.md</a></p>"
    )


def build_site(paths: Sequence[str], out: Path) -> Path:
    """Write the site into ``out`` (an empty folder); return ``out / "index.html"``."""
    portability, results = [], []
    for text in paths:  # portability tables: named, or in a folder given
        path = Path(text)
        if path.is_dir():
            portability += sorted(path.glob(PORTABILITY))
            results.append(text)
        elif path.match(PORTABILITY):
            portability.append(path)
        else:
            results.append(text)
    if not results:
        raise ReportError(f"{', '.join(paths)}: no results CSVs given, only portability tables")
    runs = load_runs(results)  # one run given twice is refused
    # two runs of one file name (a/X.csv, b/X.csv) are told apart: by their paths in the text, by
    # their place in the list in the chart names
    names = [run.path.name for run in runs]
    runs = [
        dataclasses.replace(run, shown=str(run.path)) if names.count(run.name) > 1 else run for run in runs
    ]
    chart_stems = [
        run.path.stem if names.count(run.path.name) == 1 else f"{run.path.stem}-{i}"
        for i, run in enumerate(runs)
    ]
    sections: list[tuple[str, str, str]] = []  # (anchor, title, html)
    summary = summary_table(runs)
    if summary:
        sections.append(("summary", "Best throughput, all runs", summary))
    sections.append(("machines", "Machines", machines_table(runs)))
    for i, run in enumerate(runs):
        charts = _charts(run, out, chart_stems[i])
        charts = "".join(f"<img class=chart alt='{_e(c)}' src='{_e(c)}'>" for c in charts)
        m = run.machine
        head = f"<p class=note>{_e(run.time)} · commit <code>{_e(run.commit[:12])}</code> · {_e(m.describe())}</p>"
        sections.append((f"run-{i}", f"Run {run.name}", head + charts + _run_tables(run)))
    sections.append(("history", "History and steps", _history_section(runs, out)))
    if portability:
        sections.append(("portability", "Portability", portability_tables(portability)))
    cold = "".join(cold_start_table(run) for run in runs)
    if cold:
        sections.append(("cold-start", "Cold start", cold))
    memory = "".join(memory_table(run) for run in runs)
    if memory:
        sections.append(("memory", "Memory", memory))
    nav = "".join(f"<a href='#{a}'>{_e(t)}</a>" for a, t, _ in sections)
    body = "".join(f"<section id='{a}'><h2>{_e(t)}</h2>{h}</section>" for a, t, h in sections)
    files = ", ".join(run.name for run in runs)
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>deepmnist-bench report</title><style>{_CSS}</style></head><body>"
        f"<h1>deepmnist-bench report</h1><p class=note>{len(runs)} run(s): {_e(files)}. "
        f"Click a column header to sort a table. {_SIGNATURE}.</p>"
        f"<nav>{nav}</nav>{body}<script>{_JS}</script></body></html>\n"
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _is_report(folder: Path) -> bool:
    """A report written before the marker existed: its index.html carries the command's signature."""
    index = folder / "index.html"
    try:
        if index.is_symlink() or not index.is_file() or index.stat().st_size > 64 << 20:
            return False
        return _SIGNATURE in index.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _owned_by_report(relative: str, is_folder: bool) -> bool:
    """What a report holds: index.html, charts/*.png, history/ (its PNGs and steps.md)."""
    if is_folder:
        return relative in ("charts", "history")
    folder, _, name = relative.rpartition("/")
    if folder in ("charts", "history"):
        return "/" not in name and (name.endswith(".png") or (folder, name) == ("history", "steps.md"))
    return relative == "index.html"


def write_report(paths: Sequence[str], out: str | os.PathLike) -> Path:
    """Build the site in a temporary folder beside ``out``, then rename it to ``out`` (replacing an
    older report there: only a folder the command wrote, ``models.outputs.claim_folder``). Returns
    the path of ``index.html``."""
    out = Path(out)
    claim_folder(
        out, command="report", what="report", option="-o", recognise=_is_report, owns=_owned_by_report
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        build_site(paths, staging)
        write_marker(staging, "report")
        staging.chmod(0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            old.rmdir()
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out / "index.html"


def cmd_report(args: argparse.Namespace) -> int:
    index = write_report(args.results or ["results"], args.out)
    print(f"wrote {index} (open it in a browser; no server needed)")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="a static HTML report of results (sortable tables, charts, history, machines)",
        description="Writes DIR/index.html and its images: machines, each run's charts and sortable "
        "comparison tables, history and steps, portability, cold start and memory tables. No CDN, "
        "no server: open index.html from the disk.",
    )
    p.add_argument(
        "results", metavar="RESULTS", nargs="*", help="results CSVs or folders (default: results/)"
    )
    p.add_argument("-o", "--out", metavar="DIR", required=True, help="folder to write the site into")
    p.set_defaults(func=cmd_report)
    return p
