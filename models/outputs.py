"""Where a command may write: the rules every output option shares (docs/errors.md).

- **Only regular files are written.** An output that names a FIFO, a socket, or a character or
  block device is refused (``models.atomic.refuse_special``): an atomic write would replace the node with a
  regular file, a plain one would block on the pipe or feed the device. ``models.atomic`` checks
  every write; the commands check their options before any work.
- **Never delete what the project did not write.** A folder a command fills and may replace
  (``export --out``, ``report -o``, ``history -o``; ``portability --results-dir``, which only adds
  files) is used only when it is new, empty, or the command's own (``claim_folder``): it carries
  ``.deepmnist-output`` (``MARKER``, written by an earlier run of the same command), or, for
  folders made before the marker, is recognised by its content (an export by its
  ``manifest.json``, a report by its ``index.html``, a history by its ``steps.md``, a results
  folder by its results CSVs); a folder the command replaces must also hold nothing else.
  Otherwise the command exits 2 naming the folder, and nothing is written or deleted.
- **No file name comes from data.** A name made from a value read from a file (a machine id, a
  run's stem) goes through ``safe_name``, and every output path is checked to lie inside its
  output folder after resolving symbolic links (``inside``).
- ``same_file``: two options naming one file (``train --out X --summary X``, in any spelling or
  through a link) are refused by the command.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from models.atomic import OutputError, atomic_write_text, refuse_special

MARKER = ".deepmnist-output"  # {"command": "report", ...}: the folder was written by that command
MARKER_MAX_BYTES = 4096


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: after resolving ``..`` and symbolic links, or as two hard
    links to one existing file."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# ----------------------------------------------------------------------------- output folders


def read_marker(folder: Path) -> str | None:
    """The command recorded in ``folder``'s marker, or None (no marker, a link, not one of ours)."""
    path = folder / MARKER
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MARKER_MAX_BYTES:
            return None
        command = json.loads(path.read_text(encoding="utf-8")).get("command")
    except (OSError, ValueError, AttributeError):
        return None
    return command if isinstance(command, str) else None


def write_marker(folder: str | os.PathLike, command: str) -> Path:
    """Mark ``folder`` as written by ``deepmnist COMMAND`` (its next run may replace it)."""
    path = Path(folder) / MARKER
    record = {
        "command": command,
        "note": f"written by `deepmnist {command}`; its next run may replace this folder's files",
    }
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def _foreign(folder: Path, owns: Callable[[str, bool], bool]) -> str | None:
    """The first entry under ``folder`` (relative, POSIX) that ``owns(relative, is_folder)`` does
    not accept; symbolic links are never the command's, and are not followed."""
    for root, folders, files in os.walk(folder):
        for name in sorted(folders) + sorted(files):
            path = Path(root, name)
            relative = path.relative_to(folder).as_posix()
            is_folder = name in folders and not path.is_symlink()
            if path.is_symlink() or not (relative == MARKER or owns(relative, is_folder)):
                return relative
        folders[:] = [f for f in folders if not Path(root, f).is_symlink()]
    return None


def claim_folder(
    folder: str | os.PathLike,
    *,
    command: str,
    what: str,
    option: str,
    recognise: Callable[[Path], bool] | None = None,
    owns: Callable[[str, bool], bool] | None = None,
    mark: str = "",
) -> Path:
    """Check, before any work, that ``deepmnist COMMAND`` may write into ``folder``: it is new,
    empty, or the command's own (its marker, else ``recognise(folder)`` for one made before the
    marker); and, where the command replaces the folder (``owns`` given: which relative paths it
    writes), that it holds nothing else. Otherwise OutputError names the folder and an entry.
    ``what`` names the folder kind in the message (``"not an earlier report"``), ``mark`` what makes
    a folder the command's (default: the marker)."""
    folder = Path(folder)
    refuse_special(folder, option, "a folder")
    if not folder.exists():
        if folder.is_symlink():
            raise OutputError(f"{option} {folder}: a symbolic link to nothing; give a folder")
        return folder
    if not folder.is_dir():
        raise OutputError(f"{option} {folder}: is a file, expected a folder")
    try:
        entries = sorted(p.name for p in folder.iterdir())
    except OSError as e:
        raise OutputError(f"{option} {folder}: cannot read the folder ({e.strerror or e})") from None
    if not entries:
        return folder
    ours = read_marker(folder) == command or (recognise is not None and recognise(folder))
    stray = None if not ours or owns is None else _foreign(folder, owns)
    if ours and stray is None:
        return folder
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    why = (
        f"it holds {stray}, which `deepmnist {command}` does not write"
        if ours
        else f"it holds {shown} and no {mark or f'{MARKER} of `deepmnist {command}`'}"
    )
    raise OutputError(
        f"{option} {folder}: not an earlier {what} ({why}); nothing written or deleted: give a new "
        "or empty folder"
    )


# ----------------------------------------------------------------------------- names from data

_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,79}")


def safe_name(text: str) -> str:
    """A file name for a value read from data: the value itself when it is a plain name (letters,
    digits, ``._-``, not starting with a dot, at most 80 characters), else its plain characters
    (at most 40) and 12 hex digits of its SHA-256, so two values never share a name and no value
    names a folder (``..``, ``/abs/path``, a NUL)."""
    if _SAFE.fullmatch(text) and text not in (".", ".."):
        return text
    plain = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-")[:40]
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{plain}-{digest}" if plain else digest


def inside(folder: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path``, after checking that it lies inside ``folder`` once both are resolved (symbolic
    links, ``..``); OutputError otherwise."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
    except ValueError:
        raise OutputError(f"{path}: outside the output folder {folder}; not written") from None
    return Path(path)
