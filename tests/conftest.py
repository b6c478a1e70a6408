"""Shared fixtures: the real MNIST (verified cache, fetched once) and a trained checkpoint.

The trained checkpoint is the default recipe, trained once into the default artifacts folder
and reused by later runs (and by the exporter and harness tests) while it is complete.
"""

from __future__ import annotations

import pytest

from models.data import MNIST, load_mnist
from models.train import default_checkpoint_path, recipe_config, train


@pytest.fixture(scope="session")
def mnist() -> MNIST:
    return load_mnist()


@pytest.fixture(scope="session")
def trained_checkpoint(mnist: MNIST):
    """Path to a complete default-recipe checkpoint (trains it, ~1-2 min, when absent)."""
    from models.checkpoint import CheckpointError, load_checkpoint

    path = default_checkpoint_path()
    try:
        ckpt = load_checkpoint(path)
        if ckpt.complete and ckpt.data_checksum == mnist.checksum:
            return path
    except CheckpointError:
        pass
    train(recipe_config("fast"), mnist, path, resume=True, progress=False)
    return path


@pytest.fixture(scope="session")
def exported(trained_checkpoint):
    """The export manifest of the default checkpoint, made by the real `deepmnist export` command
    (a fresh process, as users run it; up to date exports are only verified)."""
    import subprocess
    import sys

    from exporters.manifest import load_manifest
    from models.paths import export_dir

    proc = subprocess.run(
        [sys.executable, "-m", "bench", "export", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = load_manifest(export_dir())
    manifest.export_stdout = proc.stdout
    return manifest
