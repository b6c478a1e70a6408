"""torch-eager: the checkpoint's nn.Module (or one layer of it), run eagerly."""

from __future__ import annotations

import copy

from bench.runtimes.base import Artifacts, TorchPrepared, check_device, set_threads
from models.network import layer_module


class TorchEager:
    name = "torch-eager"

    def supports(self, device: str) -> str | None:
        return check_device(device)

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> TorchPrepared:
        set_threads(threads)
        net = copy.deepcopy(artifacts.net).eval()
        module = net if target == "model" else layer_module(net, target)
        return TorchPrepared(module.to(device), device)
