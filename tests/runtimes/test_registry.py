"""Every registered runtime x device on real MNIST: it runs (or says why not), its output matches
eager PyTorch within its tolerance, and its accuracy on the 10,000 test images matches eager's.

Cases that cannot run here are skipped with the runtime's own reason (no CUDA device, a CPU-only
or CUDA-only variant, openvino not installed); a runtime whose export artifact is missing fails
with the ExportError that names it. torch.compile compiles once per prepared object, so each
compiled case is prepared once (model: batch 500 for parity and accuracy alike).
"""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from bench.runtimes import DEVICES, RUNTIMES, TOLERANCES, Artifacts, tolerance
from bench.runtimes.base import PRECISIONS, Compilable, Prepared, Profilable, Runtime
from bench.runtimes.device import cuda_unavailable_reason
from exporters.manifest import ExportError
from models.checkpoint import load_checkpoint
from models.data import to_input
from models.network import LAYER_NAMES, trace_layers

CASES = [pytest.param(name, device, id=f"{name}-{device}") for name in RUNTIMES for device in DEVICES]
BATCH = 500  # images per call: the harness's accuracy batch, so a compiled graph serves all calls
PARITY_IMAGES = 256  # the parity gate's largest default batch: max |diff| is checked on these
LAYER = "conv2"  # the layer runtimes that take layers are checked on (real activations from pool1)
# Accuracy may differ from eager's (fraction of 10,000 images) by at most: fp32 0.05 pt, int8
# 0.2 pt, half types 0.3 pt.
ACCURACY_SLACK = {"fp32": 0.0005, "int8": 0.002, "fp16": 0.003, "bf16": 0.003}


@pytest.fixture(scope="module")
def artifacts(trained_checkpoint, exported) -> Artifacts:
    return Artifacts(net=load_checkpoint(trained_checkpoint).model(), manifest=exported)


@pytest.fixture(scope="module")
def reference(mnist, artifacts):
    """(inputs (10000, 1, 28, 28) float32, eager CPU logits (10000, 10), eager accuracy)."""
    x = to_input(mnist.test_images).numpy()
    with torch.no_grad():
        logits = np.concatenate(
            [artifacts.net(torch.from_numpy(x[i : i + BATCH])).numpy() for i in range(0, len(x), BATCH)]
        )
    return x, logits, float((logits.argmax(1) == mnist.test_labels).mean())


def run_all(prepared: Prepared, x: np.ndarray) -> np.ndarray:
    """Outputs for ``x`` in calls of BATCH images (compiling first where the runtime compiles)."""
    if isinstance(prepared, Compilable):
        prepared.compile(prepared.to_device(x[:BATCH]))
    outs = [
        prepared.to_host(prepared.run(prepared.to_device(x[i : i + BATCH]))) for i in range(0, len(x), BATCH)
    ]
    prepared.sync()
    return np.concatenate(outs)


def skip_unless_supported(name: str, device: str) -> None:
    reason = RUNTIMES[name].supports(device)
    if reason is not None:
        assert isinstance(reason, str) and reason.strip(), f"{name} on {device}: empty skip reason"
        pytest.skip(reason)


@pytest.mark.parametrize(("name", "device"), CASES)
def test_model_parity_and_accuracy(name, device, artifacts, reference, mnist):
    skip_unless_supported(name, device)
    runtime = RUNTIMES[name]
    x, expected, eager_accuracy = reference
    prepared = runtime.prepare("model", device, artifacts, threads=2)
    got = run_all(prepared, x)
    assert got.shape == (len(x), 10) and got.dtype == np.float32
    diff = float(np.abs(got[:PARITY_IMAGES] - expected[:PARITY_IMAGES]).max())
    assert diff <= tolerance(name, device), f"{name} on {device}: max |diff| {diff:.3g}"
    accuracy = float((got.argmax(1) == mnist.test_labels).mean())
    slack = ACCURACY_SLACK[runtime.precision]
    assert abs(accuracy - eager_accuracy) <= slack, (
        f"{name}: accuracy {accuracy:.4f} vs eager {eager_accuracy:.4f}"
    )
    assert accuracy >= 0.99


def takes_layer(name: str) -> bool:
    targets = RUNTIMES[name].targets
    return targets is None or LAYER in targets


