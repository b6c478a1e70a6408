"""torch-compile: ``torch.compile`` (Dynamo + Inductor, default mode) of the eval network or a layer.

fp32 on CPU (Inductor's C++/OpenMP kernels, convolutions and GEMMs through oneDNN/MKL) and on
CUDA (Triton kernels, cuDNN/cuBLAS; TF32 off). ``dynamic=False``: one graph specialised to the
batch size of the prepared case; another batch size (the harness's accuracy pass, 500 images a
call) compiles one more graph, untimed.

Honest cold compiles. ``compile(x)`` runs the first call, which is when torch.compile compiles:

- ``torch._dynamo.reset()`` first: Dynamo keeps compiled code per Python code object
  (``DeepMNIST.forward``), not per module instance, and a fresh deep copy passes its guards, so
  without the reset the second prepared object of a process would reuse the first one's graph
  and "compile" in ~0.04 s. The reset only forgets compiled code: an object prepared earlier
  still gives correct results and recompiles on its next call.
- ``torch._inductor.utils.fresh_cache()`` around that call: a new temporary
  ``TORCHINDUCTOR_CACHE_DIR`` (and ``TRITON_CACHE_DIR`` inside it), deleted afterwards, and
  Inductor's in-memory code caches cleared, so neither the FX graph cache, the AOTAutograd cache,
  the autotune cache nor an already built C++ kernel library from an earlier run or case is hit
  (checked: ``fxgraph_cache_miss`` every time; with the default cache folder a second process
  compiles the model in 0.28 s instead of ~3 s). Remote caches are off outside Meta.

What compile_s does not include: the once-per-process start-up of Inductor (imports, the
compile-worker subprocesses, C++ toolchain probing; ~12 s on the 2-core reference machine),
which ``prepare`` pays once per process and device by compiling a tiny conv/pool/linear net, so
that every case's ``compile_s`` is the cost of its own graph and ``load_s`` of the first
torch-compile case of a run carries the start-up.

Measured cold compile times on the reference machine (2 cores, AMD EPYC, torch 2.13 CPU, after
the start-up), s, batch 1 / 64 / 256: model 3.7 / 2.9 / 3.2; conv1 0.8 / 0.8 / 0.8; pool1
1.2 / 1.0 / 1.5; conv2 2.3 / 2.0 / 1.8; pool2 0.9 / 0.8 / 0.8; fc1 0.8 / 0.7 / 0.7; fc2 0.1 (an
extern GEMM call, no generated kernel). All 7 targets x 3 batch sizes cost ~30 s of compiling in
a full sweep plus the ~12 s start-up, so torch-compile runs every target (``targets = None``).

``mode="max-autotune-no-cudagraphs"`` was measured on the CPU and not adopted (see the report
numbers in ``COMPILE_MODE``'s comment).
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import torch

from bench.runtimes.base import Artifacts, TorchPrepared, check_device, set_threads
from models.network import layer_module

# None = Inductor's default mode. max-autotune-no-cudagraphs on this CPU: see the module docstring
# of the report; it compiled several times longer for no latency gain at batch 1/64/256.
COMPILE_MODE: str | None = None


def _fresh_cache() -> Any:
    """Inductor's context manager for a fresh temporary cache folder (renamed in torch 2.8)."""
    from torch._inductor import utils

    fresh = getattr(utils, "fresh_cache", None) or utils.fresh_inductor_cache
    return fresh()


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
    torch._dynamo.reset()
    with _fresh_cache(), torch.inference_mode():
        torch.compile(tiny, dynamic=False, mode=COMPILE_MODE)(torch.rand(1, 1, 4, 4, device=device))
    if device == "cuda":
        torch.cuda.synchronize()
    torch._dynamo.reset()


class CompiledPrepared(TorchPrepared):
    """A torch.compile'd module; ``compile(x)`` is its first, cold call (the harness's compile_s)."""

    def compile(self, x: torch.Tensor) -> None:
        torch._dynamo.reset()  # forget graphs compiled for earlier prepared objects (module docstring)
        with _fresh_cache():
            self.run(x)
            self.sync()


class ConfiguredCompiledPrepared(CompiledPrepared):
    """Compiles every graph under an Inductor config patch. The patch must surround the Dynamo
    trace as well (Dynamo reads ``config.freezing`` to keep parameters as graph constants), so
    ``torch.compile(options=...)``, which reaches Inductor only, does not give frozen weights
    (measured: no speed-up). A call with an input shape not compiled yet (the accuracy pass's
    batch of 500) compiles under the patch too; other calls pay one shape comparison (~0.2 us)."""

    def __init__(self, module: torch.nn.Module, device: str, config: dict[str, Any]) -> None:
        super().__init__(module, device)
        self.config, self.shapes = config, set()

    def compile(self, x: torch.Tensor) -> None:
        self.shapes.clear()  # after the reset every graph is compiled again, under the patch
        super().compile(x)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape in self.shapes:
            with torch.inference_mode():
                return self.module(x)
        with torch._inductor.config.patch(self.config), torch.inference_mode():
            y = self.module(x)  # compiles a graph for this shape
        self.shapes.add(x.shape)
        return y


class TorchCompile:
    """``torch-compile``: Inductor's defaults. ``torch-compile-freezing``: Inductor config
    ``freezing=True``: weights become constants of the graph, folded and, on the CPU, prepacked
    once into oneDNN's blocked layout for its convolution and linear kernels (the setting PyTorch
    documents for CPU inference); measured faster than the default at batch 1, 64 and 256."""

    precision = "fp32"

    def __init__(self, name: str = "torch-compile", config: dict[str, Any] | None = None) -> None:
        self.name, self.config = name, config
        # The base runs every target: a layer compiles in 0.1-1.7 s here, the model in ~2.5 s (module
        # docstring). The freezing variant is a whole-model tuning, like the other tuned variants.
        self.targets: tuple[str, ...] | None = None if config is None else ("model",)

    def supports(self, device: str) -> str | None:
        return check_device(device)

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> CompiledPrepared:
        set_threads(threads)
        warm_up_inductor(device)
        net = copy.deepcopy(artifacts.net).eval()
        module = (net if target == "model" else layer_module(net, target)).to(device)
        # The prepared object sets TF32 off on CUDA before anything compiles.
        if self.config is None:
            prepared = CompiledPrepared(module, device)
        else:
            prepared = ConfiguredCompiledPrepared(module, device, self.config)
        prepared.module = torch.compile(module, dynamic=False, mode=COMPILE_MODE)
        return prepared
