"""openvino: the exported ONNX files (model and layers) compiled by OpenVINO for its CPU plugin.

Optional: ``pip install -e '.[openvino]'``. The file is the same ``onnx`` artifact onnxruntime
reads, SHA-256 checked before ``Core.read_model``; its batch dimension stays dynamic, so one
compiled model serves every batch size (a model reshaped to the static batch and compiled for
it was no faster, docs/runtimes.md, so no per-shape compile step is needed).

Configuration, chosen for an honest fp32 latency comparison with the other runtimes:

- ``INFERENCE_PRECISION_HINT = f32``. OpenVINO's CPU plugin defaults to **bf16** on CPUs with
  AVX512_BF16 or AMX: on this project's reference CPU (AMD EPYC with AVX512_BF16) a model compiled
  without the hint reports ``INFERENCE_PRECISION_HINT = bfloat16``, i.e. an fp32 model would be
  timed in bf16. The hint forces fp32 arithmetic; ``prepare`` reads the property back and refuses
  to run if the plugin did not take it.
- ``PERFORMANCE_HINT = LATENCY``: one stream using all the given threads for one request at a
  time, the way every other runtime here is called (THROUGHPUT would split the cores into
  parallel streams, which only pays with several requests in flight).
- ``INFERENCE_NUM_THREADS = threads``: the harness's thread count, as for torch and ORT.
- Everything else at its default. Tried and not adopted (no gain beyond noise, docs/runtimes.md):
  ``ENABLE_CPU_PINNING = False``, ``CPU_DENORMALS_OPTIMIZATION``.

``run`` infers through one ``InferRequest`` with ``share_inputs=True`` (OpenVINO reads the
C-contiguous float32 array in place, as ORT reads numpy input) and returns the output as a new
numpy array (``share_outputs=False``, a copy, as ORT returns a fresh array).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from bench.runtimes.bare import python_program
from bench.runtimes.base import Artifacts, artifact_path
from bench.runtimes.device import check_device

_BARE = """
import numpy as np
import openvino as ov
core = ov.Core()
compiled = core.compile_model(core.read_model(path), "CPU", config)
compiled.create_infer_request().infer({0: np.load(x)})
"""


def compile_config(threads: int) -> dict[str, Any]:
    """The CPU plugin's settings (module docstring)."""
    return {
        "INFERENCE_PRECISION_HINT": "f32",  # the CPU plugin would pick bf16 on AVX512_BF16 CPUs
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads,
    }


@cache
def openvino_missing_reason() -> str | None:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "openvino not installed (pip install -e '.[openvino]')"
    return None


class OpenVinoPrepared:
    execution_provider = "CPU"  # the OpenVINO device plugin

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()

    def to_device(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=np.float32)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.request.infer({0: x}, share_inputs=True, share_outputs=False)[0]

    def to_host(self, y: np.ndarray) -> np.ndarray:
        return y

    def sync(self) -> None:
        pass  # infer() is synchronous


class OpenVino:
    name = "openvino"
    precision = "fp32"
    targets: tuple[str, ...] | None = None  # the model and every layer: compiling one is cheap

    def supports(self, device: str) -> str | None:
        if device == "cuda":
            return "OpenVINO has no CUDA device"
        if reason := check_device(device):
            return reason
        return openvino_missing_reason()

    def bare(self, target: str, artifacts: Artifacts, threads: int, x: Path) -> list[str]:
        path = str(artifact_path(artifacts, target, "onnx"))
        return python_program(_BARE, path=path, x=str(x), config=compile_config(threads))

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> OpenVinoPrepared:
        if reason := self.supports(device):
            raise ValueError(f"{self.name} cannot run on {device}: {reason}")
        import openvino as ov

        path = artifact_path(artifacts, target, "onnx")
        core = ov.Core()
        model = core.read_model(str(path))
        compiled = core.compile_model(model, "CPU", compile_config(threads))
        got = compiled.get_property("INFERENCE_PRECISION_HINT")
        if got != ov.Type.f32:
            raise RuntimeError(f"OpenVINO compiled {path.name} with inference precision {got}, not f32")
        return OpenVinoPrepared(compiled)
