"""The results CSV's columns: one ``Column`` record each, in CSV order; the only list of them.

A record says everything the code needs about its column: the CSV writer and reader
(``bench.results.store``: the ``ResultRow`` fields, their types and defaults, which columns CSVs of older
schemas lack), the tables (``bench.report.tables``: display format and alignment), the charts
(``bench.report.plots``: which columns are numbers) and the generated column list ``docs/columns.md``
(``python -m bench.results.columns > docs/columns.md``). Adding a column is adding one record here.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # a column every row sets (no default)


@dataclass(frozen=True)
class Column:
    name: str
    dtype: type  # str, int or float; a number column whose default is None is nullable (empty cell)
    default: Any = REQUIRED  # what a row (and a CSV without the column) holds when not set
    unit: str = ""
    help: str = ""
    fmt: str = ""  # how a table cell shows it: a format spec (",.0f"), "ms" (4 significant digits), "" str()
    added: bool = False  # added after the first published schema: older CSVs lack it, read as default
    environment: bool = False  # copied from collect_environment() into every row
    measured: bool = False  # set only on an ok row (a skipped or failed row has no timings)
    signed: bool = False  # a difference that may be negative (every other number must not be)
    positive: bool = False  # must be > 0 where set (a zero latency or batch is a broken file)
    fraction: bool = False  # a share: from 0 to 1
    # the tables that show it (names of TABLES) -> its heading there, in CSV order among the table's
    # CSV columns (bench.report.cells.layout places each table's computed cells among them)
    shown: Mapping[str, str] = field(default_factory=dict)
    optional: bool = False  # a table drops it when none of its lines has a value

    @property
    def nullable(self) -> bool:
        return self.default is None

    @property
    def numeric(self) -> bool:
        return self.dtype in (int, float)


def _env(name: str, help: str, **kw: Any) -> Column:
    return Column(name, str, "", help=help, environment=True, **kw)


def _timing(name: str, help: str, unit: str = "ms", **kw: Any) -> Column:
    return Column(name, float, None, unit=unit, help=help, measured=True, **kw)


# The self-check's isolation rule (bench.checks.selfcheck): |vs_alone| at most this, and the alone passes'
# own spread too; here because the isolation records state it and the torch-free tables
# (bench.report.tables) judge rows by it.
ISOLATION_TOLERANCE = 0.07


def isolation_verdict(vs_alone: float, alone_spread: float) -> str:
    """``FAIL`` beyond the tolerance of the alone range; within it, ``ok`` where the alone passes
    spread at most the tolerance, else ``undecided`` (bench.checks.selfcheck's docstring says why). A row
    written before ``alone_spread`` existed (NaN) is judged by ``vs_alone`` only, as it was then."""
    if abs(vs_alone) > ISOLATION_TOLERANCE:
        return "FAIL"
    return "undecided" if alone_spread > ISOLATION_TOLERANCE else "ok"


# The tables that show CSV columns (drawn by bench.report.tables and bench.report.scenario_tables, as text and as HTML):
# name -> what it lists. A record's ``shown`` names the ones that show its column.
TABLES = {
    "batch": "one table per scenario, target and batch size: a line per runtime x device (x timing, x provider, x threads)",
    "offline": "the whole model's best throughput per runtime over the batch sizes",
    "single-stream": "batch-1 queries one at a time: latency percentiles per runtime",
    "parity": "per runtime x device x precision: the worst output difference, agreement and accuracy",
    "full loop": "the full loop (uint8 batch in, argmax out) beside the preloaded-tensor timing",
    "streams best": "threads x streams: the fastest setting per runtime",
    "streams": "threads x streams: every setting",
    "server best": "server: the highest arrival rate whose p99 stays under the bound, per runtime",
    "server": "server: every arrival rate",
    "profile": "where the time goes: ms per call of each layer inside the whole model, per runtime",
    "cold start": "process start, prepare, compile and first call, per runtime",
    "memory": "resident memory, CPU time and model size per worker process",
    "isolation": "the self-check: isolated interleaved median against the runtime timed alone",
    "changes": "deepmnist compare OLD NEW: old and new median per measurement",
}


def _in(heading: str, *tables: str) -> dict[str, str]:
    """``shown``: the column under ``heading`` in each of ``tables``."""
    return dict.fromkeys(tables, heading)


_ROWS = ("batch", "offline", "single-stream", "cold start", "memory")  # a line per CSV row, with its keys
_AGGREGATES = ("full loop", "streams best", "server best")  # lines derived from several rows

COLUMNS: tuple[Column, ...] = (
    Column("run_id", str, help="unique id of the run, e.g. 20261128T093000Z-3f9c2a1b"),
    Column("timestamp_utc", str, help="when the run started, ISO 8601 UTC, e.g. 2026-11-28T09:30:00Z"),
    _env("git_commit", "commit of the benchmark's code"),
    _env("host", "host name", shown=_in("host", *_ROWS, "isolation", "parity", "changes", "profile")),
    _env("cpu_model", "CPU model"),
    _env("gpu_name", "GPU model, empty without one"),
    _env("os", "operating system"),
    _env("python", "Python version"),
    _env("torch_version", "torch version"),
    _env("onnxruntime_version", "onnxruntime version"),
    _env("onnx_version", "onnx version"),
    Column("target", str, help='"model" or a layer (models.layers.LAYER_NAMES); profile rows: a layer or "other"'),
    Column("runtime", str, help="runtime name, a key of the registry bench.runtimes.RUNTIMES", shown=_in("runtime", *TABLES)),
    Column("device", str, help="cpu or cuda", shown=_in("device", *TABLES)),
    Column("execution_provider", str, "", help="ONNX Runtime's execution provider; empty for other runtimes", fmt="provider", shown=_in("provider", *_ROWS, "isolation", "parity", "changes"), optional=True),
    Column("precision", str, "fp32", help="arithmetic the runtime computes in: fp32, int8, fp16 or bf16", shown=_in("precision", *_ROWS, "isolation", "parity", *_AGGREGATES)),
    Column("timing", str, "compute", help="compute: inputs already on the device; end_to_end: with host<->device copies; full_loop: a new uint8 batch per call, /255, reshape, run, argmax", shown=_in("timing", *_ROWS, "changes")),
    Column("scenario", str, "batch", help="batch, single-stream, offline, profile, server or streams (bench.results.store.SCENARIOS)", added=True),
    Column("batch_size", int, unit="images", help="images per call", positive=True, shown={"offline": "best batch", "memory": "batch", "isolation": "batch", "full loop": "batch"}),
    Column("threads", int, help="intra-op threads the runtime was given", fmt="d", shown=_in("threads", *_ROWS, "isolation", "changes", "streams")),
    Column("streams", int, None, help="concurrent request streams of the runtime, each its own session (more than 1 only in scenario streams)", fmt=".0f", added=True, shown=_in("streams", "streams")),
    Column("launcher", str, "", help="process: its own worker process (isolated); inline: all runtimes in one process", added=True),
    Column("warmup", int, unit="calls", help="untimed calls before the first round"),
    Column("rounds", int, help="timed rounds (single-stream: queries)", shown=_in("queries", "single-stream", "server", "streams")),
    Column("iterations", int, unit="calls", help="calls per round (single-stream: queries per round)"),
    Column("start_s", float, None, "s", "cold: process start to its runtime imported and ready: the interpreter's start-up and the runtime's import, what any program using the runtime pays (the harness's own start-up is harness_s)", ".2f", added=True, shown=_in("start s", "cold start"), optional=True),
    Column("load_s", float, None, "s", "cold: Runtime.prepare (read the file, create the session)", ".3f", added=True, shown=_in("load s", "cold start")),
    Column("compile_s", float, None, "s", "cold: building for this input shape (torch.compile, TensorRT)", ".2f", added=True, shown=_in("compile s", "cold start"), optional=True),
    Column("first_inference_ms", float, None, "ms", "cold: the first call after preparing (and compiling)", "ms", added=True, shown=_in("first call ms", "cold start")),
    Column("time_to_first_result_s", float, None, "s", "start_s + load_s + compile_s + first_inference_ms: what a command-line app's user waits", ".2f", added=True, shown=_in("to first result s", "cold start"), optional=True),
    Column("harness_s", float, None, "s", "cold: what the harness's worker added to its process's start (reading its spec, importing the harness, opening the shared data), in neither start_s nor time_to_first_result_s; empty inline", ".2f", added=True, shown=_in("harness s", "cold start"), optional=True),
    _timing("latency_ms_mean", "mean latency of one call", fmt="ms", positive=True, shown=_in("wall ms / call (mean)", "memory")),
    _timing("latency_ms_median", "median latency of one call", fmt="ms", positive=True, shown=_in("p50 ms", "server")),
    _timing("latency_ms_min", "fastest call", fmt="ms"),
    _timing("latency_ms_max", "slowest call", fmt="ms"),
    _timing("latency_ms_stddev", "standard deviation of the latency", fmt="ms"),
    _timing("latency_ms_p90", "90th percentile latency", fmt="ms", shown=_in("p90 ms", "single-stream")),
    _timing("latency_ms_p99", "99th percentile latency", fmt="ms"),
    _timing("latency_ms_p999", "99.9th percentile latency", fmt="ms", added=True),
    _timing("latency_ms_median_ci_low", "bootstrap 95% confidence interval of the median, low end", fmt="ms", added=True),
    _timing("latency_ms_median_ci_high", "bootstrap 95% confidence interval of the median, high end", fmt="ms", added=True),
    _timing("latency_ms_p99_ci_low", "bootstrap 95% confidence interval of p99, low end; empty where p99 is (bench.results.stats.min_samples)", fmt="ms", added=True),
    _timing("latency_ms_p99_ci_high", "bootstrap 95% confidence interval of p99, high end", fmt="ms", added=True),
    _timing("latency_ms_p999_ci_low", "bootstrap 95% confidence interval of p99.9, low end; empty where p99.9 is", fmt="ms", added=True),
    _timing("latency_ms_p999_ci_high", "bootstrap 95% confidence interval of p99.9, high end", fmt="ms", added=True),
    _timing("cv", "coefficient of variation, stddev / mean", unit="", added=True),
    Column("noisy", int, None, help="1 if cv > bench.results.stats.NOISY_CV, else 0", measured=True, added=True),
    _timing("throughput_ips", "images per second, from the median (server: achieved_qps; streams: queries / wall time)", unit="images/s", fmt=",.0f", positive=True, shown={"batch": "images/s", "offline": "images/s", "streams": "queries/s"}),
    Column("target_qps", float, None, "queries/s", "server: the Poisson arrival rate asked for", ",.0f", added=True, shown=_in("target q/s", "server")),
    _timing("achieved_qps", "server: queries completed / (last result - first arrival)", unit="queries/s", fmt=",.0f", added=True, shown={"server": "achieved q/s", "server best": "achieved queries/s"}),
    Column("latency_bound_ms", float, None, "ms", "server: the p99 bound of the run (--latency-bound)", "ms", added=True),
    _timing("gflops", "GFLOP per second, from the median", unit="GFLOP/s", fmt=".2f", shown=_in("GFLOP/s", "batch", "offline")),
    _timing("pct_of_peak", "gflops / peak_gflops * 100", unit="%", fmt=".1f", added=True, shown=_in("% of peak", "batch", "offline"), optional=True),
    Column("arithmetic_intensity", float, None, "FLOP/byte", "FLOP per byte moved (bench.harness.roofline.arithmetic_intensity)", added=True),
    Column("peak_gflops", float, None, "GFLOP/s", "the device's matmul peak in the row's precision (float32 where none), measured in the same run", added=True),
    Column("bandwidth_gbs", float, None, "GB/s", "the device's copy bandwidth (read + write), measured in the same run", added=True),
    Column("rss_after_load_mb", float, None, "MiB", "the worker's resident memory after prepare: interpreter, runtime, model and the harness's worker, with the processes the runtime started (a Node host, a browser)", ",.0f", added=True, shown=_in("RSS after load MiB", "memory"), optional=True),
    Column("runtime_rss_mb", float, None, "MiB", "the runtime's own footprint: rss_after_load_mb minus the worker process's resident memory before it imported the runtime; empty inline", ",.0f", added=True, shown=_in("runtime MiB", "memory"), optional=True),
    Column("peak_rss_mb", float, None, "MiB", "the worker process's peak resident memory (VmHWM) from its start to the end of the case's rounds, plus the peaks of the processes the runtime started", ",.0f", added=True, shown=_in("peak RSS MiB", "memory"), optional=True),
    Column("cuda_peak_allocated_mb", float, None, "MiB", "CUDA: peak memory torch's allocator held in the rounds", ",.0f", added=True, shown=_in("CUDA peak MiB", "memory"), optional=True),
    Column("cpu_ms_per_call", float, None, "ms", "the worker's user + sys CPU time over the timed calls / calls", "ms", added=True, shown={"memory": "CPU ms / call", "streams": "CPU ms / query"}, optional=True),
    Column("model_bytes", int, None, "bytes", "size on disk of the model file(s) the runtime loaded", added=True, fmt="MB", shown=_in("model MB", "memory"), optional=True),
    Column("accuracy", float, None, help="fraction of the 10,000 MNIST test images classified right; model rows only", fraction=True, fmt="%", shown=_in("accuracy %", "batch", "offline", "single-stream", "parity"), optional=True),
    Column("agreement", float, None, help="fraction of argmax equal to eager PyTorch on the CPU; model rows only", fraction=True, fmt="%", shown=_in("agreement %", "batch", "parity"), optional=True),
    Column("max_abs_diff", float, None, help="max |output - reference output| (eager PyTorch on the CPU)", fmt=".2e", shown=_in("max abs diff", "parity")),
    Column("vs_alone", float, None, help="self-check: distance of the median from the range of the runtime's alone medians (passes before and after the run), as a fraction of the nearer end; 0 inside", added=True, signed=True, fmt="+%", shown=_in("vs alone", "isolation")),
    Column("alone_spread", float, None, help="self-check: max / min - 1 of those alone medians, the machine's own variation; above the tolerance a line within it is undecided", added=True, fmt="+%", shown=_in("alone spread", "isolation"), optional=True),
    Column("isolation_ok", int, None, help=f"self-check: 1 if every line of this runtime is ok (vs_alone and alone_spread within {ISOLATION_TOLERANCE:.0%}), 0 if one fails or could not be timed alone, empty if none fails and one is undecided", added=True, fmt="yes/no", shown=_in("runtime passes", "isolation")),
    Column("status", str, "ok", help="ok, skipped, failed, crashed or timeout (bench.results.store.STATUSES)"),
    Column("reason", str, "", help='why skipped or failed; "" when ok'),
    Column("note", str, "", help="about an ok row's numbers: which tail percentiles are empty and why, queries short of the aim, pinning, ...", added=True, shown=_in("note", "single-stream", "server", "streams"), optional=True),
)  # fmt: skip
BY_NAME = {column.name: column for column in COLUMNS}
# What tells the rows of one results CSV apart: no two rows share it (``bench.results.store.read_rows``
# refuses a file where two do, naming both lines; ``deepmnist bench`` refuses a list option naming
# one value twice, which would write such rows). Across two runs, the same key less ``run_id``, the
# server's rate and the stream count (those scenarios have tables of their own) is
# ``bench.report.analysis.CHANGE_KEY``.
ROW_KEY = (
    "run_id",
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
    "target_qps",
    "streams",
)
NAMES = tuple(BY_NAME)


def _line(c: Column) -> str:
    """One column's line of the docs table."""
    kind = {str: "text", int: "integer", float: "number"}[c.dtype]
    if c.numeric:
        kind += ", > 0" if c.positive else ", 0 to 1" if c.fraction else "" if c.signed else ", >= 0"
    kind += ", may be empty" if c.nullable else ""
    meaning = c.help.replace("|", "\\|") + (" (added after the first schema)" if c.added else "")
    shown = ", ".join(
        f"{table} ({heading})" if heading != c.name else table for table, heading in c.shown.items()
    )
    return f"| `{c.name}` | {kind} | {c.unit} | {meaning} | {shown} |"


def markdown() -> str:
    """docs/columns.md: the CSV's columns in order, with type, unit and meaning."""
    lines = [
        "# The results CSV's columns",
        "",
        "Generated from `bench/results/columns.py` by `python -m bench.results.columns > docs/columns.md`; do not edit.",
        "One row per target x runtime x device x batch size x thread count (x timing, x scenario; server:",
        "x target rate; streams: x stream count).",
        "Columns marked (added after the first schema) are missing from CSVs of the first schema;",
        "`read_results` reads them as their default.",
        "",
        "The last column names the tables that show the column (under the heading in brackets where it",
        "differs from the column's name); the tables:",
        "",
        *(f"- {name}: {what}" for name, what in TABLES.items()),
        "",
        "| column | type | unit | meaning | shown in |",
        "|:--|:--|:--|:--|:--|",
    ]
    lines += [_line(c) for c in COLUMNS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
