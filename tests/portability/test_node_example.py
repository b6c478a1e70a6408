"""examples/node/classify.mjs: the MNIST test set through onnxruntime-node, as an app would."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from bench.runtimes.js_host import node_reason
from models.paths import REPO_ROOT

pytestmark = pytest.mark.skipif(node_reason() is not None, reason=str(node_reason()))
SCRIPT = REPO_ROOT / "examples" / "node" / "classify.mjs"


def test_node_example_prints_the_accuracy_python_onnxruntime_gets(exported, mnist):
    import onnxruntime as ort

    from models.data import mnist_cache_dir

    session = ort.InferenceSession(str(exported.verified_path("model_uint8", "onnx")))
    labels = np.concatenate(
        [session.run(["label"], {"pixels": mnist.test_images[i : i + 500]})[0] for i in range(0, 10_000, 500)]
    )
    expected = f"{np.mean(labels == mnist.test_labels):.4f}"
    proc = subprocess.run(
        ["node", str(SCRIPT), str(exported.folder), str(mnist_cache_dir())],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    accuracy = re.search(r"accuracy: (\d\.\d{4}) \((\d+) of 10000", proc.stdout)
    assert accuracy and accuracy.group(1) == expected, proc.stdout
    assert f"recorded at export (manifest metadata): {expected}" in proc.stdout


def test_node_example_says_what_is_missing(tmp_path):
    proc = subprocess.run(["node", str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{tmp_path}/manifest.json: missing (run `deepmnist export`)" in proc.stderr
