"""The modules that get exported: the network for inference, the uint8 app model, single layers."""

from __future__ import annotations

import torch
from torch import nn

from models.network import DeepMNIST, layer_module, layer_spec


class Uint8Classifier(nn.Module):
    """Raw pixels in, probabilities and label out: the preprocessing lives inside the graph."""

    def __init__(self, net: DeepMNIST) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # pixels: (N, 28, 28) uint8, white digit on black as in MNIST
        x = pixels.to(torch.float32) / 255.0  # (N, 28, 28) in [0, 1], as the training input
        # (N, 1, 28, 28) by a Reshape to the constant [-1, 1, 28, 28]: an Unsqueeze here made
        # OpenCV DNN's classic engine infer a negative pooling height at batch > 1
        x = x.reshape(-1, 1, 28, 28)
        logits = self.net(x)  # (N, 10)
        probabilities = torch.softmax(logits, dim=1)  # (N, 10)
        label = torch.argmax(logits, dim=1)  # (N,) int64
        return probabilities, label


def layer_example(name: str, batch: int = 2) -> torch.Tensor:
    """A float32 input of the shape layer ``name`` sees inside the network."""
    return torch.rand(batch, *layer_spec(name).input_shape)


def single_layer(net: DeepMNIST, name: str) -> nn.Module:
    return layer_module(net, name).eval()
