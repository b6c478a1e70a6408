"""The IDX file format of MNIST, with validation; numpy only (no torch), for light-weight readers."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from models.errors import UserError

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


# what a damaged .gz raises: gzip.BadGzipFile (an OSError), EOFError (truncated), zlib.error (bad data)
GZIP_ERRORS = (OSError, EOFError, zlib.error)


class DataError(UserError):
    """Bad or missing data; the message names the file and what is wrong."""


def read_maybe_gz(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except GZIP_ERRORS as e:
            raise DataError(f"{path}: corrupt gzip data ({e})") from None
    return raw


def parse_idx(data: bytes, path: Path | str, kind: str) -> np.ndarray:
    """Parse IDX bytes; ``kind`` is "images" (N, 28, 28) or "labels" (N,). Errors name ``path``."""
    expected_magic, ndim = (IMAGES_MAGIC, 3) if kind == "images" else (LABELS_MAGIC, 1)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: file is {len(data)} bytes, shorter than the {header}-byte IDX header")
    magic = int.from_bytes(data[0:4], "big")
    if magic != expected_magic:
        raise DataError(
            f"{path}: bad magic number 0x{magic:08x}, expected 0x{expected_magic:08x} (IDX {kind})"
        )
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if kind == "images" and dims[1:] != [28, 28]:
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected 28x28")
    expected_size = header + int(np.prod(dims))
    if len(data) != expected_size:
        raise DataError(
            f"{path}: file size {len(data)} bytes does not match its header "
            f"(dimensions {dims} need {expected_size} bytes); the file is truncated or corrupt"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()  # writable
    if kind == "labels" and array.size and int(array.max()) > 9:
        bad = int(np.argmax(array > 9))
        raise DataError(f"{path}: label {int(array[bad])} at index {bad} is outside 0..9")
    return array


def encode_idx(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
    if array.ndim not in (1, 3):
        raise ValueError(f"IDX arrays here are 1-D labels or 3-D images, got {array.ndim}-D")
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def read_idx(path: str | os.PathLike, kind: str) -> np.ndarray:
    path = Path(path)
    return parse_idx(read_maybe_gz(path), path, kind)
