import subprocess
import sys

from bench.cli import main


def _run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_data_summary(capsys, mnist):
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    assert "train: 60000 images" in out and "test: 10000 images" in out
    assert "recognised as the standard MNIST: yes" in out
    assert mnist.checksum in out


def test_bad_data_dir_is_a_clear_error(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)
    proc = _run("data", "--data-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{tmp_path / 'train-images-idx3-ubyte'}" in proc.stderr


def test_evaluate_missing_checkpoint_is_a_clear_error(tmp_path):
    proc = _run("evaluate", str(tmp_path / "nope.safetensors"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no such checkpoint" in proc.stderr


def test_train_then_evaluate(tmp_path, capsys, mnist):
    out = tmp_path / "ck.safetensors"
    assert main(["train", "--steps", "20", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "test accuracy:" in text and str(out) in text
    assert main(["evaluate", str(out)]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_bad_flag_value_is_a_clear_error(tmp_path):
    proc = _run("train", "--batch-size", "0", "--out", str(tmp_path / "x.safetensors"), "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "batch size must be at least 1, got 0" in proc.stderr
