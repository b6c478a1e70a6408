"""The one device check: which devices this harness knows and whether this machine has them.

``check_device`` answers with the reason a device cannot be used (None when it can), the skip
reason of the matrix; ``require_device`` raises it instead, for the measuring tools.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

NO_CUDA = "no CUDA device (torch.cuda.is_available() is False)"


@cache
def cuda_unavailable_reason() -> str | None:
    import torch

    return None if torch.cuda.is_available() else NO_CUDA


def check_device(device: str) -> str | None:
    """None when ``device`` ("cpu", "cuda" or "cuda:N") can be used here, else why not."""
    kind = device.split(":")[0]
    if kind == "cpu":
        return None
    if kind == "cuda":
        return cuda_unavailable_reason()
    return f"unknown device {device!r}; choose cpu or cuda"


def require_device(device: str) -> torch.device:
    """``torch.device(device)``; ValueError for an unknown device, RuntimeError without CUDA."""
    import torch

    reason = check_device(device)
    if reason == NO_CUDA:
        raise RuntimeError(reason)
    if reason:
        raise ValueError(reason)
    return torch.device(device)
