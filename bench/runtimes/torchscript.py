"""torchscript: the exported, frozen TorchScript archive (verified by SHA-256 before loading)."""

from __future__ import annotations

import torch

from bench.runtimes.base import Artifacts, TorchPrepared, check_device, set_threads


class TorchScript:
    name = "torchscript"

    def supports(self, device: str) -> str | None:
        return check_device(device)

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> TorchPrepared:
        set_threads(threads)
        path = artifacts.manifest.verified_path(target, "torchscript")
        module = torch.jit.load(str(path), map_location=device).eval()
        return TorchPrepared(module, device)
