"""onnxruntime-web: the same ``deep_mnist.onnx`` in onnxruntime's WebAssembly build, in headless
Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by selenium).

The page (``bench/runtimes/js/runner.html``) is served on 127.0.0.1 with the runtime's files from the npm
package and cross-origin isolation, so wasm threads are available (``threads`` of them). Timings
come from ``time_calls``: ``performance.now()`` around each awaited ``session.run`` in the page;
only the samples cross to Python. Skipped with the reason without Chromium, its driver, selenium
or the npm package. Whole model only.
"""

from __future__ import annotations

from bench.runtimes.base import Artifacts, artifact_path
from bench.runtimes.js_host import JsPrepared, web_reason


class OnnxRuntimeWeb:
    name = "onnxruntime-web"
    precision = "fp32"
    targets = ("model",)

    def supports(self, device: str) -> str | None:
        if device != "cpu":
            return "onnxruntime-web runs the wasm backend (the CPU) here; WebGPU is not in headless Chromium"
        return web_reason()

    def prepare(self, target: str, device: str, artifacts: Artifacts, threads: int) -> JsPrepared:
        return JsPrepared(artifact_path(artifacts, target, "onnx"), threads, web=True)
