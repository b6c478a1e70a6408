"""Bare programs: what a user of one runtime would write to get one result, with nothing of the harness.

The self-check compares a worker's cold start and memory with such a program (``bench.checks.selfcheck``):
it imports only the runtime's library (and NumPy, to read the input), loads the same file the
worker's ``prepare`` loads with the same settings, makes one call on the same input, and prints
one JSON line: ``at`` (``time.time()`` just after the first result), its resident set before the
runtime's import and after the call, and its peak (KiB, ``/proc/self/status``). An adapter that
can be written so has ``bare`` (``bench.runtimes.base.HasBare``), which returns the program's argv;
its body is the adapter's, the frame around it (``python_program``, ``node_program``) is here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import Any

from models.paths import REPO_ROOT

_PROLOGUE = """\
import json, time
def _kib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
_before = _kib("VmRSS")
"""
_EPILOGUE = """
_at = time.time()
print(json.dumps({"at": _at, "rss_before_kib": _before, "rss_kib": _kib("VmRSS"), "peak_kib": _kib("VmHWM")}))
"""


def python_program(body: str, **values: Any) -> list[str]:
    """argv of this interpreter running ``body`` (the runtime's import, load and one call, ending with
    the first result) between the frame's prologue and epilogue, with ``values`` bound as names."""
    bound = "".join(f"{name} = {value!r}\n" for name, value in values.items())
    return [sys.executable, "-c", _PROLOGUE + bound + textwrap.dedent(body).strip() + "\n" + _EPILOGUE]


def node_program(body: str, **values: Any) -> list[str]:
    """argv of Node running ``body`` (an async function body: require, load, one call) in the same
    frame, from the checkout (where ``node_modules`` is). Node is the runtime's host, all of it
    the runtime's footprint (as the harness counts a Node host), so "before" is 0."""
    kib = (
        "const _kib = (key) => Number(require('fs').readFileSync('/proc/self/status', 'utf8')"
        ".split('\\n').find((l) => l.startsWith(key + ':')).split(/\\s+/)[1]);\n"
    )
    bound = "".join(f"const {name} = {json.dumps(value)};\n" for name, value in values.items())
    script = (
        f"{kib}{bound}(async () => {{\n{textwrap.dedent(body).strip()}\n"
        "const _at = Date.now() / 1000;\n"
        "console.log(JSON.stringify({at: _at, rss_before_kib: 0, rss_kib: _kib('VmRSS'), "
        "peak_kib: _kib('VmHWM')}));\n})();\n"
    )
    return ["node", "-e", script]


@dataclass(frozen=True)
class BareResult:
    time_to_first_result_s: float  # its start (just before the process was started) to the first result
    runtime_rss_mb: float  # resident set after the call minus before the runtime's import, MiB
    peak_rss_mb: float  # the process's peak resident set, MiB


def run_bare(argv: list[str], timeout: float = 600.0) -> BareResult:
    """Start the bare program ``argv`` now, wait for it, read its line; RuntimeError with the end of
    its stderr if it failed."""
    started = time.time()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])[:300]
        raise RuntimeError(f"the bare program failed (exit code {proc.returncode}): {tail}")
    out = json.loads(lines[-1])
    return BareResult(
        time_to_first_result_s=out["at"] - started,
        runtime_rss_mb=(out["rss_kib"] - out["rss_before_kib"]) / 1024,
        peak_rss_mb=out["peak_kib"] / 1024,
    )
