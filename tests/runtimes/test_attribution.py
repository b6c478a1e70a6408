"""bench.runtimes.attribution on real runs: the trained network, its verified exports and real MNIST test
images, on onnxruntime, torch eager and TorchScript.

Each runtime's per-layer profile must place time in every layer, leave little in "other", and
add up to about the whole-network time measured on the same runtime in the same test without
the profiler. That last check is a sanity bound, not a speed goal: the total is compared with
the band between the plain medians measured just before and just after profiling, widened by
``SUM_TOLERANCE``, so a machine that speeds up or slows down between the phases (2 shared cores)
does not fail it, while a lost or double-counted layer (>= ~15% of the time here for each of
conv2, fc1 and conv1+pool1) or a unit error (x1000) would.

The tests run with 1 intra-op thread: on 2 cores shared with other jobs, a 2-thread team waits
whenever the OS preempts one of its threads, which makes single calls swing by 2x and more; with
one thread the per-call times are stable enough to compare. Attribution itself does not depend
on the thread count.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from bench.runtimes.attribution import OTHER, TOTAL, _OnnxLayerMap, profile_onnxruntime
from bench.runtimes.attribution_torch import profile_torch
from bench.runtimes.device import NO_CUDA, cuda_unavailable_reason
from exporters.export import is_up_to_date
from exporters.manifest import ExportError, Manifest, load_manifest
from exporters.onnxrt import cpu_session, session_options
from models.checkpoint import load_checkpoint
from models.data import to_input
from models.network import LAYER_NAMES
from models.paths import export_dir

BATCH = 64  # large enough that kernels, not per-call overhead, dominate each layer
CALLS = 20  # profiled calls (and plain timed calls per phase)
THREADS = 1
SUM_TOLERANCE = 0.35  # relative, around the band of the two plain medians (see the docstring)
OTHER_MAX = 0.15  # "other" (flatten, dropout, between-layer overhead) at most this share of total

needs_cuda = pytest.mark.skipif(cuda_unavailable_reason() is not None, reason=NO_CUDA)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def images(mnist) -> np.ndarray:
    return to_input(mnist.test_images[:BATCH]).numpy()  # float32 (64, 1, 28, 28), uint8 / 255


@pytest.fixture(scope="module")
def net(trained_checkpoint):
    return load_checkpoint(trained_checkpoint).model().eval()


@pytest.fixture(scope="module")
def manifest(request, trained_checkpoint, net) -> Manifest:
    """The verified export of the trained checkpoint. When the export folder is already up to
    date (same checkpoint, every file's SHA-256 verified) it is used as is; otherwise the shared
    ``exported`` fixture runs `deepmnist export` (which also re-proves parity, ~1 min here)."""
    ckpt = load_checkpoint(trained_checkpoint)
    if is_up_to_date(export_dir(), ckpt.sha256, net):
        return load_manifest(export_dir())
    return request.getfixturevalue("exported")


@pytest.fixture(scope="module")
def onnx_path(manifest) -> Path:
    return manifest.verified_path("model", "onnx")


def ort_session(path: Path | str, threads: int = THREADS) -> Any:
    """A session set up as bench.runtimes.onnxruntime_rt does on the CPU."""
    return cpu_session(path, threads)


def plain_median_ms(fn: Callable[[], Any], calls: int = CALLS) -> float:
    """Median of ``calls`` timed calls of ``fn`` (ms), after 3 untimed ones; no profiler."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def check_layers(profile: dict[str, float]) -> None:
    assert set(profile) == {*LAYER_NAMES, OTHER, TOTAL}
    for layer in LAYER_NAMES:
        assert profile[layer] > 0, f"no time in {layer}: {profile}"
    assert profile[OTHER] >= 0
    assert profile[TOTAL] == pytest.approx(sum(profile[k] for k in (*LAYER_NAMES, OTHER)))
    assert profile[OTHER] <= OTHER_MAX * profile[TOTAL], profile


def check_sum(profile: dict[str, float], before_ms: float, after_ms: float) -> None:
    low, high = min(before_ms, after_ms), max(before_ms, after_ms)
    assert low * (1 - SUM_TOLERANCE) <= profile[TOTAL] <= high * (1 + SUM_TOLERANCE), (
        f"profiled total {profile[TOTAL]:.3f} ms vs plain medians {before_ms:.3f} / {after_ms:.3f} ms: {profile}"
    )


def test_onnxruntime_attribution_adds_up(onnx_path, images, tmp_path, monkeypatch):
    session = ort_session(onnx_path)
    run = lambda: session.run(None, {"input": images})  # noqa: E731
    profiles_in_cwd = lambda: {f for f in os.listdir() if f.startswith("onnxruntime_profile")}  # noqa: E731
    cwd_before = profiles_in_cwd()  # ORT's default place for profiles
    before = plain_median_ms(run)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the profile and graph go
    profile = profile_onnxruntime(onnx_path, images, CALLS, THREADS, like=session)  # its settings
    monkeypatch.undo()
    after = plain_median_ms(run)
    check_layers(profile)
    check_sum(profile, before, after)
    assert list(tmp_path.iterdir()) == []  # the profile JSON and optimized graph were deleted
    assert profiles_in_cwd() == cwd_before  # nothing left in the working directory either


def test_onnxruntime_attribution_from_a_path(onnx_path, images):
    check_layers(profile_onnxruntime(onnx_path, images, 5, THREADS))


def test_torch_eager_attribution_adds_up(net, images):
    x = torch.from_numpy(images)
    run = lambda: torch.inference_mode()(net)(x)  # noqa: E731
    before = plain_median_ms(run)
    profile = profile_torch(net, x, CALLS, "cpu")
    after = plain_median_ms(run)
    check_layers(profile)
    check_sum(profile, before, after)
    # The hooks are gone afterwards: a plain call runs no extra Python per layer.
    assert all(not getattr(net, name)._forward_pre_hooks for name in LAYER_NAMES)
    assert all(not getattr(net, name)._forward_hooks for name in LAYER_NAMES)


def test_torchscript_attribution_adds_up(manifest, images):
    path = manifest.verified_path("model", "torchscript")  # SHA-256 checked before loading
    module = torch.jit.load(str(path), map_location="cpu").eval()
    x = torch.from_numpy(images)
    run = lambda: torch.inference_mode()(module)(x)  # noqa: E731
    before = plain_median_ms(run)
    profile = profile_torch(module, x, CALLS, "cpu")
    after = plain_median_ms(run)
    check_layers(profile)
    check_sum(profile, before, after)


def test_plain_callable_is_attributed_by_execution_order(net, images):
    # Not an nn.Module: no hooks, so the eager ops (aten::conv2d, max_pool2d, linear) are mapped
    # by their order, as for TorchScript.
    profile = profile_torch(lambda t: net(t), torch.from_numpy(images[:8]), 5, "cpu")
    check_layers(profile)


def optimized_graph(path: Path | str, tmp_path: Path) -> onnx.ModelProto:
    options = session_options()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    cpu_session(path, options=options)
    return onnx.load(str(tmp_path / "optimized.onnx"))


def layer_sequence(original: onnx.ModelProto, optimized: onnx.ModelProto) -> list[str]:
    """Layers of the optimized graph's nodes in graph order, repeats and "other" dropped."""
    mapper = _OnnxLayerMap(original, optimized)
    sequence: list[str] = []
    for node in optimized.graph.node:
        layer = mapper(node.name)
        if layer != OTHER and (not sequence or sequence[-1] != layer):
            sequence.append(layer)
    return sequence


def test_optimized_graph_maps_back_to_the_layers_in_order(onnx_path, tmp_path):
    original = onnx.load(str(onnx_path))
    optimized = optimized_graph(onnx_path, tmp_path)
    assert layer_sequence(original, optimized) == list(LAYER_NAMES)
    mapper = _OnnxLayerMap(original, optimized)
    by_op = {n.op_type: mapper(n.name) for n in optimized.graph.node}
    assert by_op["Reshape"] == OTHER  # flatten is not a layer


def test_mapping_needs_no_exporter_names(onnx_path, tmp_path):
    # The same graph without the exporter's scope metadata and with meaningless node names: the
    # weights' names and the graph's structure still place every node.
    model = onnx.load(str(onnx_path))
    for i, node in enumerate(model.graph.node):
        del node.metadata_props[:]
        node.name = f"n{i}"
    anonymous = tmp_path / "anonymous.onnx"
    onnx.save(model, str(anonymous))
    assert layer_sequence(model, optimized_graph(anonymous, tmp_path)) == list(LAYER_NAMES)


def quantized_here(onnx_path: Path, images: np.ndarray, out: Path) -> Path:
    """Static QDQ int8 (uint8 activations, int8 weights) of the exported model, calibrated on
    real test images: the QuantizeLinear / DequantizeLinear / QLinearConv path of the mapping."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": images[i : i + 16]} for i in range(0, len(images), 16)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    quantize_static(
        str(onnx_path),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return out


def test_int8_model_made_here_is_attributed(onnx_path, images, tmp_path):
    path = quantized_here(onnx_path, images, tmp_path / "deep_mnist_int8.onnx")
    original = onnx.load(str(path))
    optimized = optimized_graph(path, tmp_path)
    assert any(n.op_type.startswith("QLinear") for n in optimized.graph.node)  # int8 kernels ran
    assert layer_sequence(original, optimized) == list(LAYER_NAMES)
    check_layers(profile_onnxruntime(path, images, 5, THREADS))


def test_exported_int8_model_is_attributed(manifest, images):
    try:
        path = manifest.verified_path("model", "onnx-int8")
    except ExportError as err:
        pytest.skip(f"no int8 ONNX export in this manifest ({err})")
    check_layers(profile_onnxruntime(path, images, 5, THREADS))


def test_bad_call_counts_are_refused(net, onnx_path, images):
    with pytest.raises(ValueError, match="calls"):
        profile_torch(net, torch.from_numpy(images), 0, "cpu")
    with pytest.raises(ValueError, match="calls"):
        profile_onnxruntime(onnx_path, images, 0, THREADS)


@needs_cuda
def test_torch_eager_attribution_on_cuda(net, images):
    import copy

    gpu_net = copy.deepcopy(net).to("cuda")
    x = torch.from_numpy(images).to("cuda")
    profile = profile_torch(gpu_net, x, CALLS, "cuda")  # device (kernel) time per layer
    check_layers(profile)


@needs_cuda
def test_onnxruntime_attribution_on_cuda(onnx_path, images):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime {ort.__version__} built without CUDAExecutionProvider")
    session = ort.InferenceSession(str(onnx_path), providers=["CUDAExecutionProvider"])
    profile = profile_onnxruntime(onnx_path, images, CALLS, THREADS, like=session)
    assert set(profile) == {*LAYER_NAMES, OTHER, TOTAL} and profile[TOTAL] > 0
