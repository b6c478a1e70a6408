"""Checkpoints as one safetensors file: weights, Adam state, RNG state, and JSON metadata.

Nothing is ever unpickled: tensors come from safetensors, everything else from JSON in the
safetensors header. Layout of the tensor names:
  ``model.<state_dict key>``            network weights (float32)
  ``optim.<param index>.<state key>``   Adam's ``step``, ``exp_avg``, ``exp_avg_sq``
  ``rng.torch``                         torch's CPU generator state (uint8)
Metadata keys (strings): ``format``, ``step``, ``complete``, ``config`` (JSON), ``data_checksum``,
``test_accuracy``, ``history`` (JSON), ``train_seconds``, ``torch_version``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models.atomic import atomic_path, refuse_special, sha256_file
from models.errors import UserError, shown
from models.network import MODEL_PARAMS, DeepMNIST

FORMAT = "deepmnist-checkpoint/1"


def _writer() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"deepmnist-bench {version('deepmnist-bench')}"
    except PackageNotFoundError:
        return "deepmnist-bench (not installed)"


WRITER = _writer()  # recorded in every checkpoint; named when a checkpoint does not fit this version


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt or does not fit the network; names the file."""


@dataclass
class Checkpoint:
    model_state: dict[str, torch.Tensor]
    step: int = 0
    complete: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    data_checksum: str = ""
    test_accuracy: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    optim_state: dict[str, Any] | None = None  # torch.optim state_dict
    rng_state: torch.Tensor | None = None
    path: Path | None = None
    sha256: str = ""
    writer: str = "an unknown version"  # "deepmnist-bench 0.1.0"; older checkpoints do not say

    def model(self) -> DeepMNIST:
        """A DeepMNIST in eval mode with these weights (refused if shapes do not match)."""
        net = DeepMNIST()
        check_state_fits(net, self.model_state, self.path)
        net.load_state_dict(self.model_state)
        return net.eval()


def check_state_fits(net: torch.nn.Module, state: dict[str, torch.Tensor], path: Path | None) -> None:
    expected = net.state_dict()
    where = str(path) if path else "checkpoint"
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{where}: does not match the Deep MNIST network "
            f"(missing {missing or 'nothing'}, unexpected {extra or 'nothing'})"
        )
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{where}: {key} has shape {tuple(state[key].shape)}, the network needs {tuple(tensor.shape)}"
            )


def _flatten_optim(optim_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    tensors = {}
    for index, entry in optim_state["state"].items():
        for key, value in entry.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().clone().contiguous()
    return tensors, json.dumps(optim_state["param_groups"])


def _unflatten_optim(tensors: dict[str, torch.Tensor], groups_json: str) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = tensor
    return {"state": state, "param_groups": json.loads(groups_json)}


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike) -> Path:
    """Write ``ckpt`` atomically to ``path`` (a crash leaves the previous file intact)."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in ckpt.model_state.items()}
    metadata = {
        "format": FORMAT,
        "step": str(ckpt.step),
        "complete": json.dumps(ckpt.complete),
        "config": json.dumps(ckpt.config, sort_keys=True),
        "data_checksum": ckpt.data_checksum,
        "test_accuracy": json.dumps(ckpt.test_accuracy),
        "history": json.dumps(ckpt.history),
        "train_seconds": repr(ckpt.train_seconds),
        "torch_version": torch.__version__,
        "writer": WRITER,
    }
    if ckpt.optim_state is not None:
        optim_tensors, groups = _flatten_optim(ckpt.optim_state)
        tensors.update(optim_tensors)
        metadata["optim_param_groups"] = groups
    if ckpt.rng_state is not None:
        tensors["rng.torch"] = ckpt.rng_state.clone()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint; raises CheckpointError naming the file if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint (train one with `deepmnist train`)")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a deepmnist checkpoint (format {metadata.get('format')!r})")
    try:
        model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        optim_tensors = {k: v for k, v in tensors.items() if k.startswith("optim.")}
        optim_state = (
            _unflatten_optim(optim_tensors, metadata["optim_param_groups"])
            if "optim_param_groups" in metadata
            else None
        )
        ckpt = Checkpoint(
            model_state=model_state,
            step=int(metadata["step"]),
            complete=json.loads(metadata["complete"]),
            config=json.loads(metadata["config"]),
            data_checksum=metadata.get("data_checksum", ""),
            test_accuracy=json.loads(metadata.get("test_accuracy", "null")),
            history=json.loads(metadata.get("history", "[]")),
            train_seconds=float(metadata.get("train_seconds", "0")),
            optim_state=optim_state,
            rng_state=tensors.get("rng.torch"),
            path=path,
            sha256=sha256_file(path),
            writer=metadata.get("writer", "an unknown version (before 0.1.0 recorded it)"),
        )
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint metadata ({e})") from None
    accuracy = ckpt.test_accuracy  # the export's manifest and model metadata record it as it is
    if accuracy is not None and not (
        isinstance(accuracy, int | float) and not isinstance(accuracy, bool) and 0 <= accuracy <= 1
    ):
        raise CheckpointError(
            f"{path}: damaged checkpoint metadata (test_accuracy {shown(accuracy)} is not a fraction "
            "of the test images in [0, 1])"
        )
    check_state_fits(DeepMNIST(), model_state, path)
    return ckpt


def check_checkpoint_path(path: str | os.PathLike) -> None:
    """Refuse, before training, a checkpoint path that cannot be written: a folder, a FIFO, socket or
    device (``models.outputs``), or a file in a folder (or the first existing folder above it)
    this process cannot write."""

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"{path}: --out is a folder; give a file name (say {path / 'model.safetensors'})"
        )
    refuse_special(path, "--out")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise CheckpointError(f"{path}: cannot write there: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CheckpointError(f"{path}: cannot write there: {folder} is not writable")
    need = 3 * 4 * MODEL_PARAMS  # bytes: float32 weights and Adam's two moments (a checkpoint is ~39 MB)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise CheckpointError(
            f"{path}: {folder} has {free / 1e6:.1f} MB free; a checkpoint needs about {need / 1e6:.0f} MB"
        )


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete what an interrupted save of ``path`` left (``.<name>.*.tmp`` from a SIGKILL or a
    power loss; a clean Ctrl-C leaves none). Returns what was deleted."""
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            if stale.is_file() and not stale.is_symlink():
                stale.unlink(missing_ok=True)
                removed.append(stale)
    return removed
