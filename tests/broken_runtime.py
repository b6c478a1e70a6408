"""A pytest plugin (and importable module) for the harness tests: three deliberately broken runtimes,
each the real torch-eager runtime with one fault. Workers import this module themselves (it is the
module of their runtime), so the faults happen inside the worker processes.

- ``torch-eager-broken``: weights with one perturbed bias, so its outputs are wrong and the parity
  gate must catch it (status ``failed``);
- ``torch-eager-segfault``: kills its own process with SIGSEGV in ``run``, once prepare is over
  (call ``SEGFAULT_AT``), so during the timed rounds (status ``crashed``);
- ``torch-eager-hang``: ``run`` sleeps for ever at batch size ``HANG_BATCH`` (status ``timeout``);
  at other batch sizes it is plain torch-eager.
"""

from __future__ import annotations

import copy
import os
import signal
import time

import torch

from bench.runtimes import RUNTIMES, Artifacts
from bench.runtimes.torch_base import ProfiledTorchPrepared, TorchPrepared, network
from bench.runtimes.torch_eager import TorchEager

SEGFAULT_AT = 10  # calls; prepare makes 1 + warmup + 5 (8 at --warmup 2): then round 1 dies
HANG_BATCH = 4


class BrokenTorchEager(TorchEager):
    name = "torch-eager-broken"

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> TorchPrepared:
        net = copy.deepcopy(network(artifacts))
        with torch.no_grad():
            net.fc2.bias[3] += 0.5  # logits off by 0.5: far beyond any tolerance
        return super().prepare(
            target, device, Artifacts(artifacts.manifest, root=artifacts.root, net=net), threads
        )


class _SegfaultPrepared(ProfiledTorchPrepared):
    calls = 0

    def run(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls >= SEGFAULT_AT:
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().run(x)


class SegfaultTorchEager(TorchEager):
    name = "torch-eager-segfault"
    prepared_class = _SegfaultPrepared


class _HangPrepared(ProfiledTorchPrepared):
    def run(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == HANG_BATCH:
            while True:
                time.sleep(3600)
        return super().run(x)


class HangTorchEager(TorchEager):
    name = "torch-eager-hang"
    prepared_class = _HangPrepared


BROKEN = (BrokenTorchEager(), SegfaultTorchEager(), HangTorchEager())


def register() -> None:
    for runtime in BROKEN:
        RUNTIMES[runtime.name] = runtime


def unregister() -> None:
    for runtime in BROKEN:
        RUNTIMES.pop(runtime.name, None)


register()  # on import: as a pytest plugin (-p tests.broken_runtime) and in a worker process
