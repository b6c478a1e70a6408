"""The roofline of a device: measured float32 peak and memory bandwidth, and the arithmetic
intensity of each benchmark target, so each timing can be read against what the device allows.

Units: GFLOP/s and GB/s are 1e9 FLOP and 1e9 bytes per second; intensity is FLOP per byte; a
multiply-add counts as 2 FLOP (as ``models.network.LAYERS``).

- Peak: the best (max) of several timed ``torch.mm`` of two ``size x size`` float32 matrices
  (2 * size**3 FLOP each) after a warm-up product, with torch's current thread setting (the
  harness sets it). On CUDA, TF32 is switched off for the measurement, so it is a true float32
  peak, and each product is timed with CUDA events. On the CPU the same product is also timed
  through onnxruntime's MatMul (MLAS) and the higher of the two is the peak: torch's CPU sgemm
  (MKL) does not reach this AMD CPU's AVX-512 rate (the reference run's sidecar holds both, see
  docs/reference-results.md), and a peak that a runtime beats on a whole CNN is no ceiling. A
  third candidate is a 3x3 convolution through torch (oneDNN's direct convolution,
  ``CPU_CONV_SHAPE``, not a layer of this network): on the 2-core EPYC VM of the 2026-12-02 runs
  torch's conv2 at batch 256 ran above both matrix products. All values are kept
  (``Roofline.peaks``).
- A roof per precision, so a row's ``pct_of_peak`` is read against the roof of its own precision
  (``Roofline.precision_peaks``; ``peak_for(precision)``; a precision without a measured roof
  falls back to the float32 peak): on CUDA the same product in float16 and bfloat16 (tensor
  cores, float32 accumulation); on the CPU bfloat16 through ``torch.mm`` where oneDNN has bf16
  kernels, and int8 (u8 x s8 -> int32, the int8 model's arithmetic) as the best of onnxruntime's
  ``MatMulInteger`` (MLAS, VNNI where the CPU has it) and ``torch._int_mm``, counted as 2 ops per
  multiply-add like the float roofs.
- Bandwidth: the best of several ``dst.copy_(src)`` of a float32 tensor much larger than the
  last-level cache; each copy reads ``nbytes`` and writes ``nbytes``, so it counts as
  ``2 * nbytes`` bytes moved (the STREAM "copy" convention; write-allocate traffic, which can
  make the hardware move a third ``nbytes`` on CPUs, is not counted).
- Bytes of a target (``bytes_moved``): the compulsory traffic, each tensor read or written once:
  ``bytes_per_element * (batch * (input + output elements) + params)``. Caches, im2col buffers,
  re-reads of tiles and layout conversions only add to it, so it is a lower bound on the bytes
  the target moves and the intensity is an upper bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.harness.clock import clock_for
from bench.runtimes.device import require_device
from exporters.onnxrt import cpu_session
from models.cpu import cpu_bf16_reason
from models.network import IMAGE_SHAPE, MODEL_FLOPS, MODEL_PARAMS, NUM_CLASSES, layer_spec

# Matrix sizes. On this project's 2-core CPU (AMD EPYC, AVX-512) 1024, 1536, 2048 and 4096 give
# the same peak within run-to-run noise, so a larger product buys nothing; 1536 (7.2 GFLOP) is
# short enough that the best of 8 repeats absorbs preemption on a shared machine and stays cheap.
# A GPU needs a product large enough to fill every SM: 8192 (1.1 TFLOP).
CPU_MATMUL_SIZE = 1536
CPU_MATMUL_REPEATS = 8
CUDA_MATMUL_SIZE = 8192
# (batch, channels in = out, height = width) of the float32 3x3 convolution candidate: a
# ResNet-like layer, 7.4 GFLOP per call, large enough for oneDNN's blocked kernels.
CPU_CONV_SHAPE = (8, 256, 28)
# Copy buffers far beyond the last-level cache (32 MiB L3 here; GPU L2 caches are <= ~100 MiB).
CPU_COPY_BYTES = 256 << 20
CUDA_COPY_BYTES = 2 << 30


def _best_seconds(fn, dev: torch.device, repeats: int) -> float:
    """The shortest of ``repeats`` timed calls of ``fn`` (s), after one untimed warm-up call, on
    ``dev``'s clock (``bench.harness.clock``: CUDA events that synchronise on CUDA)."""
    fn()
    clock = clock_for(dev.type)
    best = math.inf
    for _ in range(repeats):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best


