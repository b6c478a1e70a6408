"""A whole runtime in one file, for the test that adding a runtime is one adapter plus one registry
line (tests/runtimes/test_new_runtime.py): ``numpy-reference`` computes the network with plain NumPy
(im2col convolutions, reshaped max pools, matmuls) from the checkpoint's weights, read with
safetensors' NumPy loader: its worker imports no torch.

Importing the module registers it (the registry line), as a worker process does when it imports
the module of its runtime; the test unregisters it afterwards so other tests see the real registry.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from safetensors.numpy import load_file

from bench.runtimes import RUNTIMES, Artifacts

NAME = "numpy-reference"


def _conv_relu(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """5x5 SAME convolution + ReLU: x (N, C, H, W), w (O, C, 5, 5) -> (N, O, H, W)."""
    n, c, h, width = x.shape
    k = w.shape[-1]
    padded = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    windows = sliding_window_view(padded, (k, k), axis=(2, 3))  # (N, C, H, W, k, k)
    columns = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * width, c * k * k)
    out = columns @ w.reshape(w.shape[0], -1).T + b  # (N*H*W, O)
    return np.maximum(out.reshape(n, h, width, -1).transpose(0, 3, 1, 2), 0)


def _pool(x: np.ndarray) -> np.ndarray:
    """2x2 max pool, stride 2: (N, C, H, W) -> (N, C, H/2, W/2)."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


class NumpyPrepared:
    execution_provider = ""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.w = weights

    def to_device(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=np.float32)

    def run(self, x: np.ndarray) -> np.ndarray:  # (N, 1, 28, 28) -> (N, 10) logits
        w = self.w
        x = _pool(_conv_relu(x, w["conv1.0.weight"], w["conv1.0.bias"]))  # (N, 32, 14, 14)
        x = _pool(_conv_relu(x, w["conv2.0.weight"], w["conv2.0.bias"]))  # (N, 64, 7, 7)
        x = np.maximum(x.reshape(len(x), -1) @ w["fc1.0.weight"].T + w["fc1.0.bias"], 0)  # (N, 1024)
        return x @ w["fc2.weight"].T + w["fc2.bias"]

    def to_host(self, y: np.ndarray) -> np.ndarray:
        return y

    def sync(self) -> None:
        pass


class NumpyReference:
    name = NAME
    precision = "fp32"
    targets = ("model",)

    def supports(self, device: str) -> str | None:
        return None if device == "cpu" else f"{NAME} runs on the CPU only"

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> NumpyPrepared:
        tensors = load_file(artifacts.checkpoint())  # "model.<parameter>" and the optimizer's state
        return NumpyPrepared(
            {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        )


def unregister() -> None:
    RUNTIMES.pop(NAME, None)


RUNTIMES[NAME] = NumpyReference()  # the one registry line
