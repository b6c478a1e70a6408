"""Per-layer attribution of a torch callable's whole-network time (``bench.runtimes.attribution`` explains the
conventions; this is its torch half, imported by the torch runtimes only).

``torch.profiler`` around the calls. An ``nn.Module`` with the network's named submodules gets
forward pre/post hooks that open and close a ``record_function(layer)`` range around each layer;
any other callable (TorchScript, torch.compile) is mapped by execution order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch

from bench.runtimes.attribution import CALL_RANGE, LAYER_SET, WARMUP_CALLS, layer_kind, summarise
from models.layers import LAYER_NAMES, OTHER


def _has_layer_submodules(module: Any) -> bool:
    """An eager module whose layers run as its named submodules, so hooks see each layer. Not a
    ScriptModule (hooks do not run inside TorchScript) nor a torch.compile wrapper (``_orig_mod``:
    the compiled graph replaces the submodule calls)."""
    if not isinstance(module, torch.nn.Module) or isinstance(module, torch.jit.ScriptModule):
        return False
    if hasattr(module, "_orig_mod"):
        return False
    return all(isinstance(getattr(module, name, None), torch.nn.Module) for name in LAYER_NAMES)


class _LayerRanges:
    """Forward pre/post hooks that put each layer's forward in a ``record_function(layer)`` range."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.handles = []
        self.open: list[Any] = []
        for name in LAYER_NAMES:
            sub = getattr(module, name)
            self.handles.append(sub.register_forward_pre_hook(self._enter(name)))
            self.handles.append(sub.register_forward_hook(self._exit))

    def _enter(self, name: str) -> Callable[..., None]:
        def hook(_module: Any, _args: Any) -> None:
            rf = torch.profiler.record_function(name)
            rf.__enter__()
            self.open.append(rf)

        return hook

    def _exit(self, _module: Any, _args: Any, _out: Any) -> None:
        self.open.pop().__exit__(None, None, None)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        while self.open:  # a forward that raised inside a layer
            self.open.pop().__exit__(None, None, None)


def _op_kind(name: str) -> str | None:
    """Kind of an outermost op: "conv", "pool", "fc", "act" (part of the compute op before it) or
    None ("other": flatten / view / dropout / copies)."""
    op = name.rsplit("::", 1)[-1].lower()
    if "pool" in op:  # aten::max_pool2d; before conv: inductor's fused bias+relu+pool kernel
        return "pool"  # "graph_0_cpp_fused_convolution_max_pool2d_with_indices_relu_0" is a pool
    if "conv" in op:  # aten::conv2d, aten::_convolution, mkldnn_convolution, prepacked::conv2d_clamp_run
        return "conv"
    if "linear" in op or op in ("addmm", "mm", "matmul", "bmm"):
        return "fc"
    if op.rstrip("_") in ("relu", "clamp", "clamp_min", "hardtanh", "threshold", "add", "mul"):
        return "act"  # the ReLU, or a bias add that a graph pass split from its matmul
    return None


def _ancestors(event: Any) -> Iterable[Any]:
    while event is not None:
        yield event
        event = event.cpu_parent


def _is_op(event: Any) -> bool:
    """An operator ("aten::addmm", "prepacked::...") or a kernel of torch.compile's generated code
    (recorded when ``torch._inductor.config.cpp.enable_kernel_profile`` is on: "..._cpp_fused_...")."""
    return ("::" in event.name or "_fused_" in event.name) and event.name != CALL_RANGE


def _torch_per_call(events: list[Any], hooked: bool, device_time: bool) -> list[dict[str, float]]:
    cpu_events = [e for e in events if e.device_type == torch.autograd.DeviceType.CPU and not e.is_async]
    calls = sorted((e for e in cpu_events if e.name == CALL_RANGE), key=lambda e: e.time_range.start)
    index = {id(c): i for i, c in enumerate(calls)}
    # Execution-order mapping (no hooks): the layer of each outermost op of each call.
    op_layer: dict[int, str] = {}
    if not hooked:
        outermost: list[list[Any]] = [[] for _ in calls]
        for e in cpu_events:
            chain = list(_ancestors(e))
            if e.name != CALL_RANGE and _is_op(e) and not any(_is_op(a) for a in chain[1:]):
                call = next((a for a in chain if a.name == CALL_RANGE), None)
                if call is not None:
                    outermost[index[id(call)]].append(e)
        layers_of_kind = defaultdict(list)  # "conv" -> ["conv1", "conv2"], ...
        for name in LAYER_NAMES:
            layers_of_kind[layer_kind(name)].append(name)
        for ops in outermost:
            count: dict[str, int] = defaultdict(int)  # compute ops of each kind seen so far
            last: str | None = None  # layer of the last compute op
            for op in sorted(ops, key=lambda e: e.time_range.start):
                kind = _op_kind(op.name)
                layer: str | None = None
                if kind == "act":
                    layer = last
                elif kind is not None:
                    options = layers_of_kind[kind]
                    layer = options[count[kind]] if count[kind] < len(options) else None
                    count[kind] += 1
                    last = layer
                op_layer[id(op)] = layer or OTHER
    per_call: list[dict[str, float]] = [defaultdict(float) for _ in calls]
    for e in cpu_events:
        chain = list(_ancestors(e))
        call = next((a for a in chain if a.name == CALL_RANGE), None)
        if call is None:
            continue  # outside the profiled calls
        if hooked:
            layer = next((a.name for a in chain if a.is_user_annotation and a.name in LAYER_SET), OTHER)
        else:
            layer = next((op_layer[id(a)] for a in chain if id(a) in op_layer), OTHER)
        if device_time:
            # Kernels each op launched; a user range's own device "kernel" is its annotation span.
            us = 0.0 if e.is_user_annotation else e.self_device_time_total
        else:
            us = e.self_cpu_time_total
        per_call[index[id(call)]][layer] += us
    return per_call


def profile_torch(
    module: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    calls: int,
    device: str,
    warmup: int = WARMUP_CALLS,
) -> dict[str, float]:
    """Layer -> ms per call (plus "other" and "total") of a whole-model torch callable on ``x``
    (already on ``device``), under ``torch.inference_mode``: hooks on an eager ``DeepMNIST``,
    execution order for TorchScript or any other callable (see the module docstring)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    if calls < 1:
        raise ValueError(f"calls must be >= 1, got {calls}")
    on_cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if on_cuda else [ProfilerActivity.CPU]
    hooked = _has_layer_submodules(module)
    ranges = _LayerRanges(module) if hooked else None  # type: ignore[arg-type]
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                module(x)
            if on_cuda:
                torch.cuda.synchronize()
            with profile(activities=activities) as prof:
                for _ in range(calls):
                    with record_function(CALL_RANGE):
                        module(x)
                        if on_cuda:
                            torch.cuda.synchronize()  # the call's kernels finish inside its range
    finally:
        if ranges is not None:
            ranges.remove()
    return summarise(_torch_per_call(list(prof.events()), hooked, device_time=on_cuda))
