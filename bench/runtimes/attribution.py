"""Per-layer attribution of whole-network time: where one call of the whole model spends its time.

Each runtime's own profiler runs the whole network on one batch for ``calls`` calls (after a few
untimed warm-up calls); every profiled op or graph node is mapped back to one of the layers
``conv1, pool1, conv2, pool2, fc1, fc2`` (``models.network.LAYER_NAMES``) or to ``"other"``. The
result is layer -> ms per call: the median over the profiled calls of that layer's time in each
call (robust to the odd preempted call on a busy machine), plus ``"other"`` and
``"total"`` (the sum of all the others).

Conventions, the same for every runtime:

- A conv or fc layer includes its ReLU (as ``models.network``'s ``ConvReLU`` / ``LinearReLU``).
- ``flatten`` and ``dropout`` are not layers: their ops (Reshape / Flatten / view, Identity /
  dropout) go to ``"other"``, as does time not inside any layer (the framework's own overhead
  between ops that the profiler records, e.g. the TorchScript interpreter or an ORT node the
  mapping cannot place).
- Glue the runtime inserts (ORT's NCHWc layout reorders, QuantizeLinear / DequantizeLinear of an
  int8 model) goes to the layer whose output it reads; on the graph input (no producer) to the
  layer that consumes it.
- Times are the profiler's: on CPU the op's self CPU time on the calling thread (it includes
  waiting for the intra-op worker threads); on CUDA (torch) the device time of the kernels each
  op launched. The profiled total is therefore close to, not equal to, an unprofiled wall time:
  the profiler adds a little per op, and the runtime's per-call overhead outside recorded ops
  (Python, ORT's session.run bookkeeping) is in neither.

onnxruntime: the session runs with ``SessionOptions.enable_profiling`` (thread settings as
``bench.runtimes.onnxruntime_rt``) and also writes its optimized graph; both go to a temporary
folder that is deleted. ``"Node"`` events (``dur`` in microseconds) name nodes of the optimized
graph; ``_OnnxLayerMap`` maps each one back (see there).

torch: ``torch.profiler`` around the calls. An ``nn.Module`` with the network's named submodules
gets forward pre/post hooks that open and close a ``record_function(layer)`` range around each
layer; an op belongs to the layer whose range is among its ancestors in the profiler's event
tree. A TorchScript module (no hooks run inside it) or any other callable is mapped by execution
order: the outermost ops of a call are classified as conv / pool / fc (linear, addmm, matmul)
and the k-th conv is the k-th conv layer (conv1, conv2), likewise for pools and fc layers; an
activation or bias op (relu, clamp, add, mul) belongs to the compute op before it; anything else
(flatten, view, dropout) goes to ``"other"``. Ops nested in an outermost op (aten::conv2d ->
aten::mkldnn_convolution) belong to its layer. A torch.compile module is mapped by order too;
its fused C++ kernels are only visible with ``torch._inductor.config.cpp.enable_kernel_profile``
set before compiling (a fused bias+ReLU+pool kernel counts as the pool), else their time is in
``"other"``.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.layers import LAYER_NAMES, OTHER

TOTAL = "total"
CALL_RANGE = "deepmnist::call"  # record_function range around each profiled call
WARMUP_CALLS = 3

LAYER_SET = frozenset(LAYER_NAMES)
# A layer name as a scope component: "/conv1/conv1.0/Conv", "fc1.0.weight", "conv2.0.bias_quantized";
# not inside a longer word ("node_conv2d" is no conv2).
_SCOPE_RE = re.compile(r"(?:^|[/.\s])(" + "|".join(map(re.escape, LAYER_NAMES)) + r")(?=[/.:]|$)")
# Ops that only re-view or pass a tensor through: flatten and (inference) dropout -> "other".
_PASSTHROUGH_OPS = frozenset({"Reshape", "Flatten", "Identity", "Dropout", "Squeeze", "Unsqueeze"})


def layer_kind(name: str) -> str:
    """The kind of a layer name: conv1 -> conv, pool2 -> pool, fc1 -> fc."""
    return name.rstrip("0123456789")


def _next_layer_of_kind(kind: str, after: str | None) -> str | None:
    """The first layer of ``kind`` after layer ``after`` (or the first one when ``after`` is None)."""
    start = LAYER_NAMES.index(after) + 1 if after in LAYER_SET else 0
    return next((n for n in LAYER_NAMES[start:] if layer_kind(n) == kind), None)


def summarise(per_call: list[dict[str, float]]) -> dict[str, float]:
    """Per-call {layer: us} -> {layer: median ms per call, ..., "other", "total"}."""
    if not per_call:
        raise RuntimeError("the profile holds no complete call")
    out = {}
    for name in (*LAYER_NAMES, OTHER):
        out[name] = statistics.median(call.get(name, 0.0) for call in per_call) / 1e3  # us -> ms
    out[TOTAL] = sum(out.values())
    return out


# ----------------------------------------------------------------------------- onnxruntime


def _scope_layer(text: str) -> str | None:
    match = _SCOPE_RE.search(text)
    return match.group(1) if match else None


def _metadata_layer(node: Any) -> str | None:
    """The layer recorded by the exporter (torch.onnx dynamo: ``pkg.torch.onnx.name_scopes`` =
    "['', 'conv1', 'conv1.0', 'conv2d']"): the first scope that is a layer; "other" for a node in
    other scopes only (flatten, dropout, a wrapper's preprocessing); None without metadata."""
    props = {p.key: p.value for p in node.metadata_props}
    parts: list[str] = []
    if scopes := props.get("pkg.torch.onnx.name_scopes"):
        try:
            parts = [str(p) for p in ast.literal_eval(scopes) if p]
        except (ValueError, SyntaxError):
            parts = []
    elif namespace := props.get("namespace"):
        # ": models.network.DeepMNIST/conv1: models.network.ConvReLU/conv1.0: ..."
        parts = [m.split(".")[0] for m in re.findall(r"/([A-Za-z_][\w.]*):", namespace)]
    if not parts:
        return None
    # A wrapper module adds scopes above the network's: "net", "net.conv1", "net.conv1.0", "conv2d".
    return next((c for p in parts for c in p.split(".") if c in LAYER_SET), OTHER)


class _OnnxLayerMap:
    """Maps node names of an ORT-optimized graph back to layers of the exported model.

    1. The exported graph: each node's layer from the exporter's scope metadata, else a layer
       scope in its name ("/conv1/conv1.0/Conv"), else its weights' names ("conv1.0.weight"),
       else propagation (below). This gives layer of every original node, tensor and initializer.
    2. The optimized graph (``optimized_model_filepath``; its nodes are what the profile names).
       For each node, in order: its own metadata or scoped name; a layer-scoped weight among its
       inputs ("fc1.0.weight", "conv2.0.weight_quantized"); same name as an original node; an
       output tensor that the original graph produced ("relu_2" -> fc1); its name starting with
       an original tensor or node name (ORT names new nodes after what they replace:
       "relu_1_nchwc" -> the tensor "relu_1" -> conv2); an initializer used by one layer only.
    3. Propagation, for nodes still unplaced, in topological order: Reshape / Flatten / Identity /
       Dropout -> "other"; a pooling op -> the first pool layer after its producer's layer; any
       other op (layout reorders, Quantize/DequantizeLinear, a lone Relu) -> its producer's layer;
       if it reads only the graph input, its consumer's layer; else "other".
    """

    def __init__(self, original: Any, optimized: Any | None) -> None:
        self.orig_node: dict[str, str] = {}  # original node name -> layer
        self.orig_tensor: dict[str, str] = {}  # original tensor (node output) name -> layer
        self.orig_init: dict[str, str] = {}  # original initializer -> layer, when used by one layer
        self.layer: dict[str, str] = {}  # optimized node name (as the profile names it) -> layer
        self._map_original(original.graph)
        if optimized is not None:
            layers = self._map_graph(optimized.graph, self._direct_optimized)
            for node, layer in zip(optimized.graph.node, layers, strict=True):
                # The profile names nodes by name: one shared by nodes of two layers is ambiguous.
                self.layer[node.name] = layer if self.layer.get(node.name, layer) == layer else OTHER

    def _map_original(self, graph: Any) -> None:
        users: dict[str, set[str]] = defaultdict(set)
        inits = {i.name for i in graph.initializer}
        for node, layer in zip(graph.node, self._map_graph(graph, self._direct_original), strict=True):
            if node.name:
                self.orig_node[node.name] = layer
            for out in node.output:
                self.orig_tensor[out] = layer
            for name in node.input:
                if name in inits:
                    users[name].add(layer)
        self.orig_init = {k: next(iter(v)) for k, v in users.items() if len(v) == 1 and v <= LAYER_SET}

    @staticmethod
    def _weight_layer(node: Any, inits: set[str]) -> str | None:
        for name in node.input:
            if name in inits and (layer := _scope_layer(name)):
                return layer
        return None

    def _direct_original(self, node: Any, inits: set[str]) -> str | None:
        return _metadata_layer(node) or _scope_layer(node.name) or self._weight_layer(node, inits)

    def _direct_optimized(self, node: Any, inits: set[str]) -> str | None:
        if layer := _metadata_layer(node) or _scope_layer(node.name) or self._weight_layer(node, inits):
            return layer
        if node.name in self.orig_node:
            return self.orig_node[node.name]
        for out in node.output:
            if out in self.orig_tensor:
                return self.orig_tensor[out]
        if layer := self._prefix_layer(node.name):
            return layer
        used = {self.orig_init[name] for name in node.input if name in self.orig_init}
        return next(iter(used)) if len(used) == 1 else None

    def _prefix_layer(self, name: str) -> str | None:
        """Layer of the longest original tensor/node name that ``name`` (or a word of it) starts
        with, followed by "_" or the end: "max_pool2d_1_nchwc" -> "max_pool2d_1" -> pool2."""
        known = {**self.orig_tensor, **self.orig_node}
        best = ""
        for word in name.split():
            for key in known:
                if len(key) > len(best) and (word == key or word.startswith(key + "_")):
                    best = key
        return known[best] if best else None

    @staticmethod
    def _map_graph(graph: Any, direct: Callable[[Any, set[str]], str | None]) -> list[str]:
        """The layer of each node of ``graph``, in graph order (rules 1-2 by ``direct``, then 3)."""
        nodes = list(graph.node)  # ONNX stores them in topological order; names may be empty
        inits = {i.name for i in graph.initializer}
        layers: list[str | None] = [direct(n, inits) for n in nodes]
        producer = {out: i for i, n in enumerate(nodes) for out in n.output}
        consumers: dict[str, list[int]] = defaultdict(list)
        for i, n in enumerate(nodes):
            for name in n.input:
                consumers[name].append(i)

        def producer_layer(node: Any) -> str | None:
            found = [layers[producer[name]] for name in node.input if name in producer]
            return next((layer for layer in found if layer is not None), None)

        for i, node in enumerate(nodes):
            if layers[i] is not None:
                continue
            if node.op_type in _PASSTHROUGH_OPS:
                layers[i] = OTHER
            elif "Pool" in node.op_type:  # MaxPool, NhwcMaxPool, QLinearAveragePool, ...
                layers[i] = _next_layer_of_kind("pool", producer_layer(node))
            else:
                layers[i] = producer_layer(node)
        for i in reversed(range(len(nodes))):  # nodes on the graph input: the consumer's layer
            if layers[i] is None:
                after = [layers[c] for out in nodes[i].output for c in consumers[out]]
                layers[i] = next((layer for layer in after if layer is not None), None)
        return [layer or OTHER for layer in layers]

    def __call__(self, node_name: str) -> str:
        if node_name in self.layer:
            return self.layer[node_name]
        # No optimized graph (an EP that cannot serialise it): name-based rules only.
        return (
            _scope_layer(node_name) or self.orig_node.get(node_name) or self._prefix_layer(node_name) or OTHER
        )


def _load_onnx(source: str | Path | bytes) -> Any:
    import onnx

    if isinstance(source, bytes):
        return onnx.load_from_string(source)
    return onnx.load(str(source), load_external_data=False)


# Session config entries copied from a given session (the variants of bench.runtimes.onnxruntime_rt).
_COPIED_CONFIG = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")
# Providers whose optimized graph ORT can write out (TensorRT compiles the graph into engine nodes,
# which cannot be serialised; their profile then has one node for the whole network -> "other").
_SERIALISABLE = frozenset({"CPUExecutionProvider", "CUDAExecutionProvider"})


def _provider_list(session: Any) -> list[Any]:
    """The providers (with their options) a session was made with, in priority order."""
    options = session.get_provider_options()
    return [(p, options.get(p, {})) for p in session.get_providers()]


def profile_onnxruntime(
    model: str | Path | bytes,
    x: np.ndarray,
    calls: int,
    threads: int,
    warmup: int = WARMUP_CALLS,
    like: Any = None,
) -> dict[str, float]:
    """Layer -> ms per call (plus "other" and "total") of the whole model under onnxruntime.

    ``model``: an ``.onnx`` path or the model's bytes. ``like``: None (the CPU provider,
    ORT_ENABLE_ALL) or an InferenceSession of the same model: its providers (with their options),
    optimization level and thread-spinning settings are reused in a new, profiling session (a
    session cannot start profiling after it was made). ``x``: the host input, e.g. float32
    (N, 1, 28, 28); on a CUDA provider ``session.run`` copies it to the device. ``threads``:
    intra-op threads (0 = ORT's default), as ``bench.runtimes.onnxruntime_rt``."""
    import onnxruntime as ort

    # deliberate: a worker carries only its runtime; profiling loads when a profile is asked for
    from exporters.onnxrt import session_options

    if calls < 1:
        raise ValueError(f"calls must be >= 1, got {calls}")
    providers: list[Any] = ["CPUExecutionProvider"]
    options = session_options(threads)
    if like is not None:
        given = like.get_session_options()
        providers = _provider_list(like)
        options = session_options(threads, given.graph_optimization_level.name)
        for key in _COPIED_CONFIG:
            with contextlib.suppress(RuntimeError):  # what ORT raises for a key never set
                options.add_session_config_entry(key, given.get_session_config_entry(key))
    source = model if isinstance(model, bytes) else str(model)
    names = {p if isinstance(p, str) else p[0] for p in providers}
    with tempfile.TemporaryDirectory(prefix="deepmnist-ort-profile-") as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort_profile")
        optimized_path = Path(tmp) / "optimized.onnx"
        if names <= _SERIALISABLE:
            options.optimized_model_filepath = str(optimized_path)
        session = ort.InferenceSession(source, options, providers=providers)
        feed = {session.get_inputs()[0].name: x}
        for _ in range(warmup + calls):
            session.run(None, feed)
        trace = json.loads(Path(session.end_profiling()).read_text())
        optimized = _load_onnx(optimized_path) if optimized_path.is_file() else None
        mapper = _OnnxLayerMap(_load_onnx(source), optimized)
    return summarise(_ort_per_call(trace, mapper, warmup))


def _ort_per_call(trace: list[dict[str, Any]], mapper: _OnnxLayerMap, warmup: int) -> list[dict[str, float]]:
    """Per profiled model_run: layer -> microseconds, from the "Node" kernel events inside it.

    ORT builds with CUDA profiling (``--enable_cuda_profiling``) also write "Kernel" events (device
    time), each listed after the "Node" event that launched it; when there are any, the layer
    times are those kernel times, since a CUDA node's own ``dur`` is only its host-side launch."""
    runs = sorted(
        (e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e["ts"],
    )[warmup:]
    starts = [r["ts"] for r in runs]
    host: list[dict[str, float]] = [defaultdict(float) for _ in runs]
    device: list[dict[str, float]] = [defaultdict(float) for _ in runs]
    current: tuple[int, str] | None = None  # (run index, layer) of the last profiled node
    for event in trace:  # in file order: a node's "Kernel" events follow it
        name, cat = event.get("name", ""), event.get("cat")
        if cat == "Kernel":
            if current is not None:
                device[current[0]][current[1]] += float(event["dur"])  # us
            continue
        if cat != "Node" or not name.endswith("_kernel_time"):
            continue  # also skips the "_fence_before/after" markers of older ORT versions
        i = int(np.searchsorted(starts, event["ts"], side="right")) - 1
        if i < 0 or event["ts"] > runs[i]["ts"] + runs[i]["dur"]:
            current = None  # a warm-up call
            continue
        current = (i, mapper(name.removesuffix("_kernel_time")))
        host[i][current[1]] += float(event["dur"])  # us
    return device if any(device) else host
