"""The export manifest: every artifact with its SHA-256, inputs, outputs, dtypes and opset.

Other apps (and the benchmark harness) find artifacts through ``manifest.json`` and verify each
file's SHA-256 before loading it; a TorchScript archive or .pt2 is only loaded after that check.
Manifests written before ``details``, ``skipped``, ``metadata`` and ``notes`` existed still load
(they default to empty). ``notes`` tells an app what to know in other runtimes (``NOTES``: OpenVINO
computes in bf16 by default).

The manifest names no folder of the exporting machine: the checkpoint is recorded relative to the
artifacts root (``checkpoints/deep_mnist-fast.safetensors``), or by its file name when it lies
elsewhere, next to its SHA-256; so the same checkpoint exported from two folders gives the same
manifest, and a copied manifest reveals nothing local. Manifests that recorded an absolute path
still load (``checkpoint_path`` returns that path).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.atomic import atomic_write_text, sha256_file
from models.errors import UserError
from models.files import read_text_limited
from models.paths import artifacts_dir

FORMAT = "deepmnist-export/1"
MANIFEST = "manifest.json"

# What an app should know to run these files in another runtime, keyed by runtime: written into
# every manifest (``notes``) and said in docs/apps-and-portability.md ("Using the exported model in
# your app"); bench/portability/matrix.py's KNOWN_CAUSES quotes the OpenVINO one for its matrix rows.
OPENVINO_BF16 = (
    "OpenVINO's CPU plugin computes in bf16 by default on CPUs with AVX512_BF16 "
    "(its INFERENCE_PRECISION_HINT reads bfloat16), float32 models included; "
    "INFERENCE_PRECISION_HINT=f32 gives float32"
)
NOTES: dict[str, str] = {"openvino": OPENVINO_BF16}


class ExportError(UserError):
    """A missing, stale or corrupt export; names the file."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: list[str | int]  # "batch" marks the dynamic dimension
    dtype: str  # "float32", "uint8", "int64"


@dataclass(frozen=True)
class Artifact:
    target: str  # "model", "model_uint8", or a layer name (conv1 ... fc2)
    # "onnx" | "torchscript" | "onnx-int8" | "onnx-fp16" (ONNX files) | "torch-export" (torch.export
    # .pt2) | "aoti-cpu" (AOTInductor package for the CPU); the last four exist for "model" only
    format: str
    file: str  # relative to the export folder
    sha256: str
    bytes: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    opset: int | None = None  # ONNX formats only
    # format-specific facts: onnx-int8 {"test_accuracy", "fp32_test_accuracy", "quantization", ...},
    # onnx-fp16 {"io", ...}, aoti-cpu {"compile_s" (seconds, wall clock, cold), "compiler", ...}
    details: dict[str, Any] | None = None
    # the metadata the file carries (ONNX metadata_props, the TorchScript/.pt2 extra file), with
    # its JSON-encoded values decoded (see ``decode_metadata``): for apps that cannot read the
    # file's own metadata, such as onnxruntime's JavaScript APIs
    metadata: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Artifact:
        return cls(
            **{
                **d,
                "inputs": [TensorSpec(**t) for t in d["inputs"]],
                "outputs": [TensorSpec(**t) for t in d["outputs"]],
            }
        )


def decode_metadata(props: dict[str, str]) -> dict[str, Any]:
    """String metadata as typed JSON values: a value that parses as JSON (a list, an object, a
    number) becomes that value, an empty string null, any other string stays a string; so
    ``labels`` is a list, ``test_accuracy`` a number, ``recipe`` an object."""

    def decode(value: str) -> Any:
        if value == "":
            return None
        try:
            return json.loads(value)
        except ValueError:
            return value

    return {key: decode(value) for key, value in sorted(props.items())}


def portable_checkpoint(path: str | os.PathLike, artifacts: str | os.PathLike | None = None) -> str:
    """How a manifest names the checkpoint ``path``: relative to the artifacts root (``artifacts``,
    default ``$DEEPMNIST_ARTIFACTS`` or ``<checkout>/artifacts``) in POSIX form when it lies inside
    it, else its file name; never an absolute path (the SHA-256 beside it identifies the file)."""
    root = artifacts_dir(artifacts)
    given = Path(os.path.abspath(Path(path).expanduser()))
    for candidate in (given, given.resolve()):  # a symlinked root or checkpoint still counts as inside
        for base in (root, Path(os.path.abspath(root))):
            try:
                return candidate.relative_to(base).as_posix()
            except ValueError:
                continue
    return given.name


