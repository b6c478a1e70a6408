"""The int8 and fp16 ONNX artifacts, on the real export (the ``exported`` fixture) and real MNIST.

Accuracy is measured here again with onnxruntime on all 10,000 test images, independently of the
numbers the export recorded; calibration is shown to read training rows only.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from exporters.manifest import ExportError
from exporters.quantize import (
    FP16_MIN_AGREEMENT,
    INT8,
    INT8_MAX_ACCURACY_DIFF,
    INT8_OPSET,
    Int8Settings,
    TrainCalibrationReader,
    export_int8,
    float_head,
    onnx_accuracy,
    quantize_int8,
)
from models.data import to_input


def _session(path_or_bytes):
    model = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def _logits(session, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    """(N, 10) float32 logits of uint8 (N, 28, 28) images."""
    name = session.get_inputs()[0].name
    return np.concatenate(
        [
            session.run(None, {name: to_input(images[i : i + batch]).numpy()})[0]
            for i in range(0, len(images), batch)
        ]
    )


def _quantization_params(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every initializer (weights, scales, zero points) by name: equal dicts = equal calibration."""
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_manifest_entries_for_the_new_onnx_files(exported):
    entries = {(a.target, a.format): a for a in exported.artifacts}
    int8, fp16 = entries[("model", "onnx-int8")], entries[("model", "onnx-fp16")]
    assert (int8.file, fp16.file) == ("deep_mnist_int8.onnx", "deep_mnist_fp16.onnx")
    for artifact in (int8, fp16):
        exported.verified_path(artifact.target, artifact.format)  # SHA-256 matches the manifest
    # int8 at opset 19, where onnx's reference implementation has QuantizeLinear/DequantizeLinear
    assert (int8.opset, fp16.opset) == (INT8_OPSET, 18) == (19, 18)
    for artifact in (int8, fp16):
        assert [(s.name, s.shape, s.dtype) for s in artifact.inputs] == [
            ("input", ["batch", 1, 28, 28], "float32")
        ]
        assert [(s.name, s.shape, s.dtype) for s in artifact.outputs] == [
            ("logits", ["batch", 10], "float32")
        ]
    assert int8.details["quantization"] == INT8.record()
    assert int8.details["quantization"]["calibration_split"] == "train"
    assert fp16.details["io"].startswith("float32 input and output")


def test_int8_accuracy_is_within_0_2_points_of_float32(exported, mnist):
    fp32 = onnx_accuracy(exported.verified_path("model", "onnx"), mnist.test_images, mnist.test_labels)
    path = exported.verified_path("model", "onnx-int8")
    int8 = onnx_accuracy(path, mnist.test_images, mnist.test_labels)
    assert abs(int8 - fp32) <= INT8_MAX_ACCURACY_DIFF, (int8, fp32)
    assert fp32 > 0.99
    details = exported.find("model", "onnx-int8").details
    assert (details["test_accuracy"], details["fp32_test_accuracy"], details["test_images"]) == (
        int8,
        fp32,
        10_000,
    )
    meta = _session(path).get_modelmeta().custom_metadata_map
    # test_accuracy is the int8 file's own score, in the file and in the manifest's metadata
    assert (float(meta["test_accuracy"]), float(meta["fp32_test_accuracy"])) == (int8, fp32)
    assert "int8_test_accuracy" not in meta
    assert exported.find("model", "onnx-int8").metadata["test_accuracy"] == round(int8, 4)
    assert json.loads(meta["quantization"]) == INT8.record()
    assert meta["format"] == "onnx-int8" and meta["checkpoint_sha256"] == exported.checkpoint_sha256


def test_int8_graph_is_quantized_with_a_float32_head(exported):
    model = onnx.load(str(exported.verified_path("model", "onnx-int8")))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") >= 4 and ops.count("DequantizeLinear") >= 4
    int8_weights = {
        t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) > 1
    }  # matrices and kernels only, not zero points
    assert int8_weights == {"conv2.0.weight_quantized", "fc1.0.weight_quantized", "fc2.weight_quantized"}
    # conv1 -> pool1 -> relu stays float32, then the first QuantizeLinear (the weights'
    # DequantizeLinear nodes, which read initializers, come first in the file)
    initializers = {t.name for t in model.graph.initializer}
    path = [
        n for n in model.graph.node if not (n.op_type == "DequantizeLinear" and n.input[0] in initializers)
    ]
    assert [n.op_type for n in path][:4] == ["Conv", "MaxPool", "Relu", "QuantizeLinear"]
    conv1 = path[0]
    assert {t.name: t.data_type for t in model.graph.initializer}[conv1.input[1]] == onnx.TensorProto.FLOAT


def test_float_head_reorder_computes_the_same_function(exported, mnist):
    source = exported.verified_path("model", "onnx")
    model = onnx.load(str(source))
    names = float_head(model, source)
    assert [n.op_type for n in model.graph.node][:3] == ["Conv", "MaxPool", "Relu"]
    assert len(names) == 3
    images = mnist.test_images[:2000]
    before = _logits(_session(source), images)
    after = _logits(_session(model.SerializeToString()), images)
    assert np.array_equal(before, after)  # max and ReLU commute exactly


