"""torch-export: the exported program (``torch.export.save``, dynamic batch), run via ``.module()``.

The file is ``deep_mnist.pt2`` (manifest target "model", format "torch-export"), loaded with
``torch.export.load`` only after its SHA-256 matches the manifest. ``.module()`` gives an
``fx.GraphModule`` of ATen ops, run eagerly by PyTorch (no compilation): it shows the cost of the
exported graph against the nn.Module (torch-eager) and the ahead-of-time compiled one (torch-aoti).
On CUDA the program is moved with ``torch.export.passes.move_to_device_pass`` (parameters,
buffers and any constant in the graph), then ``.module()`` is taken.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench.runtimes.base import Artifacts, artifact_path
from bench.runtimes.torch_base import TorchRuntime


class TorchExport(TorchRuntime):
    name = "torch-export"
    targets = ("model",)  # the export holds the whole network only

    def load(self, target: str, device: str, artifacts: Artifacts) -> torch.nn.Module:
        path = artifact_path(artifacts, target, "torch-export")
        program = torch.export.load(str(path))
        if device != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, device)
        return program.module()

    def bare_module(self, target: str, artifacts: Artifacts) -> tuple[str, Path]:
        return "module = torch.export.load(path).module()", artifact_path(artifacts, target, "torch-export")
