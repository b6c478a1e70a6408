"""The results CSV: one row per target x runtime x device x batch size x thread count.

``ResultRow`` is the schema (its fields, in order, are the CSV columns). ``write_results`` writes
``<results_dir>/<YYYYMMDDTHHMMSSZ>-<host>.csv`` atomically and never over an existing file, with
two sidecars of the same stem: ``.json`` (run id, environment, resolved config, columns) and
``.md`` (the comparison tables). ``read_results`` reads a CSV back into a typed DataFrame.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
import sys
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from bench.results.columns import COLUMNS as COLUMN_RECORDS
from bench.results.columns import REQUIRED, ROW_KEY, Column
from bench.results.stats import Latency, gflops, throughput
from models.atomic import atomic_write_text
from models.errors import UserError
from models.files import read_text_limited
from models.atomic import refuse_special

# failed: the runtime ran but its output was wrong or it raised; crashed: its worker process died
# (signal or exit code and the last lines of its stderr in the reason); timeout: its worker took
# longer than --case-timeout for one step and was killed.
STATUSES = ("ok", "skipped", "failed", "crashed", "timeout")
TIMINGS = ("compute", "end_to_end", "full_loop")  # full_loop: see bench.harness.matrix.Case.timing
# batch: fixed batch size, timed in interleaved rounds; single-stream: batch 1, one query after another,
# each timed alone; offline: a copy of the batch row with the highest throughput over the batch sizes;
# profile: one layer's share (ms per call) of the whole model run under the runtime's profiler.
# server: Poisson arrivals at target_qps, latency from scheduled arrival to result (bench.harness.server).
# streams: N concurrent batch-1 request streams, each its own session (bench.harness.run _Driver.concurrent).
SCENARIOS = ("batch", "single-stream", "offline", "profile", "server", "streams")
ENV_COLUMNS = tuple(c.name for c in COLUMN_RECORDS if c.environment)  # from collect_environment()
MEASURED_COLUMNS = tuple(c.name for c in COLUMN_RECORDS if c.measured)  # empty unless the row is ok
# Columns added after the first published schema. A CSV whose header is the schema less some of these
# (in schema order) is an older file; the missing ones read as their defaults (empty, scenario "batch").
ADDED_COLUMNS = tuple(c.name for c in COLUMN_RECORDS if c.added)


class ResultsError(UserError):
    """A results CSV that cannot be read: missing, unreadable or not this schema."""


class _Row:
    """The methods of ``ResultRow``; its fields are the column records (``bench.results.columns``)."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.timing not in TIMINGS:
            raise ValueError(f"timing must be one of {TIMINGS}, got {self.timing!r}")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {self.scenario!r}")
        if self.status != "ok":
            if not self.reason:
                raise ValueError(f"a {self.status} row needs a reason")
            measured = [name for name in MEASURED_COLUMNS if getattr(self, name) is not None]
            if measured:
                raise ValueError(f"a {self.status} row has no timings, but sets {', '.join(measured)}")

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The CSV columns, in order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def create(cls, environment: Mapping[str, str], **values: Any) -> Any:
        """A row with the environment columns taken from ``collect_environment()``'s dict."""
        return cls(**{name: environment.get(name, "") for name in ENV_COLUMNS}, **values)

    def with_latency(self, latency: Latency, flops_per_image: float | None) -> Any:
        """A copy with the latency, throughput and GFLOP/s columns filled in.

        ``flops_per_image`` None or 0 (pools, or unknown) leaves GFLOP/s empty.
        """
        return dataclasses.replace(
            self,
            latency_ms_mean=latency.mean,
            latency_ms_median=latency.median,
            latency_ms_min=latency.min,
            latency_ms_max=latency.max,
            latency_ms_stddev=latency.stddev,
            latency_ms_p90=latency.p90,
            latency_ms_p99=latency.p99,
            latency_ms_p999=latency.p999,
            latency_ms_median_ci_low=latency.median_ci_low,
            latency_ms_median_ci_high=latency.median_ci_high,
            latency_ms_p99_ci_low=latency.p99_ci_low,
            latency_ms_p99_ci_high=latency.p99_ci_high,
            latency_ms_p999_ci_low=latency.p999_ci_low,
            latency_ms_p999_ci_high=latency.p999_ci_high,
            note="; ".join(part for part in (self.note, latency.note) if part),
            cv=latency.cv,
            noisy=int(latency.noisy),
            throughput_ips=throughput(self.batch_size, latency.median),
            gflops=gflops(flops_per_image, self.batch_size, latency.median) if flops_per_image else None,
        )

    def with_roofline(
        self, peak_gflops: float | None, bandwidth_gbs: float | None, arithmetic_intensity: float | None
    ) -> Any:
        """A copy with the device's measured ceilings, the row's FLOP/byte and its % of the peak."""
        pct = self.gflops / peak_gflops * 100 if self.gflops and peak_gflops else None
        return dataclasses.replace(
            self,
            peak_gflops=peak_gflops,
            bandwidth_gbs=bandwidth_gbs,
            arithmetic_intensity=arithmetic_intensity,
            pct_of_peak=pct,
        )


