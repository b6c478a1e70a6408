"""A run's JSON sidecar (``RUN.json`` beside ``RUN.csv``, written by ``bench.results.store.write_results``)
read back: the one reader, ``read_sidecar``, for every command that reads one (``compare``,
``history``, ``report``, ``plot``).

``SCHEMA`` declares the type of every field a command reads: the machine's fingerprint
(``environment.machine``, ``bench.results.machine``), the measured peaks (``rooflines``), the run time
(``durations_s``, ``bench.harness.durations``) and the single-stream samples (``single_stream_samples_ms``,
``bench.report.plots``). A field of another type, a missing required field, a number that is not finite
or out of range, or text holding a control character (a NUL byte in ``machine_id``) is refused
with ``SidecarError`` (exit 2) naming the file and the field, before anything uses it. Fields not
declared are not read and not checked (a newer writer may add some).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import UserError, shown
from models.files import read_text_limited

DURATIONS_KEY = "durations_s"  # how long each step took (bench.harness.durations)

MAX_TEXT = 1000  # characters of one text field; what a run writes is far shorter
MAX_INT = 2**53  # beyond it an integer does not survive a float


class SidecarError(UserError):
    """A results sidecar that cannot be read or holds a field of the wrong type; names both."""


class _Bad(Exception):
    """A field's problem, raised while checking: (field, what it should be, the value)."""

    def __init__(self, where: str, expected: str, value: Any = None, missing: bool = False) -> None:
        super().__init__(where)
        self.where, self.expected, self.value, self.missing = where, expected, value, missing


# ----------------------------------------------------------------------------- the types


@dataclass(frozen=True)
class Text:
    """A string without control characters; ``pattern`` (a regular expression) if given."""

    pattern: str | None = None
    expected: str = "text without control characters"

    def check(self, value: Any, where: str) -> None:
        if (
            not isinstance(value, str)
            or len(value) > MAX_TEXT
            or any(ord(c) < 32 or ord(c) == 127 for c in value)
        ):
            raise _Bad(where, self.expected, value)
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise _Bad(where, self.expected, value)


@dataclass(frozen=True)
class Number:
    """A finite int or float (not a bool) in ``[minimum, ...)``, or above ``above``; integral
    only if ``integer``."""

    minimum: float | None = None
    above: float | None = None
    integer: bool = False
    expected: str = "a finite number"

    def check(self, value: Any, where: str) -> None:
        kinds = int if self.integer else int | float
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise _Bad(where, self.expected, value)
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise _Bad(where, self.expected, value)
        if not math.isfinite(value):
            raise _Bad(where, self.expected, value)
        if (self.minimum is not None and value < self.minimum) or (
            self.above is not None and value <= self.above
        ):
            raise _Bad(where, self.expected, value)


@dataclass(frozen=True)
class Boolean:
    expected: str = "true or false"

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, bool):
            raise _Bad(where, self.expected, value)


@dataclass(frozen=True)
class ListOf:
    item: Any

    @property
    def expected(self) -> str:
        return f"a list of {_plural(self.item.expected)}"

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise _Bad(where, self.expected, value)
        for i, item in enumerate(value):
            self.item.check(item, f"{where}[{i}]")


@dataclass(frozen=True)
class MapOf:
    """An object whose keys are any text (a device, ``runtime/device``) and values ``value``."""

    value: Any

    @property
    def expected(self) -> str:
        return f"an object of {_plural(self.value.expected)}"

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, Mapping):
            raise _Bad(where, self.expected, value)
        for key, item in value.items():
            Text().check(key, f"{where} key {key!r}")
            self.value.check(item, _field(where, key))


@dataclass(frozen=True)
class Fields:
    """An object with these fields (each optional unless in ``required``); others are not read."""

    fields: dict[str, Any]
    required: tuple[str, ...] = ()
    expected: str = "an object"

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, Mapping):
            raise _Bad(where, self.expected, value)
        for name, kind in self.fields.items():
            if name in value:
                kind.check(value[name], _field(where, name))
            elif name in self.required:
                raise _Bad(_field(where, name), kind.expected, missing=True)


@dataclass(frozen=True)
class Either:
    """One of ``kinds`` (values, not objects: a failure is reported as the whole field's)."""

    kinds: tuple[Any, ...]

    @property
    def expected(self) -> str:
        return " or ".join(kind.expected for kind in self.kinds)

    def check(self, value: Any, where: str) -> None:
        for kind in self.kinds:
            try:
                kind.check(value, where)
                return
            except _Bad:
                continue
        raise _Bad(where, self.expected, value)


@dataclass(frozen=True)
class Nullable:
    """``kind`` or null; a field deeper inside ``kind`` is named as itself."""

    kind: Any

    @property
    def expected(self) -> str:
        return f"{self.kind.expected} or null"

    def check(self, value: Any, where: str) -> None:
        if value is None:
            return
        try:
            self.kind.check(value, where)
        except _Bad as bad:
            if bad.where == where:
                bad.expected = self.expected
            raise


