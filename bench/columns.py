"""The results CSV's columns: one ``Column`` record each, in CSV order; the only list of them.

A record says everything the code needs about its column: the CSV writer and reader
(``bench.results``: the ``ResultRow`` fields, their types and defaults, which columns CSVs of older
schemas lack), the tables (``bench.tables``: display format and alignment), the charts
(``bench.plots``: which columns are numbers) and the generated column list ``docs/columns.md``
(``python -m bench.columns > docs/columns.md``). Adding a column is adding one record here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
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

    @property
    def nullable(self) -> bool:
        return self.default is None

    @property
    def numeric(self) -> bool:
        return self.dtype in (int, float)


def _env(name: str, help: str) -> Column:
    return Column(name, str, "", help=help, environment=True)


def _timing(name: str, help: str, unit: str = "ms", **kw: Any) -> Column:
    return Column(name, float, None, unit=unit, help=help, measured=True, **kw)


# The self-check's isolation rule (bench.selfcheck): |vs_alone| at most this; here because the
# isolation_ok record states it and the torch-free tables (bench.tables) check rows against it.
ISOLATION_TOLERANCE = 0.07

COLUMNS: tuple[Column, ...] = (
    Column("run_id", str, help="unique id of the run, e.g. 20261128T093000Z-3f9c2a1b"),
    Column("timestamp_utc", str, help="when the run started, ISO 8601 UTC, e.g. 2026-11-28T09:30:00Z"),
    _env("git_commit", "commit of the benchmark's code"),
    _env("host", "host name"),
    _env("cpu_model", "CPU model"),
    _env("gpu_name", "GPU model, empty without one"),
    _env("os", "operating system"),
    _env("python", "Python version"),
    _env("torch_version", "torch version"),
    _env("onnxruntime_version", "onnxruntime version"),
    _env("onnx_version", "onnx version"),
    Column("target", str, help='"model" or a layer (models.layers.LAYER_NAMES); profile rows: a layer or "other"'),
    Column("runtime", str, help="runtime name, a key of the registry bench.runtimes.RUNTIMES"),
    Column("device", str, help="cpu or cuda"),
    Column("execution_provider", str, "", help="ONNX Runtime's execution provider; empty for other runtimes"),
    Column("precision", str, "fp32", help="arithmetic the runtime computes in: fp32, int8, fp16 or bf16"),
    Column("timing", str, "compute", help="compute: inputs already on the device; end_to_end: with host<->device copies; full_loop: a new uint8 batch per call, /255, reshape, run, argmax"),
    Column("scenario", str, "batch", help="batch, single-stream, offline, profile, server or streams (bench.results.SCENARIOS)", added=True),
    Column("batch_size", int, unit="images", help="images per call", positive=True),
    Column("threads", int, help="intra-op threads the runtime was given", fmt="d"),
    Column("streams", int, None, help="concurrent request streams of the runtime, each its own session (more than 1 only in scenario streams)", fmt=".0f", added=True),
    Column("launcher", str, "", help="process: its own worker process (isolated); inline: all runtimes in one process", added=True),
    Column("warmup", int, unit="calls", help="untimed calls before the first round"),
    Column("rounds", int, help="timed rounds (single-stream: queries)"),
    Column("iterations", int, unit="calls", help="calls per round (single-stream: queries per round)"),
    Column("start_s", float, None, "s", "cold: worker process start to its runtime imported and ready", ".2f", added=True),
    Column("load_s", float, None, "s", "cold: Runtime.prepare (read the file, create the session)", ".3f", added=True),
    Column("compile_s", float, None, "s", "cold: building for this input shape (torch.compile, TensorRT)", ".2f", added=True),
    Column("first_inference_ms", float, None, "ms", "cold: the first call after preparing (and compiling)", "ms", added=True),
    Column("time_to_first_result_s", float, None, "s", "start_s + load_s + compile_s + first_inference_ms: what a command-line app's user waits", ".2f", added=True),
    _timing("latency_ms_mean", "mean latency of one call", fmt="ms", positive=True),
    _timing("latency_ms_median", "median latency of one call", fmt="ms", positive=True),
    _timing("latency_ms_min", "fastest call", fmt="ms"),
    _timing("latency_ms_max", "slowest call", fmt="ms"),
    _timing("latency_ms_stddev", "standard deviation of the latency", fmt="ms"),
    _timing("latency_ms_p90", "90th percentile latency", fmt="ms"),
    _timing("latency_ms_p99", "99th percentile latency", fmt="ms"),
    _timing("latency_ms_p999", "99.9th percentile latency", fmt="ms", added=True),
    _timing("latency_ms_median_ci_low", "bootstrap 95% confidence interval of the median, low end", fmt="ms", added=True),
    _timing("latency_ms_median_ci_high", "bootstrap 95% confidence interval of the median, high end", fmt="ms", added=True),
    _timing("latency_ms_p99_ci_low", "bootstrap 95% confidence interval of p99, low end; empty where p99 is (bench.stats.min_samples)", fmt="ms", added=True),
    _timing("latency_ms_p99_ci_high", "bootstrap 95% confidence interval of p99, high end", fmt="ms", added=True),
    _timing("latency_ms_p999_ci_low", "bootstrap 95% confidence interval of p99.9, low end; empty where p99.9 is", fmt="ms", added=True),
    _timing("latency_ms_p999_ci_high", "bootstrap 95% confidence interval of p99.9, high end", fmt="ms", added=True),
    _timing("cv", "coefficient of variation, stddev / mean", unit="", added=True),
    Column("noisy", int, None, help="1 if cv > bench.stats.NOISY_CV, else 0", measured=True, added=True),
    _timing("throughput_ips", "images per second, from the median (server: achieved_qps; streams: queries / wall time)", unit="images/s", fmt=",.0f", positive=True),
    Column("target_qps", float, None, "queries/s", "server: the Poisson arrival rate asked for", ",.0f", added=True),
    _timing("achieved_qps", "server: queries completed / (last result - first arrival)", unit="queries/s", fmt=",.0f", added=True),
    Column("latency_bound_ms", float, None, "ms", "server: the p99 bound of the run (--latency-bound)", "ms", added=True),
    _timing("gflops", "GFLOP per second, from the median", unit="GFLOP/s", fmt=".2f"),
    _timing("pct_of_peak", "gflops / peak_gflops * 100", unit="%", fmt=".1f", added=True),
    Column("arithmetic_intensity", float, None, "FLOP/byte", "FLOP per byte moved (bench.roofline.arithmetic_intensity)", added=True),
    Column("peak_gflops", float, None, "GFLOP/s", "the device's matmul peak in the row's precision (float32 where none), measured in the same run", added=True),
    Column("bandwidth_gbs", float, None, "GB/s", "the device's copy bandwidth (read + write), measured in the same run", added=True),
    Column("rss_after_load_mb", float, None, "MiB", "the worker's resident memory after prepare", ",.0f", added=True),
    Column("peak_rss_mb", float, None, "MiB", "the worker's peak resident memory during the case's rounds", ",.0f", added=True),
    Column("cuda_peak_allocated_mb", float, None, "MiB", "CUDA: peak memory torch's allocator held in the rounds", ",.0f", added=True),
    Column("cpu_ms_per_call", float, None, "ms", "the worker's user + sys CPU time over the timed calls / calls", "ms", added=True),
    Column("model_bytes", int, None, "bytes", "size on disk of the model file(s) the runtime loaded", added=True),
    Column("accuracy", float, None, help="fraction of the 10,000 MNIST test images classified right; model rows only", fraction=True),
    Column("agreement", float, None, help="fraction of argmax equal to eager PyTorch on the CPU; model rows only", fraction=True),
    Column("max_abs_diff", float, None, help="max |output - reference output| (eager PyTorch on the CPU)", fmt=".2e"),
    Column("vs_alone", float, None, help="self-check: distance of the median from the range of the runtime's two alone medians (before and after the run), as a fraction of the nearer end; 0 inside", added=True, signed=True),
    Column("isolation_ok", int, None, help=f"self-check: 1 if every vs_alone of this runtime is within {ISOLATION_TOLERANCE:.0%}, else 0 (also 0 when it could not be timed alone)", added=True),
    Column("status", str, "ok", help="ok, skipped, failed, crashed or timeout (bench.results.STATUSES)"),
    Column("reason", str, "", help='why skipped or failed; "" when ok'),
    Column("note", str, "", help="about an ok row's numbers: which tail percentiles are empty and why, queries short of the aim, pinning, ...", added=True),
)  # fmt: skip
BY_NAME = {column.name: column for column in COLUMNS}
NAMES = tuple(BY_NAME)


def _line(c: Column) -> str:
    """One column's line of the docs table."""
    kind = {str: "text", int: "integer", float: "number"}[c.dtype]
    if c.numeric:
        kind += ", > 0" if c.positive else ", 0 to 1" if c.fraction else "" if c.signed else ", >= 0"
    kind += ", may be empty" if c.nullable else ""
    meaning = c.help.replace("|", "\\|") + (" (added after the first schema)" if c.added else "")
    return f"| `{c.name}` | {kind} | {c.unit} | {meaning} |"


def markdown() -> str:
    """docs/columns.md: the CSV's columns in order, with type, unit and meaning."""
    lines = [
        "# The results CSV's columns",
        "",
        "Generated from `bench/columns.py` by `python -m bench.columns > docs/columns.md`; do not edit.",
        "One row per target x runtime x device x batch size x thread count (x timing, x scenario; server:",
        "x target rate; streams: x stream count).",
        "Columns marked (added after the first schema) are missing from CSVs of the first schema;",
        "`read_results` reads them as their default.",
        "",
        "| column | type | unit | meaning |",
        "|:--|:--|:--|:--|",
    ]
    lines += [_line(c) for c in COLUMNS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