def _field(column: Column) -> tuple[str, Any, Any]:
    hint = column.dtype | None if column.nullable else column.dtype
    default = dataclasses.MISSING if column.default is REQUIRED else column.default
    return column.name, hint, dataclasses.field(default=default)


def row_class(records: Sequence[Column]) -> type:
    """The row dataclass of these column records: one field each, in order, with its default."""
    cls = dataclasses.make_dataclass("ResultRow", [_field(c) for c in records], bases=(_Row,), kw_only=True)
    cls.__module__ = __name__  # pickled by name (rows cross to and from worker processes)
    return cls


# One measurement (one CSV line); missing values are None (empty CSV cells).
ResultRow = row_class(COLUMN_RECORDS)
COLUMNS = ResultRow.fields()
# Column -> int, float (nullable) or str. Nullable ints (``noisy``): float64 in a frame (NaN for
# None), but int in rows and CSV cells.
_KINDS: dict[str, type] = {c.name: float if c.nullable else c.dtype for c in COLUMN_RECORDS}
_OPTIONAL_INTS = frozenset(c.name for c in COLUMN_RECORDS if c.nullable and c.dtype is int)
_DTYPES = {int: "int64", float: "float64", str: "str"}


def utc_timestamp(now: datetime | None = None, compact: bool = False) -> str:
    """UTC to the second: 2026-11-28T09:30:00Z (``timestamp_utc``), compact 20261128T093000Z (names)."""
    fmt = "%Y%m%dT%H%M%SZ" if compact else "%Y-%m-%dT%H:%M:%SZ"
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime(fmt)


def new_run_id() -> str:
    """A run id unique across hosts and runs, e.g. 20261128T093000Z-3f9c2a1b."""
    return f"{utc_timestamp(compact=True)}-{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------- rows <-> frame


def frame_from_rows(rows: Iterable[ResultRow]) -> pd.DataFrame:
    """Typed frame: int columns int64, float columns float64 (NaN for None), the rest str."""
    rows = list(rows)
    return pd.DataFrame({name: _series(name, [getattr(r, name) for r in rows]) for name in COLUMNS})


def _series(name: str, values: list[Any]) -> pd.Series:
    kind = _KINDS[name]
    if kind is float:
        values = [float("nan") if v is None else v for v in values]
    return pd.Series(values, dtype=_DTYPES[kind])


# ----------------------------------------------------------------------------- CSV text


def _cell(value: object) -> str:
    return "" if value is None else str(value)  # str(float) is the shortest exact repr


