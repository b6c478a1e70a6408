"""Errors a user can cause and fix; the CLI prints them without a traceback.

Exit codes of every ``deepmnist`` command (the table of docs/errors.md): 0 ok, 1 a check failed (parity,
a regression gate), 2 bad input (a file, a flag, a value, a folder that cannot be written),
130 interrupted (Ctrl-C), 143 terminated (SIGTERM, handled as Ctrl-C is: ``terminate_as_interrupt``).
"""

from __future__ import annotations

import contextlib
import errno
import math
import re
import signal
import threading
from collections.abc import Iterator

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, as a shell reports a process SIGTERM ended


class UserError(Exception):
    """Bad input (a file, a flag, a value): the message names it and says what is wrong."""

    exit_code = EXIT_BAD_INPUT


class CheckFailed(UserError):
    """The input was fine but a check on the result failed (parity, a regression gate)."""

    exit_code = EXIT_CHECK_FAILED


class OptionError(UserError, ValueError):
    """A bad option value; also a ValueError, so config constructors can raise it."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the signal arrives (``terminate_as_interrupt``). A KeyboardInterrupt,
    so whatever Ctrl-C does on the way out happens too: a benchmark writes the rows measured so
    far, an export leaves the old one as it was."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, the first SIGTERM raises ``Terminated`` in the main thread; later ones are
    ignored, so the clean-up the first one started (writing the rows so far) is not cut short
    (SIGKILL still ends the process). The previous handler is restored on the way out. Outside
    the main thread (where no handler can be set) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def is_out_of_space(error: BaseException | None) -> bool:
    """Whether ``error`` (or an error it was raised from) is a full disk or an exhausted quota;
    compilers and libraries often wrap the OSError, so their messages are read too."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(error) or "Disk quota exceeded" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters (a 400-digit number, a
    200 kB string) with its length said."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 10]}... ({len(text):,} characters)"


_INTEGER = re.compile(r"[+-]?[0-9]+")


def parse_int(text: str) -> int:
    """An integer in ASCII digits, for every integer list (``--batch-sizes`` of bench, compare, history
    and portability) and every integer option of every command: ``int`` alone also takes '١٢' and '１２', and
    ``str.isdigit`` says yes to '²', which ``int`` then refuses. ValueError if not."""
    if not _INTEGER.fullmatch(text.strip()):
        raise ValueError(f"{text!r} is not an integer")
    return int(text)


def parse_list(text: str | None, kind: type = str, name: str = "list") -> tuple | None:
    """``"1, 64,256"`` -> ``(1, 64, 256)``; OptionError (a ValueError) naming a part that is not a ``kind``
    (integers: ``parse_int``)."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise OptionError(f"{name} {text!r}: empty; give comma-separated values")
    convert = parse_int if kind is int else kind
    values = []
    for part in parts:
        try:
            values.append(convert(part))
        except ValueError:
            what = "an integer" if kind is int else "a valid value"
            raise OptionError(f"{name} {text!r}: {part!r} is not {what}") from None
    return tuple(values)


parse_int.__name__ = "int"  # argparse: "invalid int value: 'x'"


def check_number(
    name: str,
    value: float,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
) -> None:
    """Refuse NaN, infinity and values out of range, naming the option: ``--max-time -5``."""
    # an int of any size is finite (math.isfinite overflows on one of 400 digits)
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise OptionError(f"{name} {shown(value)}: must be a finite number")
    if minimum is not None and value < minimum:
        raise OptionError(f"{name} {shown(value)}: must be at least {minimum:g}")
    if above is not None and value <= above:
        raise OptionError(f"{name} {shown(value)}: must be greater than {above:g}")
    if maximum is not None and value > maximum:
        raise OptionError(f"{name} {shown(value)}: must be at most {maximum:g}")


def max_threads() -> int:
    """The most intra-op threads an option may ask for: 4x the cores (oversubscription is a
    legitimate experiment; a hundred thousand threads crash the process)."""
    import os

    return 4 * (os.cpu_count() or 1)
