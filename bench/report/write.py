"""Writing a measured run: the CSV first (nothing else can lose it), then its JSON sidecar and
Markdown tables, then the charts. The harness measures (``bench.harness.run.run`` returns the run);
this is the only place that turns a run into files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from bench.report.durations import render_durations
from bench.report.plots import write_plots
from bench.report.tables import render_both
from bench.results.sidecar import DURATIONS_KEY
from bench.results.store import RunRecord, frame_from_rows, read_results, write_results_or_fallback


def write_record(record: RunRecord, out: TextIO | None = None) -> tuple[Path, str | None, list[Path], str]:
    """The run's files: CSV, JSON sidecar, Markdown tables and charts. Returns the CSV, the
    fallback message (the results went to the temporary folder instead; else None), the charts,
    and the tables as text (drawn with the Markdown, from the same analysis)."""
    text = ""
    try:
        text, markdown = render_both(frame_from_rows(record.rows))
        markdown += "\n" + render_durations(record.extra[DURATIONS_KEY], markdown=True)
        markdown += f"\n{record.memory_text}\n"
    except Exception as e:  # the CSV must be written even if a table cannot be drawn
        markdown = f"tables not rendered: {type(e).__name__}: {e}"
    # a results folder that fails now (a full disk, made read-only during the run) must not lose
    # the measurements: they go to the temporary folder, named in a warning, and the run exits 1
    path, fallback = write_results_or_fallback(
        record.rows,
        record.results_dir,
        record.environment,
        record.settings,
        extra=record.extra,
        markdown=markdown,
    )
    try:
        plots = write_plots(
            read_results(path), path.with_suffix(""), record.extra["single_stream_samples_ms"]
        )
    except Exception as e:  # the CSV is written; a chart that cannot be drawn must not lose it
        plots = []
        if out is not None:
            print(f"plots not written: {type(e).__name__}: {e}", file=out)
    return path, fallback, plots, text


def write_run(result: Any, out: TextIO | None = None) -> Any:
    """Write ``result`` (a ``bench.harness.run.Run`` with rows) and set its ``path``, ``plots``,
    ``fallback`` and ``tables`` (the text); returns it. An interrupted run is written the same way:
    the rows measured so far."""
    if result.rows:
        result.path, result.fallback, result.plots, result.tables = write_record(result.record(), out)
    return result