def _plural(expected: str) -> str:
    return expected.removeprefix("a ").removeprefix("an ")


def _field(where: str, name: Any) -> str:
    name = str(name)
    step = f".{name}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else f"[{name!r}]"
    return f"{where}{step}" if where else name


# ----------------------------------------------------------------------------- the schema

TEXT = Text()
POSITIVE = Number(above=0, expected="a positive number")
SECONDS = Number(minimum=0, expected="a number of seconds >= 0")
COUNT = Number(minimum=0, integer=True, expected="an integer >= 0")
CPUS = Nullable(Number(minimum=1, integer=True, expected="an integer >= 1"))

# The machine fingerprint's fields (bench.results.machine), in the order machine_id hashes them,
# each with its type: what identifies the hardware, then what a new run records besides
MACHINE_STABLE = {
    **{
        name: TEXT
        for name in ("arch", "cpu_vendor", "cpu_model", "cpu_family", "cpu_model_number", "cpu_stepping", "cpu_cache")
    },
    "isa": ListOf(TEXT),
    **{name: CPUS for name in ("logical_cpus", "physical_cores", "sockets", "usable_cpus")},
    "memory_gib": Nullable(POSITIVE),
    "gpus": ListOf(TEXT),
}
MACHINE_RECORDED = {**MACHINE_STABLE, "kernel": TEXT, "gpu_driver": TEXT}
MACHINE = Fields(
    {
        "machine_id": Text(r".{1,64}", "an id (1 to 64 characters, no control characters)"),
        "fingerprint_version": COUNT,
        **MACHINE_RECORDED,
    },
    required=("machine_id",),
)
ENVIRONMENT = Fields(
    {
        **{name: TEXT for name in ("host", "cpu_model", "gpu_name", "os", "python", "git_commit")},
        "cpu_count": Either((COUNT, Text(r"[0-9]*", "ASCII digits"))),  # written as text ("2")
        "machine": Nullable(MACHINE),
    }
)
ROOFLINE = Fields(
    {
        "peak_gflops": POSITIVE,
        "bandwidth_gbs": POSITIVE,
        "precision_peaks": Nullable(MapOf(POSITIVE)),
    },
    required=("peak_gflops", "bandwidth_gbs"),
)
GROUP = Fields(
    {"group": TEXT, "kind": TEXT, "cases": COUNT, "seconds": SECONDS}, required=("group", "cases", "seconds")
)
DURATIONS = Fields(
    {"artifacts": SECONDS, "roofline": SECONDS, "groups": ListOf(GROUP), "measured": SECONDS},
    required=("groups",),
)
SCHEMA = Fields(
    {
        "run_id": TEXT,
        "environment": ENVIRONMENT,
        "config": Fields({}),
        "columns": ListOf(TEXT),
        "rooflines": MapOf(ROOFLINE),
        DURATIONS_KEY: DURATIONS,
        "single_stream_samples_ms": MapOf(ListOf(POSITIVE)),  # bench.report.plots.SAMPLES_KEY
        "interrupted": Boolean(),
    }
)


# ----------------------------------------------------------------------------- reading


def check_sidecar(sidecar: Any, where: str | os.PathLike) -> dict[str, Any]:
    """``sidecar`` (parsed JSON) if it fits ``SCHEMA``; else SidecarError naming ``where`` and the field."""
    if not isinstance(sidecar, dict):
        raise SidecarError(
            f"{where}: not a deepmnist results sidecar ({type(sidecar).__name__}, not an object)"
        )
    try:
        SCHEMA.check(sidecar, "")
    except _Bad as bad:
        found = "is missing" if bad.missing else f"is {shown(bad.value)}"
        raise SidecarError(f"{where}: {bad.where} {found}; expected {bad.expected}") from None
    return sidecar


def read_sidecar(path: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar of the run ``path`` (the CSV or the ``.json`` itself), checked against ``SCHEMA``;
    None if there is none (runs written before sidecars); SidecarError if it cannot be read or a
    field has the wrong type."""
    path = Path(path).with_suffix(".json")
    try:
        text = read_text_limited(path, "a results sidecar")  # FileTooLarge (exit 2) beyond the limit
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise SidecarError(
            f"{path}: cannot read the results sidecar ({getattr(e, 'strerror', None) or e})"
        ) from None
    try:
        sidecar = json.loads(text)
    except (
        ValueError,
        RecursionError,
    ) as e:  # JSONDecodeError, an integer of over 4,300 digits, deep nesting
        raise SidecarError(f"{path}: cannot read the results sidecar (not JSON: {e})") from None
    return check_sidecar(sidecar, path)
