"""deepmnist portability: the exported models in other consumers, as a table; failures are rows."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.portability import CONSUMERS, Model, _crash, _one, read_rows, unavailable_reason

STATUSES = {"ok", "differs", "wrong results", "load failed", "run failed", "crashed", "skipped"}
MODELS = {"deep_mnist.onnx", "deep_mnist_uint8.onnx", "deep_mnist_int8.onnx", "deep_mnist_fp16.onnx"}


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", "portability", "--no-progress", *args],
        capture_output=True, text=True, timeout=900, cwd=cwd,
    )  # fmt: skip


def test_a_small_matrix_writes_csv_and_markdown(exported, tmp_path):
    consumers = ["onnxruntime", "onnx-reference", "tract", "opencv"]
    proc = _cli("--images", "20", "--batch-sizes", "1,4", "--consumers", ",".join(consumers),
                "--results-dir", str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (path,) = tmp_path.glob("portability-*.csv")
    assert path.with_suffix(".md").is_file()
    assert "| model | consumer | version |" in path.with_suffix(".md").read_text()
    rows = read_rows(path)
    assert {(r.file, r.consumer, r.batch) for r in rows} == {
        (m, c, b) for m in MODELS for c in consumers for b in (1, 4)
    }
    with open(path) as f:
        assert list(csv.DictReader(f).fieldnames or [])[:4] == ["file", "format", "consumer", "version"]
    for r in rows:
        assert r.status in STATUSES, r
        if r.status == "skipped":
            assert r.note and unavailable_reason(CONSUMERS[r.consumer]) == r.note
        elif r.status in ("load failed", "run failed", "crashed"):
            assert r.note, r  # the error is in the row
        else:
            assert r.runs == "yes" and r.version and r.max_abs_diff is not None and r.accuracy is not None
    reference = [r for r in rows if r.consumer == "onnxruntime"]
    assert all(r.status == "ok" and r.max_abs_diff <= 1e-6 and r.accuracy == 1.0 for r in reference)
    assert {r.images for r in rows if r.consumer == "onnx-reference"} == {20}  # under its subset of 200


@pytest.mark.parametrize("consumer", ["onnxruntime", "onnx-reference", "tract", "opencv", "openvino"])
def test_a_model_that_does_not_load_is_a_row_with_the_error(tmp_path, consumer, mnist):
    import numpy as np

    if reason := unavailable_reason(CONSUMERS[consumer]):
        pytest.skip(reason)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an ONNX model")
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((4, 1, 28, 28), np.float32))
    model = Model("broken.onnx", "onnx", False, broken)
    refs = {"broken.onnx": np.zeros((4, 10), np.float32)}
    rows = _one(
        model, CONSUMERS[consumer], None, {False: images}, mnist.test_labels[:4], refs, (1, 2), 1, tmp_path
    )
    assert [(r.batch, r.loads, r.status) for r in rows] == [
        (1, "no", "load failed"),
        (2, "no", "load failed"),
    ]
    assert rows[0].note and rows[0].version


def test_a_worker_killed_by_a_signal_is_named():
    assert _crash(-8, "") == "the process died: SIGFPE"
    assert _crash(0, "") is None
    assert _crash(1, "a\nValueError: bad\n").endswith("ValueError: bad")


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--consumers", "onnxruntime,nonesuch"], "--consumers: unknown nonesuch"),
        (["--batch-sizes", "1,x"], "--batch-sizes '1,x': 'x' is not an integer"),
        (["--images", "0"], "--images between 1 and 10000"),
    ],
)
def test_bad_options_are_clear(args, phrase, tmp_path):
    proc = _cli(*args, "--results-dir", str(tmp_path))
    assert proc.returncode == 2 and phrase in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not list(tmp_path.iterdir())


def test_the_docs_show_the_committed_portability_run():
    """The table of docs/apps-and-portability.md is ``deepmnist portability --show`` of a committed results file."""
    from bench.portability import summary
    from models.paths import REPO_ROOT

    page = (REPO_ROOT / "docs" / "apps-and-portability.md").read_text()
    block = page.split("<!-- portability:begin -->")[1].split("<!-- portability:end -->")[0]
    names = sorted(set(re.findall(r"results/portability-[\w.-]+\.csv", block)))
    assert names
    runs = [read_rows(REPO_ROOT / name) for name in names]
    for rows in runs:
        assert summary(rows) in block
        assert {r.file for r in rows} == MODELS
    assert any({r.consumer for r in rows} == set(CONSUMERS) for rows in runs)  # one run has them all
