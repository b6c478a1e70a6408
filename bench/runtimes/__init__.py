"""The explicit registry of runtime adapters: name -> Runtime. One small file per adapter."""

from __future__ import annotations

import torch

from bench.runtimes.base import Artifacts, Compilable, Prepared, Profilable, Runtime
from bench.runtimes.onnxruntime_node import OnnxRuntimeNode
from bench.runtimes.onnxruntime_rt import OnnxRuntime
from bench.runtimes.onnxruntime_web import OnnxRuntimeWeb
from bench.runtimes.openvino_rt import OpenVino
from bench.runtimes.torch_aoti import TorchAoti
from bench.runtimes.torch_autocast import TorchAutocast
from bench.runtimes.torch_compile import TorchCompile
from bench.runtimes.torch_eager import TorchEager, TorchEagerChannelsLast
from bench.runtimes.torch_export import TorchExport
from bench.runtimes.torchscript import TorchScript, TorchScriptOptimized

RUNTIMES: dict[str, Runtime] = {
    "torch-eager": TorchEager(),
    "torch-eager-channels-last": TorchEagerChannelsLast(),
    "torch-eager-bf16": TorchAutocast("torch-eager-bf16", torch.bfloat16),
    "torch-eager-fp16": TorchAutocast("torch-eager-fp16", torch.float16),
    "torchscript": TorchScript(),
    "torchscript-optimized": TorchScriptOptimized(),
    "torch-compile": TorchCompile(),
    "torch-compile-freezing": TorchCompile("torch-compile-freezing", config={"freezing": True}),
    "torch-export": TorchExport(),
    "torch-aoti": TorchAoti(),
    "onnxruntime": OnnxRuntime("onnxruntime"),
    "onnxruntime-noopt": OnnxRuntime("onnxruntime-noopt"),
    "onnxruntime-nospin": OnnxRuntime("onnxruntime-nospin"),
    "onnxruntime-int8": OnnxRuntime("onnxruntime-int8"),
    "onnxruntime-fp16": OnnxRuntime("onnxruntime-fp16"),
    "onnxruntime-trt": OnnxRuntime("onnxruntime-trt"),
    "openvino": OpenVino(),
    "onnxruntime-node": OnnxRuntimeNode(),
    "onnxruntime-web": OnnxRuntimeWeb(),
}
DEVICES = ("cpu", "cuda")

# Max |output - eager PyTorch on CPU| accepted before a combination is timed, per runtime and device:
# the one place tolerances live. Unlisted pairs get DEFAULT_TOLERANCE (fp32 on the CPU). Each is a
# margin over the max |diff| seen over the first 256 test images (the parity gate's largest default
# batch) when it was set; each run's differences are its CSV's max_abs_diff (docs/runtimes.md).
TOLERANCES: dict[tuple[str, str], float] = {
    # fp32 on the CPU: the same arithmetic in another order or another library (oneDNN, MLAS,
    # Inductor C++, OpenVINO): well under the 1e-4 default.
    ("torch-eager", "cpu"): 1e-4,
    ("torchscript", "cpu"): 1e-4,
    ("onnxruntime", "cpu"): 1e-4,
    # fp32 on CUDA: other kernels and accumulation orders (TF32 is off, so float32 throughout).
    ("torch-eager", "cuda"): 1e-3,
    # The frozen TorchScript graph gets other cuDNN convolution algorithms than eager at batch 64
    # and 256 on an H200 (results/*-cuda-h200.csv, max_abs_diff; argmax unchanged): 5e-3.
    ("torchscript", "cuda"): 5e-3,
    ("torch-compile", "cuda"): 1e-3,
    ("torch-export", "cuda"): 1e-3,
    ("onnxruntime", "cuda"): 1e-3,
    ("onnxruntime-noopt", "cuda"): 1e-3,
    # TensorRT may fuse more and pick other tactics (fp32; no fp16 flag).
    ("onnxruntime-trt", "cuda"): 1e-2,
    # bf16 autocast on the CPU (oneDNN, AVX512_BF16): 2x the largest difference seen, accuracy
    # unchanged.
    ("torch-eager-bf16", "cpu"): 0.2,
    # Half types on CUDA: estimated by emulating autocast on the CPU (inputs and weights of every
    # conv/linear rounded to the type, float32 accumulation, outputs rounded); 3x that, for
    # cuDNN/cuBLAS algorithms that may round differently. Re-measure on a GPU and tighten.
    ("torch-eager-bf16", "cuda"): 0.3,
    ("torch-eager-fp16", "cuda"): 0.03,
    ("onnxruntime-fp16", "cuda"): 0.03,
    # Static QDQ int8 (onnxruntime CPU; the exporter's settings: u8 activations, s8 per-channel
    # weights, MinMax calibration on 1,000 training images, conv1 kept float32): quantisation error
    # of weights and activations; 2x the largest difference seen, while argmax agrees. Its accuracy
    # is checked separately (within 0.2 pt of eager fp32, tests/test_runtimes.py and the exporter).
    ("onnxruntime-int8", "cpu"): 4.5,
}
DEFAULT_TOLERANCE = 1e-4


def tolerance(runtime: str, device: str) -> float:
    return TOLERANCES.get((runtime, device), DEFAULT_TOLERANCE)


__all__ = ["DEVICES", "RUNTIMES", "Artifacts", "Compilable", "Prepared", "Profilable", "Runtime", "tolerance"]
