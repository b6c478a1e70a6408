"""The one clock: ``time.perf_counter`` on the CPU, CUDA events that synchronise on CUDA.

A difference of two readings of ``clock_for(device)`` is seconds; on CUDA it spans all GPU work
queued between the two readings (each reading records an event and waits for it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

_cuda_base: list[Any] = []  # the first event recorded: readings are seconds since it


def cuda_event_clock() -> float:
    """Seconds since the first call, from CUDA events on the current stream; synchronises, so a
    difference of two calls spans all GPU work queued between them (the timer for CUDA cases)."""
    import torch

    event = torch.cuda.Event(enable_timing=True)
    event.record()
    event.synchronize()
    if not _cuda_base:
        _cuda_base.append(event)
        return 0.0
    return _cuda_base[0].elapsed_time(event) / 1e3  # elapsed_time is in ms


def clock_for(device: str) -> Callable[[], float]:
    """The clock for ``device`` ("cpu", "cuda" or "cuda:N"; the events use the current device)."""
    return cuda_event_clock if device.split(":")[0] == "cuda" else time.perf_counter