def measure_peak_gflops(
    device: str,
    size: int | None = None,
    repeats: int = CPU_MATMUL_REPEATS,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Matrix-product peak of ``device`` in GFLOP/s: best of ``repeats`` timed ``torch.mm`` of
    ``size x size`` matrices of ``dtype`` (default float32; sizes CPU_MATMUL_SIZE / CUDA_MATMUL_SIZE)."""
    dev = require_device(device)
    n = size or (CUDA_MATMUL_SIZE if dev.type == "cuda" else CPU_MATMUL_SIZE)
    if n < 1 or repeats < 1:
        raise ValueError(f"size and repeats must be >= 1, got {n}, {repeats}")
    gen = torch.Generator(device=dev).manual_seed(0)
    a = torch.rand(n, n, device=dev, generator=gen).to(dtype)  # values in [0, 1)
    b = torch.rand(n, n, device=dev, generator=gen).to(dtype)
    out = torch.empty(n, n, device=dev, dtype=dtype)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False  # a float32 peak, not TF32
        seconds = _best_seconds(lambda: torch.mm(a, b, out=out), dev, repeats)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * n**3 / seconds / 1e9


def measure_peak_gflops_conv(
    shape: tuple[int, int, int] = CPU_CONV_SHAPE, repeats: int = CPU_MATMUL_REPEATS
) -> float:
    """Float32 peak of a 3x3 convolution on the CPU in GFLOP/s (torch, oneDNN): best of ``repeats``
    timed calls on a ``(batch, channels, size, size)`` input, ``channels`` filters, padding 1."""
    batch, channels, size = shape
    if min(batch, channels, size, repeats) < 1:
        raise ValueError(f"shape and repeats must be >= 1, got {shape}, {repeats}")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, channels, size, size, generator=gen)
    w = torch.rand(channels, channels, 3, 3, generator=gen)
    with torch.inference_mode():
        seconds = _best_seconds(lambda: torch.conv2d(x, w, padding=1), torch.device("cpu"), repeats)
    return _conv3x3_flop(shape) / seconds / 1e9


def measure_bandwidth_gbs(device: str, nbytes: int | None = None, repeats: int = 5) -> float:
    """Memory bandwidth of ``device`` in GB/s: best of ``repeats`` timed ``dst.copy_(src)`` of
    ``nbytes`` of float32 (default CPU_COPY_BYTES / CUDA_COPY_BYTES), counting ``2 * nbytes``
    (read + write) per copy."""
    dev = require_device(device)
    nbytes = nbytes or (CUDA_COPY_BYTES if dev.type == "cuda" else CPU_COPY_BYTES)
    if nbytes < 4 or repeats < 1:
        raise ValueError(f"nbytes must be >= 4 and repeats >= 1, got {nbytes}, {repeats}")
    src = torch.ones(nbytes // 4, device=dev)  # float32; ones() touches every page up front
    dst = torch.zeros_like(src)
    seconds = _best_seconds(lambda: dst.copy_(src), dev, repeats)
    return 2 * src.numel() * 4 / seconds / 1e9


def _onnxruntime_best_seconds(graph: Any, feed: dict, threads: int | None, repeats: int) -> float:
    """The shortest of ``repeats`` timed runs (s) of the one-node ONNX ``graph`` (opset 18) on
    ``feed``, in an onnxruntime CPU session of ``threads`` intra-op threads (default: torch's)."""
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    session = cpu_session(model.SerializeToString(), threads or torch.get_num_threads())
    return _best_seconds(lambda: session.run(None, feed), torch.device("cpu"), repeats)


def _conv3x3_flop(shape: tuple[int, int, int]) -> int:
    """FLOP of one 3x3 convolution, padding 1, ``channels`` in and out, on ``(batch, channels, size)``."""
    batch, channels, size = shape
    return 2 * batch * channels * size * size * channels * 9


def measure_peak_gflops_onnxruntime(
    size: int = CPU_MATMUL_SIZE, repeats: int = CPU_MATMUL_REPEATS, threads: int | None = None
) -> float:
    """Float32 matrix-product peak of the CPU through onnxruntime's MatMul, GFLOP/s: best of
    ``repeats`` timed runs of a one-node graph, ``threads`` intra-op threads (default: torch's)."""
    import numpy as np
    from onnx import TensorProto, helper

    if size < 1 or repeats < 1:
        raise ValueError(f"size and repeats must be >= 1, got {size}, {repeats}")
    spec = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [size, size]) for name in "abc"]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", spec[:2], spec[2:])
    rng = np.random.default_rng(0)
    feed = {name: rng.random((size, size), dtype=np.float32) for name in "ab"}
    return 2 * size**3 / _onnxruntime_best_seconds(graph, feed, threads, repeats) / 1e9


