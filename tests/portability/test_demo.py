"""deepmnist demo: serves the web page, the runtime's files from the npm package and the model on
127.0.0.1, and prints the URL."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from bench.runtimes.js_host import NODE_MODULES, NPM_INSTALL

pytestmark = pytest.mark.skipif(
    not (NODE_MODULES / "onnxruntime-web").is_dir(), reason=f"onnxruntime-web not installed: {NPM_INSTALL}"
)


def test_demo_serves_the_page_runtime_and_model_on_localhost(exported):
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "demo", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("demo: http://127.0.0.1:") and "/app/" in line, line
        url = line.split()[1]
        for path, kind in (("", "text/html"), ("app.js", "text/javascript")):
            with urllib.request.urlopen(url + path, timeout=30) as r:
                assert r.headers["Content-Type"].startswith(kind)
                assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        base = url.removesuffix("app/")
        with urllib.request.urlopen(base + "ort/ort.wasm.min.mjs", timeout=30) as r:
            assert r.status == 200
        with urllib.request.urlopen(base + "models/deep_mnist_uint8.onnx", timeout=30) as r:
            assert r.read() == exported.verified_path("model_uint8", "onnx").read_bytes()
        for outside in ("models/../manifest.json", "app/../../pyproject.toml", "nothing/here"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(base + outside, timeout=30)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_demo_without_an_export_says_so(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "demo", "--artifacts", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "no export manifest; run `deepmnist export` first" in proc.stderr
