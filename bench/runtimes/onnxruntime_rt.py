"""onnxruntime: the exported ONNX file in an InferenceSession.

CPU: CPUExecutionProvider with explicit intra-op threads. CUDA: CUDAExecutionProvider (or the
TensorRT provider, as the separate runtime ``onnxruntime-trt``) with IO binding: the input lives
on the GPU and the output stays there, so ``run`` times the inference alone. ORT is told to use
torch's current CUDA stream, so the CUDA-event clock measures its kernels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.runtimes.base import Artifacts, check_device

PROVIDERS = {
    "onnxruntime": {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"},
    "onnxruntime-trt": {"cuda": "TensorrtExecutionProvider"},
}


class OrtPrepared:
    def __init__(self, session: Any, device: str, provider: str) -> None:
        import onnxruntime as ort

        self.ort, self.session, self.device = ort, session, device
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


class OnnxRuntime:
    def __init__(self, name: str = "onnxruntime") -> None:
        self.name = name

    def supports(self, device: str) -> str | None:
        import onnxruntime as ort

        provider = PROVIDERS[self.name].get(device)
        if provider is None:
            return f"{self.name} runs on {', '.join(PROVIDERS[self.name])} only"
        if reason := check_device(device):
            return reason
        if provider not in ort.get_available_providers():
            return f"onnxruntime {ort.__version__} built without {provider} (install onnxruntime-gpu)"
        return None

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> OrtPrepared:
        import onnxruntime as ort

        path = artifacts.manifest.verified_path(target, "onnx")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        provider = PROVIDERS[self.name][device]
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
        return OrtPrepared(session, device, provider)
