"""torch-aoti: the AOTInductor package made at export time (``deep_mnist.aoti-cpu.pt2``).

AOTInductor compiled the exported program ahead of time into a shared library of C++ kernels
(dynamic batch); ``torch._inductor.aoti_load_package`` loads it, after the package's SHA-256 was
checked against the manifest (target "model", format "aoti-cpu"): loading a package runs its
native code, so an unverified file is never loaded. No compilation happens in the benchmark,
which is the point of comparing it with torch-compile. CPU only: the export holds no CUDA package.
"""

from __future__ import annotations

from bench.device import check_device
from bench.runtimes.base import Artifacts, TorchPrepared, artifact_path, set_threads


class TorchAoti:
    name = "torch-aoti"
    precision = "fp32"
    targets: tuple[str, ...] | None = ("model",)  # one package, for the whole network

    def supports(self, device: str) -> str | None:
        if device == "cuda":
            return "the export holds a CPU AOTInductor package only"
        return check_device(device)

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> TorchPrepared:
        from torch._inductor import aoti_load_package

        if reason := self.supports(device):
            raise ValueError(f"{self.name} cannot run on {device}: {reason}")
        set_threads(threads)  # the package's kernels use the process's OpenMP pool
        path = artifact_path(artifacts, target, "aoti-cpu")  # ExportError if not exported
        prepared = TorchPrepared(aoti_load_package(str(path)), device)
        prepared.profile = None  # compiled C++ kernels: torch.profiler sees no per-layer ops
        return prepared
