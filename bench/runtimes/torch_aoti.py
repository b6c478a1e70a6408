"""torch-aoti: the AOTInductor package made at export time (``deep_mnist.aoti-cpu.pt2``).

AOTInductor compiled the exported program ahead of time into a shared library of C++ kernels
(dynamic batch); ``torch._inductor.aoti_load_package`` loads it, after the package's SHA-256 was
checked against the manifest (target "model", format "aoti-cpu"): loading a package runs its
native code, so an unverified file is never loaded. No compilation happens in the benchmark,
which is the point of comparing it with torch-compile. CPU only: the export holds no CUDA package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.runtimes.base import Artifacts, artifact_path
from bench.runtimes.torch_base import TorchPrepared, TorchRuntime


class TorchAoti(TorchRuntime):
    name = "torch-aoti"
    targets = ("model",)  # one package, for the whole network
    prepared_class = TorchPrepared  # compiled C++ kernels: torch.profiler sees no per-layer ops

    def supports(self, device: str) -> str | None:
        if device == "cuda":
            return "the export holds a CPU AOTInductor package only"
        return super().supports(device)

    def load(self, target: str, device: str, artifacts: Artifacts) -> Any:
        from torch._inductor import aoti_load_package

        # the package's kernels use the process's OpenMP pool, set by prepare
        path = artifact_path(artifacts, target, "aoti-cpu")  # ExportError if not exported
        return aoti_load_package(str(path))

    def bare_module(self, target: str, artifacts: Artifacts) -> tuple[str, Path]:
        code = "from torch._inductor import aoti_load_package\nmodule = aoti_load_package(path)"
        return code, artifact_path(artifacts, target, "aoti-cpu")
