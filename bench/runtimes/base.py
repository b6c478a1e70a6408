"""The Runtime protocol: prepare once (load, create the session, stage weights), run many.

``Runtime.prepare(target, device, ...)`` does everything that must stay outside the timed region
and returns a ``Prepared`` whose ``run`` is the only thing timed. ``supports(device)`` returns
None when the runtime can run there, else the reason it cannot (it becomes the skip reason).

Besides ``name``, every runtime declares (required: the harness reads these exact attributes,
with no defaults):

- ``precision``: the arithmetic it computes in, the CSV ``precision`` column: ``"fp32"``,
  ``"int8"``, ``"fp16"`` or ``"bf16"``. Inputs and outputs stay float32 for all of them.
- ``targets``: ``None`` when it runs every target (``model`` and each layer), else the tuple of
  targets it can run; the harness skips the others with the reason "<name> runs <targets> only".

The torch adapters derive from ``TorchRuntime`` (fp32, every target, any available device,
threads set, the loaded module wrapped in a ``TorchPrepared``) and write only ``load``.

A ``Prepared`` may also have ``compile(x)`` (see ``Compilable``): it builds what the first call
would otherwise build for input ``x`` (a torch.compile graph for that shape, a TensorRT engine),
by running once on ``x`` and synchronising. The harness times it as ``compile_s``, separately
from the preparation (``load_s``) and the first inference (``first_inference_ms``). Runtimes that
do not compile per input shape have no ``compile`` attribute at all. A ``Prepared`` that can split
a whole-model call into its layers has ``profile`` (see ``Profilable``); the others have none and
the profile scenario skips them. A ``Prepared`` that runs in another process has ``time_calls``
(see ``SelfTimed``): the harness takes its samples from it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from bench.device import check_device
from exporters.manifest import ExportError, Manifest
from models.network import DeepMNIST, layer_module

PRECISIONS = ("fp32", "int8", "fp16", "bf16")
# Every file handed out by ``artifact_path`` in this process, in order: the harness sums the sizes of
# those a prepare loaded (the ``model_bytes`` column).
LOADED_FILES: list[Path] = []


@dataclass
class Artifacts:
    """What adapters load from: the checkpoint's network and the verified export manifest."""

    net: DeepMNIST  # eval mode, CPU, the trained weights
    manifest: Manifest


def artifact_path(artifacts: Artifacts, target: str, fmt: str) -> Path:
    """The artifact's file after its SHA-256 matched the manifest (``Manifest.verified_path``), the
    only way adapters reach a file. Raises ExportError naming the file or, when the export skipped
    the artifact on its machine (e.g. AOTInductor without a C++ compiler), saying why."""
    why = getattr(artifacts.manifest, "skipped", {}).get(f"{target}/{fmt}")
    if why:
        raise ExportError(
            f"{artifacts.manifest.folder}: the manifest lists no {fmt} artifact for {target!r}: "
            f"the export skipped it ({why})"
        )
    path = artifacts.manifest.verified_path(target, fmt)
    LOADED_FILES.append(path)
    return path


class Prepared(Protocol):
    execution_provider: str  # "" for torch runtimes

    def to_device(self, x: np.ndarray) -> Any:
        """Host float32/uint8 array -> the runtime's input, resident on its device (untimed for compute)."""

    def run(self, x: Any) -> Any:
        """One inference on a device-resident input; returns the output on the device."""

    def to_host(self, y: Any) -> np.ndarray:
        """Device output -> host numpy float32 array (includes synchronisation)."""

    def sync(self) -> None:
        """Wait until all queued device work is done (no-op on CPU)."""


@runtime_checkable
class Compilable(Protocol):
    """The optional part of ``Prepared`` for runtimes that build code or engines per input shape."""

    def compile(self, x: Any) -> None:
        """Build (cold: no cache from an earlier prepared object or run) what ``run(x)`` needs for
        ``x``'s shape, by running once on ``x``; returns after the device is synchronised."""


