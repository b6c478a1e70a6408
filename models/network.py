"""The CNN of TensorFlow's "Deep MNIST for Experts" tutorial, in PyTorch (NCHW).

Every layer is a named submodule and ``forward`` runs one op per line, so the benchmark
harness and the exporters can take any layer alone (``LAYERS`` lists them with the input
shape each one sees inside the network).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

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


@dataclass(frozen=True)
class LayerSpec:
    """One benchmarkable layer: its submodule name, the input it sees, and its cost per image."""

    name: str
    input_shape: tuple[int, ...]  # per image, without the batch dimension
    output_shape: tuple[int, ...]
    flops: int  # per image; a multiply-add counts as 2 FLOP
    params: int


def _conv_flops(out_c: int, out_h: int, out_w: int, in_c: int, k: int) -> int:
    return 2 * out_c * out_h * out_w * in_c * k * k


# Input shape each layer sees inside the network, per image. Pools and flatten cost no FLOP here.
LAYERS: tuple[LayerSpec, ...] = (
    LayerSpec("conv1", (1, 28, 28), (32, 28, 28), _conv_flops(32, 28, 28, 1, 5), 32 * 25 + 32),
    LayerSpec("pool1", (32, 28, 28), (32, 14, 14), 0, 0),
    LayerSpec("conv2", (32, 14, 14), (64, 14, 14), _conv_flops(64, 14, 14, 32, 5), 64 * 800 + 64),
    LayerSpec("pool2", (64, 14, 14), (64, 7, 7), 0, 0),
    LayerSpec("fc1", (3136,), (1024,), 2 * 3136 * 1024, 3136 * 1024 + 1024),
    LayerSpec("fc2", (1024,), (10,), 2 * 1024 * 10, 1024 * 10 + 10),
)
LAYER_NAMES = tuple(spec.name for spec in LAYERS)
MODEL_FLOPS = sum(spec.flops for spec in LAYERS)  # 27,767,808 FLOP per image
MODEL_PARAMS = sum(spec.params for spec in LAYERS)  # 3,274,634


def layer_spec(name: str) -> LayerSpec:
    for spec in LAYERS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown layer {name!r}; choose one of {', '.join(LAYER_NAMES)}")


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
