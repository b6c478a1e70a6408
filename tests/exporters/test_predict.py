"""`deepmnist predict` and exporters.predict on real files: MNIST digits as PNG/JPEG/IDX, both models.

No mocks: the models are the real export (the ``exported`` fixture), the digits are MNIST test
images written to files with Pillow, and the commands run in fresh processes as users run them.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from exporters.predict import ArrayError, ModelError, load_model, preprocess
from models.data import MNIST, mnist_cache_dir
from models.errors import UserError
from models.idx import encode_idx
from models.paths import REPO_ROOT, export_dir

N_DIGITS = 10  # test digits written as 28x28 PNG files


def _run(*args: str | Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", "predict", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )


@pytest.fixture(scope="module")
def uint8_model(exported) -> Path:
    return exported.verified_path("model_uint8", "onnx")


@pytest.fixture(scope="module")
def float_model(exported) -> Path:
    return exported.verified_path("model", "onnx")


@pytest.fixture(scope="module")
def digits(mnist: MNIST) -> tuple[np.ndarray, np.ndarray]:
    """The first 10 MNIST test images, uint8 (10, 28, 28), and their labels, int64 (10,)."""
    return mnist.test_images[:N_DIGITS], mnist.test_labels[:N_DIGITS].astype(np.int64)


@pytest.fixture(scope="module")
def png_files(tmp_path_factory, digits) -> list[Path]:
    """The digits as 28x28 grayscale PNG files, white on black exactly as in MNIST."""
    folder = tmp_path_factory.mktemp("png")
    paths = []
    for i, image in enumerate(digits[0]):
        path = folder / f"digit{i}.png"
        Image.fromarray(image, mode="L").save(path)
        paths.append(path)
    return paths


def _variants(image: np.ndarray) -> dict[str, Image.Image]:
    """Non-MNIST renderings of one uint8 (28, 28) digit: larger, inverted, colour, transparent."""
    ink_on_white = Image.fromarray(255 - image, mode="L")  # black digit on white paper
    variants = {
        # 100x80 black on white, upscaled (aspect ratio changed)
        "inverted_100x80.png": ink_on_white.resize((100, 80), Image.Resampling.BICUBIC),
        # RGB JPEG, 3x larger, black on white
        "rgb_84.jpg": ink_on_white.resize((84, 84), Image.Resampling.BILINEAR).convert("RGB"),
        # white on black 64x64: no inversion needed, but scaled
        "white_on_black_64.png": Image.fromarray(image, mode="L").resize((64, 64), Image.Resampling.BICUBIC),
    }
    # a big digit off centre on a wide white page
    page = Image.new("L", (300, 200), 255)
    page.paste(ink_on_white.resize((140, 140), Image.Resampling.BICUBIC), (30, 40))
    variants["page_300x200.png"] = page
    # black ink drawn through the alpha channel on a transparent background (as drawing apps save)
    rgba = np.zeros((56, 56, 4), np.uint8)
    rgba[..., 3] = np.asarray(Image.fromarray(image).resize((56, 56), Image.Resampling.BICUBIC))
    variants["transparent_56.png"] = Image.fromarray(rgba, mode="RGBA")
    return variants


@pytest.fixture(scope="module")
def variant_files(tmp_path_factory, digits) -> tuple[list[Path], list[int]]:
    folder = tmp_path_factory.mktemp("variants")
    paths, labels = [], []
    for i, (image, label) in enumerate(zip(*digits, strict=True)):
        for name, variant in _variants(image).items():
            path = folder / f"digit{i}_{name}"
            variant.save(path)
            paths.append(path)
            labels.append(int(label))
    return paths, labels


# ----------------------------------------------------------------------------- good input


def test_import_and_predict_without_torch(uint8_model, png_files):
    """The module, a model load and a prediction never import torch (a fresh process)."""
    code = (
        "import sys\n"
        "from PIL import Image\n"
        "import exporters.predict as p\n"
        "assert 'torch' not in sys.modules, 'import'\n"
        f"predictor = p.load_model({str(uint8_model)!r})\n"
        f"image = p.preprocess(Image.open({str(png_files[0])!r}))\n"
        "labels, probabilities = predictor.predict(image[None])\n"
        "assert 'torch' not in sys.modules, 'predict'\n"
        "print(int(labels[0]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().isdigit()


def test_png_digits_get_their_labels(uint8_model, png_files, digits):
    proc = _run(uint8_model, *png_files)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == N_DIGITS
    for line, path, label in zip(lines, png_files, digits[1], strict=True):
        file, predicted, probability = line.split("\t")  # one line per image: file, label, probability
        assert file == str(path)
        assert int(predicted) == label
        assert 0.5 < float(probability) <= 1.0


def test_28x28_png_is_fed_as_is(png_files, digits):
    """A 28x28 white-on-black image is used unchanged: the PNG round trip gives MNIST's pixels."""
    for path, image in zip(png_files, digits[0], strict=True):
        np.testing.assert_array_equal(preprocess(Image.open(path)), image)
    # black on white at 28x28: only inverted
    np.testing.assert_array_equal(preprocess(Image.fromarray(255 - digits[0][0])), digits[0][0])