@runtime_checkable
class Profilable(Protocol):
    """The optional part of ``Prepared`` for runtimes whose profiler splits a whole-model call into
    the network's layers (the ``profile`` scenario)."""

    def profile(self, x: np.ndarray, calls: int) -> dict[str, float]:
        """Layer -> ms per call (plus "other" and "total") over ``calls`` calls on the host input
        ``x`` (float32 (N, 1, 28, 28))."""


@runtime_checkable
class SelfTimed(Protocol):
    """The optional part of ``Prepared`` for runtimes in another process (onnxruntime-node, and
    onnxruntime-web in a browser), where a Python clock around ``run`` would time the
    inter-process call: the runtime times its own calls and only the samples cross to Python."""

    def time_calls(self, x: Any, calls: int, warm_s: float) -> list[float]:
        """Seconds of each of ``calls`` back-to-back calls of ``run(x)``, clocked inside the
        runtime's process after ``warm_s`` seconds of untimed calls."""


@runtime_checkable
class Runtime(Protocol):
    name: str
    precision: str  # one of PRECISIONS; "fp32" unless it computes in reduced precision
    targets: tuple[str, ...] | None  # None: every target; else the only targets it runs

    def supports(self, device: str) -> str | None: ...

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> Prepared: ...


@cache
def cpu_bf16_reason() -> str | None:
    """None when oneDNN has bfloat16 kernels for this CPU, else why bf16 on the CPU is skipped.

    torch's check is AVX512BW + VL + DQ (x86) or the Arm BF16 extension; native bf16 dot products
    need AVX512_BF16 or AMX (this project's reference CPU has AVX512_BF16), older AVX-512 CPUs
    convert to fp32 inside oneDNN (correct, usually slower than fp32)."""
    if not torch.backends.mkldnn.is_available():
        return "torch built without oneDNN (mkldnn): no bfloat16 CPU kernels"
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "this CPU has no bfloat16 kernels in oneDNN (needs AVX-512 BW/VL/DQ, AVX512_BF16 or AMX)"
    return None


def set_threads(threads: int) -> None:
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class TorchPrepared:
    """Shared by the torch runtimes: a callable module on a device, fp32 (no TF32 on CUDA)."""

    execution_provider = ""

    def __init__(self, module: Any, device: str) -> None:
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


class ProfiledTorchPrepared(TorchPrepared):
    """A ``TorchPrepared`` whose module torch.profiler can split into the network's layers."""

    def profile(self, x: np.ndarray, calls: int) -> dict[str, float]:
        """Layer -> ms per call (plus "other" and "total") of the whole model under torch.profiler."""
        from bench.attribution import profile_torch

        return profile_torch(self.module, self.to_device(x), calls, self.device.type)


def eager_module(artifacts: Artifacts, target: str, device: str) -> torch.nn.Module:
    """A private copy of the checkpoint's network (or of one layer of it), eval mode, on ``device``."""
    net = copy.deepcopy(artifacts.net).eval()
    return (net if target == "model" else layer_module(net, target)).to(device)


class TorchRuntime:
    """The torch adapters' base: fp32, every target, any device this machine has; ``prepare`` sets
    torch's threads and wraps what ``load`` returns with ``wrap`` (by default in
    ``prepared_class``, a ``ProfiledTorchPrepared``). Subclasses set ``name`` and write ``load``."""

    name: str
    precision = "fp32"
    targets: tuple[str, ...] | None = None  # the model and every layer
    prepared_class: type[TorchPrepared] = ProfiledTorchPrepared

    def supports(self, device: str) -> str | None:
        return check_device(device)

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> TorchPrepared:
        if reason := self.supports(device):
            raise ValueError(f"{self.name} cannot run on {device}: {reason}")
        set_threads(threads)
        return self.wrap(self.load(target, device, artifacts), device)

    def load(self, target: str, device: str, artifacts: Artifacts) -> Any:
        """The callable module for ``target`` on ``device`` (after the threads are set)."""
        raise NotImplementedError

    def wrap(self, module: Any, device: str) -> TorchPrepared:
        return self.prepared_class(module, device)
