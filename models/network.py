"""The CNN of TensorFlow's "Deep MNIST for Experts" tutorial, in PyTorch (NCHW).

Every layer is a named submodule and ``forward`` runs one op per line, so the benchmark
harness and the exporters can take any layer alone (``models.layers.LAYERS`` lists them with the
input shape each one sees inside the network; re-exported here).
"""

from __future__ import annotations

import torch
from torch import nn

from models.layers import LAYER_NAMES, LAYERS, MODEL_FLOPS, MODEL_PARAMS, LayerSpec, layer_spec

NUM_CLASSES = 10
IMAGE_SHAPE = (1, 28, 28)  # (C, H, W) of one model input


class ConvReLU(nn.Sequential):
    """Conv2d 5x5, stride 1, SAME padding, then ReLU (the tutorial's ``conv2d`` + ``tf.nn.relu``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=5, padding=2),
            nn.ReLU(),
        )


class LinearReLU(nn.Sequential):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(nn.Linear(in_features, out_features), nn.ReLU())


class DeepMNIST(nn.Module):
    """conv 5x5x32 -> pool -> conv 5x5x64 -> pool -> fc 1024 -> dropout -> fc 10 (logits)."""

    def __init__(self, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = ConvReLU(1, 32)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = ConvReLU(32, 64)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = LinearReLU(7 * 7 * 64, 1024)
        self.dropout = nn.Dropout(dropout)  # tutorial: keep_prob 0.5 in training, 1.0 in eval
        self.fc2 = nn.Linear(1024, NUM_CLASSES)
        init_tutorial_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 1, 28, 28) float32 in [0, 1]
        x = self.conv1(x)  # (N, 32, 28, 28)
        x = self.pool1(x)  # (N, 32, 14, 14)
        x = self.conv2(x)  # (N, 64, 14, 14)
        x = self.pool2(x)  # (N, 64, 7, 7)
        x = self.flatten(x)  # (N, 3136)
        x = self.fc1(x)  # (N, 1024)
        x = self.dropout(x)
        return self.fc2(x)  # (N, 10) logits


@torch.no_grad()
def init_tutorial_(model: nn.Module) -> None:
    """The tutorial's init: weights ~ truncated normal(0, 0.1) cut at 2 stddev, biases 0.1."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.trunc_normal_(module.weight, mean=0.0, std=0.1, a=-0.2, b=0.2)
            nn.init.constant_(module.bias, 0.1)


def layer_module(model: DeepMNIST, name: str) -> nn.Module:
    """The submodule that runs layer ``name`` alone (conv and fc layers include their ReLU)."""
    layer_spec(name)
    return getattr(model, name)


@torch.no_grad()
def trace_layers(model: DeepMNIST, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """layer name -> (the input it sees, its output) for a batch ``x`` (N, 1, 28, 28) in eval mode;
    the last output is the logits."""
    acts = {}
    h = x
    for name in LAYER_NAMES:
        h = h.flatten(1) if name == "fc1" else h  # (N, 3136) before fc1
        out = getattr(model, name)(h)
        acts[name] = (h, out)
        h = out
    return acts


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "IMAGE_SHAPE",
    "LAYERS",
    "LAYER_NAMES",
    "MODEL_FLOPS",
    "MODEL_PARAMS",
    "NUM_CLASSES",
    "DeepMNIST",
    "LayerSpec",
    "count_parameters",
    "init_tutorial_",
    "layer_module",
    "layer_spec",
    "trace_layers",
]