def test_scaled_and_inverted_variants(uint8_model, variant_files):
    paths, labels = variant_files
    proc = _run(uint8_model, *paths, "--json")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [r["file"] for r in results] == [str(p) for p in paths]
    correct = [r["label"] == label for r, label in zip(results, labels, strict=True)]
    wrong = [r["file"] for r, ok in zip(results, correct, strict=True) if not ok]
    assert sum(correct) >= 0.9 * len(correct), f"misclassified: {wrong}"


def test_preprocess_makes_mnist_like_digits(digits):
    image = digits[0][0]
    big = Image.fromarray(255 - image).resize((200, 150), Image.Resampling.BICUBIC)
    out = preprocess(big)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out[0].max() == 0 and out[:, 0].max() == 0  # black background
    rows, cols = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 == 20  # longer side 20 px
    mass = out.astype(np.float64)
    com_r = (mass.sum(axis=1) * np.arange(28)).sum() / mass.sum()
    com_c = (mass.sum(axis=0) * np.arange(28)).sum() / mass.sum()
    assert abs(com_r - 14) <= 0.5 and abs(com_c - 14) <= 0.5  # centre of mass at (14, 14)
    # a blank page has no ink: all black
    assert preprocess(Image.new("RGB", (50, 40), "white")).max() == 0


def test_idx_input_every_image(uint8_model, mnist, tmp_path):
    images, labels = mnist.test_images[:25], mnist.test_labels[:25]
    raw = tmp_path / "some-images-idx3-ubyte"
    raw.write_bytes(encode_idx(images))
    gz = tmp_path / "some-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(encode_idx(images[:5])))
    proc = _run(uint8_model, raw, gz)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [f for f, _, _ in lines] == [f"{raw}[{i}]" for i in range(25)] + [f"{gz}[{i}]" for i in range(5)]
    predicted = np.array([int(label) for _, label, _ in lines])
    assert np.mean(predicted[:25] == labels) >= 0.96
    np.testing.assert_array_equal(predicted[25:], predicted[:5])


def test_json_output(float_model, png_files, digits):
    proc = _run(float_model, *png_files[:3], "--json")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == 3
    for r, path, label in zip(results, png_files[:3], digits[1][:3], strict=True):
        assert set(r) == {"file", "label", "probability", "probabilities"}
        assert r["file"] == str(path) and r["label"] == label
        assert len(r["probabilities"]) == 10 and abs(sum(r["probabilities"]) - 1) < 1e-4
        assert r["probability"] == r["probabilities"][r["label"]] == max(r["probabilities"])


