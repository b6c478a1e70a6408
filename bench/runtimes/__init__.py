"""The explicit registry of runtime adapters: name -> Runtime. One small file per adapter."""

from __future__ import annotations

from bench.runtimes.base import Artifacts, Prepared, Runtime
from bench.runtimes.onnxruntime_rt import OnnxRuntime
from bench.runtimes.torch_eager import TorchEager
from bench.runtimes.torchscript import TorchScript

RUNTIMES: dict[str, Runtime] = {
    "torch-eager": TorchEager(),
    "torchscript": TorchScript(),
    "onnxruntime": OnnxRuntime("onnxruntime"),
    "onnxruntime-trt": OnnxRuntime("onnxruntime-trt"),
}
DEVICES = ("cpu", "cuda")

# Max |output - eager PyTorch on CPU| accepted before a combination is timed, per runtime and device.
# CUDA kernels accumulate in other orders (TF32 is off, so float32 throughout); TensorRT may fuse more.
TOLERANCES: dict[tuple[str, str], float] = {
    ("torch-eager", "cpu"): 1e-4,
    ("torchscript", "cpu"): 1e-4,
    ("onnxruntime", "cpu"): 1e-4,
    ("torch-eager", "cuda"): 1e-3,
    ("torchscript", "cuda"): 1e-3,
    ("onnxruntime", "cuda"): 1e-3,
    ("onnxruntime-trt", "cuda"): 1e-2,
}
DEFAULT_TOLERANCE = 1e-4


def tolerance(runtime: str, device: str) -> float:
    return TOLERANCES.get((runtime, device), DEFAULT_TOLERANCE)


__all__ = ["DEVICES", "RUNTIMES", "Artifacts", "Prepared", "Runtime", "tolerance"]