def test_calibration_reader_reads_only_the_training_rows_it_names(mnist):
    reader = TrainCalibrationReader(mnist.train_images, "input")
    batches = []
    while (batch := reader.get_next()) is not None:
        assert set(batch) == {"input"} and batch["input"].shape[1:] == (1, 28, 28)
        assert batch["input"].dtype == np.float32 and len(batch["input"]) <= INT8.calibration_batch
        batches.append(batch["input"])
    fed = np.concatenate(batches)
    idx = reader.indices
    assert len(idx) == len(set(idx.tolist())) == INT8.calibration_images
    assert idx.min() >= 0 and idx.max() < len(mnist.train_images)
    assert np.array_equal(fed, to_input(mnist.train_images[idx]).numpy())  # exactly those training rows
    reader.rewind()
    assert np.array_equal(reader.get_next()["input"], batches[0])
    # Seeded: another reader draws the same rows; the rows read are exactly idx, nothing else:
    # poisoning every other row of the training array changes nothing that is fed.
    poisoned = np.full_like(mnist.train_images, 255)
    poisoned[idx] = mnist.train_images[idx]
    again = TrainCalibrationReader(poisoned, "input")
    assert np.array_equal(again.indices, idx) and np.array_equal(again.images, fed)


def test_int8_export_was_calibrated_on_training_images_not_test_images(exported, mnist):
    """The exported file's scales and zero points are those of a calibration on the training
    sample, and measurably not those a calibration on test images would give."""
    source = exported.verified_path("model", "onnx")
    shipped = _quantization_params(onnx.load(str(exported.verified_path("model", "onnx-int8"))))
    from_train, reader, _ = quantize_int8(source, mnist.train_images)
    from_test, _, _ = quantize_int8(source, mnist.test_images)
    assert shipped.keys() == _quantization_params(from_train).keys()
    for name, value in _quantization_params(from_train).items():
        assert np.array_equal(shipped[name], value), name
    differs = [n for n, v in _quantization_params(from_test).items() if not np.array_equal(shipped[n], v)]
    assert differs, "calibrating on test images gave the same parameters: the check would be blind"
    assert len(reader.indices) == INT8.calibration_images


def test_int8_gate_refuses_a_model_that_lost_accuracy(exported, mnist, tmp_path):
    """Calibrated on black images, activation ranges collapse and accuracy drops: the export
    refuses it, names the file and writes nothing."""
    black = np.zeros((200, 28, 28), dtype=np.uint8)
    out = tmp_path / "deep_mnist_int8.onnx"
    with pytest.raises(
        ExportError, match=r"deep_mnist_int8\.onnx: int8 test accuracy .* not within 0\.2 points"
    ):
        export_int8(
            exported.verified_path("model", "onnx"),
            out,
            black,
            mnist.test_images,
            mnist.test_labels,
            {},
            Int8Settings(calibration_images=200),
        )
    assert not out.exists() and not list(tmp_path.iterdir())


def test_calibration_reader_refuses_wrong_input(mnist):
    with pytest.raises(ExportError, match="expected the uint8"):
        TrainCalibrationReader(mnist.train_images.astype(np.float32), "input")
    with pytest.raises(ExportError, match="1000 images asked, the training split has 10"):
        TrainCalibrationReader(mnist.train_images[:10], "input")


def test_fp16_agrees_with_float32(exported, mnist):
    path = exported.verified_path("model", "onnx-fp16")
    model = onnx.load(str(path))
    weights = [t for t in model.graph.initializer if len(t.dims) > 1 and t.name != "fc2.weight"]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)  # fc2: float32
    session = _session(path)
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("input", "tensor(float)", ["batch", 1, 28, 28])
    assert [(o.name, o.type) for o in session.get_outputs()] == [("logits", "tensor(float)")]
    half = _logits(session, mnist.test_images)
    full = _logits(_session(exported.verified_path("model", "onnx")), mnist.test_images)
    agreement = float(np.mean(half.argmax(1) == full.argmax(1)))
    assert agreement >= FP16_MIN_AGREEMENT, agreement
    assert 0 < np.abs(half - full).max() < 0.05  # really float16 (not equal), and close
    assert _session(path).get_modelmeta().custom_metadata_map["format"] == "onnx-fp16"


def test_fp16_graph_types_are_consistent_and_logits_is_the_one_output_name(exported, mnist):
    """Every value's type is stated and agrees with its producer (strict inference over a graph
    without value_info gives the same types); fc layers are MatMul + Add (tract cannot translate a
    float16 Gemm), fc2 runs in float32 so OpenVINO names the output logits only."""
    model = onnx.load(str(exported.verified_path("model", "onnx-fp16")))
    stated = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    bare = onnx.ModelProto.FromString(model.SerializeToString())
    del bare.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(bare, check_type=True, strict_mode=True)
    assert stated == {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    ops = [n.op_type for n in model.graph.node]
    assert ops[0] == "Cast" and ops[-2:] == ["Cast", "Gemm"] and ops.count("MatMul") == 1
    assert stated[model.graph.node[-1].input[0]] == onnx.TensorProto.FLOAT  # fc2's input: float32
    float32 = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    assert float32 == {"fc2.weight", "fc2.bias"}  # every other weight and bias is float16
    assert [o.name for o in model.graph.output] == ["logits"]
    openvino = pytest.importorskip("openvino")
    compiled = openvino.Core().compile_model(str(exported.verified_path("model", "onnx-fp16")), "CPU")
    assert [set(o.get_names()) for o in compiled.outputs] == [{"logits"}]
