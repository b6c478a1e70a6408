"""The reduced-precision ONNX artifacts, both made from the exported float32 ``deep_mnist.onnx``.

deep_mnist_int8.onnx   static int8 quantization (onnxruntime.quantization, QDQ format), calibrated
                       on a seeded sample of the MNIST *training* images, never test images; its
                       test accuracy must be within 0.2 percentage points of float32's.
                       opset 19 (see INT8_OPSET); its ``test_accuracy`` metadata is its own score.
deep_mnist_fp16.onnx   float16 weights and compute for onnxruntime's CUDAExecutionProvider, with
                       float32 input and output (Casts inside the graph), so the same input works;
                       the last layer (fc2) stays float32 (see ``to_float16``).

Both have the float32 model's contract: ``input`` float32 (N, 1, 28, 28) = uint8 / 255 ->
``logits`` float32 (N, 10). Both are byte-for-byte reproducible on one machine: calibration runs
onnxruntime on fixed images, and the float16 conversion is deterministic. Each keeps the float32
model's one output name, ``logits``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from exporters.formats import write_onnx
from exporters.manifest import ExportError
from exporters.onnxrt import cpu_session
from models.data import to_input

INT8_MAX_ACCURACY_DIFF = 0.002  # |int8 - float32| test accuracy, a fraction: 0.2 percentage points
FP16_MIN_AGREEMENT = 0.995  # fraction of test images whose fp16 argmax equals float32's
# The int8 model's opset: DequantizeLinear/QuantizeLinear at opset 18 are missing from onnx's
# reference implementation (onnx.reference.ReferenceEvaluator), which has their opset 19 form
# (the same arithmetic for int8; 19 adds float8 types).
INT8_OPSET = 19


@dataclass(frozen=True)
class Int8Settings:
    """How deep_mnist_int8.onnx is made; recorded in the manifest and in the file's metadata.

    Chosen by measuring batch-256 time against float32 on the 2-core AMD EPYC reference machine
    with AVX512-VNNI (onnxruntime 1.32; no results file committed; the int8 model's accuracy and
    speed now: the ``onnxruntime-int8`` rows of every run). Every variant tried kept the test
    accuracy of float32 within the export's gate; speed came from one choice, ``float32_head``
    (see ``float_head``). The others made no measurable difference after onnxruntime's graph
    optimizations, which fuse every variant into the same QLinearConv/QGemm graph: u8 or s8
    activations (u8 x s8 is the VNNI operand pair), per-channel or per-tensor weights,
    ``reduce_range`` (7-bit weights, for CPUs without VNNI), ``quant_pre_process``, QOperator
    instead of QDQ, MinMax/Entropy/Percentile calibration (the latter two slower to calibrate).
    ``ActivationSymmetric`` was slower: a uint8 zero point of 128 stops the ReLU from fusing into
    the quantization."""

    calibration_images: int = 1000  # drawn without replacement from the training split
    calibration_seed: int = 0  # numpy.random.default_rng seed for that draw
    calibration_batch: int = 100  # images per calibration call
    calibrate_method: str = "MinMax"  # onnxruntime.quantization.CalibrationMethod name
    quant_format: str = "QDQ"  # QuantizeLinear/DequantizeLinear pairs around float ops
    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    per_channel: bool = True  # one weight scale per output channel (weights symmetric, zero point 0)
    reduce_range: bool = False  # 7-bit weights: for CPUs without VNNI
    float32_head: bool = True  # conv1 + ReLU + pool1 stay float32

    def record(self) -> dict[str, Any]:
        return {"calibration_split": "train", **asdict(self)}


INT8 = Int8Settings()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime.quantization logs advice (pre-processing, ...) through the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class TrainCalibrationReader(CalibrationDataReader):
    """Calibration batches from the MNIST training split only: it is given the training images
    and nothing else, draws ``calibration_images`` distinct rows of them with a seeded generator,
    and feeds them as the model input, float32 (B, 1, 28, 28) = uint8 / 255."""

    def __init__(self, train_images: np.ndarray, input_name: str, settings: Int8Settings = INT8) -> None:
        if train_images.dtype != np.uint8 or train_images.ndim != 3 or train_images.shape[1:] != (28, 28):
            raise ExportError(
                f"calibration: expected the uint8 (N, 28, 28) training images, got "
                f"{train_images.dtype} {train_images.shape}"
            )
        if not 0 < settings.calibration_images <= len(train_images):
            raise ExportError(
                f"calibration: {settings.calibration_images} images asked, the training split has "
                f"{len(train_images)}"
            )
        rng = np.random.default_rng(settings.calibration_seed)
        # rows of train_images, sorted so the sample reads as a set
        self.indices = np.sort(rng.choice(len(train_images), settings.calibration_images, replace=False))
        self.images = to_input(train_images[self.indices]).numpy()  # (count, 1, 28, 28) float32
        self.input_name = input_name
        self.batch = settings.calibration_batch
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.images):
            return None
        batch = self.images[self._next : self._next + self.batch]  # (<= batch, 1, 28, 28)
        self._next += self.batch
        return {self.input_name: batch}

    def rewind(self) -> None:
        self._next = 0


def float_head(model: onnx.ModelProto, source: Path) -> list[str]:
    """Reorder the first block, Conv -> Relu -> MaxPool, into Conv -> MaxPool -> Relu (the same
    function: ReLU is monotonic, so it commutes with a max) and return the names of those three
    nodes, which the quantizer then leaves in float32.

    Why float32: conv1 has one input channel, and onnxruntime's QLinearConv runs image by image;
    for one channel its per-image overhead made int8 slower than float32 when measured. Why the
    reorder: with ReLU before the pool, onnxruntime's QDQ propagation moves the QuantizeLinear
    above the MaxPool, which then runs on uint8 NCHW, slower still; with ReLU last, the
    QuantizeLinear absorbs the ReLU and the pool stays float32 (NCHWc), and the whole int8 model
    was faster than with conv1 quantized."""
    graph = model.graph
    nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in graph.node]  # plain copies

    def only_consumer(value: str, op_type: str) -> int:
        found = [i for i, n in enumerate(nodes) if value in n.input]
        if len(found) != 1 or nodes[found[0]].op_type != op_type:
            raise ExportError(
                f"{source}: expected {value!r} to feed one {op_type}, found "
                f"{[nodes[i].op_type for i in found]}; the int8 export expects Conv -> Relu -> MaxPool first"
            )
        return found[0]

    conv = nodes[only_consumer(graph.input[0].name, "Conv")]
    relu_at = only_consumer(conv.output[0], "Relu")
    relu = nodes[relu_at]
    pool = nodes[only_consumer(relu.output[0], "MaxPool")]
    conv_out, relu_out, pool_out = conv.output[0], relu.output[0], pool.output[0]
    pool.input[0], pool.output[0] = conv_out, relu_out  # relu_out now names the pooled, pre-ReLU value
    relu.input[0], relu.output[0] = relu_out, pool_out  # the block's output keeps its name
    del nodes[relu_at]
    nodes.insert(nodes.index(pool) + 1, relu)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # shapes of the reordered values changed; the quantizer infers them again
    onnx.checker.check_model(model, full_check=True)
    return [conv.name, pool.name, relu.name]


def quantize_int8(
    fp32_path: Path, train_images: np.ndarray, settings: Int8Settings = INT8
) -> tuple[onnx.ModelProto, TrainCalibrationReader, list[str]]:
    """Static quantization of the float32 model at ``fp32_path``, calibrated on ``train_images``
    (the training split; this function sees no other images). Returns the model (not yet
    written), the calibration reader (its ``indices`` are the training rows used) and the nodes
    kept in float32."""
    model = onnx.load(str(fp32_path))
    float_nodes = float_head(model, fp32_path) if settings.float32_head else []
    reader = TrainCalibrationReader(train_images, model.graph.input[0].name, settings)
    with tempfile.TemporaryDirectory(prefix="deepmnist-int8-") as tmp, _quiet():
        source, out = Path(tmp) / "float32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(source))
        quantize_static(
            str(source),
            str(out),
            reader,
            quant_format=QuantFormat[settings.quant_format],
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            activation_type=QuantType[settings.activation_type],
            weight_type=QuantType[settings.weight_type],
            nodes_to_exclude=float_nodes,
            calibrate_method=CalibrationMethod[settings.calibrate_method],
        )
        quantized = onnx.load(str(out))
    reader.rewind()
    return quantized, reader, float_nodes


def to_opset(model: onnx.ModelProto, opset: int, path: Path) -> onnx.ModelProto:
    """``model`` converted to the default domain's ``opset`` by onnx's version converter."""
    from onnx import version_converter

    try:
        return version_converter.convert_version(model, opset)
    except Exception as e:  # the converter raises RuntimeError or onnx's own errors
        raise ExportError(f"{path}: cannot convert to opset {opset}: {e}") from None


def onnx_accuracy(
    model: str | Path | bytes, images: np.ndarray, labels: np.ndarray, batch: int = 500
) -> float:
    """Fraction of ``images`` (uint8 (N, 28, 28)) whose argmax logit is the label, on onnxruntime CPU."""
    session = cpu_session(model)
    name = session.get_inputs()[0].name
    correct = 0
    for start in range(0, len(images), batch):
        logits = session.run(None, {name: to_input(images[start : start + batch]).numpy()})[0]  # (B, 10)
        correct += int((logits.argmax(1) == labels[start : start + batch]).sum())
    return correct / len(images)


def export_int8(
    fp32_path: Path,
    path: Path,
    train_images: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    metadata: dict[str, str],
    settings: Int8Settings = INT8,
) -> dict[str, Any]:
    """Quantize (calibrating on ``train_images``), check test accuracy against float32 on
    ``test_images`` (both on onnxruntime CPU), write ``path``; returns the facts for the manifest."""
    model, _, float_nodes = quantize_int8(fp32_path, train_images, settings)
    fp32_accuracy = onnx_accuracy(fp32_path, test_images, test_labels)
    int8_accuracy = onnx_accuracy(model.SerializeToString(), test_images, test_labels)
    if abs(int8_accuracy - fp32_accuracy) > INT8_MAX_ACCURACY_DIFF:
        raise ExportError(
            f"{path}: int8 test accuracy {int8_accuracy:.2%} is not within "
            f"{INT8_MAX_ACCURACY_DIFF * 100:.1f} points of float32's {fp32_accuracy:.2%} ({fp32_path}, "
            f"{len(test_images)} test images); not written"
        )
    details = {
        "test_accuracy": int8_accuracy,
        "fp32_test_accuracy": fp32_accuracy,
        "test_images": len(test_images),
        "quantization": settings.record(),
        "float32_nodes": float_nodes,
    }
    write_onnx(
        to_opset(model, INT8_OPSET, path),
        path,
        {
            **metadata,
            "test_accuracy": f"{int8_accuracy:.4f}",  # this file's own score
            "fp32_test_accuracy": f"{fp32_accuracy:.4f}",
            "quantization": json.dumps(settings.record(), sort_keys=True),
            "float32_nodes": json.dumps(float_nodes),
        },
    )
    return details


FP16_IO = "float32 input and output, Cast to and from float16 inside the graph"
FP16_FLOAT32_NODES = "fc2"  # the last Gemm stays float32: see export_fp16


def export_fp16(fp32_path: Path, path: Path, metadata: dict[str, str]) -> dict[str, Any]:
    """float16 weights and compute, float32 I/O; returns the facts for the manifest."""
    model = to_float16(onnx.load(str(fp32_path)), fp32_path)
    write_onnx(model, path, {**metadata, "io": FP16_IO, "float32_nodes": json.dumps([FP16_FLOAT32_NODES])})
    return {
        "io": FP16_IO,
        "weights": "float16",
        "compute": "float16",
        "float32_nodes": [FP16_FLOAT32_NODES],
        "provider": "CUDAExecutionProvider",
    }


def to_float16(model: onnx.ModelProto, source: Path) -> onnx.ModelProto:
    """The float32 model with float16 weights and activations, written out op by op so that every
    value's type is stated and consistent (a generic converter left consumers guessing):

    - ``input`` (float32) -> Cast -> ``input_fp16``; every float32 initializer becomes float16;
    - each Gemm of the body becomes MatMul (weight pre-transposed) + Add: the same arithmetic,
      which onnxruntime fuses back into one Gemm, and which tract 0.23 translates (its Gemm
      expansion for float16 produces a float32 value and refuses the model);
    - the last Gemm (fc2, 1024 -> 10: 0.07% of the FLOP) runs in float32 after a Cast of its
      input, so ``logits`` is the output of a float32 op and the only name of the output (with
      a Cast last, OpenVINO folds the Cast and lists the float16 value's name beside
      ``logits``, and code that takes the first output name gets the wrong one).
    Ops besides Conv, Relu, MaxPool, Reshape and Gemm are refused: this is not a general
    converter."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    allowed = {"Conv", "Relu", "MaxPool", "Reshape", "Gemm"}
    if other := sorted({n.op_type for n in graph.node} - allowed):
        raise ExportError(f"{source}: the float16 export handles {sorted(allowed)}, not {other}")
    gemms = [n for n in graph.node if n.op_type == "Gemm"]
    last = gemms[-1]
    if [o.name for o in graph.output] != [last.output[0]]:
        raise ExportError(f"{source}: expected the last Gemm to produce the one output")
    head_inputs = set(last.input[1:])  # fc2's weight and bias stay float32
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    initializers = []
    for name, array in weights.items():
        if array.dtype == np.float32 and name not in head_inputs:
            array = array.astype(np.float16)
        initializers.append((name, array))
    in_name = graph.input[0].name
    renamed = {in_name: f"{in_name}_fp16"}
    nodes = [
        helper.make_node("Cast", [in_name], [renamed[in_name]], name="cast_input", to=TensorProto.FLOAT16)
    ]
    for node in graph.node:
        inputs = [renamed.get(i, i) for i in node.input]
        if node is last:
            cast = f"{inputs[0]}_fp32"
            nodes.append(
                helper.make_node("Cast", [inputs[0]], [cast], name="cast_head", to=TensorProto.FLOAT)
            )
            copy = onnx.NodeProto.FromString(node.SerializeToString())
            copy.input[0] = cast
            nodes.append(copy)
        elif node.op_type == "Gemm":
            attrs = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}  # ONNX's defaults
            attrs.update({a.name: helper.get_attribute_value(a) for a in node.attribute})
            if attrs != {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}:
                raise ExportError(f"{source}: Gemm {node.name} has attributes {attrs}; expected x @ W.T + b")
            weight = inputs[1]
            initializers = [(n, a.T.copy() if n == weight else a) for n, a in initializers]  # (in, out)
            product = f"{node.output[0]}_matmul"
            nodes.append(
                helper.make_node("MatMul", [inputs[0], weight], [product], name=f"{node.name}_matmul")
            )
            nodes.append(helper.make_node("Add", [product, inputs[2]], [node.output[0]], name=node.name))
        else:
            copy = onnx.NodeProto.FromString(node.SerializeToString())
            del copy.input[:]
            copy.input.extend(inputs)
            nodes.append(copy)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(a, n) for n, a in initializers)
    del graph.value_info[:]  # inferred again (strict) when written
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
