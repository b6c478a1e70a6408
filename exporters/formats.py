"""Writers for the two artifact formats, each atomic and byte-for-byte reproducible.

ONNX: ``torch.onnx.export(..., dynamo=True)``, the exporter current PyTorch recommends, with its
optimizer on (constant folding, dead-code removal: the simplification that is always safe), then
``onnx.checker.check_model(full_check=True)`` and strict shape inference.
TorchScript: traced, frozen, saved; the archive's random ``serialization_id`` is replaced by one
derived from the content so that the same weights give the same file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import onnx
import torch
from torch import nn

from models.atomic import atomic_path

OPSET = 18  # >= 17, and old enough for every onnxruntime of the last three years


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Silence the exporters' chatter (deprecations, optional-op registrations) during one export."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(
    module: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike,
    input_name: str,
    output_names: Sequence[str],
    metadata: dict[str, str],
    opset: int = OPSET,
) -> onnx.ModelProto:
    """Export ``module`` with a dynamic batch dimension on its one input, validate it, save it."""
    module = module.eval()
    with quiet_export(), torch.no_grad():
        program = torch.onnx.export(
            module,
            (example,),
            input_names=[input_name],
            output_names=list(output_names),
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            optimize=True,
            opset_version=opset,
            verbose=False,
        )
    model = program.model_proto
    model.doc_string = metadata.get("description", "")
    del model.metadata_props[:]
    for key in sorted(metadata):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, metadata[key]
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(model.SerializeToString())
    return model


def export_torchscript(
    module: nn.Module, example: torch.Tensor, path: str | os.PathLike, metadata_json: str
) -> None:
    """Trace and freeze ``module`` (batch-agnostic ops only, so any batch size runs)."""
    module = module.eval()
    with quiet_export(), torch.no_grad():
        frozen = torch.jit.freeze(torch.jit.trace(module, example))
    with atomic_path(path) as tmp:
        torch.jit.save(frozen, str(tmp), _extra_files={"deepmnist.json": metadata_json})
        _make_reproducible(tmp, Path(path).name.split(".")[0])


def _make_reproducible(archive: Path, folder: str) -> None:
    """Rewrite the zip reproducibly: torch names its top folder after the (temporary) file name,
    writes a random ``.data/serialization_id`` and debug records holding the Python call stack
    of the trace (local paths); use ``folder``, a content-derived id, and drop the debug records."""
    with zipfile.ZipFile(archive) as src:
        entries = [
            (info.filename.split("/", 1)[1], src.read(info))
            for info in src.infolist()
            if not info.filename.endswith(".debug_pkl")  # trace call stacks with local paths; optional
        ]
    digest = hashlib.sha256()
    for name, data in entries:
        if name != ".data/serialization_id":
            digest.update(name.encode() + data)
    serial = str(int(digest.hexdigest(), 16))[:40].encode()
    staged = archive.with_suffix(".rewrite")
    with zipfile.ZipFile(staged, "w", compression=zipfile.ZIP_STORED) as dst:
        for name, data in entries:
            content = serial if name == ".data/serialization_id" else data
            dst.writestr(zipfile.ZipInfo(f"{folder}/{name}", date_time=(1980, 1, 1, 0, 0, 0)), content)
    os.replace(staged, archive)
