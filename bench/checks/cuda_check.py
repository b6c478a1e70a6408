"""The checks a GPU run must pass, written apart from the harness, and the CUDA reference table.

``python -m bench.checks.cuda_check versions``: GPU, driver, CUDA, cuDNN and library versions, and the
execution providers ONNX Runtime offers here.

``python -m bench.checks.cuda_check crosscheck RESULTS.csv [--device cuda]``: reads a run's CSV and checks
it against measurements made here, with none of the harness's timing code:

- timing: for each ok whole-model row at batch 1 and the largest batch (compute and end-to-end),
  the same call (``prepared.run`` on a resident input; for end-to-end, host input to host output)
  in a plain loop between two ``torch.cuda.Event`` records (``time.perf_counter`` on the CPU):
  the median over repeats must agree with the CSV's median within ``TIMING_TOLERANCE``;
- accuracy: every ok whole-model row within ``ACCURACY_POINTS`` of eager PyTorch float32 on the
  CPU, computed here over all 10,000 test images;
- parity: no row of the device failed its parity gate (skipped rows are listed with their reason);
- copies: for each runtime and batch with compute and end-to-end rows, end-to-end minus compute
  against the copy time that the measured host->device and device->host rates predict for the
  input ``(N, 1, 28, 28)`` float32 and the output ``(N, 10)`` float32.

It writes ``<stem>-crosscheck.md`` and ``.json`` beside the CSV and exits 1 when a check fails.

``python -m bench.checks.cuda_check table RESULTS.csv``: the CUDA table of docs/cuda.md (whole model, batch 1
and the largest batch, every runtime of the device, compute and end-to-end) and the measured peaks,
generated from a committed run (``tests/checks/test_cuda_check.py`` checks docs/cuda.md against it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.harness.clock import clock_for

TIMING_TOLERANCE = 0.10  # the CSV median and the plain loop's must agree within 10%
ACCURACY_POINTS = 0.05  # percentage points of test accuracy from CPU float32
COPY_RATIO = (0.5, 2.0)  # (end-to-end - compute) / predicted copy time counts as agreeing inside this
LOOP_SECONDS = 0.05  # s per repeat of the plain loop
LOOP_REPEATS = 15
LOOP_WARMUP = 0.5  # s of untimed calls first: an idle GPU runs at low clocks until kept busy


# ----------------------------------------------------------------------------- versions


def versions() -> dict[str, str]:
    import subprocess

    import torch

    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch CUDA": str(torch.version.cuda),
        "cuDNN": str(torch.backends.cudnn.version()),
        "CUDA available": str(torch.cuda.is_available()),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["GPU"] = (
            f"{props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs, "
        )
        info["GPU"] += f"compute capability {props.major}.{props.minor}"
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        info["driver"] = smi.stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        info["driver"] = f"nvidia-smi failed: {e}"
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime providers"] = ", ".join(ort.get_available_providers())
    except ImportError as e:
        info["onnxruntime"] = f"not importable: {e}"
    try:
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        info["tensorrt"] = "not installed"
    return info


# ----------------------------------------------------------------------------- the plain loop


def plain_loop_ms(call: Callable[[], Any], device: str) -> float:
    """Median ms per call of ``call`` in a plain loop: the device's clock (``bench.harness.clock``) around
    N calls, N chosen so a repeat lasts about LOOP_SECONDS, after LOOP_WARMUP s of untimed calls."""
    import torch

    start_t, calls = time.perf_counter(), 0
    while time.perf_counter() - start_t < LOOP_WARMUP or calls < 10:
        call()
        calls += 1
    if device == "cuda":
        torch.cuda.synchronize()
    n = max(1, int(LOOP_SECONDS / max((time.perf_counter() - start_t) / calls, 1e-6)))
    clock = clock_for(device)
    per_call = []
    for _ in range(LOOP_REPEATS):
        start = clock()
        for _ in range(n):
            call()
        per_call.append((clock() - start) * 1e3 / n)  # ms
    return float(np.median(per_call))


def copy_rates(device: str) -> dict[str, float]:
    """Host (pageable, as the harness's inputs) <-> device copies: latency of a 4-byte copy (ms)
    and rate of a 64 MiB copy (GB/s), each direction, timed with CUDA events."""
    import torch

    out = {}
    for label, nbytes in (("latency", 4), ("rate", 64 << 20)):
        host = torch.ones(nbytes // 4)
        dev = host.to(device)
        for direction, fn in (("h2d", lambda h=host: h.to(device)), ("d2h", lambda d=dev: d.cpu())):
            ms = plain_loop_ms(fn, device)
            if label == "latency":
                out[f"{direction}_latency_ms"] = ms
            else:
                out[f"{direction}_gbs"] = nbytes / (ms / 1e3) / 1e9
    return out


def predicted_copy_ms(rates: dict[str, float], batch: int) -> float:
    """Input (N, 1, 28, 28) float32 up, logits (N, 10) float32 down, at the measured rates."""
    up, down = batch * 28 * 28 * 4, batch * 10 * 4
    return (
        rates["h2d_latency_ms"]
        + up / (rates["h2d_gbs"] * 1e9) * 1e3
        + rates["d2h_latency_ms"]
        + down / (rates["d2h_gbs"] * 1e9) * 1e3
    )


# ----------------------------------------------------------------------------- crosscheck


@dataclass
class Check:
    kind: str  # timing, accuracy, parity, copies
    subject: str  # runtime, batch, timing ...
    measured: str
    expected: str
    ok: bool


def _timing_checks(
    frame: pd.DataFrame,
    device: str,
    artifacts_dir: str | None,
    synced: dict[tuple[str, int], dict[str, float]],
) -> tuple[list[Check], Any]:
    """Timing checks; fills ``synced[(runtime, batch)]`` with the plain loop's ms per call of
    ``compute``, ``compute_synced`` (run, then wait for the device) and ``end_to_end``."""
    # deliberate: its subcommands run on a fresh GPU machine; each loads only what it needs
    from bench.harness.prepare import ensure_artifacts
    from bench.runtimes import RUNTIMES, Compilable
    from models.data import to_input

    artifacts, mnist = ensure_artifacts(artifacts_dir)
    ok = frame[(frame.status == "ok") & (frame.target == "model") & (frame.scenario == "batch")]
    batches = sorted({1, int(ok.batch_size.max())}) if len(ok) else []
    checks = []
    for (runtime, batch), rows in ok[ok.batch_size.isin(batches)].groupby(["runtime", "batch_size"]):
        x_host = to_input(mnist.test_images[: int(batch)]).numpy()
        prepared = RUNTIMES[runtime].prepare("model", device, artifacts, int(rows.threads.iloc[0]))
        x_dev = prepared.to_device(x_host)
        if isinstance(prepared, Compilable):
            prepared.compile(x_dev)
        calls = {
            "compute": lambda p=prepared, x=x_dev: p.run(x),
            "end_to_end": lambda p=prepared, x=x_host: p.to_host(p.run(p.to_device(x))),
        }
        measured = synced.setdefault((runtime, int(batch)), {})
        if device == "cuda":
            measured["compute_synced"] = plain_loop_ms(
                lambda p=prepared, x=x_dev: (p.run(x), p.sync()), device
            )
        for _, row in rows.iterrows():
            loop = measured[row.timing] = plain_loop_ms(calls[row.timing], device)
            ratio = loop / row.latency_ms_median
            checks.append(
                Check("timing", f"{runtime} batch {batch} {row.timing}", f"{loop:.4g} ms (plain loop)",
                      f"{row.latency_ms_median:.4g} ms (CSV median), within {TIMING_TOLERANCE:.0%}",
                      abs(ratio - 1) <= TIMING_TOLERANCE)
            )  # fmt: skip
        del prepared
    return checks, (artifacts, mnist)


def _accuracy_checks(frame: pd.DataFrame, artifacts: Any, mnist: Any) -> list[Check]:
    import torch

    # deliberate: its subcommands run on a fresh GPU machine; each loads only what it needs
    from models.data import to_input

    with torch.no_grad():
        preds = [
            artifacts.net(to_input(mnist.test_images[i : i + 1000])).argmax(1).numpy()
            for i in range(0, len(mnist.test_labels), 1000)
        ]
    cpu = float((np.concatenate(preds) == mnist.test_labels).mean()) * 100
    ok = frame[(frame.status == "ok") & (frame.target == "model") & frame.accuracy.notna()]
    checks = []
    for (runtime, timing), rows in ok.groupby(["runtime", "timing"]):
        acc = float(rows.accuracy.iloc[0]) * 100
        checks.append(
            Check("accuracy", f"{runtime} {timing}", f"{acc:.2f}%",
                  f"{cpu:.2f}% (eager float32, CPU) +- {ACCURACY_POINTS}", abs(acc - cpu) <= ACCURACY_POINTS + 1e-9)
        )  # fmt: skip
    return checks


def _parity_checks(frame: pd.DataFrame) -> list[Check]:
    failed = frame[frame.status == "failed"]
    checks = [
        Check(
            "parity", f"{r.target} b{r.batch_size} {r.runtime} {r.timing}", str(r.reason), "status ok", False
        )
        for r in failed.itertuples()
    ]
    ok = int((frame.status == "ok").sum())
    checks.append(
        Check("parity", "all rows", f"{ok} ok, {len(failed)} failed", "no failed row", failed.empty)
    )
    return checks


def _copy_checks(
    synced: dict[tuple[str, int], dict[str, float]], device: str
) -> tuple[list[Check], dict[str, float]]:
    """End-to-end minus compute-then-synchronise (both plain loops) against the predicted copy
    time. Plain compute timing is not the baseline: on CUDA it only queues kernels, and a call that
    the CPU can queue faster than the GPU runs it overlaps with the next, while an end-to-end call
    waits for its result; the wait is not a copy."""
    pairs = {k: v for k, v in synced.items() if {"compute_synced", "end_to_end"} <= v.keys()}
    if device != "cuda" or not pairs:
        return [], {}
    rates = copy_rates(device)
    checks = []
    low, high = COPY_RATIO
    for (runtime, batch), ms in sorted(pairs.items()):
        delta = ms["end_to_end"] - ms["compute_synced"]
        predicted = predicted_copy_ms(rates, batch)
        checks.append(
            Check("copies", f"{runtime} batch {batch}",
                  f"{delta * 1e3:.1f} us (end_to_end - compute_synced; compute alone {ms.get('compute', float('nan')) * 1e3:.1f} us)",
                  f"{predicted * 1e3:.1f} us predicted, ratio in [{low}, {high}]", low <= delta / predicted <= high)
        )  # fmt: skip
    return checks, rates


def gpu_clock_mhz() -> str:
    """The SM clock now (MHz, via NVML), or why it is unknown."""
    import torch

    try:
        return f"{torch.cuda.clock_rate()} MHz"
    except Exception as e:  # NVML missing or not permitted: the clock is context, not a check
        return f"unknown ({type(e).__name__})"


def crosscheck(csv: Path, device: str, artifacts_dir: str | None) -> tuple[list[Check], dict[str, float]]:
    # deliberate: its subcommands run on a fresh GPU machine; each loads only what it needs
    from bench.results.store import read_results

    frame = read_results(csv)
    frame = frame[frame.device == device]
    synced: dict[tuple[str, int], dict[str, float]] = {}
    timing, (artifacts, mnist) = _timing_checks(frame, device, artifacts_dir, synced)
    copies, rates = _copy_checks(synced, device)
    if device == "cuda":
        rates["sm_clock_after_checks"] = gpu_clock_mhz()  # type: ignore[assignment]
    checks = [*_parity_checks(frame), *_accuracy_checks(frame, artifacts, mnist), *timing, *copies]
    return checks, rates


def render_checks(checks: Sequence[Check], rates: dict[str, float], device: str, csv: Path) -> str:
    lines = [
        f"# Independent checks of `{csv.name}` ({device})",
        "",
        "Written by `python -m bench.checks.cuda_check crosscheck` (module docstring says what each check is).",
        "",
    ]
    if rates:
        lines += [
            "Host<->device copies (pageable host memory): "
            + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in rates.items()),
            "",
        ]
    table = pd.DataFrame([asdict(c) for c in checks])
    if not table.empty:
        table["ok"] = table["ok"].map({True: "ok", False: "FAILED"})
        lines.append(table.to_markdown(index=False))
    failed = sum(not c.ok for c in checks)
    lines += ["", f"{len(checks) - failed} of {len(checks)} checks passed."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- the docs/cuda.md table


def reference_table(csv: Path, device: str = "cuda") -> str:
    """Whole model at batch 1 and the largest batch, every ok runtime of ``device``: compute and
    end-to-end medians (ms, with the 95% CI), compute throughput, % of the roof of the row's
    precision, accuracy; then the measured peaks from the sidecar."""
    # deliberate: its subcommands run on a fresh GPU machine; each loads only what it needs
    from bench.results.sidecar import read_sidecar
    from bench.results.store import read_results

    frame = read_results(csv)
    ok = frame[(frame.device == device) & (frame.status == "ok") & (frame.target == "model")]
    ok = ok[ok.scenario == "batch"]
    batches = sorted({1, int(ok.batch_size.max())})
    out = []
    for batch in batches:
        rows = ok[ok.batch_size == batch]
        compute = rows[rows.timing == "compute"].sort_values("latency_ms_median")
        e2e = rows[rows.timing == "end_to_end"].set_index("runtime")
        table = pd.DataFrame(
            {
                "runtime": compute.runtime,
                "precision": compute.precision,
                "compute ms": [_ci(r) for r in compute.itertuples()],
                "end-to-end ms": [_ci(e2e.loc[r]) if r in e2e.index else "" for r in compute.runtime],
                "images/s": compute.throughput_ips.map(lambda v: f"{v:,.0f}"),
                "% of peak": compute.pct_of_peak.map(lambda v: f"{v:.2f}"),
                "accuracy %": compute.accuracy.map(lambda v: f"{v * 100:.2f}"),
            }
        )
        out += [f"**batch {batch}**", "", table.to_markdown(index=False), ""]
    roof = ((read_sidecar(csv) or {}).get("rooflines") or {}).get(device)
    if roof:
        peaks = {"fp32 (TF32 off)": roof["peak_gflops"], **roof.get("precision_peaks", {})}
        out.append(
            "Measured peaks (`torch.mm`): "
            + ", ".join(f"{k} {v / 1e3:,.1f} TFLOP/s" for k, v in peaks.items())
            + f"; copy bandwidth {roof['bandwidth_gbs']:,.0f} GB/s."
        )
    return "\n".join(out).rstrip() + "\n"


def _ci(row: Any) -> str:
    return f"{row.latency_ms_median:.4g} [{row.latency_ms_median_ci_low:.4g}, {row.latency_ms_median_ci_high:.4g}]"


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.checks.cuda_check", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("versions", help="GPU, driver, CUDA and library versions")
    check = sub.add_parser("crosscheck", help="independent checks of a run's CSV")
    check.add_argument("csv", type=Path)
    check.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    check.add_argument("--artifacts", metavar="DIR")
    table = sub.add_parser("table", help="the reference table of docs/cuda.md from a run's CSV")
    table.add_argument("csv", type=Path)
    table.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = parser.parse_args(argv)
    if args.cmd == "versions":
        for key, value in versions().items():
            print(f"{key}: {value}")
        return 0
    if not args.csv.is_file():
        print(f"error: {args.csv}: no such results CSV", file=sys.stderr)
        return 2
    if args.cmd == "table":
        print(reference_table(args.csv, args.device), end="")
        return 0
    # deliberate: its subcommands run on a fresh GPU machine; each loads only what it needs
    from models.atomic import atomic_write_text

    checks, rates = crosscheck(args.csv, args.device, args.artifacts)
    text = render_checks(checks, rates, args.device, args.csv)
    stem = args.csv.with_suffix("")
    atomic_write_text(f"{stem}-crosscheck.md", text)
    payload = {"checks": [asdict(c) for c in checks], "copy_rates": rates}
    atomic_write_text(f"{stem}-crosscheck.json", json.dumps(payload, indent=1) + "\n")
    print(text, end="")
    return 0 if checks and all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
