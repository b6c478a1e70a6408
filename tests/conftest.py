"""Shared fixtures: the real MNIST (verified cache, fetched once) and a trained checkpoint.

The trained checkpoint is the default recipe, trained once into the default artifacts folder
and reused by later runs (and by the exporter and harness tests) while it is complete.
"""

from __future__ import annotations

import pytest

from models.data import MNIST, load_mnist
from models.train import RECIPES, default_checkpoint_path, train


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
    train(RECIPES["fast"], mnist, path, resume=True, progress=False)
    return path
