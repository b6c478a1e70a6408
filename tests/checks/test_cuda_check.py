"""CUDA: every runtime's CUDA path on a real GPU (skipped with the reason elsewhere), and the parts
of the CUDA check (bench/checks/cuda_check.sh, bench/checks/cuda_check.py) that run on any machine.

On a GPU machine, ``bash bench/checks/cuda_check.sh`` runs this file first, then the CUDA matrix.
"""

from __future__ import annotations

import csv as _csv
import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from bench.checks.cuda_check import main as cuda_check_main
from bench.checks.cuda_check import predicted_copy_ms, reference_table
from bench.harness.clock import clock_for
from bench.harness.roofline import Roofline, measure_roofline
from bench.results.store import read_results
from bench.runtimes import RUNTIMES, Artifacts, Compilable, tolerance
from bench.runtimes.device import NO_CUDA, cuda_unavailable_reason
from models.checkpoint import load_checkpoint
from models.data import to_input
from models.paths import REPO_ROOT

needs_cuda = pytest.mark.skipif(cuda_unavailable_reason() is not None, reason=NO_CUDA)
BATCH = 64


@pytest.fixture(scope="module")
def artifacts(exported, trained_checkpoint) -> Artifacts:
    return Artifacts(net=load_checkpoint(trained_checkpoint).model(), manifest=exported)


# ----------------------------------------------------------------------------- on a GPU


@needs_cuda
@pytest.mark.parametrize("name", list(RUNTIMES))
def test_runtime_on_cuda_matches_eager_cpu(name, artifacts, mnist):
    """Each runtime's CUDA path, compute (resident input) and end to end (host in, host out),
    against eager PyTorch on the CPU within the runtime's CUDA tolerance."""
    runtime = RUNTIMES[name]
    if reason := runtime.supports("cuda"):
        pytest.skip(reason)
    x = to_input(mnist.test_images[:BATCH])
    with torch.no_grad():
        expected = artifacts.net(x).numpy()
    prepared = runtime.prepare("model", "cuda", artifacts, 1)
    x_dev = prepared.to_device(x.numpy())
    if isinstance(prepared, Compilable):
        prepared.compile(x_dev)
    compute = prepared.to_host(prepared.run(x_dev))
    end_to_end = prepared.to_host(prepared.run(prepared.to_device(x.numpy())))
    limit = tolerance(name, "cuda")
    for got in (compute, end_to_end):
        assert got.shape == expected.shape and np.isfinite(got).all()
        assert np.abs(got - expected).max() <= limit
        assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.98


@needs_cuda
def test_cuda_event_clock_spans_queued_gpu_work():
    """The CUDA clock synchronises: a difference of two readings covers the GPU work queued
    between them, as the host clock around a synchronised span does (not a speed goal)."""
    clock = clock_for("cuda")
    torch.cuda._sleep(1000)  # context and clock set up
    torch.cuda.synchronize()
    host0, dev0 = time.perf_counter(), clock()
    torch.cuda._sleep(200_000_000)  # cycles: a kernel of a fraction of a second
    dev1 = clock()
    host1 = time.perf_counter()
    assert dev1 - dev0 > 0.01
    assert dev1 - dev0 == pytest.approx(host1 - host0, rel=0.2)


@needs_cuda
def test_cuda_roofline_has_a_roof_per_precision():
    roof = measure_roofline("cuda")
    assert roof.peak_gflops > 0 and roof.bandwidth_gbs > 0
    assert set(roof.precision_peaks) == {"fp16", "bf16"}
    assert all(v > 0 for v in roof.precision_peaks.values())
    assert roof.peak_for("fp16") == roof.precision_peaks["fp16"]
    assert roof.peak_for("fp32") == roof.peak_gflops


# ----------------------------------------------------------------------------- anywhere


def test_peak_for_uses_the_row_precision_and_falls_back_to_fp32():
    roof = Roofline("cuda", 50_000.0, 4_000.0, {"torch.mm": 50_000.0}, {"fp16": 700_000.0})
    assert roof.peak_for("fp16") == 700_000.0
    assert roof.peak_for("bf16") == 50_000.0  # not measured: the float32 roof
    assert roof.peak_for("fp32") == 50_000.0


def test_predicted_copy_time_adds_latency_and_bytes():
    rates = {"h2d_latency_ms": 0.01, "h2d_gbs": 10.0, "d2h_latency_ms": 0.02, "d2h_gbs": 5.0}
    # batch 256: 802,816 bytes up at 10 GB/s, 10,240 down at 5 GB/s
    assert predicted_copy_ms(rates, 256) == pytest.approx(0.03 + 0.0802816 + 0.002048)


def test_cuda_check_script_parses_and_documents_its_options():
    script = REPO_ROOT / "bench" / "checks" / "cuda_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    for variable in ("DEEPMNIST_PYTHON", "DEEPMNIST_CARRY", "DEEPMNIST_WHEELS", "DEEPMNIST_DEVICES"):
        assert f"#   {variable}" in text  # documented in the header


def test_crosscheck_passes_a_real_cpu_run_and_catches_a_doctored_one(tmp_path, exported, capsys):
    """A tiny real run on the CPU, checked by the independent plain loop: parity, accuracy and
    timing checks are made; a copy whose medians are 10x too fast fails the timing check."""
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/", "--benchmark-only", "-q", "-p", "no:cacheprovider",
         "--results-dir", str(results), "--devices", "cpu", "--runtimes", "onnxruntime", "--targets", "model",
         "--batch-sizes", "1", "--max-time", "0.2", "--no-single-stream", "--no-profile", "--no-roofline"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (csv,) = results.glob("*.csv")
    cuda_check_main(["crosscheck", str(csv), "--device", "cpu"])
    report = json.loads(csv.with_name(csv.stem + "-crosscheck.json").read_text())
    kinds = {c["kind"] for c in report["checks"]}
    assert kinds == {"parity", "accuracy", "timing"}
    assert all(c["ok"] for c in report["checks"] if c["kind"] in ("parity", "accuracy"))

    doctored = tmp_path / "doctored" / csv.name
    doctored.parent.mkdir()
    shutil.copy(csv.with_suffix(".json"), doctored.with_suffix(".json"))
    with csv.open(newline="") as f:
        header, *rows = list(_csv.reader(f))
    # every latency figure 10x too fast (the median alone would lie outside its CI, a row refused on reading)
    latency = [i for i, name in enumerate(header) if name.startswith("latency_ms_")]
    for cells in rows:
        for i in latency:
            if cells[i]:
                cells[i] = repr(float(cells[i]) / 10)
    with doctored.open("w", newline="") as f:
        _csv.writer(f, lineterminator="\n").writerows([header, *rows])
    assert read_results(doctored).latency_ms_median.notna().any()
    assert cuda_check_main(["crosscheck", str(doctored), "--device", "cpu"]) == 1
    assert "FAILED" in capsys.readouterr().out


# The committed CUDA reference run; the CUDA table of docs/cuda.md is generated from it.
CUDA_REFERENCE = sorted((REPO_ROOT / "results").glob("*-cuda-h200.csv"))


@pytest.mark.skipif(not CUDA_REFERENCE, reason="no committed CUDA reference run in results/")
def test_docs_cuda_table_is_generated_from_the_committed_run():
    table = reference_table(CUDA_REFERENCE[-1])
    assert table in (REPO_ROOT / "docs" / "cuda.md").read_text()
