"""bench.harness.roofline: measured peak and bandwidth (sanity bounds only, no speed goals) and the
arithmetic intensity of the network's layers, checked against hand-computed numbers."""

from __future__ import annotations

import pytest
import torch

from bench.harness.roofline import (
    FP32_CANDIDATES,
    ROOF_SLACK,
    Roofline,
    arithmetic_intensity,
    bytes_moved,
    measure_bandwidth_gbs,
    measure_peak_gflops,
    measure_roofline,
    rows_above_own_roof,
)
from bench.runtimes.device import NO_CUDA, cuda_unavailable_reason
from models.cpu import cpu_bf16_reason
from models.network import LAYER_NAMES, MODEL_FLOPS, MODEL_PARAMS

needs_cuda = pytest.mark.skipif(cuda_unavailable_reason() is not None, reason=NO_CUDA)

# Plausibility bounds, not speed goals: a few-core CPU does tens to hundreds of GFLOP/s and
# moves 1-100 GB/s; a bound that fails means a wrong unit or a broken timer, not a slow machine.
CPU_PEAK_RANGE = (1.0, 1e5)  # GFLOP/s
CPU_BW_RANGE = (0.5, 1e4)  # GB/s
CUDA_PEAK_RANGE = (100.0, 1e6)  # GFLOP/s, float32 without TF32
CUDA_BW_RANGE = (10.0, 1e5)  # GB/s


def test_cpu_peak_small_matrix_counts_flop_per_size():
    # 2 * 256**3 FLOP per product: a small size still gives a positive, plausible number.
    peak = measure_peak_gflops("cpu", size=256, repeats=3)
    assert CPU_PEAK_RANGE[0] < peak < CPU_PEAK_RANGE[1]


def test_cpu_bandwidth_with_explicit_size():
    bandwidth = measure_bandwidth_gbs("cpu", nbytes=64 << 20, repeats=3)  # 2 x 64 MiB per copy
    assert CPU_BW_RANGE[0] < bandwidth < CPU_BW_RANGE[1]


def test_cpu_roofline_is_plausible_and_consistent():
    roof = measure_roofline("cpu")  # the default sizes: 1536 x 1536 products, 256 MiB copies
    assert roof.device == "cpu"
    assert CPU_PEAK_RANGE[0] < roof.peak_gflops < CPU_PEAK_RANGE[1]
    assert CPU_BW_RANGE[0] < roof.bandwidth_gbs < CPU_BW_RANGE[1]
    assert roof.ridge_point == pytest.approx(roof.peak_gflops / roof.bandwidth_gbs)
    assert roof.attainable_gflops(roof.ridge_point) == pytest.approx(roof.peak_gflops)
    # every way of measuring the CPU float32 peak ran, each plausible, and the peak is the highest
    fp32 = {how: v for how, v in roof.peaks.items() if how in FP32_CANDIDATES}
    assert set(fp32) == set(FP32_CANDIDATES)
    assert all(CPU_PEAK_RANGE[0] < value < CPU_PEAK_RANGE[1] for value in fp32.values())
    assert roof.peak_gflops == max(fp32.values())
    # a roof for the int8 model's arithmetic (the best way of measuring it), and bf16 where oneDNN has it
    int8 = {how: v for how, v in roof.peaks.items() if how.startswith("int8 ")}
    assert "int8 onnxruntime MatMulInteger" in int8 and roof.precision_peaks["int8"] == max(int8.values())
    assert all(v > 0 for v in int8.values())
    assert ("bf16" in roof.precision_peaks) == (cpu_bf16_reason() is None)
    assert roof.peak_for("int8") == roof.precision_peaks["int8"] and roof.peak_for("fp32") == roof.peak_gflops


@needs_cuda
def test_cuda_peak_is_plausible():
    assert CUDA_PEAK_RANGE[0] < measure_peak_gflops("cuda") < CUDA_PEAK_RANGE[1]


@needs_cuda
def test_cuda_bandwidth_is_plausible():
    assert CUDA_BW_RANGE[0] < measure_bandwidth_gbs("cuda") < CUDA_BW_RANGE[1]


@needs_cuda
def test_cuda_peak_leaves_tf32_setting_as_it_was():
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        measure_peak_gflops("cuda", size=1024, repeats=2)
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown device"):
        measure_peak_gflops("tpu")
    with pytest.raises(ValueError, match="repeats"):
        measure_bandwidth_gbs("cpu", nbytes=1 << 20, repeats=0)
    with pytest.raises(ValueError, match="batch_size"):
        bytes_moved("fc1", 0)
    with pytest.raises(KeyError, match="unknown layer"):
        arithmetic_intensity("fc3", 1)


def test_fc1_intensity_at_batch_1_matches_hand_count():
    # fc1: 3136 -> 1024. LayerSpec counts the matrix product only (2 FLOP per multiply-add; bias
    # and ReLU are not counted, see models.network.LAYERS).
    flop = 2 * 3136 * 1024
    # float32: input 3136 + output 1024 values per image, weights 3136 x 1024 + bias 1024, once.
    nbytes = 4 * (3136 + 1024 + 3136 * 1024 + 1024)
    assert bytes_moved("fc1", 1) == nbytes == 12_865_792
    assert arithmetic_intensity("fc1", 1) == flop / nbytes  # ~0.4995 FLOP/byte


