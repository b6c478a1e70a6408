"""The explicit registry of runtime adapters: name -> Runtime. One small file per adapter.

``ADAPTERS`` names each runtime's adapter (its module under ``bench.runtimes``, its class and the
class's arguments) without importing it; ``RUNTIMES`` imports an adapter when the runtime is first
asked for. So a worker process imports its own runtime's module and library only: an ONNX Runtime
worker never loads torch. A plugin (a test's runtime) registers an instance: ``RUNTIMES[name] =
adapter``; a worker imports the plugin's module (``RUNTIMES.module_of``), which registers it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

from bench.runtimes.base import Artifacts, Compilable, Prepared, Profilable, Runtime

# name -> (module in bench.runtimes, class, arguments): the only list of the built-in runtimes
ADAPTERS: dict[str, tuple[str, str, tuple[Any, ...]]] = {
    "torch-eager": ("torch_eager", "TorchEager", ()),
    "torch-eager-channels-last": ("torch_eager", "TorchEagerChannelsLast", ()),
    "torch-eager-bf16": ("torch_autocast", "TorchAutocast", ("torch-eager-bf16", "bfloat16")),
    "torch-eager-fp16": ("torch_autocast", "TorchAutocast", ("torch-eager-fp16", "float16")),
    "torchscript": ("torchscript", "TorchScript", ()),
    "torchscript-optimized": ("torchscript", "TorchScriptOptimized", ()),
    "torch-compile": ("torch_compile", "TorchCompile", ()),
    "torch-compile-freezing": (
        "torch_compile",
        "TorchCompile",
        ("torch-compile-freezing", {"freezing": True}),
    ),
    "torch-export": ("torch_export", "TorchExport", ()),
    "torch-aoti": ("torch_aoti", "TorchAoti", ()),
    "onnxruntime": ("onnxruntime_rt", "OnnxRuntime", ("onnxruntime",)),
    "onnxruntime-noopt": ("onnxruntime_rt", "OnnxRuntime", ("onnxruntime-noopt",)),
    "onnxruntime-nospin": ("onnxruntime_rt", "OnnxRuntime", ("onnxruntime-nospin",)),
    "onnxruntime-int8": ("onnxruntime_rt", "OnnxRuntime", ("onnxruntime-int8",)),
    "onnxruntime-fp16": ("onnxruntime_rt", "OnnxRuntime", ("onnxruntime-fp16",)),
    "onnxruntime-trt": ("onnxruntime_rt", "OnnxRuntime", ("onnxruntime-trt",)),
    "openvino": ("openvino_rt", "OpenVino", ()),
    "onnxruntime-node": ("onnxruntime_node", "OnnxRuntimeNode", ()),
    "onnxruntime-web": ("onnxruntime_web", "OnnxRuntimeWeb", ()),
}


class Registry(MutableMapping[str, Runtime]):
    """Runtime name -> adapter, built-in ones (``ADAPTERS``) imported on first use, in registry
    order, then the plugins in the order they registered. Every adapter is checked against the
    ``Runtime`` protocol when it enters."""

    def __init__(self, adapters: dict[str, tuple[str, str, tuple[Any, ...]]]) -> None:
        self._lazy = dict(adapters)
        self._loaded: dict[str, Runtime] = {}
        self._names = list(adapters)

    def __getitem__(self, name: str) -> Runtime:
        if name not in self._loaded:
            if name not in self._lazy:
                raise KeyError(name)
            module, cls, args = self._lazy[name]
            adapter = getattr(importlib.import_module(f"bench.runtimes.{module}"), cls)(*args)
            self._loaded[name] = _checked(name, adapter)
        return self._loaded[name]

    def __setitem__(self, name: str, adapter: Runtime) -> None:
        self._loaded[name] = _checked(name, adapter)
        self._lazy.pop(name, None)
        if name not in self._names:
            self._names.append(name)

    def __delitem__(self, name: str) -> None:
        if name not in self._names:
            raise KeyError(name)
        self._names.remove(name)
        self._loaded.pop(name, None)
        self._lazy.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def module_of(self, name: str) -> str:
        """The module a worker process imports to have ``name``: its adapter's module, or the
        plugin's own (which registers it on import)."""
        if name in self._lazy:
            return f"bench.runtimes.{self._lazy[name][0]}"
        return type(self[name]).__module__


