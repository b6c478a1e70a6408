"""The Runtime protocol: prepare once (load, create the session, stage weights), run many.

``Runtime.prepare(target, device, ...)`` does everything that must stay outside the timed region
and returns a ``Prepared`` whose ``run`` is the only thing timed. ``supports(device)`` returns
None when the runtime can run there, else the reason it cannot (it becomes the skip reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

import numpy as np
import torch

from exporters.manifest import Manifest
from models.network import DeepMNIST


@dataclass
class Artifacts:
    """What adapters load from: the checkpoint's network and the verified export manifest."""

    net: DeepMNIST  # eval mode, CPU, the trained weights
    manifest: Manifest


class Prepared(Protocol):
    execution_provider: str  # "" for torch runtimes

    def to_device(self, x: np.ndarray) -> Any:
        """Host float32/uint8 array -> the runtime's input, resident on its device (untimed for compute)."""

    def run(self, x: Any) -> Any:
        """One inference on a device-resident input; returns the output on the device."""

    def to_host(self, y: Any) -> np.ndarray:
        """Device output -> host numpy array (includes synchronisation)."""

    def sync(self) -> None:
        """Wait until all queued device work is done (no-op on CPU)."""


class Runtime(Protocol):
    name: str

    def supports(self, device: str) -> str | None: ...

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> Prepared: ...


@cache
def cuda_unavailable_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return None


def check_device(device: str) -> str | None:
    if device == "cpu":
        return None
    if device == "cuda":
        return cuda_unavailable_reason()
    return f"unknown device {device!r}"


def set_threads(threads: int) -> None:
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class TorchPrepared:
    """Shared by the torch runtimes: a callable module on a device, fp32 (no TF32 on CUDA)."""

    execution_provider = ""

    def __init__(self, module: torch.nn.Module | torch.jit.ScriptModule, device: str) -> None:
        self.module, self.device = module, torch.device(device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False  # honest float32 numbers
            torch.backends.cudnn.allow_tf32 = False

    def to_device(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(self.device)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(x)

    def to_host(self, y: torch.Tensor) -> np.ndarray:
        return y.cpu().numpy()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
