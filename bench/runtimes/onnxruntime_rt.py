"""onnxruntime: the exported ONNX file in an InferenceSession, and its labelled variants.

CPU: CPUExecutionProvider with explicit intra-op threads. CUDA: CUDAExecutionProvider (or the
TensorRT provider, as the separate runtime ``onnxruntime-trt``) with IO binding: the input lives
on the GPU and the output stays there, so ``run`` times the inference alone. ORT is told to use
torch's current CUDA stream, so the CUDA-event clock measures its kernels.

Variants (``VARIANTS``), each one more registered runtime, the same adapter with one change
(what each one measured when it was chosen: docs/runtimes.md, "The choices behind the variants"):

- ``onnxruntime-trt``: TensorrtExecutionProvider (CUDA fallback for unsupported nodes), fp32 (no
  ``trt_fp16_enable``), no engine or timing cache, so ``compile(x)`` builds the engine cold.
- ``onnxruntime-noopt``: ``GraphOptimizationLevel.ORT_DISABLE_ALL``, the graph as exported: what
  ORT's optimizer (constant folding, Conv+ReLU fusion, NCHWc layout, ...) buys.
- ``onnxruntime-nospin``: ``session.intra_op.allow_spinning = 0``: intra-op threads sleep instead
  of busy-waiting between parallel sections: less CPU burned when idle, at a latency cost at
  batch 1.
- ``onnxruntime-int8``: ``deep_mnist_int8.onnx`` (format ``onnx-int8``), static QDQ int8 made at
  export time; CPU only (ORT fuses QDQ into int8 QLinearConv/MatMulInteger kernels there).
- ``onnxruntime-fp16``: ``deep_mnist_fp16.onnx`` (format ``onnx-fp16``), float16 weights and
  activations with float32 input and output (casts inside the graph); CUDA only.

Tried on the CPU and not made variants (no gain beyond noise over ``onnxruntime``):
``session.set_denormal_as_zero``, ``session.dynamic_block_base = 4``, ``ORT_ENABLE_EXTENDED``
(slower: no NCHWc layout).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.runtimes.bare import python_program
from bench.runtimes.base import Artifacts, artifact_path
from bench.runtimes.device import check_device
from exporters.onnxrt import LOG_ERRORS_ONLY, session_options

# The bare program (bench.runtimes.bare): ``exporters.onnxrt.session_options`` and ``prepare`` written out
# in onnxruntime's own API, for the CPU provider.
_BARE = """
import numpy as np
import onnxruntime as ort
options = ort.SessionOptions()
options.log_severity_level = severity
options.intra_op_num_threads = threads
options.inter_op_num_threads = 1
options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, optimization)
for key, value in config.items():
    options.add_session_config_entry(key, value)
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
session.run(None, {session.get_inputs()[0].name: np.load(x)})
"""


@dataclass(frozen=True)
class Variant:
    providers: dict[str, str]  # device -> execution provider
    fmt: str = "onnx"  # manifest format of the file it loads
    precision: str = "fp32"
    targets: tuple[str, ...] | None = ("model",)
    optimization: str = "ORT_ENABLE_ALL"  # a GraphOptimizationLevel member
    config: dict[str, str] = field(default_factory=dict)  # session config entries
    device_reasons: dict[str, str] = field(default_factory=dict)  # device -> why it is not run there


VARIANTS: dict[str, Variant] = {
    "onnxruntime": Variant({"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}, targets=None),
    "onnxruntime-trt": Variant({"cuda": "TensorrtExecutionProvider"}, targets=None),
    "onnxruntime-noopt": Variant(
        {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}, optimization="ORT_DISABLE_ALL"
    ),
    "onnxruntime-nospin": Variant(
        {"cpu": "CPUExecutionProvider"},
        config={"session.intra_op.allow_spinning": "0"},
        device_reasons={"cuda": "thread spinning is a CPU setting (the CUDA provider's work is on the GPU)"},
    ),
    "onnxruntime-int8": Variant(
        {"cpu": "CPUExecutionProvider"},
        fmt="onnx-int8",
        precision="int8",
        device_reasons={
            "cuda": "the static QDQ int8 model is for the CPU provider: ORT's CUDA provider has no "
            "int8 convolution kernels (TensorRT is ORT's int8 path on the GPU)"
        },
    ),
    "onnxruntime-fp16": Variant(
        {"cuda": "CUDAExecutionProvider"},
        fmt="onnx-fp16",
        precision="fp16",
        device_reasons={
            "cpu": "float16 ONNX model is for the CUDA provider; ORT CPU has no fast fp16 kernels"
        },
    ),
}


class OrtPrepared:
    def __init__(self, session: Any, path: Path, device: str, provider: str) -> None:
        import onnxruntime as ort

        self.ort, self.session, self.device = ort, session, device
        self.path = path  # the verified .onnx file the session runs (the profiler makes a twin)
        self.execution_provider = provider
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name

    def to_device(self, x: np.ndarray) -> Any:
        if self.device == "cpu":
            return x
        return self.ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)

    def run(self, x: Any) -> Any:
        if self.device == "cpu":
            return self.session.run([self.output_name], {self.input_name: x})[0]
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.input_name, x)
        binding.bind_output(self.output_name, "cuda", 0)
        self.session.run_with_iobinding(binding)
        return binding

    def to_host(self, y: Any) -> np.ndarray:
        if self.device == "cpu":
            return y
        return y.copy_outputs_to_cpu()[0]

    def sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def profile(self, x: np.ndarray, calls: int) -> dict[str, float]:
        """Layer -> ms per call (plus "other" and "total"): ORT's profiler, in a twin of this session
        (same model, providers and options; profiling can only be switched on at creation)."""
        # deliberate: a worker carries only its runtime; profiling loads when a profile is asked for
        from bench.runtimes.attribution import profile_onnxruntime

        threads = self.session.get_session_options().intra_op_num_threads
        return profile_onnxruntime(self.path, x, calls, threads, like=self.session)


class OrtTrtPrepared(OrtPrepared):
    """TensorRT builds an engine for an input shape at the first run with it: ``compile`` does that."""

    def compile(self, x: Any) -> None:
        self.run(x)
        self.sync()


class OnnxRuntime:
    def __init__(self, name: str = "onnxruntime") -> None:
        self.name = name
        self.variant = VARIANTS[name]
        self.precision = self.variant.precision
        self.targets = self.variant.targets

    def supports(self, device: str) -> str | None:
        import onnxruntime as ort

        if reason := self.variant.device_reasons.get(device):
            return reason
        provider = self.variant.providers.get(device)
        if provider is None:
            return f"{self.name} runs on {', '.join(self.variant.providers)} only"
        if reason := check_device(device):
            return reason
        if provider not in ort.get_available_providers():
            return f"onnxruntime {ort.__version__} built without {provider} (install onnxruntime-gpu)"
        return None

    def bare(self, target: str, artifacts: Artifacts, threads: int, x: Path) -> list[str]:
        v = self.variant
        path = str(artifact_path(artifacts, target, v.fmt))
        return python_program(_BARE, path=path, x=str(x), threads=threads, severity=LOG_ERRORS_ONLY,
                              optimization=v.optimization, config=dict(v.config))  # fmt: skip

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> OrtPrepared:
        import onnxruntime as ort

        path = artifact_path(artifacts, target, self.variant.fmt)
        options = session_options(threads, self.variant.optimization, self.variant.config)
        provider = self.variant.providers[device]
        providers: list[Any] = [provider]
        if device == "cuda":
            import torch

            stream = torch.cuda.current_stream().cuda_stream
            cuda_options = {"device_id": 0, "user_compute_stream": str(stream)}
            if provider == "TensorrtExecutionProvider":
                providers = [(provider, {"device_id": 0, "user_compute_stream": str(stream)}),
                             ("CUDAExecutionProvider", cuda_options)]  # fmt: skip
            else:
                providers = [(provider, cuda_options)]
        session = ort.InferenceSession(str(path), options, providers=providers)
        kind = OrtTrtPrepared if provider == "TensorrtExecutionProvider" else OrtPrepared
        return kind(session, path, device, provider)
