"""torchscript: the exported, frozen TorchScript archive (verified by SHA-256 before loading).

``torchscript-optimized``: the same archive through ``torch.jit.optimize_for_inference`` (oneDNN
fusions; on the CPU convolution weights are converted to oneDNN's blocked layout once, at
prepare time, with ``to_mkldnn``/``to_dense`` conversions around the convolution chain). Whole
model only. Kept because it was faster than plain torchscript at every batch size on the CPU
(docs/runtimes.md, "The choices behind the variants").
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from bench.runtimes.base import Artifacts, artifact_path
from bench.runtimes.torch_base import TorchPrepared, TorchRuntime


class TorchScript(TorchRuntime):
    name = "torchscript"

    def load(self, target: str, device: str, artifacts: Artifacts) -> torch.jit.ScriptModule:
        path = artifact_path(artifacts, target, "torchscript")
        return torch.jit.load(str(path), map_location=device).eval()

    def bare_module(self, target: str, artifacts: Artifacts) -> tuple[str, Path]:
        return "module = torch.jit.load(path).eval()", artifact_path(artifacts, target, "torchscript")


class TorchScriptOptimized(TorchScript):
    name = "torchscript-optimized"
    targets = ("model",)
    # fused oneDNN ops (conv with ReLU, prepacked linear): no per-layer split, so no profile
    prepared_class = TorchPrepared

    def load(self, target: str, device: str, artifacts: Artifacts) -> torch.jit.ScriptModule:
        module = super().load(target, device, artifacts)
        with warnings.catch_warnings():  # "deprecated, use torch.compile": that is measured too
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.optimize_for_inference(module)

    def bare_module(self, target: str, artifacts: Artifacts) -> tuple[str, Path]:
        code = "module = torch.jit.optimize_for_inference(torch.jit.load(path).eval())"
        return code, artifact_path(artifacts, target, "torchscript")