@pytest.mark.parametrize(("name", "device"), [p for p in CASES if takes_layer(p.values[0])])
def test_layer_parity(name, device, artifacts, reference):
    skip_unless_supported(name, device)
    x, _, _ = reference
    layer_in, layer_out = trace_layers(artifacts.net, torch.from_numpy(x[:PARITY_IMAGES]))[LAYER]
    prepared = RUNTIMES[name].prepare(LAYER, device, artifacts, threads=2)
    x_dev = prepared.to_device(layer_in.numpy().copy())  # (256, 32, 14, 14)
    if isinstance(prepared, Compilable):
        prepared.compile(x_dev)
    got = prepared.to_host(prepared.run(x_dev))
    assert got.shape == tuple(layer_out.shape)  # (256, 64, 14, 14)
    diff = float(np.abs(got - layer_out.numpy()).max())
    assert diff <= tolerance(name, device), f"{name} {LAYER} on {device}: max |diff| {diff:.3g}"


def test_registry_is_consistent():
    assert len(RUNTIMES) == len(set(RUNTIMES)) and {"torch-eager", "onnxruntime"} <= set(RUNTIMES)
    for name, runtime in RUNTIMES.items():
        assert isinstance(runtime, Runtime), name  # name, precision, targets, supports, prepare
        assert runtime.name == name
        assert runtime.precision in PRECISIONS, name
        assert runtime.targets is None or (
            isinstance(runtime.targets, tuple)
            and runtime.targets
            and set(runtime.targets) <= {"model", *LAYER_NAMES}
        ), name
        for device in DEVICES:
            reason = runtime.supports(device)
            assert reason is None or (isinstance(reason, str) and reason.strip()), (name, device)
    # The base runtimes run every target (torch-compile: the model and conv2, as its module says);
    # tolerance keys name registered runtimes and devices.
    assert all(RUNTIMES[n].targets is None for n in ("torch-eager", "torchscript", "onnxruntime", "openvino"))
    assert RUNTIMES["torch-compile"].targets == ("model", "conv2")
    assert all(r in RUNTIMES and d in DEVICES for r, d in TOLERANCES)
    # Reduced precision is never judged by the fp32 default tolerance: wherever it is meant to run
    # (it runs, or only this machine's lack of CUDA stops it), an explicit, looser entry exists.
    for name, runtime in RUNTIMES.items():
        for device in DEVICES:
            reason = runtime.supports(device)
            if runtime.precision != "fp32" and reason in (None, cuda_unavailable_reason()):
                assert TOLERANCES.get((name, device), 0) > 1e-3, (name, device)


def test_skip_reasons_name_the_cause():
    fp16_cpu = RUNTIMES["torch-eager-fp16"].supports("cpu")
    assert fp16_cpu == "fp16 autocast is for CUDA; use bf16 on CPU"
    assert RUNTIMES["onnxruntime-fp16"].supports("cpu") == (
        "float16 ONNX model is for the CUDA provider; ORT CPU has no fast fp16 kernels"
    )
    assert "CPU provider" in RUNTIMES["onnxruntime-int8"].supports("cuda")
    assert RUNTIMES["torch-aoti"].supports("cuda") == "the export holds a CPU AOTInductor package only"
    assert RUNTIMES["openvino"].supports("cuda") == "OpenVINO has no CUDA device"
    assert RUNTIMES["onnxruntime-trt"].supports("cpu") == "onnxruntime-trt runs on cuda only"
    if not torch.cuda.is_available():
        for name in RUNTIMES:
            reason = RUNTIMES[name].supports("cuda")
            assert reason is not None, f"{name} claims to run on CUDA without a CUDA device"


def test_compile_protocol(artifacts):
    """The torch.compile runtimes' prepared objects compile (the harness times it as compile_s);
    runtimes that do not compile per shape have no ``compile`` (the harness leaves compile_s empty)."""
    for name in ("torch-compile", "torch-compile-freezing"):
        prepared = RUNTIMES[name].prepare("model", "cpu", artifacts, threads=2)
        assert isinstance(prepared, Compilable) and callable(prepared.compile), name
    for name in ("torch-eager", "torchscript", "onnxruntime"):
        assert not isinstance(RUNTIMES[name].prepare(LAYER, "cpu", artifacts, threads=2), Compilable), name


def test_profile_protocol(artifacts):
    """The profile scenario runs where a profiler splits the whole model into its layers and skips
    the runtimes whose prepared objects are not ``Profilable`` (fused or compiled code)."""
    profiled = ("torch-eager", "torch-eager-channels-last", "torchscript", "torch-export", "onnxruntime")
    for name in profiled:
        assert isinstance(RUNTIMES[name].prepare("model", "cpu", artifacts, threads=2), Profilable), name
    for name in ("torchscript-optimized", "torch-compile", "openvino", "torch-aoti"):
        if RUNTIMES[name].supports("cpu") is None:
            prepared = RUNTIMES[name].prepare("model", "cpu", artifacts, threads=2)
            assert not isinstance(prepared, Profilable), name


