"""Memory of the current process: resident set now and its peak (Linux ``/proc/self``), CUDA peak.

The peak resident set (``VmHWM``) is reset per case by writing ``5`` to ``/proc/self/clear_refs``
(Linux >= 4.0), so each case's ``peak_rss_mb`` covers only its own rounds. Where that file cannot
be written (not Linux, a locked-down container), ``reset_peak_rss`` returns False and the harness
leaves the column empty rather than report the process's lifetime peak as the case's.

On CUDA the peak is what torch's caching allocator held (``torch.cuda.max_memory_allocated``),
reset per case with ``torch.cuda.reset_peak_memory_stats``: it covers runtimes that allocate
through torch; runtimes with their own CUDA allocator (ONNX Runtime, TensorRT) are not seen by it,
so their column stays empty.
"""

from __future__ import annotations

from pathlib import Path

MIB = 1024 * 1024
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


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
    """Peak resident set size since the process started or the last ``reset_peak_rss``, MiB."""
    kib = _status_kib("VmHWM", status_text)
    return None if kib is None else kib / 1024


def reset_peak_rss() -> bool:
    """Set the peak resident set to the current one; False if this system does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


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