def checkpoint_path(recorded: str, artifacts: str | os.PathLike | None = None) -> Path:
    """The checkpoint a manifest names (``Manifest.checkpoint``) as a path on this machine: a
    relative record is under the artifacts root (``artifacts``, default as in
    ``portable_checkpoint``); an absolute one, as manifests written before the record became
    portable hold, is that path."""
    path = Path(recorded)
    return path if path.is_absolute() else artifacts_dir(artifacts) / path


@dataclass
class Manifest:
    # relative to the artifacts root, or the file name of one outside it (``portable_checkpoint``);
    # an absolute path in manifests written before that
    checkpoint: str
    checkpoint_sha256: str
    test_accuracy: float | None
    recipe: dict[str, Any]
    producer: dict[str, str]
    artifacts: list[Artifact] = field(default_factory=list)
    format: str = FORMAT
    folder: Path | None = None
    # planned artifacts this machine could not make, "target/format" -> why (e.g. no C++ compiler)
    skipped: dict[str, str] = field(default_factory=dict)
    # runtime -> what an app should know to run these files there (NOTES when exported; empty in
    # manifests written before notes existed)
    notes: dict[str, str] = field(default_factory=dict)

    def checkpoint_path(self, artifacts: str | os.PathLike | None = None) -> Path:
        """The checkpoint this export was made from, on this machine (see ``checkpoint_path``)."""
        return checkpoint_path(self.checkpoint, artifacts)

    def find(self, target: str, fmt: str) -> Artifact:
        for artifact in self.artifacts:
            if artifact.target == target and artifact.format == fmt:
                return artifact
        raise ExportError(f"{self.folder}: the manifest lists no {fmt} artifact for {target!r}")

    def path(self, artifact: Artifact) -> Path:
        assert self.folder is not None
        return self.folder / artifact.file

    def verified_path(self, target: str, fmt: str) -> Path:
        """The artifact's path after checking its SHA-256 against the manifest."""
        artifact = self.find(target, fmt)
        path = self.path(artifact)
        relative = Path(artifact.file)
        if relative.is_absolute() or ".." in relative.parts:
            raise ExportError(
                f"{self.folder}: the manifest names {artifact.file!r}, outside the export folder"
            )
        inside = self.folder
        for part in relative.parts:  # a planted link (say layers/ -> elsewhere) is never followed
            inside = inside / part
            if inside.is_symlink():
                raise ExportError(
                    f"{inside}: a symbolic link in the export folder; an export holds only real files "
                    "(run `deepmnist export --force`)"
                )
        if not path.is_file():
            raise ExportError(f"{path}: listed in the manifest but missing; run `deepmnist export`")
        digest = sha256_file(path)
        if digest != artifact.sha256:
            raise ExportError(
                f"{path}: SHA-256 {digest[:16]}... does not match the manifest ({artifact.sha256[:16]}...); "
                "the file was changed or damaged; run `deepmnist export --force`"
            )
        return path

    def verify_all(self) -> None:
        for artifact in self.artifacts:
            self.verified_path(artifact.target, artifact.format)

    def save(self, folder: str | os.PathLike) -> Path:
        data = asdict(self)
        data.pop("folder")
        path = Path(folder) / MANIFEST
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return path


def load_manifest(folder: str | os.PathLike) -> Manifest:
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ExportError(f"{path}: no export manifest; run `deepmnist export` first")
    try:
        data = json.loads(read_text_limited(path, "an export manifest"))
        if data.get("format") != FORMAT:
            raise ExportError(f"{path}: not a deepmnist export manifest (format {data.get('format')!r})")
        artifacts = [Artifact.from_dict(a) for a in data.pop("artifacts")]
        return Manifest(**data, artifacts=artifacts, folder=folder)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ExportError(f"{path}: damaged manifest ({e})") from None
