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

The torch adapters derive from ``bench.runtimes.torch_base.TorchRuntime`` (fp32, every target,
any available device, threads set, the loaded module wrapped in a ``TorchPrepared``) and write
only ``load``. This module imports no torch: a worker of an ONNX Runtime, OpenVINO or JavaScript
runtime imports this, its adapter and its library, nothing more.

A ``Prepared`` may also have ``compile(x)`` (see ``Compilable``): it builds what the first call
would otherwise build for input ``x`` (a torch.compile graph for that shape, a TensorRT engine),
by running once on ``x`` and synchronising. The harness times it as ``compile_s``, separately
from the preparation (``load_s``) and the first inference (``first_inference_ms``). Runtimes that
do not compile per input shape have no ``compile`` attribute at all. A ``Prepared`` that can split
a whole-model call into its layers has ``profile`` (see ``Profilable``); the others have none and
the profile scenario skips them. A ``Prepared`` that runs in another process has ``time_calls``
(see ``SelfTimed``): the harness takes its samples from it. A ``Runtime`` with ``bare`` (see
``HasBare``) names a program that does its cold work without the harness (the self-check).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from exporters.manifest import ExportError, Manifest

PRECISIONS = ("fp32", "int8", "fp16", "bf16")
# Every file handed out by ``artifact_path`` in this process, in order: the harness sums the sizes of
# those a prepare loaded (the ``model_bytes`` column).
LOADED_FILES: list[Path] = []


@dataclass
class Artifacts:
    """What adapters load from: the verified export manifest and, for the torch runtimes, the
    checkpoint's network, loaded on first use (``bench.runtimes.torch_base.network``) so that a
    worker of any other runtime never loads torch."""

    manifest: Manifest
    root: str | os.PathLike | None = None  # the artifacts folder (None: the default one)
    net: Any = None  # the trained DeepMNIST (eval mode, CPU) once loaded, or given

    def checkpoint(self) -> Path:
        """The checkpoint the export was made from, on this machine."""
        return self.manifest.checkpoint_path(self.root)


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
    inter-process call: the runtime times its own calls and only the samples cross to Python.
    Its host process starts in ``prepare``: ``host_start_s`` is that host's start to the runtime
    ready, the runtime's cold start (the Python worker around it is the harness's)."""

    host_start_s: float

    def time_calls(self, x: Any, calls: int, warm_s: float) -> list[float]:
        """Seconds of each of ``calls`` back-to-back calls of ``run(x)``, clocked inside the
        runtime's process after ``warm_s`` seconds of untimed calls."""


@runtime_checkable
class HasBare(Protocol):
    """The optional part of a ``Runtime`` that has a bare program (``bench.runtimes.bare``): what a user of
    the runtime alone would write for one result, the self-check's reference for cold start and
    memory."""

    def bare(self, target: str, artifacts: Artifacts, threads: int, x: Path) -> list[str]:
        """argv of a program that imports only this runtime's library, loads ``target``'s file on
        the CPU as ``prepare`` does with ``threads`` threads, and runs once on the float32 input
        saved at ``x`` (a ``.npy`` file), in ``bench.runtimes.bare``'s frame."""


@runtime_checkable
class Runtime(Protocol):
    name: str
    precision: str  # one of PRECISIONS; "fp32" unless it computes in reduced precision
    targets: tuple[str, ...] | None  # None: every target; else the only targets it runs

    def supports(self, device: str) -> str | None: ...

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> Prepared: ...
