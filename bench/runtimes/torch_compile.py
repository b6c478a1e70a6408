"""torch-compile: ``torch.compile`` (Dynamo + Inductor, default mode) of the eval network or a layer.

fp32 on CPU (Inductor's C++/OpenMP kernels; convolutions and GEMMs as oneDNN/MKL calls) and on
CUDA (Triton kernels, cuDNN/cuBLAS; TF32 off). ``dynamic=False``: one graph specialised to the
batch size of the prepared case; another batch size (the harness's accuracy pass, 500 images a
call) compiles one more graph, untimed.

One compile per prepared object, cold every time. ``compile(x)`` runs the first call, which is
when torch.compile compiles:

- Each prepared object compiles its own function, ``forward_<n>``, a copy of a one-line wrapper
  with a code object of its own. Dynamo keeps compiled graphs on the Python code object it traces
  and guards them on types and shapes, not on the module instance: compiling the module itself,
  a second prepared object (a fresh deep copy) would reuse the first one's graph and "compile"
  at once, and two live objects (torch-compile and torch-compile-freezing in one group of the
  harness) would run each other's graphs. ``torch._dynamo.reset()`` would avoid the first but
  drops the graphs of every live object.
- ``torch._inductor.utils.fresh_cache()`` around that first call: a new temporary
  ``TORCHINDUCTOR_CACHE_DIR`` (and ``TRITON_CACHE_DIR`` inside it), deleted afterwards, and
  Inductor's in-memory code caches cleared, so neither the FX graph cache, the AOTAutograd cache,
  the autotune cache nor a C++ kernel library built by an earlier case or run is hit (checked by
  tests: ``fxgraph_cache_miss``, no hit, every time; with the default cache folder a second
  process would load the cached graph instead of compiling). Remote caches are off outside Meta.

Not in compile_s: Inductor's once-per-process start-up (imports, the compile-worker
subprocesses, C++ toolchain probing: seconds, more than one graph's compile), which ``prepare``
pays once per process and device by compiling a tiny conv/pool/linear net, so every case's
``compile_s`` is the cost of its own graph; ``load_s`` of a run's first torch-compile case
carries the start-up.

Per-layer cold compile times: ``compile_s`` of every row; the choices below are explained in
docs/runtimes.md ("The choices behind the variants").

Targets: ``("model", "conv2")``: every layer would be 15 more cases in a sweep already over its
time budget; conv2 holds 72% of the FLOPs and is where the compiler can matter (the pools are
trivial, fc1/fc2 are one GEMM each).

Mode: Inductor's default; ``mode="max-autotune-no-cudagraphs"`` was no faster within noise on the
CPU, so not adopted. Freezing, in contrast, was faster (``torch-compile-freezing``).
"""

from __future__ import annotations

import itertools
import types
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import torch

from bench.runtimes.base import Artifacts
from bench.runtimes.torch_base import BARE_NETWORK, TorchPrepared, TorchRuntime, eager_module

COMPILE_MODE: str | None = None  # Inductor's default mode (module docstring)
_serial = itertools.count()


def _fresh_cache() -> Any:
    """Inductor's context manager for a fresh temporary cache folder (renamed in torch 2.8)."""
    from torch._inductor import utils

    fresh = getattr(utils, "fresh_cache", None) or utils.fresh_inductor_cache
    return fresh()


def own_forward(module: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``lambda x: module(x)`` with a code object of its own, so Dynamo's graph cache for it
    belongs to this one prepared object (module docstring)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        return module(x)

    code = forward.__code__.replace(co_name=f"forward_{next(_serial)}")
    return types.FunctionType(code, forward.__globals__, code.co_name, None, forward.__closure__)


@cache
def warm_up_inductor(device: str) -> None:
    """Pay Inductor's once-per-process start-up on ``device`` (imports, worker pool, compiler
    probing) with a tiny net of the same op types, so it is not counted in any case's compile_s."""
    tiny = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 2),
    )
    tiny = tiny.eval().to(device)
    with _fresh_cache(), torch.inference_mode():
        torch.compile(own_forward(tiny), dynamic=False)(torch.rand(1, 1, 4, 4, device=device))
    if device == "cuda":
        torch.cuda.synchronize()


class CompiledPrepared(TorchPrepared):
    """A torch.compile'd module; ``compile(x)`` is its first, cold call (the harness's compile_s).
    Not ``Profilable``: Inductor fuses across layers (conv + ReLU + pool in one kernel), and layer
    hooks would make Dynamo compile again: no honest per-layer split, so the profile scenario
    skips it."""

    def compile(self, x: torch.Tensor) -> None:
        with _fresh_cache():
            self.run(x)
            self.sync()


class ConfiguredCompiledPrepared(CompiledPrepared):
    """Compiles every graph under an Inductor config patch. The patch must surround the Dynamo
    trace as well (Dynamo reads ``config.freezing`` to keep parameters as graph constants), so
    ``torch.compile(options=...)``, which reaches Inductor only, does not give frozen weights
    (measured: no speed-up). A call with an input shape not compiled yet (the accuracy pass's
    batch of 500) compiles under the patch too; other calls pay one set lookup of the shape."""

    def __init__(self, module: Any, device: str, config: dict[str, Any]) -> None:
        super().__init__(module, device)
        self.config: dict[str, Any] = config
        self.shapes: set[torch.Size] = set()

    def run(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape in self.shapes:
            with torch.inference_mode():
                return self.module(x)
        with torch._inductor.config.patch(self.config), torch.inference_mode():
            y = self.module(x)  # compiles the graph for this shape
        self.shapes.add(x.shape)
        return y


class TorchCompile(TorchRuntime):
    """``torch-compile``: Inductor's defaults. ``torch-compile-freezing``: Inductor config
    ``freezing=True``: weights become constants of the graph, folded and, on the CPU, prepacked
    once into oneDNN's blocked layout for its convolution and linear kernels (the setting PyTorch
    documents for CPU inference); kept because it was faster than the default at batch 64 and 256
    and the same at batch 1 (docs/runtimes.md)."""

    def __init__(self, name: str = "torch-compile", config: dict[str, Any] | None = None) -> None:
        self.name, self.config = name, config
        # The base: the model and conv2 (module docstring); the freezing variant: a whole-model
        # tuning, like the other tuned variants.
        self.targets = ("model", "conv2") if config is None else ("model",)

    def load(self, target: str, device: str, artifacts: Artifacts) -> torch.nn.Module:
        warm_up_inductor(device)
        return eager_module(artifacts, target, device)

    def bare_module(self, target: str, artifacts: Artifacts) -> tuple[str, Path]:
        patch = "".join(f"torch._inductor.config.{k} = {v!r}\n" for k, v in (self.config or {}).items())
        code = f"import torch._inductor.config\n{patch}module = torch.compile(net, dynamic=False)\n"
        return BARE_NETWORK + code, artifacts.checkpoint()

    def wrap(self, module: torch.nn.Module, device: str) -> CompiledPrepared:
        # The prepared object sets TF32 off on CUDA before anything compiles.
        if self.config is None:
            prepared = CompiledPrepared(module, device)
        else:
            prepared = ConfiguredCompiledPrepared(module, device, self.config)
        prepared.module = torch.compile(own_forward(module), dynamic=False, mode=COMPILE_MODE)
        return prepared
