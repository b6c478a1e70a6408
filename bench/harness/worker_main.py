"""``python -m bench.harness.worker_main FD``: a worker process, serving commands on the connection at FD.

The first message is the spec, plain Python values only (so that reading it imports nothing):
runtime, the module that has it (``RUNTIMES.module_of``), device, settings, the artifacts folder,
the run's shared data folder, and ``started``, the parent's ``time.time()`` just before it started
this process. The process then imports its runtime before anything of the harness, so the
runtime's import is timed as its user sees it, and only then the harness (``bench.harness.worker``).
The answer ``ready`` carries:

- ``start_s``: process start to the runtime imported and its ``supports`` answered (which imports
  its library): the interpreter's start-up plus the runtime's import, what any program using it
  pays;
- ``harness_s``: the rest of the worker's start, the harness's own (reading the spec, importing the
  harness, opening the manifest and the shared data);
- ``rss_before_runtime_mb``: the resident set before the runtime's import (the baseline of the
  runtime's footprint, ``runtime_rss_mb``).

Nothing but the standard library is imported at module level: what a runtime needs it imports
itself.
"""

from __future__ import annotations

import time

BOOT = time.time()  # the interpreter is up (what every Python program pays before its first line)

import faulthandler  # noqa: E402 - after BOOT, so that it counts as the harness's
import importlib  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from multiprocessing.connection import Connection  # noqa: E402


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the parent dies, even while it is suspended (SIGSTOP)."""
    import ctypes
    import os

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl
        os._exit(1)


def _rss_mb() -> float | None:
    """VmRSS of this process, MiB (``bench.harness.memory.rss_mb``, read here before importing anything)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent ends the run and its workers
    faulthandler.enable()  # a crash leaves its stack in the stderr the parent reads
    _die_with_parent()
    fd = int((argv or sys.argv[1:])[0])
    conn = Connection(fd)
    spec = conn.recv()
    sys.path[:0] = [p for p in spec["sys_path"] if p not in sys.path]
    rss_before = _rss_mb()
    start = time.perf_counter()
    importlib.import_module(spec["module"])  # the runtime's adapter (or a plugin, which registers it)
    from bench.runtimes import RUNTIMES

    reason = RUNTIMES[spec["runtime"]].supports(spec["device"])
    runtime_s = time.perf_counter() - start
    # the harness, after the runtime: imports deliberately inside main (module docstring)
    from bench.harness.shared_data import SharedData
    from bench.harness.worker import Settings, Worker, serve
    from bench.runtimes import Artifacts
    from exporters.manifest import load_manifest

    artifacts = Artifacts(load_manifest(spec["export_dir"]), root=spec["artifacts"])
    worker = Worker(
        spec["runtime"],
        spec["device"],
        Settings(**spec["settings"]),
        artifacts,
        SharedData(spec["data"]),
        rss_before_runtime=rss_before,
    )
    boot_s = BOOT - spec["started"]
    conn.send(
        {
            "start_s": boot_s + runtime_s,
            "harness_s": time.time() - spec["started"] - boot_s - runtime_s,
            "rss_before_runtime_mb": rss_before,
            "unsupported": reason,
        }
    )
    return serve(worker, conn)


if __name__ == "__main__":
    raise SystemExit(main())