def test_fc1_intensity_grows_with_batch():
    batches = (1, 2, 8, 64, 256, 4096)
    values = [arithmetic_intensity("fc1", b) for b in batches]
    assert values == sorted(values) and len(set(values)) == len(values)
    # The weights are read once per call, so the limit is 2 * 3136 * 1024 / (4 * (3136 + 1024)).
    assert values[-1] < 2 * 3136 * 1024 / (4 * (3136 + 1024))


def test_model_bytes_and_reduced_precision():
    # Whole model: input (1, 28, 28), output (10,), all parameters.
    assert bytes_moved("model", 64) == 4 * (64 * (784 + 10) + MODEL_PARAMS)
    assert arithmetic_intensity("model", 64) == 64 * MODEL_FLOPS / bytes_moved("model", 64)
    # int8 moves a quarter of the float32 bytes, fp16/bf16 half, for every target.
    for target in ("model", *LAYER_NAMES):
        assert bytes_moved(target, 32, bytes_per_element=1) * 4 == bytes_moved(target, 32)
        assert bytes_moved(target, 32, bytes_per_element=2) * 2 == bytes_moved(target, 32)
    assert arithmetic_intensity("conv2", 32, bytes_per_element=1) == pytest.approx(
        4 * arithmetic_intensity("conv2", 32)
    )


@pytest.mark.parametrize("pool", ["pool1", "pool2"])
def test_pools_have_zero_flop_and_zero_intensity(pool):
    for batch in (1, 256):
        assert bytes_moved(pool, batch) > 0
        assert arithmetic_intensity(pool, batch) == 0.0


def test_attainable_is_min_of_the_two_ceilings():
    roof = Roofline("test", peak_gflops=100.0, bandwidth_gbs=20.0)
    assert roof.ridge_point == 5.0
    assert roof.attainable_gflops(0.0) == 0.0
    assert roof.attainable_gflops(1.0) == 20.0  # bandwidth-bound
    assert roof.attainable_gflops(5.0) == 100.0
    assert roof.attainable_gflops(50.0) == 100.0  # compute-bound
    for intensity in (0.1, 2.5, 7.0, 1e3):
        assert roof.attainable_gflops(intensity) == min(100.0, 20.0 * intensity)


def test_rows_above_own_roof_flags_a_row_over_its_precision_roof():
    roof = {"peak_gflops": 100.0, "bandwidth_gbs": 10.0, "precision_peaks": {"int8": 400.0}}
    rows = [
        {"device": "cpu", "runtime": "a", "precision": "fp32", "gflops": 109.0},  # within 10%
        {"device": "cpu", "runtime": "b", "precision": "int8", "gflops": 300.0},  # above fp32, under int8
        {"device": "cpu", "runtime": "c", "precision": "bf16", "gflops": 120.0},  # no bf16 roof: fp32's
        {"device": "cpu", "runtime": "d", "precision": "int8", "gflops": 500.0},
        {"device": "cuda", "runtime": "e", "precision": "fp32", "gflops": 1e9},  # no cuda roof: unchecked
    ]
    bad = rows_above_own_roof(rows, {"cpu": roof})
    assert [b.split()[0] for b in bad] == ["c", "d"]


def _runs_with_every_roof():
    """Committed runs whose sidecar records a roof per precision (older runs kept the float32 roof
    only, measured with torch.mm alone, and are not held to this check)."""
    import json

    from models.paths import REPO_ROOT

    out = []
    for csv_path in sorted((REPO_ROOT / "results").rglob("*.csv")):
        sidecar = csv_path.with_suffix(".json")
        if not sidecar.is_file():
            continue
        roofs = json.loads(sidecar.read_text()).get("rooflines") or {}
        if roofs and all(r.get("precision_peaks") is not None for r in roofs.values()):
            out.append(pytest.param(csv_path, roofs, id=csv_path.name))
    return out


@pytest.mark.parametrize(("path", "rooflines"), _runs_with_every_roof())
def test_no_committed_row_exceeds_its_own_roof(path, rooflines):
    from bench.results.store import read_results

    frame = read_results(path)
    records = frame[frame.status == "ok"].to_dict("records")
    assert rows_above_own_roof(records, rooflines) == []
    # and the pct_of_peak written in the CSV is read against that same roof
    assert not (frame.pct_of_peak > 100 * (1 + ROOF_SLACK)).any(), frame[
        frame.pct_of_peak > 110
    ].runtime.tolist()


def test_rooflines_use_the_most_threads_of_the_run():
    """With ``--threads 1,2`` the roof is that of the 2-thread rows: a roof measured on one thread
    sat at half the machine's, below what onnxruntime reached on two (a threads x streams run)."""
    from bench.harness.options import BenchConfig
    from bench.harness.run import measure_rooflines

    before = torch.get_num_threads()
    try:
        roofs = measure_rooflines(BenchConfig(devices=("cpu",), threads=(1, 2)))
        assert torch.get_num_threads() == 2 and roofs["cpu"].peak_gflops > 0
    finally:
        torch.set_num_threads(before)


def test_higher_roofline_takes_each_ceiling_from_either_pass():
    first = Roofline("cpu", 100.0, 20.0, {"torch.mm": 100.0, "conv": 90.0}, {"bf16": 50.0})
    second = Roofline("cpu", 95.0, 25.0, {"torch.mm": 95.0, "conv": 99.0}, {"bf16": 60.0, "int8": 7.0})
    both = first.higher(second)
    assert (both.peak_gflops, both.bandwidth_gbs) == (100.0, 25.0)
    assert both.peaks == {"torch.mm": 100.0, "conv": 99.0}
    assert both.precision_peaks == {"bf16": 60.0, "int8": 7.0}