def test_torch_compile_is_cold_and_private_to_each_prepared_object(artifacts, reference):
    """Each prepared object compiles its graph again (no Dynamo reuse, no hit in Inductor's FX
    graph cache: a fresh temporary cache folder), and two live objects keep their own graphs:
    calling them in turn compiles nothing more."""
    from torch._dynamo.utils import counters

    x, _, _ = reference
    layer_in = (
        trace_layers(artifacts.net, torch.from_numpy(x[:8]))[LAYER][0].numpy().copy()
    )  # (8, 32, 14, 14)
    prepared = []
    for _ in range(2):
        p = RUNTIMES["torch-compile"].prepare(LAYER, "cpu", artifacts, threads=2)
        counters.clear()
        p.compile(p.to_device(layer_in))
        assert counters["inductor"]["fxgraph_cache_hit"] == 0
        assert counters["inductor"]["fxgraph_cache_miss"] >= 1  # Inductor compiled the graph
        prepared.append(p)
    counters.clear()
    outputs = [p.to_host(p.run(p.to_device(layer_in))) for p in (*prepared, *prepared)]
    assert counters["stats"]["unique_graphs"] == 0  # no recompilation: each ran its own graph
    for out in outputs[1:]:
        np.testing.assert_array_equal(out, outputs[0])


def test_missing_artifact_fails_with_the_export_error(artifacts):
    """An artifact absent from the manifest stops prepare with an ExportError naming it, and with
    the export's reason when the exporter recorded why it skipped the file."""
    manifest = artifacts.manifest
    without = dataclasses.replace(
        manifest, artifacts=[a for a in manifest.artifacts if a.format != "aoti-cpu"]
    )
    with pytest.raises(ExportError, match="no aoti-cpu artifact for 'model'"):
        RUNTIMES["torch-aoti"].prepare("model", "cpu", Artifacts(without, net=artifacts.net), threads=2)
    skipped = dataclasses.replace(without, skipped={"model/aoti-cpu": "no C++ compiler found"})
    with pytest.raises(ExportError, match=r"no aoti-cpu artifact for 'model'.*\(no C\+\+ compiler found\)"):
        RUNTIMES["torch-aoti"].prepare("model", "cpu", Artifacts(skipped, net=artifacts.net), threads=2)


def test_openvino_is_exercised_when_installed(artifacts):
    if importlib.util.find_spec("openvino") is None:
        assert RUNTIMES["openvino"].supports("cpu") == "openvino not installed (pip install -e '.[openvino]')"
        pytest.skip("openvino not installed (pip install -e '.[openvino]')")
    assert RUNTIMES["openvino"].supports("cpu") is None  # installed: its cases run, not skip
    import openvino as ov

    prepared = RUNTIMES["openvino"].prepare("model", "cpu", artifacts, threads=2)
    # fp32 arithmetic, although the CPU plugin would choose bf16 on an AVX512_BF16 CPU.
    assert prepared.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert prepared.compiled.get_property("INFERENCE_NUM_THREADS") == 2


def test_fp16_onnx_keeps_float32_io(artifacts):
    """The onnxruntime-fp16 adapter feeds float32 and reads float32: the file must say so."""
    import onnx

    model = onnx.load(str(artifacts.manifest.verified_path("model", "onnx-fp16")))
    float32, float16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [float32]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [float32]
    assert any(t.data_type == float16 for t in model.graph.initializer)  # the weights are float16


@pytest.mark.parametrize("name", ["onnxruntime-node", "onnxruntime-web"])
def test_js_runtimes_time_their_calls_inside_the_js_process(name, artifacts, reference):
    """The harness takes their samples from ``time_calls`` (performance.now() in Node or the page),
    never from a Python clock around the inter-process call."""
    from bench.runtimes.base import SelfTimed

    skip_unless_supported(name, "cpu")
    assert RUNTIMES[name].supports("cuda")  # CPU only, with the reason
    prepared = RUNTIMES[name].prepare("model", "cpu", artifacts, threads=1)
    assert isinstance(prepared, SelfTimed)
    x = prepared.to_device(reference[0][:8])  # (8, 1, 28, 28)
    samples = prepared.time_calls(x, 7, 0.005)
    assert len(samples) == 7 and all(0 < s < 5 for s in samples)
