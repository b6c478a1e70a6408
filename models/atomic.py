"""Atomic file writes: write to a temporary file beside the target, fsync, then rename.

A crash or Ctrl-C leaves either the old file or the new one, never half a file. A target that is a
FIFO, a socket or a device is refused (OutputError): the rename would replace the node.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from models.errors import UserError


class OutputError(UserError):
    """An output path that must not be written: a device or pipe, a folder of someone else's files,
    a name that would land outside its folder."""


# ----------------------------------------------------------------------------- special files


def special_kind(path: str | os.PathLike) -> str | None:
    """``"a FIFO (named pipe)"``, ``"a character device"``, ``"a block device"`` or ``"a socket"``
    when ``path`` (or what a symbolic link there points to) is one; None otherwise (a regular file,
    a folder, nothing)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, a dangling link, a NUL in the name
        return None
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return None


def refuse_special(path: str | os.PathLike, option: str = "", expected: str = "a regular file") -> Path:
    """Raise OutputError when ``path`` is a FIFO, a socket or a device; return it as a Path."""
    kind = special_kind(path)
    if kind:
        where = f"{option} {path}" if option else str(path)
        raise OutputError(f"{where}: is {kind}, not {expected}; nothing written there")
    return Path(path)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``target``. A target
    that is a FIFO, a socket or a device is refused (``OutputError``): the rename
    would replace the node."""
    target = refuse_special(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp_path
        # mkstemp makes 0600, and some writers (safetensors) replace the file with a new 0600 one:
        # give the usual permissions after writing
        os.chmod(tmp_path, 0o666 & ~umask)
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
