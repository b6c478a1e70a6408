"""Memory of the current process: resident set now and its peak (Linux ``/proc/self``), CUDA peak.

The peak resident set (``VmHWM``) is the process's since it started: a worker's ``peak_rss_mb``
covers its runtime's import, load, compile and rounds, as the peak of a program using the runtime
would. Without ``/proc`` (not Linux) the columns stay empty.

``RunMemory`` sums the resident sets of a whole run: the parent, its live workers and what they
started (a Node host, a browser).

On CUDA the peak is what torch's caching allocator held (``torch.cuda.max_memory_allocated``),
reset per case with ``torch.cuda.reset_peak_memory_stats``: it covers runtimes that allocate
through torch; runtimes with their own CUDA allocator (ONNX Runtime, TensorRT) are not seen by it,
so their column stays empty.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
_STATUS = Path("/proc/self/status")


def _status_kib(key: str, text: str | None = None) -> int | None:
    """A ``kB`` value of /proc/self/status (``VmRSS``, ``VmHWM``); None where there is no such file."""
    if text is None:
        try:
            text = _STATUS.read_text()
        except OSError:
            return None
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"/proc/self/status: {key} in {unit!r}, expected kB")
            return int(value)
    return None


def rss_mb(status_text: str | None = None) -> float | None:
    """Resident set size now, MiB."""
    kib = _status_kib("VmRSS", status_text)
    return None if kib is None else kib / 1024


def peak_rss_mb(status_text: str | None = None) -> float | None:
    """Peak resident set size since the process started, MiB."""
    kib = _status_kib("VmHWM", status_text)
    return None if kib is None else kib / 1024


def reset_cuda_peak(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()


def cuda_peak_allocated_mb(device: str, peak_bytes: int | None = None) -> float | None:
    """Peak memory torch's CUDA allocator held since ``reset_cuda_peak``, MiB; None off CUDA or when
    the runtime allocated nothing through torch (its own allocator: not seen). ``peak_bytes``: the
    value to convert instead of asking torch (tests without a GPU)."""
    if device != "cuda":
        return None
    if peak_bytes is None:
        import torch

        peak_bytes = torch.cuda.max_memory_allocated()
    return peak_bytes / MIB if peak_bytes > 0 else None


def _proc_kib(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of process ``pid``, KiB; None if it is gone (or a kernel thread)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    rss, hwm = _status_kib("VmRSS", text), _status_kib("VmHWM", text)
    return None if rss is None or hwm is None else (rss, hwm)


def _pss_kib(pid: int) -> int | None:
    """The proportional set size of process ``pid``, KiB: its private pages plus its share of each
    page it shares (a library mapped by n processes counts 1/n in each); None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    return _status_kib("Pss", text)


def descendants(roots: Iterable[int]) -> list[int]:
    """``roots`` and every process started under them (children, grandchildren: a worker's Node host
    or browser), from the parent pids in ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def tree_mb(root: int, include_root: bool = True) -> tuple[float, float] | None:
    """(resident set, sum of each process's peak) of process ``root`` and what it started (or, not
    ``include_root``, of what it started only), MiB; None where ``/proc`` cannot tell. A worker of
    onnxruntime-node or onnxruntime-web keeps its runtime in a Node host or a browser."""
    pids = descendants([root])
    found = [kib for kib in map(_proc_kib, pids if include_root else pids[1:]) if kib is not None]
    if not found:
        return None
    return sum(r for r, _ in found) / 1024, sum(h for _, h in found) / 1024


@dataclass
class RunMemory:
    """The whole run's memory: this process plus every live worker and what it started, summed at
    each sample (``sample``; the driver samples after each command that can change it, never during
    timed rounds). ``peak_mb`` sums proportional set sizes, so that a page shared by several
    processes (torch's libraries, mapped by every torch worker; a browser's processes) counts once
    in all: the memory the run holds. Resident sets count such a page once per process;
    ``rss_peak_mb`` is their sum, an overstatement kept beside it."""

    peak_mb: float = 0.0  # MiB, the largest sum of proportional set sizes: the memory in use
    rss_peak_mb: float = 0.0  # MiB, the largest sum of resident sets (shared pages once per process)
    bound_mb: float = 0.0  # MiB, the largest sum of each live process's own peak resident set
    processes: int = 0  # processes in the peak's sum
    where: str = ""  # what the run was doing at the peak
    samples: int = 0

    def sample(self, workers: Iterable[int], where: str) -> None:
        pids = [os.getpid(), *descendants(workers)]
        found = [
            (kib, pss) for kib, pss in ((_proc_kib(p), _pss_kib(p)) for p in pids) if kib and pss is not None
        ]
        if not found:
            return
        now = sum(pss for _, pss in found) / 1024
        self.samples += 1
        if now > self.peak_mb:
            self.peak_mb, self.processes, self.where = now, len(found), where
        self.rss_peak_mb = max(self.rss_peak_mb, sum(kib[0] for kib, _ in found) / 1024)
        self.bound_mb = max(self.bound_mb, sum(kib[1] for kib, _ in found) / 1024)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"whole-run peak memory: {self.peak_mb:,.0f} MiB in use (proportional set sizes) in "
            f"{self.processes} processes (this one, the live workers and what they started) during "
            f"{self.where}; resident sets summed, shared pages once per process: {self.rss_peak_mb:,.0f} "
            f"MiB; each process's own peak summed: at most {self.bound_mb:,.0f} MiB ({self.samples} samples)"
        )
