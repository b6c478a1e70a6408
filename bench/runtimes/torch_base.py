"""What the torch adapters share: the trained network, threads, the prepared module and its base.

``TorchRuntime`` (fp32, every target, any device this machine has) sets torch's threads and wraps
what ``load`` returns in a ``TorchPrepared``; subclasses set ``name`` and write ``load``. Only the
torch adapters import this module (and so torch): ``bench.runtimes.base`` stays torch-free.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.runtimes.bare import python_program
from bench.runtimes.base import Artifacts
from bench.runtimes.device import check_device
from models.network import DeepMNIST, layer_module

# The bare programs' frame for torch (bench.runtimes.bare): the adapter's body defines ``module`` from the
# file at ``path``; the network class is the app's own code (models.network), the weights the
# checkpoint's safetensors.
_BARE = """
import numpy as np
import torch
torch.set_num_threads(threads)
{body}
with torch.inference_mode():
    module(torch.from_numpy(np.load(x)))
"""
BARE_NETWORK = """
from safetensors.torch import load_file
from models.network import DeepMNIST
net = DeepMNIST()
net.load_state_dict({k[len("model."):]: v for k, v in load_file(path).items() if k.startswith("model.")})
net.eval()
"""


def network(artifacts: Artifacts) -> DeepMNIST:
    """The checkpoint's network (eval mode, CPU), loaded once per ``Artifacts`` from its
    safetensors weights (reading them runs no code)."""
    if artifacts.net is None:
        # deliberate: a worker carries only its runtime; loaded when that step runs
        from models.checkpoint import load_checkpoint

        artifacts.net = load_checkpoint(artifacts.checkpoint()).model()
    return artifacts.net


@cache
def set_threads(threads: int) -> None:
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class TorchPrepared:
    """Shared by the torch runtimes: a callable module on a device, fp32 (no TF32 on CUDA)."""

    execution_provider = ""

    def __init__(self, module: Any, device: str) -> None:
        self.module, self.device = module, torch.device(device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False  # honest float32 numbers
            torch.backends.cudnn.allow_tf32 = False

    def to_device(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(self.device)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(x)

    def to_host(self, y: torch.Tensor) -> np.ndarray:
        return y.cpu().numpy()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class ProfiledTorchPrepared(TorchPrepared):
    """A ``TorchPrepared`` whose module torch.profiler can split into the network's layers."""

    def profile(self, x: np.ndarray, calls: int) -> dict[str, float]:
        """Layer -> ms per call (plus "other" and "total") of the whole model under torch.profiler."""
        # deliberate: a worker carries only its runtime; loaded when that step runs
        from bench.runtimes.attribution_torch import profile_torch

        return profile_torch(self.module, self.to_device(x), calls, self.device.type)


def eager_module(artifacts: Artifacts, target: str, device: str) -> torch.nn.Module:
    """A private copy of the checkpoint's network (or of one layer of it), eval mode, on ``device``."""
    net = copy.deepcopy(network(artifacts)).eval()
    return (net if target == "model" else layer_module(net, target)).to(device)


class TorchRuntime:
    """The torch adapters' base: fp32, every target, any device this machine has; ``prepare`` sets
    torch's threads and wraps what ``load`` returns with ``wrap`` (by default in
    ``prepared_class``, a ``ProfiledTorchPrepared``). Subclasses set ``name`` and write ``load``."""

    name: str
    precision = "fp32"
    targets: tuple[str, ...] | None = None  # the model and every layer
    prepared_class: type[TorchPrepared] = ProfiledTorchPrepared

    def supports(self, device: str) -> str | None:
        return check_device(device)

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> TorchPrepared:
        if reason := self.supports(device):
            raise ValueError(f"{self.name} cannot run on {device}: {reason}")
        set_threads(threads)
        return self.wrap(self.load(target, device, artifacts), device)

    def load(self, target: str, device: str, artifacts: Artifacts) -> Any:
        """The callable module for ``target`` on ``device`` (after the threads are set)."""
        raise NotImplementedError

    def bare(self, target: str, artifacts: Artifacts, threads: int, x: Path) -> list[str]:
        body, path = self.bare_module(target, artifacts)
        return python_program(_BARE.format(body=body.strip()), path=str(path), x=str(x), threads=threads)

    def bare_module(self, target: str, artifacts: Artifacts) -> tuple[str, Path]:
        """(code defining ``module`` from the file at ``path``, that file) for the bare program;
        the eager network from the checkpoint unless an adapter loads something else."""
        return BARE_NETWORK + "module = net\n", artifacts.checkpoint()

    def wrap(self, module: Any, device: str) -> TorchPrepared:
        return self.prepared_class(module, device)
