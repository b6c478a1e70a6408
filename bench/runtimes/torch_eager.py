"""torch-eager: the checkpoint's nn.Module (or one layer of it), run eagerly.

``torch-eager-channels-last``: the same network with its weights and the input in
``torch.channels_last`` (NHWC strides), so oneDNN convolutions run in its native blocked/NHWC
layout without reordering the activations on every call; whole model only (the layer inputs of
fc1/fc2 are 2-D). Kept because it was faster than plain eager at every batch size on the CPU
(docs/runtimes.md, "The choices behind the variants").
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from bench.runtimes.base import Artifacts
from bench.runtimes.torch_base import BARE_NETWORK, ProfiledTorchPrepared, TorchRuntime, eager_module, network


class ChannelsLastPrepared(ProfiledTorchPrepared):
    def to_device(self, x: np.ndarray) -> torch.Tensor:  # (N, 1, 28, 28), NHWC strides
        return torch.from_numpy(x).to(self.device).contiguous(memory_format=torch.channels_last)


class TorchEager(TorchRuntime):
    name = "torch-eager"

    def load(self, target: str, device: str, artifacts: Artifacts) -> torch.nn.Module:
        return eager_module(artifacts, target, device)


class TorchEagerChannelsLast(TorchEager):
    name = "torch-eager-channels-last"
    targets = ("model",)
    prepared_class = ChannelsLastPrepared

    def load(self, target: str, device: str, artifacts: Artifacts) -> torch.nn.Module:
        return copy.deepcopy(network(artifacts)).eval().to(device, memory_format=torch.channels_last)

    def bare_module(self, target: str, artifacts: Artifacts) -> tuple[str, Path]:
        code = """
net = net.to(memory_format=torch.channels_last)
module = lambda t: net(t.contiguous(memory_format=torch.channels_last))
"""
        return BARE_NETWORK + code, artifacts.checkpoint()
