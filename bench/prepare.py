"""Build whatever the benchmarks need and is missing: data, a trained checkpoint, the exports."""

from __future__ import annotations

import os
import sys

from bench.runtimes import Artifacts
from models.checkpoint import CheckpointError, load_checkpoint
from models.data import MNIST, load_mnist
from models.paths import export_dir
from models.train import default_checkpoint_path


def ensure_artifacts(
    artifacts: str | os.PathLike | None = None, progress: bool = True
) -> tuple[Artifacts, MNIST]:
    from exporters.export import ExportConfig, export_all  # not in workers: they only load
    from models.train import RECIPES, train

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
        train(RECIPES["fast"], mnist, checkpoint, resume=True, progress=progress)
    config = ExportConfig(checkpoint=checkpoint, out_dir=export_dir(artifacts), artifacts=artifacts)
    # an export whose files no longer match its manifest is refused, naming the file: only
    # `deepmnist export` (or --force) writes over it
    manifest, _, exported = export_all(config, mnist, progress=progress, recheck=False, repair=False)
    if exported:
        print(f"exported the artifacts to {config.out_dir}", file=sys.stderr)
    return Artifacts(net=load_checkpoint(checkpoint).model(), manifest=manifest), mnist


def load_artifacts(artifacts: str | os.PathLike | None = None) -> tuple[Artifacts, MNIST]:
    """What ``ensure_artifacts`` made, loaded only (a worker's start): verified MNIST, the trained
    network, the export manifest (each artifact's SHA-256 is checked when an adapter opens it)."""
    from exporters.manifest import load_manifest

    mnist = load_mnist(artifacts=artifacts)
    net = load_checkpoint(default_checkpoint_path(artifacts=artifacts)).model()
    return Artifacts(net=net, manifest=load_manifest(export_dir(artifacts))), mnist
