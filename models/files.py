"""Reading a file with a size limit: every CSV and JSON file the project reads goes through here.

A path a user gives may name something without an end (``/dev/zero``, a FIFO fed forever) or a file
far larger than any the project writes; read whole, it would fill the memory before anything could
be said. ``read_limited`` reads at most ``limit`` bytes and one more: one more means too large, and
the error (a ``UserError``: exit 2) names the file, the limit and what the file was expected to be.
"""

from __future__ import annotations

import os

from models.errors import UserError

# The largest file the project writes and reads back is a full run's JSON sidecar (~3 MB with its
# single-stream samples; about 10x that with --tails): 64 MiB leaves room and still fails fast.
MAX_FILE_BYTES = 64 << 20


class FileTooLarge(UserError):
    """A file beyond the size limit of what it should be (or one without end)."""


def read_limited(path: str | os.PathLike, what: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path``; FileTooLarge if it holds more than ``limit`` (``what``: "a results
    CSV", named in the error). OSError as ``open`` raises it."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"{path}: more than {limit / 2**20:g} MiB (or without end); too large for {what}")
    return data


def read_text_limited(path: str | os.PathLike, what: str, limit: int = MAX_FILE_BYTES) -> str:
    """``read_limited`` decoded as UTF-8 (UnicodeDecodeError as ``bytes.decode`` raises it)."""
    return read_limited(path, what, limit).decode("utf-8")