def _checked(name: str, adapter: Any) -> Runtime:
    if not isinstance(adapter, Runtime) or adapter.name != name:
        raise TypeError(f"runtime {name!r}: {adapter!r} is not a Runtime named {name!r}")
    return adapter


RUNTIMES = Registry(ADAPTERS)
DEVICES = ("cpu", "cuda")

# Max |output - eager PyTorch on CPU| accepted before a combination is timed, per runtime and device:
# the one place tolerances live. Unlisted pairs get DEFAULT_TOLERANCE (fp32 on the CPU). Each is a
# margin over the max |diff| seen over the first 256 test images (the parity gate's largest default
# batch) when it was set; each run's differences are its CSV's max_abs_diff (docs/runtimes.md).
TOLERANCES: dict[tuple[str, str], float] = {
    # fp32 on the CPU: the same arithmetic in another order or another library (oneDNN, MLAS,
    # Inductor C++, OpenVINO): well under the 1e-4 default.
    ("torch-eager", "cpu"): 1e-4,
    ("torchscript", "cpu"): 1e-4,
    ("onnxruntime", "cpu"): 1e-4,
    # fp32 on CUDA: other kernels and accumulation orders (TF32 is off, so float32 throughout).
    ("torch-eager", "cuda"): 1e-3,
    # The frozen TorchScript graph gets other cuDNN convolution algorithms than eager at batch 64
    # and 256 on an H200 (results/*-cuda-h200.csv, max_abs_diff; argmax unchanged): 5e-3.
    ("torchscript", "cuda"): 5e-3,
    ("torch-compile", "cuda"): 1e-3,
    ("torch-export", "cuda"): 1e-3,
    ("onnxruntime", "cuda"): 1e-3,
    ("onnxruntime-noopt", "cuda"): 1e-3,
    # TensorRT may fuse more and pick other tactics (fp32; no fp16 flag).
    ("onnxruntime-trt", "cuda"): 1e-2,
    # bf16 autocast on the CPU (oneDNN, AVX512_BF16): 2x the largest difference seen, accuracy
    # unchanged.
    ("torch-eager-bf16", "cpu"): 0.2,
    # Half types on CUDA: estimated by emulating autocast on the CPU (inputs and weights of every
    # conv/linear rounded to the type, float32 accumulation, outputs rounded); 3x that, for
    # cuDNN/cuBLAS algorithms that may round differently. Re-measure on a GPU and tighten.
    ("torch-eager-bf16", "cuda"): 0.3,
    ("torch-eager-fp16", "cuda"): 0.03,
    ("onnxruntime-fp16", "cuda"): 0.03,
    # Static QDQ int8 (onnxruntime CPU; the exporter's settings: u8 activations, s8 per-channel
    # weights, MinMax calibration on 1,000 training images, conv1 kept float32): quantisation error
    # of weights and activations; 2x the largest difference seen, while argmax agrees. Its accuracy
    # is checked separately (within 0.2 pt of eager fp32, tests/runtimes/test_registry.py and the exporter).
    ("onnxruntime-int8", "cpu"): 4.5,
}
DEFAULT_TOLERANCE = 1e-4


def tolerance(runtime: str, device: str) -> float:
    return TOLERANCES.get((runtime, device), DEFAULT_TOLERANCE)


__all__ = [
    "ADAPTERS",
    "DEVICES",
    "RUNTIMES",
    "Artifacts",
    "Compilable",
    "Prepared",
    "Profilable",
    "Runtime",
    "tolerance",
]
