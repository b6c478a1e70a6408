"""onnxruntime-node: the same ``deep_mnist.onnx`` in onnxruntime's Node.js binding (CPU).

Runs in a Node process (``bench/runtimes/js/node_runner.mjs``); the harness gets its timings from
``time_calls``: ``performance.now()`` around each awaited ``session.run`` inside Node, so the
samples hold no inter-process time. Installed by ``ONNXRUNTIME_NODE_INSTALL=skip npm ci``; without
node or the package the runtime is skipped with the reason. Whole model only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.runtimes.bare import node_program
from bench.runtimes.base import Artifacts, artifact_path
from bench.runtimes.js_host import JsPrepared, node_reason

# The bare program (bench.runtimes.bare): the Node host's load and one call (bench/runtimes/js/node_runner.mjs); the
# input is the .npy file's data, after its version-1 header
_BARE = """
const ort = require("onnxruntime-node");
const session = await ort.InferenceSession.create(path, {
  executionProviders: ["cpu"], intraOpNumThreads: threads, interOpNumThreads: 1, logSeverityLevel: 3,
});
const bytes = require("fs").readFileSync(x);
const start = 10 + bytes.readUInt16LE(8);
const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset + start, bytes.byteOffset + bytes.length));
const input = new ort.Tensor("float32", data, shape);
await session.run({ [session.inputNames[0]]: input });
"""


class OnnxRuntimeNode:
    name = "onnxruntime-node"
    precision = "fp32"
    targets = ("model",)

    def supports(self, device: str) -> str | None:
        if device != "cpu":
            return "onnxruntime-node is installed with its CPU binding only (ONNXRUNTIME_NODE_INSTALL=skip)"
        return node_reason()

    def bare(self, target: str, artifacts: Artifacts, threads: int, x: Path) -> list[str]:
        shape = list(np.load(x, mmap_mode="r").shape)
        return node_program(_BARE, path=str(artifact_path(artifacts, target, "onnx")), x=str(x),
                            threads=threads, shape=shape)  # fmt: skip

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> JsPrepared:
        return JsPrepared(artifact_path(artifacts, target, "onnx"), threads, web=False)