def measure_peak_gflops_onnxruntime_conv(
    shape: tuple[int, int, int] = CPU_CONV_SHAPE,
    repeats: int = CPU_MATMUL_REPEATS,
    threads: int | None = None,
) -> float:
    """Float32 peak of a 3x3 convolution on the CPU through onnxruntime's Conv (MLAS), GFLOP/s: the
    shape of ``measure_peak_gflops_conv``, ``threads`` intra-op threads (default: torch's). ONNX
    Runtime's convolutions run their own kernels, which on some CPUs outrun its MatMul and torch's."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    batch, channels, size = shape
    if min(batch, channels, size, repeats) < 1:
        raise ValueError(f"shape and repeats must be >= 1, got {shape}, {repeats}")
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.random((channels, channels, 3, 3), dtype=np.float32), "w")
    dims = [batch, channels, size, size]
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
        [weight],
    )
    feed = {"x": rng.random(dims, dtype=np.float32)}
    return _conv3x3_flop(shape) / _onnxruntime_best_seconds(graph, feed, threads, repeats) / 1e9


def measure_peak_gops_int8(
    size: int = CPU_MATMUL_SIZE, repeats: int = CPU_MATMUL_REPEATS, threads: int | None = None
) -> dict[str, float]:
    """Int8 matrix-product peak of the CPU, GOP/s (multiply-add = 2 ops), per way of measuring it:
    onnxruntime's ``MatMulInteger`` (u8 x s8 -> int32, ``threads`` intra-op threads, default
    torch's) and, where this torch build has it on the CPU, ``torch._int_mm`` (s8 x s8 -> int32)."""
    import numpy as np
    from onnx import TensorProto, helper

    if size < 1 or repeats < 1:
        raise ValueError(f"size and repeats must be >= 1, got {size}, {repeats}")
    types = {"a": TensorProto.UINT8, "b": TensorProto.INT8, "c": TensorProto.INT32}
    spec = {name: helper.make_tensor_value_info(name, t, [size, size]) for name, t in types.items()}
    node = helper.make_node("MatMulInteger", ["a", "b"], ["c"])
    graph = helper.make_graph([node], "matmul_int8", [spec["a"], spec["b"]], [spec["c"]])
    rng = np.random.default_rng(0)
    feed = {
        "a": rng.integers(0, 256, (size, size), dtype=np.uint8),
        "b": rng.integers(-128, 128, (size, size), dtype=np.int8),
    }
    cpu = torch.device("cpu")
    peaks = {
        "onnxruntime MatMulInteger": 2
        * size**3
        / _onnxruntime_best_seconds(graph, feed, threads, repeats)
        / 1e9
    }
    a = torch.from_numpy(feed["b"].copy())
    b = torch.from_numpy(feed["b"].T.copy())
    try:
        seconds = _best_seconds(lambda: torch._int_mm(a, b), cpu, repeats)
    except RuntimeError:  # no CPU kernel in this build: the onnxruntime figure stands alone
        return peaks
    peaks["torch._int_mm"] = 2 * size**3 / seconds / 1e9
    return peaks


