"""Launchers: where a runtime's worker lives. Both answer ``call(message, timeout) -> reply``.

- ``ProcessWorker`` (``--launcher process``, the default): a fresh interpreter per runtime x
  device (``python -m bench.harness.worker_main``: spawned, nothing inherited but the connection),
  importing only its runtime and the harness's torch-free worker. Between commands it is suspended (SIGSTOP to its process group: the worker
  and what it started, a Node host or a browser), so while one worker is timed no other can use a
  CPU: not its spinning thread pool, not its allocator's background threads, not its browser.
  Each command must be answered within ``timeout`` s, else the worker is killed (``timeout``); a
  worker that dies (signal, exit code, killed for memory) is reported with the end of its stderr
  (``crashed``). Either way ``WorkerGone`` is raised and the other workers go on.
- ``InlineWorker`` (``--launcher inline``): the same ``Worker`` in this process, as before
  workers existed: for debugging, and to show what isolation changes. No timeouts, no crash
  survival (a crash takes the run with it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.harness.gone import WorkerGone
from bench.harness.memory import RunMemory

STDERR_LINES = 8  # lines of a dead worker's stderr kept in its rows' reason
STARTUP_TIMEOUT = 300.0  # s for a worker to import its runtime and load the test data
UNSAMPLED = ("round", "ping")  # commands after which the run's memory is not sampled (the rounds' own)


def describe_exit(code: int) -> str:
    """``killed by signal 11 (SIGSEGV)`` for a negative Popen return code, else ``exit code N``."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-code} ({name})"
    return f"exit code {code}"


