"""A pytest plugin for the harness tests: registers ``torch-eager-broken``, the real torch-eager
runtime on weights with one perturbed bias, so its outputs are wrong and parity must catch it."""

from __future__ import annotations

import copy

import torch

from bench.runtimes import RUNTIMES, Artifacts
from bench.runtimes.base import TorchPrepared
from bench.runtimes.torch_eager import TorchEager


class BrokenTorchEager(TorchEager):
    name = "torch-eager-broken"

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> TorchPrepared:
        net = copy.deepcopy(artifacts.net)
        with torch.no_grad():
            net.fc2.bias[3] += 0.5  # logits off by 0.5: far beyond any tolerance
        return super().prepare(target, device, Artifacts(net=net, manifest=artifacts.manifest), threads)


RUNTIMES["torch-eager-broken"] = BrokenTorchEager()
