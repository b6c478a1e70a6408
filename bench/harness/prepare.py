"""Build whatever the benchmarks need and is missing: data, a trained checkpoint, the exports; and
the run's shared data for its workers (the parent's side of ``bench.harness.shared_data``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from bench.harness.shared_data import SharedData
from bench.runtimes import Artifacts
from models.checkpoint import CheckpointError, load_checkpoint
from models.data import MNIST, load_mnist, to_input
from models.network import LAYER_NAMES, trace_layers
from models.paths import export_dir
from models.train import default_checkpoint_path


def ensure_artifacts(
    artifacts: str | os.PathLike | None = None, progress: bool = True
) -> tuple[Artifacts, MNIST]:
    from exporters.export import ExportConfig, export_all  # not in workers: they only load
    from models.train import recipe_config, train

    mnist = load_mnist(artifacts=artifacts)
    checkpoint = default_checkpoint_path(artifacts=artifacts)
    try:
        complete = load_checkpoint(checkpoint).complete
    except CheckpointError:
        complete = False
    if not complete:
        print(
            f"no trained checkpoint at {checkpoint}: training the default recipe (~1.5 min)", file=sys.stderr
        )
        train(recipe_config("fast"), mnist, checkpoint, resume=True, progress=progress)
    config = ExportConfig(checkpoint=checkpoint, out_dir=export_dir(artifacts), artifacts=artifacts)
    # an export whose files no longer match its manifest is refused, naming the file: only
    # `deepmnist export` (or --force) writes over it
    manifest, _, exported = export_all(config, mnist, progress=progress, recheck=False, repair=False)
    if exported:
        print(f"exported the artifacts to {config.out_dir}", file=sys.stderr)
    net = load_checkpoint(checkpoint).model()
    return Artifacts(manifest, root=artifacts, net=net), mnist


def reference_argmax(net: torch.nn.Module, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Eager PyTorch's class (CPU) for each uint8 image (N, 28, 28): the agreement reference."""
    with torch.no_grad():
        return np.concatenate(
            [net(to_input(images[i : i + batch])).argmax(1).numpy() for i in range(0, len(images), batch)]
        )


def write_shared_data(
    folder: str | os.PathLike, artifacts: Artifacts, mnist: MNIST, pairs: Iterable[tuple[str, int]]
) -> SharedData:
    """The run's shared files in ``folder`` (``bench.harness.shared_data``): the test set, eager PyTorch's
    classes, and for each (target, batch size) of ``pairs`` the first ``batch`` test images
    carried by eager PyTorch up to the target, with its output there, so each layer sees real
    activations."""
    net = artifacts.net
    data = SharedData(Path(folder))
    data.write(mnist.test_images, mnist.test_labels, reference_argmax(net, mnist.test_images))
    wanted: dict[int, set[str]] = {}
    for target, batch in pairs:
        wanted.setdefault(batch, set()).add(target)
    for batch, targets in wanted.items():
        x = to_input(mnist.test_images[:batch])  # (B, 1, 28, 28)
        with torch.no_grad():
            acts = trace_layers(net, x)
        for target in targets:
            if target == "model":
                data.write_reference(target, batch, x.numpy(), acts[LAYER_NAMES[-1]][1].numpy())
            else:
                layer_in, layer_out = acts[target]
                data.write_reference(target, batch, layer_in.numpy(), layer_out.numpy())
    return data
