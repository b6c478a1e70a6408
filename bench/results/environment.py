"""Where a run happened: host, CPU, GPU, OS, library versions, the git commit and the machine.

Every value is a string, except ``machine`` (the fingerprint, ``bench.results.machine.collect_machine``),
and nothing here raises: what cannot be found becomes "". Fast (well under a second once torch is
imported, as it is in the harness; the first import of torch itself takes about a second).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any
from bench.results.machine import collect_machine

_REPO_DIR = Path(__file__).resolve().parent


def _safe(get: Callable[[], object]) -> str:
    try:
        value = get()
    except Exception:
        return ""
    return "" if value is None else str(value).strip()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor()


def _version(*distributions: str) -> str:
    """Installed version of the first of ``distributions`` present (one package, several wheels)."""
    for name in distributions:
        if version := _safe(lambda name=name: metadata.version(name)):
            return version
    return ""


def _git(*args: str) -> str:
    # --no-optional-locks: a read-only status never rewrites the index
    out = subprocess.run(
        ["git", "--no-optional-locks", "-C", str(_REPO_DIR), *args],
        capture_output=True,
        text=True,
        timeout=5,
        check=True,
    )
    return out.stdout


def _git_commit() -> str:
    # A copy of the tree on another machine (a lent GPU machine) may carry no .git or a stale one:
    # the caller who made the copy says which commit it is.
    if given := os.environ.get("DEEPMNIST_GIT_COMMIT"):
        return given
    commit = _safe(lambda: _git("rev-parse", "HEAD"))
    if not commit:
        return ""
    dirty = _safe(lambda: _git("status", "--porcelain", "--untracked-files=no"))
    return f"{commit}-dirty" if dirty else commit


def _torch_cuda() -> tuple[str, str]:
    """(GPU name or "", CUDA version torch was built with or "")."""
    try:
        import torch
    except Exception:
        return "", ""
    gpu = _safe(lambda: torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
    return gpu, _safe(lambda: torch.version.cuda)


def collect_environment() -> dict[str, Any]:

    gpu_name, cuda_version = _torch_cuda()
    return {
        "host": _safe(socket.gethostname),
        "cpu_model": _safe(_cpu_model),
        "cpu_count": _safe(os.cpu_count),
        "gpu_name": gpu_name,
        "os": _safe(platform.platform),
        "python": _safe(platform.python_version),
        "torch_version": _version("torch"),
        "onnxruntime_version": _version("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
        "onnx_version": _version("onnx"),
        "git_commit": _git_commit(),
        "cuda_version": cuda_version,
        "machine": collect_machine(),
    }
