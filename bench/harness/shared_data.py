"""What a run's workers share: written once by the parent, mapped by every worker, never copied.

The parent (``bench.harness.prepare.write_shared_data``) writes ``.npy`` files into the launcher's
temporary folder: the MNIST test images and labels, eager PyTorch's class for each test image,
and for every (target, batch size) of the run the reference input (the first ``batch`` test
images carried by eager PyTorch up to the layer) and eager PyTorch's output. A worker opens them
with ``numpy.load(mmap_mode="c")``: its pages are the one file's in the page cache (copy on write,
so a runtime may write into its input without touching the file or another worker's view), and
the worker needs neither torch nor the data code to read them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

IMAGES = "test_images.npy"  # (10000, 28, 28) uint8
LABELS = "test_labels.npy"  # (10000,) uint8
ARGMAX = "reference_argmax.npy"  # (10000,) int64: eager PyTorch's class per test image


def to_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) = uint8 / 255: ``models.data.to_input`` without
    torch (the same float32 division, so the same bits)."""
    return images[:, None].astype(np.float32) / np.float32(255.0)


class SharedData:
    """The files of one run's shared folder; arrays are mapped on first use and kept."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._maps: dict[str, np.ndarray] = {}

    def _load(self, name: str) -> np.ndarray:
        if name not in self._maps:
            mapped = np.load(self.folder / name, mmap_mode="c", allow_pickle=False)
            self._maps[name] = mapped.view(np.ndarray)  # the same pages, without np.memmap's wrapping
        return self._maps[name]

    def _save(self, name: str, array: np.ndarray) -> None:
        # the launcher's private temporary folder, written before any worker starts: no rename needed
        np.save(self.folder / name, np.ascontiguousarray(array), allow_pickle=False)

    @property
    def images(self) -> np.ndarray:
        return self._load(IMAGES)

    @property
    def labels(self) -> np.ndarray:
        return self._load(LABELS)

    @property
    def reference_argmax(self) -> np.ndarray:
        return self._load(ARGMAX)

    def reference(self, target: str, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """(input, eager PyTorch's output on the CPU) of ``target`` at ``batch``."""
        return self._load(self.input_path(target, batch).name), self._load(f"{target}-b{batch}-out.npy")

    def input_path(self, target: str, batch: int) -> Path:
        """The ``.npy`` file of ``target``'s reference input at ``batch`` (float32)."""
        return self.folder / f"{target}-b{batch}-in.npy"

    def has_reference(self, target: str, batch: int) -> bool:
        return (self.folder / f"{target}-b{batch}-out.npy").is_file()

    def write(self, images: np.ndarray, labels: np.ndarray, reference_argmax: np.ndarray) -> None:
        self._save(IMAGES, images)
        self._save(LABELS, labels)
        self._save(ARGMAX, reference_argmax)

    def write_reference(self, target: str, batch: int, x: np.ndarray, y: np.ndarray) -> None:
        self._save(self.input_path(target, batch).name, x)
        self._save(f"{target}-b{batch}-out.npy", y)