@dataclass(frozen=True)
class Roofline:
    device: str
    peak_gflops: float  # GFLOP/s, float32 matrix product: the best of ``peaks``
    bandwidth_gbs: float  # GB/s, read + write of a large copy
    peaks: dict[str, float] = field(default_factory=dict)  # how each roof was measured -> GFLOP/s
    precision_peaks: dict[str, float] = field(default_factory=dict)  # "fp16", "bf16" -> GFLOP/s

    def higher(self, other: Roofline) -> Roofline:
        """Each ceiling the higher of this pass and ``other`` (the same device measured again): on a
        machine whose speed drifts, a roof measured once in a slow minute sits below what a runtime
        reaches in a fast one."""

        def best(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
            return {k: max(a.get(k, 0.0), b.get(k, 0.0)) for k in dict.fromkeys([*a, *b])}

        return Roofline(
            self.device,
            max(self.peak_gflops, other.peak_gflops),
            max(self.bandwidth_gbs, other.bandwidth_gbs),
            best(self.peaks, other.peaks),
            best(self.precision_peaks, other.precision_peaks),
        )

    def peak_for(self, precision: str) -> float:
        """The roof of a row computing in ``precision``: its own measured peak, else float32's."""
        return self.precision_peaks.get(precision, self.peak_gflops)

    @property
    def ridge_point(self) -> float:
        """FLOP/byte where the two ceilings meet: below it a kernel is bandwidth-bound."""
        return self.peak_gflops / self.bandwidth_gbs

    def attainable_gflops(self, intensity: float) -> float:
        """The roofline at ``intensity`` FLOP/byte: min(peak, bandwidth * intensity), GFLOP/s."""
        return min(self.peak_gflops, self.bandwidth_gbs * intensity)


ROOF_SLACK = (
    0.10  # a row may exceed its own roof by at most this fraction (timer noise) before it is an error
)


def rows_above_own_roof(rows: list[dict], rooflines: dict[str, dict]) -> list[str]:
    """Rows (CSV records) whose GFLOP/s exceed the roof of their own precision by more than
    ``ROOF_SLACK``, described; ``rooflines``: the sidecar's ``rooflines`` (device -> Roofline fields).
    A row of a device without a roofline in the sidecar is not checked."""
    bad = []
    for row in rows:
        roof = rooflines.get(row.get("device"))
        gflops = row.get("gflops")
        if roof is None or gflops is None or gflops != gflops:  # no roof, or no FLOP (NaN)
            continue
        own = Roofline(**{**roof, "device": row["device"]}).peak_for(row.get("precision", "fp32"))
        if gflops > own * (1 + ROOF_SLACK):
            bad.append(
                f"{row.get('runtime')} {row.get('target')} b{row.get('batch_size')} {row.get('precision')} "
                f"{row.get('scenario')}: {gflops:,.0f} GFLOP/s > {row.get('precision')} roof {own:,.0f}"
            )
    return bad


# The float32 candidates: the roof is the best of them.
FP32_CANDIDATES = ("torch.mm", "onnxruntime MatMul", "torch conv2d", "onnxruntime Conv")

# Reduced-precision roofs measured on CUDA (tensor-core products).
CUDA_PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16}


def measure_roofline(device: str) -> Roofline:
    """Peak and bandwidth of ``device`` with the default sizes (seconds at most)."""
    peaks = {"torch.mm": measure_peak_gflops(device)}
    precision_peaks = {}
    if require_device(device).type == "cpu":
        peaks["onnxruntime MatMul"] = measure_peak_gflops_onnxruntime()
        peaks["torch conv2d"] = measure_peak_gflops_conv()
        peaks["onnxruntime Conv"] = measure_peak_gflops_onnxruntime_conv()
        int8 = measure_peak_gops_int8()
        peaks.update({f"int8 {how}": value for how, value in int8.items()})
        precision_peaks["int8"] = max(int8.values())
        if cpu_bf16_reason() is None:
            precision_peaks["bf16"] = peaks["bf16 torch.mm"] = measure_peak_gflops(
                device, dtype=torch.bfloat16
            )
    else:
        for name, dtype in CUDA_PRECISIONS.items():
            precision_peaks[name] = measure_peak_gflops(device, dtype=dtype)
    fp32 = max(v for how, v in peaks.items() if how in FP32_CANDIDATES)
    return Roofline(device, fp32, measure_bandwidth_gbs(device), peaks, precision_peaks)


def _elements_and_params(target: str) -> tuple[int, int, int, int]:
    """(FLOP, input elements, output elements) per image, and parameter count, of ``target``."""
    if target == "model":
        return MODEL_FLOPS, math.prod(IMAGE_SHAPE), NUM_CLASSES, MODEL_PARAMS  # (1, 28, 28) -> (10,)
    spec = layer_spec(target)
    return spec.flops, math.prod(spec.input_shape), math.prod(spec.output_shape), spec.params


def bytes_moved(target: str, batch_size: int, bytes_per_element: int = 4) -> int:
    """Compulsory bytes of one call of ``target`` on a batch: input and output read/written once
    per image, weights read once per call. A lower bound (see the module docstring).

    ``bytes_per_element``: 4 for float32 (default), 2 for fp16/bf16, 1 for int8."""
    if batch_size < 1 or bytes_per_element < 1:
        raise ValueError(
            f"batch_size and bytes_per_element must be >= 1, got {batch_size}, {bytes_per_element}"
        )
    _, n_in, n_out, params = _elements_and_params(target)
    return bytes_per_element * (batch_size * (n_in + n_out) + params)


def arithmetic_intensity(target: str, batch_size: int, bytes_per_element: int = 4) -> float:
    """FLOP per compulsory byte of one call of ``target`` on a batch (0 for the pools)."""
    flop = _elements_and_params(target)[0] * batch_size
    return flop / bytes_moved(target, batch_size, bytes_per_element)
