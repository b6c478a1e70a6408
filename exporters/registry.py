"""The explicit registry of export formats: manifest format name -> ExportFormat.

Each format says, in one place, how its file is written (``write``), how the parity check runs it
(``runner``), when its parity passes (``passes``, with ``describe`` for a failure and ``note`` for
the report) and what the manifest records for it (``onnx``: opset and metadata read back from the
file; ``names_itself``: its metadata carries a ``format`` key). ``exporters.export`` plans the
artifacts and drives these; a new format is one entry here plus its steps in the plan.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from exporters.formats import (
    AotiUnavailable,
    check_pt2_archive,
    compile_aoti,
    export_onnx,
    export_program,
    export_torchscript,
)
from exporters.onnxrt import cpu_session
from exporters.quantize import FP16_MIN_AGREEMENT, INT8_MAX_ACCURACY_DIFF, export_fp16, export_int8

if TYPE_CHECKING:
    from exporters.manifest import Artifact, TensorSpec
    from models.data import MNIST

TOLERANCE = 1e-4  # max |difference| of float32 outputs against eager PyTorch


@dataclass(frozen=True)
class Parity:
    target: str
    format: str
    max_abs_diff: float
    agreement: float | None  # argmax agreement with eager (model artifacts)
    images: int
    accuracy: float | None = None  # test accuracy of the artifact (model artifacts)
    reference_accuracy: float | None = None  # test accuracy of eager PyTorch (float32)

    @property
    def ok(self) -> bool:
        """The format's own test (``ExportFormat.passes``): float32 artifacts max |diff| <=
        TOLERANCE and 100% agreement; onnx-int8 test accuracy within 0.2 points of float32's;
        onnx-fp16 argmax agreement >= 99.5%."""
        return FORMATS[self.format].passes(self)


@dataclass(frozen=True)
class Step:
    """One planned artifact. ``module`` and ``example`` are what a format made from PyTorch
    exports; the int8 and fp16 ONNX files are made from deep_mnist.onnx, AOTInductor from the
    torch.export program, so those steps come after the ones they derive from."""

    target: str
    format: str
    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    meaning: str  # what the input is
    out_meaning: str  # what the outputs are
    module: torch.nn.Module | None = field(default=None, compare=False)
    example: torch.Tensor | None = field(default=None, compare=False)


# A runner: the artifact's inputs (numpy arrays, in the order of its inputs) -> its outputs.
Runner = Callable[..., list[np.ndarray]]


@dataclass
class WriteContext:
    """What the writers of one export share: its folder and settings, the data, and what earlier
    steps made (the int8 and fp16 files derive from the float32 ONNX file, AOTInductor from the
    torch.export program)."""

    out_dir: Path
    opset: int
    mnist: MNIST
    written: dict[tuple[str, str], Path] = field(default_factory=dict)  # (target, format) -> file
    program: Any = None  # the torch.export program, once the torch-export step wrote it

    def source(self, target: str, fmt: str) -> Path:
        path = self.written.get((target, fmt))
        assert path is not None, f"the {target} {fmt} step comes first"
        return path


# ----------------------------------------------------------------------------- writers


def _write_onnx(step: Step, path: Path, metadata: dict[str, str], ctx: WriteContext) -> None:
    outputs = [o.name for o in step.outputs]
    export_onnx(step.module, step.example, path, step.inputs[0].name, outputs, metadata, ctx.opset)


def _write_torchscript(step: Step, path: Path, metadata: dict[str, str], ctx: WriteContext) -> None:
    export_torchscript(step.module, step.example, path, json.dumps(metadata, sort_keys=True))


def _write_int8(step: Step, path: Path, metadata: dict[str, str], ctx: WriteContext) -> dict[str, Any]:
    mnist = ctx.mnist
    return export_int8(
        ctx.source(step.target, "onnx"), path, mnist.train_images, mnist.test_images, mnist.test_labels,
        metadata,
    )  # fmt: skip


def _write_fp16(step: Step, path: Path, metadata: dict[str, str], ctx: WriteContext) -> dict[str, Any]:
    return export_fp16(ctx.source(step.target, "onnx"), path, metadata)


def _write_program(step: Step, path: Path, metadata: dict[str, str], ctx: WriteContext) -> None:
    ctx.program = export_program(step.module, step.example, path, json.dumps(metadata, sort_keys=True))


def _write_aoti(step: Step, path: Path, metadata: dict[str, str], ctx: WriteContext) -> dict[str, Any]:
    assert ctx.program is not None, "the torch-export step comes first"
    return compile_aoti(ctx.program, path, metadata)


# ----------------------------------------------------------------------------- runners


def _onnx_runner(path: Path) -> Runner:
    session = cpu_session(path)
    return lambda *arrays: session.run(
        None, {i.name: a for i, a in zip(session.get_inputs(), arrays, strict=True)}
    )


def _torchscript_runner(path: Path) -> Runner:
    module = torch.jit.load(str(path)).eval()
    return lambda x: [module(torch.from_numpy(x)).numpy()]


def _pt2_runner(compiled: bool) -> Callable[[Path], Runner]:
    """A .pt2 on its own runtime, after ``check_pt2_archive`` (the caller verified the SHA-256)."""

    def runner(path: Path) -> Runner:
        check_pt2_archive(path, compiled=compiled)
        if compiled:
            from torch._inductor import aoti_load_package

            module = aoti_load_package(str(path))
        else:
            module = torch.export.load(str(path)).module()
        return lambda x: [module(torch.from_numpy(x)).numpy()]

    return runner


# ----------------------------------------------------------------------------- parity


def _float32_passes(p: Parity) -> bool:
    """max |diff| <= TOLERANCE and 100% argmax agreement (model artifacts)."""
    agree = p.agreement is None or p.agreement == 1.0
    return p.max_abs_diff <= TOLERANCE and agree


def _int8_passes(p: Parity) -> bool:
    """Test accuracy within INT8_MAX_ACCURACY_DIFF of float32's."""
    return (
        p.accuracy is not None
        and p.reference_accuracy is not None
        and abs(p.accuracy - p.reference_accuracy) <= INT8_MAX_ACCURACY_DIFF
    )


