"""onnxruntime-node: the same ``deep_mnist.onnx`` in onnxruntime's Node.js binding (CPU).

Runs in a Node process (``bench/js/node_runner.mjs``); the harness gets its timings from
``time_calls``: ``performance.now()`` around each awaited ``session.run`` inside Node, so the
samples hold no inter-process time. Installed by ``ONNXRUNTIME_NODE_INSTALL=skip npm ci``; without
node or the package the runtime is skipped with the reason. Whole model only.
"""

from __future__ import annotations

from bench.js_host import JsPrepared, node_reason
from bench.runtimes.base import Artifacts, artifact_path


class OnnxRuntimeNode:
    name = "onnxruntime-node"
    precision = "fp32"
    targets = ("model",)

    def supports(self, device: str) -> str | None:
        if device != "cpu":
            return "onnxruntime-node is installed with its CPU binding only (ONNXRUNTIME_NODE_INSTALL=skip)"
        return node_reason()

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> JsPrepared:
        return JsPrepared(artifact_path(artifacts, target, "onnx"), threads, web=False)