def _csv_text(rows: Sequence[ResultRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([_cell(getattr(r, name)) for name in COLUMNS] for r in rows)
    return out.getvalue()


def _is_older_schema(header: Sequence[str]) -> bool:
    """True if ``header`` is COLUMNS less some ADDED_COLUMNS, in order (a CSV of an earlier version)."""
    return tuple(header) == tuple(c for c in COLUMNS if c in header) and all(
        c in ADDED_COLUMNS for c in COLUMNS if c not in header
    )


def _check_columns(header: Sequence[str], where: str) -> None:
    if tuple(header) == COLUMNS:
        return
    missing = [c for c in COLUMNS if c not in header]
    unexpected = [c for c in header if c not in COLUMNS]
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected column(s) {', '.join(unexpected)}")
    if not problems:
        problems.append("columns out of order")
    raise ResultsError(f"{where}: not a deepmnist results CSV: {'; '.join(problems)}")


def _parse_cell(text: str, name: str, where: str) -> object:
    kind = _KINDS[name]
    if kind is str:
        return text
    if kind is float and text == "":
        return None
    try:
        return int(text) if name in _OPTIONAL_INTS else kind(text)
    except ValueError:
        raise ResultsError(
            f"{where}, column {name}: {text!r} is not {'an integer' if kind is int else 'a number'}"
        ) from None


# Checked on reading: what no run writes (a hand-edited or damaged file) is refused, naming the cell.
_POSITIVE = frozenset(c.name for c in COLUMN_RECORDS if c.positive)
_FRACTIONS = frozenset(c.name for c in COLUMN_RECORDS if c.fraction)
_SIGNED = frozenset(c.name for c in COLUMN_RECORDS if c.signed)
# columns that become table labels and keys: a control character would break a table's layout
_LABELS = (
    "run_id",
    "host",
    "target",
    "runtime",
    "device",
    "execution_provider",
    "precision",
    "timing",
    "scenario",
)
MAX_CELL = 64 * 1024  # characters; the longest cell a run writes (a reason) is far shorter


def _check_value(name: str, value: object, where: str, scenario: str = "batch") -> None:
    """``scenario``: a profile row's latency is one layer's share of the model's time; "other"
    can be 0 ms, so there latency need not be positive."""
    if isinstance(value, str):
        if name in _LABELS and any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ResultsError(f"{where}, column {name}: {value!r} holds a control character")
        return
    if value is None:
        return
    if not math.isfinite(value) or abs(value) > 2**53:  # beyond 2**53 an int64 or float64 column goes wrong
        raise ResultsError(f"{where}, column {name}: {value} is not a finite number of a sensible size")
    if name in _POSITIVE and value <= 0 and not (scenario == "profile" and name.startswith("latency")):
        raise ResultsError(f"{where}, column {name}: {value} must be positive")
    if value < 0 and name not in _SIGNED:
        raise ResultsError(f"{where}, column {name}: {value} must not be negative")
    if name in _FRACTIONS and value > 1:
        raise ResultsError(f"{where}, column {name}: {value} is a fraction, must be at most 1")
    if name == "noisy" and value not in (0, 1):
        raise ResultsError(f"{where}, column {name}: {value} must be 0 or 1")


def _check_row(row: ResultRow, where: str) -> None:
    """What no run writes across a row's cells: an ok row without a median, or a median outside
    its own 95% CI (a percentile-bootstrap CI of the median holds the sample median, bench.results.stats)."""
    if row.status != "ok":
        return
    median = row.latency_ms_median
    if median is None:
        raise ResultsError(f"{where}: an ok row with no latency_ms_median; an ok row is a measurement")
    low, high = row.latency_ms_median_ci_low, row.latency_ms_median_ci_high
    if (low is None) != (high is None):
        raise ResultsError(f"{where}: the median's 95% CI has one end only ({low}, {high})")
    slack = 1e-9 * median  # the cells are the numbers' shortest repr: exact, but leave rounding room
    if low is not None and not low - slack <= median <= high + slack:
        raise ResultsError(f"{where}: latency_ms_median {median} lies outside its 95% CI [{low}, {high}]")


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """Read a results CSV into a typed frame (see ``frame_from_rows``); ResultsError if it is not one.

    A CSV of an older schema (lacking some ``ADDED_COLUMNS``) is accepted, with their defaults there.
    """
    return frame_from_rows(read_rows(path))


def read_rows(path: str | os.PathLike) -> list[ResultRow]:
    """The rows of a results CSV (what ``read_results`` puts in a frame); ResultsError if it is not one."""
    path = Path(path)
    try:
        text = read_text_limited(path, "a results CSV")
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path}: cannot read results CSV ({e})") from None
    limit = csv.field_size_limit(MAX_CELL)
    try:
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None:
            raise ResultsError(f"{path}: empty file, expected a results CSV header")
        if not _is_older_schema(header):
            _check_columns(header, str(path))
        rows, lines = [], {}  # ROW_KEY -> the line that has it
        for cells in reader:
            where = f"{path}, line {reader.line_num}"
            if len(cells) != len(header):
                raise ResultsError(f"{where}: {len(cells)} cells, expected {len(header)}")
            values = {name: _parse_cell(cell, name, where) for name, cell in zip(header, cells, strict=True)}
            for name, value in values.items():
                _check_value(name, value, where, str(values.get("scenario", "batch")))
            try:
                row = ResultRow(**values)
            except ValueError as e:
                raise ResultsError(f"{where}: {e}") from None
            _check_row(row, where)
            key = tuple(getattr(row, name) for name in ROW_KEY)
            if key in lines:
                shown = ", ".join(
                    f"{name}={getattr(row, name)}" for name in ROW_KEY if getattr(row, name) not in (None, "")
                )
                raise ResultsError(
                    f"{where}: the same row key as line {lines[key]} ({shown}); a run measures each "
                    "key once, so one of the two lines is a copy or an edit"
                )
            lines[key] = reader.line_num
            rows.append(row)
    except csv.Error as e:  # a cell over MAX_CELL, a NUL byte, ...
        raise ResultsError(f"{path}, line {reader.line_num}: not a readable CSV line ({e})") from None
    finally:
        csv.field_size_limit(limit)
    return rows


def check_distinct_runs(runs: Iterable[tuple[str | os.PathLike, pd.DataFrame]]) -> None:
    """Refuse one run given twice, to a command that takes several (``compare``, ``history``,
    ``report``): (path, frame) pairs of which two hold rows of one ``run_id`` (a file named twice,
    or a copy), which would count the run twice or compare it with itself. Runs that share a file
    name in different folders are different runs (their run ids differ) and pass."""
    seen: dict[str, Path] = {}
    for path, frame in runs:
        path = Path(path)
        for run_id in dict.fromkeys(frame["run_id"]):
            first = seen.setdefault(run_id, path)
            if first is path:
                continue
            if first.resolve() == path.resolve():
                raise ResultsError(f"{path}: given twice; give each run once")
            raise ResultsError(f"{first} and {path} hold the same run (run_id {run_id}); give each run once")


# ----------------------------------------------------------------------------- writing


def _create_new(target: Path, text: str) -> bool:
    """Create ``target`` with ``text`` all at once; False (and nothing written) if it exists."""
    staged = target.with_name(f".{target.name}.{uuid.uuid4().hex}.staged")
    atomic_write_text(staged, text)  # complete and fsynced before it gets the final name
    try:
        try:
            os.link(staged, target)  # atomic, and fails rather than replace an existing file
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system: claim the name, then fill it in one step
            try:
                os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            except FileExistsError:
                return False
            os.replace(staged, target)
        return True
    finally:
        staged.unlink(missing_ok=True)


def _run_id(rows: Sequence[ResultRow]) -> str:
    ids = sorted({r.run_id for r in rows})
    if len(ids) != 1:
        raise ValueError(f"one results file holds one run; rows have run ids {ids}")
    return ids[0]


def write_results(
    rows: Sequence[ResultRow],
    results_dir: str | os.PathLike,
    environment: Mapping[str, str],
    config: Mapping[str, Any],
    *,
    now: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
    markdown: str = "",
) -> Path:
    """Write ``<results_dir>/<UTC time>-<host>[-N].csv`` plus ``.json`` and ``.md``; return the CSV path.

    An existing file is never replaced: a name taken already gets ``-2``, ``-3``, ...
    ``extra`` (measured ceilings, single-stream samples) goes into the ``.json`` sidecar as well;
    ``markdown`` (the tables, rendered by the caller: this module knows nothing of them) into ``.md``.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("no result rows to write")
    run_id = _run_id(rows)
    # Everything is built before any file is created, so a failure here writes nothing.
    csv_text = _csv_text(rows)
    sidecar = {
        "run_id": run_id,
        "environment": dict(environment),
        "config": dict(config),
        "columns": list(COLUMNS),
        **(extra or {}),
    }
    json_text = json.dumps(sidecar, indent=2, default=str) + "\n"
    where = "; ".join(environment[k] for k in ("host", "cpu_model", "gpu_name") if environment.get(k))
    markdown = "\n\n".join(part for part in (f"# Results of run {run_id}", where, markdown) if part)

    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    host = re.sub(r"[^A-Za-z0-9._-]+", "-", environment.get("host", "")).strip(".-") or "host"
    base = f"{utc_timestamp(now, compact=True)}-{host}"
    for n in range(1, 10_000):
        stem = base if n == 1 else f"{base}-{n}"
        csv_path = results_dir / f"{stem}.csv"
        sidecars = [csv_path.with_suffix(".json"), csv_path.with_suffix(".md")]
        # the CSV is the claim on the stem; skip stems whose sidecars exist from elsewhere
        if not any(p.exists() for p in sidecars) and _create_new(csv_path, csv_text):
            break
    else:
        raise RuntimeError(f"{results_dir}: no free file name for {base}")
    atomic_write_text(sidecars[0], json_text)
    atomic_write_text(sidecars[1], markdown)
    return csv_path


# ----------------------------------------------------------------------------- where results go


def check_writable_dir(folder: str | os.PathLike, option: str = "--results-dir") -> Path:
    """Refuse, before any work, a results folder that cannot take the files: a file, a FIFO, socket
    or device, or a folder (or the first existing folder above it) this process cannot write.
    Returns it as a Path."""

    folder = refuse_special(folder, option, "a folder")
    if folder.exists() and not folder.is_dir():
        raise ResultsError(f"{option} {folder}: is a file, expected a folder")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ResultsError(f"{option} {folder}: {existing} is not writable")
    return folder


def fallback_results_dir() -> Path:
    """Where results go when their folder fails at the last step: the system's temporary folder."""
    return Path(tempfile.gettempdir()) / "deepmnist-results"


@dataclasses.dataclass
class RunRecord:
    """What a run stores: its rows (with the derived offline rows), where they go, and the sidecar's
    facts. The harness makes it (``bench.harness.run.Run.record``); ``bench.report.write`` writes it."""

    rows: list[ResultRow]
    results_dir: str
    environment: dict[str, str]
    settings: dict[str, Any]  # the options and the artifacts measured (the sidecar's "settings")
    extra: dict[str, Any]  # the sidecar's other keys: rooflines, samples, durations, memory...
    memory_text: str  # the whole run's peak memory, as one line for the Markdown


def write_results_or_fallback(
    rows: Sequence[ResultRow], results_dir: str | os.PathLike, *args: Any, **kwargs: Any
) -> tuple[Path, str | None]:
    """``write_results``, and if the folder fails at this last step (read-only since the start, a
    full disk) the same files in ``fallback_results_dir()``, so no measurement is lost. Returns the
    CSV path and, after a fallback, the message saying where the files went (else None)."""
    try:
        return write_results(rows, results_dir, *args, **kwargs), None
    except OSError as e:
        reason = e.strerror or str(e)
        where = fallback_results_dir()
        path = write_results(rows, where, *args, **kwargs)
        message = f"could not write the results to {results_dir} ({reason}); they are in {path} instead"
        print(f"warning: {message}", file=sys.stderr)
        return path, message
