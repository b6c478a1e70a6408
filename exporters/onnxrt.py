"""The one place ONNX Runtime sessions are set up (the exporter, the benchmark, the tools).

``session_options``: errors only on stderr (a user's model or an NCHWc-optimized graph would warn
otherwise), ``threads`` intra-op threads with one inter-op thread (the operators run one after
another, so an inter-op pool would only spin), the graph optimization level by its
``GraphOptimizationLevel`` name and session config entries. ``cpu_session``: a session on the
CPU provider with those options.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

LOG_ERRORS_ONLY = 3  # ORT's log severity: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal


def session_options(
    threads: int | None = None,
    optimization: str = "ORT_ENABLE_ALL",
    config: Mapping[str, str] | None = None,
) -> Any:
    """``onnxruntime.SessionOptions``; ``threads`` None (or 0) keeps ORT's default thread pools."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = LOG_ERRORS_ONLY
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, optimization)
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    return options


def cpu_session(model: str | Path | bytes, threads: int | None = None, options: Any = None) -> Any:
    """An ``InferenceSession`` of ``model`` (a path or the model's bytes) on the CPU provider, with
    ``options`` or else ``session_options(threads)``."""
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(
        source, options or session_options(threads), providers=["CPUExecutionProvider"]
    )
