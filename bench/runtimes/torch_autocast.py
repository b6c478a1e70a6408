"""torch-eager-bf16 / torch-eager-fp16: the eager network under ``torch.autocast``.

Autocast runs convolutions and linear layers in the reduced type (bfloat16: oneDNN on the CPU,
cuDNN/cuBLAS on CUDA; float16: CUDA only) with float32 accumulation inside the kernels, keeps
weights in float32 (cast per call, part of the timed cost, as in real autocast inference) and
returns the logits cast back to float32. Input stays float32 ``(N, 1, 28, 28)``.

bf16 on the CPU needs oneDNN bf16 kernels (``cpu_bf16_reason``); fp16 is skipped on the CPU:
CPU fp16 autocast has no fast kernels on x86 without AMX-FP16, and bf16 is the CPU's half type.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.runtimes.base import Artifacts
from bench.runtimes.torch_base import (
    BARE_NETWORK,
    ProfiledTorchPrepared,
    TorchRuntime,
    eager_module,
)
from models.cpu import cpu_bf16_reason


class AutocastPrepared(ProfiledTorchPrepared):
    def __init__(self, module: torch.nn.Module, device: str, dtype: torch.dtype) -> None:
        super().__init__(module, device)
        self.dtype = dtype

    def run(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype):
            y = self.module(x)  # (N, 10) in self.dtype
        return y.float()

    def profile(self, x: np.ndarray, calls: int) -> dict[str, float]:
        with torch.autocast(self.device.type, dtype=self.dtype):  # the profiled calls run as `run` does
            return super().profile(x, calls)


class TorchAutocast(TorchRuntime):
    targets = ("model",)  # a reduced-precision variant of the whole network

    def __init__(self, name: str, dtype: str) -> None:  # dtype: "bfloat16" or "float16"
        self.name, self.dtype = name, getattr(torch, dtype)
        self.precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def supports(self, device: str) -> str | None:
        if reason := super().supports(device):
            return reason
        if device == "cpu" and self.dtype == torch.float16:
            return "fp16 autocast is for CUDA; use bf16 on CPU"
        if device == "cpu":
            return cpu_bf16_reason()
        if self.dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported(including_emulation=False):
            return f"{torch.cuda.get_device_name()} has no bfloat16 support (needs compute capability >= 8.0)"
        return None

    def load(self, target: str, device: str, artifacts: Artifacts) -> torch.nn.Module:
        return eager_module(artifacts, target, device)

    def bare_module(self, target: str, artifacts: Artifacts) -> tuple[str, Path]:
        code = f"""
def module(t):
    with torch.autocast("cpu", dtype={self.dtype}):
        return net(t).float()
"""
        return BARE_NETWORK + code, artifacts.checkpoint()

    def wrap(self, module: torch.nn.Module, device: str) -> AutocastPrepared:
        return AutocastPrepared(module, device, self.dtype)