def _fp16_passes(p: Parity) -> bool:
    """Argmax agreement >= FP16_MIN_AGREEMENT."""
    return p.agreement is not None and p.agreement >= FP16_MIN_AGREEMENT


def _differences(p: Parity) -> str:
    return f"max diff {p.max_abs_diff:.2e}, agreement {p.agreement}"


def _accuracies(p: Parity) -> str:
    return f"test accuracy {p.accuracy:.2%} against float32 {p.reference_accuracy:.2%}"


def _no_note(a: Artifact, p: Parity) -> str:
    return ""


def _int8_note(a: Artifact, p: Parity) -> str:
    return f" (test accuracy {p.accuracy:.2%}, float32 {p.reference_accuracy:.2%})"


def _aoti_note(a: Artifact, p: Parity) -> str:
    return f" (compiled in {a.details['compile_s']:.1f} s)" if a.details else ""


@dataclass(frozen=True)
class ExportFormat:
    name: str
    write: Callable[[Step, Path, dict[str, str], WriteContext], dict[str, Any] | None]
    runner: Callable[[Path], Runner]  # the file on its own runtime (file verified by the caller)
    onnx: bool = False  # an ONNX file: the manifest reads its opset and metadata_props back
    names_itself: bool = True  # its metadata has a "format" key (the first two formats have none)
    passes: Callable[[Parity], bool] = _float32_passes
    describe: Callable[[Parity], str] = _differences  # the parity figures in a failure message
    note: Callable[[Artifact, Parity], str] = _no_note  # a remark in the export report
    unavailable: tuple[type[Exception], ...] = ()  # raised by write: skipped here, with the reason


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("onnx", _write_onnx, _onnx_runner, onnx=True, names_itself=False),
        ExportFormat("torchscript", _write_torchscript, _torchscript_runner, names_itself=False),
        ExportFormat(
            "onnx-int8",
            _write_int8,
            _onnx_runner,
            onnx=True,
            passes=_int8_passes,
            describe=_accuracies,
            note=_int8_note,
        ),
        ExportFormat("onnx-fp16", _write_fp16, _onnx_runner, onnx=True, passes=_fp16_passes),
        ExportFormat("torch-export", _write_program, _pt2_runner(compiled=False)),
        ExportFormat(
            "aoti-cpu",
            _write_aoti,
            _pt2_runner(compiled=True),
            note=_aoti_note,
            unavailable=(AotiUnavailable,),
        ),
    )
}