def test_both_model_contracts_agree(uint8_model, float_model, mnist):
    images, labels = mnist.test_images[:1000], mnist.test_labels[:1000]
    uint8 = load_model(uint8_model)
    floats = load_model(float_model)
    assert (uint8.contract, floats.contract) == ("uint8", "float32")
    labels_u, probs_u = uint8.predict(images)
    labels_f, probs_f = floats.predict(images)  # pixels / 255 in, softmax of the logits in numpy
    assert labels_u.shape == (1000,) and probs_u.shape == (1000, 10) and probs_u.dtype == np.float32
    np.testing.assert_allclose(probs_u.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(probs_f, probs_u, atol=1e-4)
    np.testing.assert_array_equal(labels_f, labels_u)
    assert np.mean(labels_u == labels) >= 0.98
    empty_labels, empty_probs = uint8.predict(np.zeros((0, 28, 28), np.uint8))
    assert empty_labels.shape == (0,) and empty_probs.shape == (0, 10)


def test_docs_app_example_runs(exported, mnist):
    """The app example of docs/apps-and-portability.md (onnxruntime + numpy only) runs and prints the test accuracy."""
    page = (REPO_ROOT / "docs" / "apps-and-portability.md").read_text()
    section = page.split("## Using the exported model in your app", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    assert len(code.strip().splitlines()) < 15
    # the example uses the default places; follow $DEEPMNIST_ARTIFACTS / $DEEPMNIST_DATA if set
    code = code.replace("artifacts/export/", f"{export_dir()}/").replace(
        "artifacts/data/mnist/", f"{mnist_cache_dir()}/"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT
    )
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"accuracy: ([0-9.]+)", proc.stdout)
    assert match, proc.stdout
    assert float(match.group(1)) >= 0.98


# ----------------------------------------------------------------------------- bad input


def _wrong_contract_model(path: Path) -> Path:
    """A valid ONNX model of another contract: Identity on float32 [N, 3]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _assert_clear_error(proc: subprocess.CompletedProcess[str], path: Path, *words: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("deepmnist predict: error: "), proc.stderr
    assert str(path) in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_missing_model(tmp_path, png_files):
    model = tmp_path / "nope.onnx"
    _assert_clear_error(_run(model, png_files[0]), model, "no such model file")


def test_corrupt_model(tmp_path, png_files, uint8_model):
    model = tmp_path / "corrupt.onnx"
    model.write_bytes(uint8_model.read_bytes()[:500])  # truncated
    _assert_clear_error(_run(model, png_files[0]), model, "not a valid ONNX model")
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n")
    _assert_clear_error(_run(text, png_files[0]), text, "not a valid ONNX model")


def test_model_of_another_contract(tmp_path, png_files):
    model = _wrong_contract_model(tmp_path / "identity.onnx")
    proc = _run(model, png_files[0])
    # says what the model has and what is expected
    _assert_clear_error(
        proc, model, "x: float32 [N, 3]", "uint8 [batch, 28, 28]", "float32 [batch, 1, 28, 28]"
    )
    with pytest.raises(ModelError, match=re.escape(str(model))):
        load_model(model)


def test_missing_image(uint8_model, tmp_path, png_files):
    image = tmp_path / "nope.png"
    _assert_clear_error(_run(uint8_model, png_files[0], image), image, "no such image file")


def test_unreadable_images(uint8_model, tmp_path, png_files):
    text = tmp_path / "notes.png"
    text.write_text("not a picture\n")
    _assert_clear_error(_run(uint8_model, text), text, "not a readable image")
    truncated = tmp_path / "truncated.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    _assert_clear_error(_run(uint8_model, truncated), truncated, "not a readable image")
    bad_idx = tmp_path / "bad-images-idx3-ubyte"
    bad_idx.write_bytes(encode_idx(np.zeros((3, 28, 28), np.uint8))[:-10])  # shorter than its header says
    _assert_clear_error(_run(uint8_model, bad_idx), bad_idx, "truncated or corrupt")
    _assert_clear_error(_run(uint8_model, tmp_path), tmp_path, "not a file")


def test_wrong_arrays_are_refused(uint8_model, mnist):
    predictor = load_model(uint8_model)
    images = mnist.test_images[:5]
    for bad, shown in [
        (np.zeros((5, 27, 27), np.uint8), "uint8 (5, 27, 27)"),
        (images.astype(np.float32) / 255, "float32 (5, 28, 28)"),
        (images[0], "uint8 (28, 28); for one image pass image[None]"),
        (images[:, None], "uint8 (5, 1, 28, 28)"),
    ]:
        with pytest.raises(ArrayError, match=re.escape(shown)) as info:
            predictor.predict(bad)
        assert isinstance(info.value, UserError) and "expected a uint8 array of shape (N, 28, 28)" in str(
            info.value
        )