class InlineWorker:
    """A ``bench.harness.worker.Worker`` in this process."""

    start_s = harness_s = None  # not a fresh process

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.alive = True

    def call(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        return self.worker.handle(message)

    def close(self, kill: bool = False) -> None:
        self.alive = False


class ProcessWorker:
    """A worker process, started now; suspended whenever it is not answering a command."""

    def __init__(self, spec: dict[str, Any], log_dir: str | os.PathLike, startup_timeout: float) -> None:
        ours, theirs = socket.socketpair()
        self.log = Path(log_dir) / f"{spec['runtime']}-{spec['device']}-{os.getpid()}-{id(self)}.log"
        self.alive, self.stopped = False, False
        with open(self.log, "wb") as log, theirs:
            spec = {**spec, "started": time.time()}
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.harness.worker_main", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the parent only; it ends the workers
            )
        self.alive = True
        self.conn = Connection(ours.detach())
        self.conn.send(spec)
        ready = self._receive(startup_timeout, "starting")
        self.start_s: float = ready["start_s"]
        self.harness_s: float = ready["harness_s"]
        self.unsupported: str | None = ready["unsupported"]
        self._suspend()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def call(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        if not self.alive:
            raise RuntimeError("call on a worker that is gone")
        self._resume()
        try:
            self.conn.send(message)
        except OSError:
            self._receive(timeout, message["op"])  # raises WorkerGone with the exit status
        reply = self._receive(timeout, message["op"])
        self._suspend()
        return reply

    def stream(self, message: dict[str, Any], talk: Any, timeout: float) -> tuple[Any, dict[str, Any]]:
        """Send ``message``, then let ``talk(conn)`` exchange messages with the worker (the server
        scenario's load generator), then read the worker's closing answer; (talk's result, answer)."""
        if not self.alive:
            raise RuntimeError("call on a worker that is gone")
        self._resume()
        try:
            self.conn.send(message)
            result = talk(self.conn)
        except (EOFError, OSError):
            self._receive(timeout, message["op"])  # raises WorkerGone with the exit status
            raise
        except Exception as e:  # mid-protocol (the worker failed, results late): it cannot go on
            self._kill()
            status = "timeout" if isinstance(e, TimeoutError) else "failed"
            raise WorkerGone(status, f"{message['op']}: {type(e).__name__}: {e}; worker killed") from None
        reply = self._receive(timeout, message["op"])
        self._suspend()
        return result, reply

    def _receive(self, timeout: float, what: str) -> dict[str, Any]:
        if not self.conn.poll(timeout):
            self._kill()
            raise WorkerGone(
                "timeout", f"worker gave no answer to {what!r} within {timeout:g} s (--case-timeout); killed"
            )
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            code = self.proc.wait()
            self.alive = False
            self.conn.close()
            tail = " | ".join(self.stderr_tail())
            reason = f"worker {describe_exit(code)} during {what!r}"
            raise WorkerGone("crashed", f"{reason}; stderr: {tail}" if tail else reason) from None

    def stderr_tail(self, lines: int = STDERR_LINES) -> list[str]:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return []
        kept = [line.strip()[:200] for line in text.splitlines() if line.strip()]
        kept = [line for line in kept if not line.startswith("Extension modules:")]  # faulthandler's list
        fatal = [i for i, line in enumerate(kept) if line.startswith("Fatal Python error")]
        if fatal:  # faulthandler's report: the error, then the stack, innermost frame first
            return kept[fatal[-1] : fatal[-1] + lines]
        return kept[-lines:]

    def _signal_group(self, sig: int) -> None:
        """``sig`` to the worker's process group (its own: ``start_new_session``), so that the
        processes it started (Node, chromedriver and the browser) stop and go on with it."""
        with contextlib.suppress(ProcessLookupError):  # the group is gone: the worker and its children ended
            os.killpg(self.proc.pid, sig)

    def _suspend(self) -> None:
        if self.alive and not self.stopped:
            self._signal_group(signal.SIGSTOP)
            self.stopped = True

    def _resume(self) -> None:
        if self.alive and self.stopped:
            self._signal_group(signal.SIGCONT)
            self.stopped = False

    def _kill(self) -> None:
        if self.alive:
            self._signal_group(signal.SIGKILL)  # ends suspended processes too, and the worker's children
            self.proc.wait()
            self.alive = False
            self.conn.close()

    def close(self, kill: bool = False) -> None:
        """End the worker: ask it to exit (or, ``kill``, SIGKILL it at once)."""
        if not self.alive:
            return
        if not kill:
            try:
                self._resume()
                self.conn.send({"op": "exit"})
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._signal_group(signal.SIGKILL)  # what the worker started and left behind (a browser)
        self.alive = False
        self.conn.close()


class Launcher:
    """Starts and ends the workers of one run: one per (runtime, device, thread count), started when
    first needed, one at a time (the others suspended), so each cold start is measured alone, and
    ended (``end``) when the driver is done with them. ``threads`` 0 is the run's only thread
    count (``--threads`` with one value)."""

    def __init__(
        self, kind: str, make_inline: Any = None, spec: Any = None, owns: Any = None, data: Any = None
    ) -> None:
        self.kind = kind
        self.make_inline, self.spec = make_inline, spec  # (runtime, device) -> Worker / spec dict
        self.owns = owns  # a TemporaryDirectory the workers read (the shared data): removed at close
        self.data = data  # the run's bench.harness.shared_data.SharedData, in ``owns``
        self.memory = RunMemory()  # this process and the live workers, sampled after their commands
        self.workers: dict[tuple[str, str, int], InlineWorker | ProcessWorker] = {}
        self.gone: dict[tuple[str, str, int], WorkerGone] = {}
        self._logs = tempfile.TemporaryDirectory(prefix="deepmnist-workers-") if kind == "process" else None

    def worker(self, runtime: str, device: str, threads: int = 0) -> InlineWorker | ProcessWorker:
        """The live worker of (runtime, device, threads), started now if new; WorkerGone if it died."""
        key = (runtime, device, threads)
        if key in self.gone:
            raise self.gone[key]
        if key not in self.workers:
            try:
                if self.kind == "inline":
                    self.workers[key] = InlineWorker(self.make_inline(runtime, device))
                else:
                    assert self._logs is not None
                    self.workers[key] = ProcessWorker(
                        self.spec(runtime, device), self._logs.name, STARTUP_TIMEOUT
                    )
            except WorkerGone as e:
                self.gone[key] = e
                raise
            self.sample_memory(f"the start of {runtime}/{device}")
        return self.workers[key]

    def sample_memory(self, where: str) -> None:
        """Add a sample of the run's resident memory (``RunMemory``): this process, each live worker
        process and what it started."""
        self.memory.sample([w.pid for w in self.workers.values() if isinstance(w, ProcessWorker)], where)

    def call(
        self, runtime: str, device: str, message: dict[str, Any], timeout: float, threads: int = 0
    ) -> dict[str, Any]:
        key = (runtime, device, threads)
        worker = self.worker(runtime, device, threads)
        try:
            reply = worker.call(message, timeout)
        except WorkerGone as e:
            self.gone[key] = e
            del self.workers[key]
            raise
        if message["op"] not in UNSAMPLED:
            case = message.get("case_id") or getattr(message.get("case"), "id", "")
            self.sample_memory(f"{message['op']} {case}".strip())
        return reply

    def stream(
        self, runtime: str, device: str, message: dict[str, Any], talk: Any, timeout: float, threads: int = 0
    ) -> tuple[Any, dict[str, Any]]:
        """``ProcessWorker.stream`` on the worker of (runtime, device, threads); process workers only."""
        key = (runtime, device, threads)
        worker = self.worker(runtime, device, threads)
        if not isinstance(worker, ProcessWorker):
            raise TypeError("streaming needs a worker process (--launcher process)")
        try:
            return worker.stream(message, talk, timeout)
        except WorkerGone as e:
            self.gone[key] = e
            del self.workers[key]
            raise

    def end(self, runtime: str, device: str, threads: int = 0) -> None:
        """Close the worker of (runtime, device, threads), if it is alive: the next call starts a
        fresh one. (A worker that died stays gone: its later cases get its crash row.)"""
        worker = self.workers.pop((runtime, device, threads), None)
        if worker is not None:
            worker.close()

    def close(self, kill: bool = False) -> None:
        for worker in self.workers.values():
            worker.close(kill=kill)
        self.workers.clear()
        if self._logs is not None:
            self._logs.cleanup()
        if self.owns is not None:
            self.owns.cleanup()
