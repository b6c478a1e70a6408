"""Where generated files live. Nothing here is committed; every place can be overridden.

Precedence: an explicit argument (``--artifacts DIR``), then ``$DEEPMNIST_ARTIFACTS``, then
``<checkout>/artifacts``. The data cache defaults to ``<artifacts>/data`` (``$DEEPMNIST_DATA``).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_ENV = "DEEPMNIST_ARTIFACTS"
DATA_ENV = "DEEPMNIST_DATA"


def artifacts_dir(override: str | os.PathLike | None = None) -> Path:
    if override is not None:
        return Path(override).expanduser().resolve()
    env = os.environ.get(ARTIFACTS_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return REPO_ROOT / "artifacts"


def data_cache_dir(artifacts: str | os.PathLike | None = None) -> Path:
    env = os.environ.get(DATA_ENV)
    if env and artifacts is None:
        return Path(env).expanduser().resolve()
    return artifacts_dir(artifacts) / "data"


def checkpoint_dir(artifacts: str | os.PathLike | None = None) -> Path:
    return artifacts_dir(artifacts) / "checkpoints"


def export_dir(artifacts: str | os.PathLike | None = None) -> Path:
    return artifacts_dir(artifacts) / "export"
