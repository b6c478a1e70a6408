import gzip
import hashlib
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from models import data, idx
from models.data import FILES, DataError


def _write_set(folder: Path, n_train: int = 12, n_test: int = 5, gz: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, array in arrays.items():
        blob = idx.encode_idx(array)
        if gz:
            (folder / (FILES[key] + ".gz")).write_bytes(gzip.compress(blob))
        else:
            (folder / FILES[key]).write_bytes(blob)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    arrays = _write_set(tmp_path, gz=gz)
    mnist = data.read_idx_dir(tmp_path)
    for key, array in arrays.items():
        np.testing.assert_array_equal(getattr(mnist, key), array)
    assert not mnist.is_standard_mnist


def test_write_idx_is_atomic_and_readable(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    data.write_idx(tmp_path / "labels", labels)
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "labels", "labels"), labels)
    assert [p.name for p in tmp_path.iterdir()] == ["labels"]  # no temporary file left


def _corrupt(folder: Path, key: str, blob: bytes) -> Path:
    path = folder / FILES[key]
    path.write_bytes(blob)
    return path


@pytest.mark.parametrize(
    ("key", "mutate", "message"),
    [
        ("train_images", lambda b: b"\x00\x00\x08\x01" + b[4:], "bad magic number 0x00000801"),
        ("train_labels", lambda b: b"\x00\x00\x08\x03" + b[4:], "bad magic number"),
        ("test_images", lambda b: b[:-3], "does not match its header"),
        ("test_labels", lambda b: b + b"\x00", "does not match its header"),
        (
            "train_images",
            lambda b: b[:4] + (12).to_bytes(4, "big") + (27).to_bytes(4, "big") + b[12:],
            "27x28",
        ),
        ("test_labels", lambda b: b[:-1] + b"\x0c", "label 12 at index 4 is outside 0..9"),
        ("train_labels", lambda b: b[:5], "shorter than the 8-byte IDX header"),
    ],
)
def test_idx_corruption_names_the_file(tmp_path, key, mutate, message):
    _write_set(tmp_path)
    path = tmp_path / FILES[key]
    _corrupt(tmp_path, key, mutate(path.read_bytes()))
    with pytest.raises(DataError, match=message) as err:
        data.read_idx_dir(tmp_path)
    assert str(path) in str(err.value)


def test_count_mismatch(tmp_path):
    arrays = _write_set(tmp_path)
    _corrupt(tmp_path, "test_labels", idx.encode_idx(arrays["test_labels"][:4]))
    with pytest.raises(DataError, match="has 5 images but t10k-labels-idx1-ubyte has 4 labels"):
        data.read_idx_dir(tmp_path)


def test_missing_file_and_bad_gzip(tmp_path):
    _write_set(tmp_path)
    (tmp_path / FILES["test_images"]).unlink()
    with pytest.raises(DataError, match="missing t10k-images-idx3-ubyte"):
        data.read_idx_dir(tmp_path)
    (tmp_path / (FILES["test_images"] + ".gz")).write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(DataError, match="corrupt gzip"):
        data.read_idx_dir(tmp_path)
    with pytest.raises(DataError, match="not a directory"):
        data.read_idx_dir(tmp_path / "nope")


def test_cache_checksum_mismatch_deletes_nothing(tmp_path):
    arrays = _write_set(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(DataError, match=r"does not match MNIST.*deepmnist data --refresh"):
        data.load_cache(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert len(arrays) == 4


class _Boom:
    def __reduce__(self):
        return (Path("/nonexistent-should-not-run").mkdir, ())


def test_pickle_checked_before_unpickling(tmp_path):
    evil = tmp_path / "mnist.pkl.gz"
    evil.write_bytes(gzip.compress(pickle.dumps(_Boom())))
    with pytest.raises(DataError, match="refusing to unpickle"):
        data.convert_pickle(evil, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_restricted_unpickler_refuses_other_globals():
    blob = pickle.dumps(_Boom())
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        data._NumpyOnlyUnpickler(io.BytesIO(blob)).load()
    arrays = pickle.dumps((np.zeros((2, 3), np.float32), np.arange(3)))
    a, b = data._NumpyOnlyUnpickler(io.BytesIO(arrays)).load()
    assert a.shape == (2, 3) and b.tolist() == [0, 1, 2]


def test_real_mnist(mnist):
    assert mnist.is_standard_mnist
    assert mnist.train_images.shape == (60_000, 28, 28) and mnist.train_images.dtype == np.uint8
    assert mnist.test_images.shape == (10_000, 28, 28)
    assert np.bincount(mnist.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    digest = hashlib.sha256(idx.encode_idx(mnist.test_labels)).hexdigest()
    assert digest == data.MNIST_IDX_SHA256["t10k-labels-idx1-ubyte"]


def test_to_input(mnist):
    x = data.to_input(mnist.test_images[:3])
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(x * 255, torch.as_tensor(mnist.test_images[:3]).float().unsqueeze(1))
    with pytest.raises(DataError, match="expected uint8"):
        data.to_input(np.zeros((2, 28, 28), np.float32))
