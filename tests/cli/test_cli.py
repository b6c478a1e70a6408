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


def test_train_writes_its_summary(tmp_path, capsys, mnist):
    """A real 20-step run: the summary beside the checkpoint and its --summary copy are the same
    file, with the run's figures, the checkpoint's name and SHA-256 and no local folder."""
    import json
    import math
    import re

    from bench.report.training_summary import load_summary, render
    from models.atomic import sha256_file
    from models.checkpoint import load_checkpoint

    out, copy = tmp_path / "ck.safetensors", tmp_path / "copies" / "run.json"
    argv = ["train", "--steps", "20", "--batch-size", "32", "--out", str(out), "--no-progress"]
    assert main([*argv, "--summary", str(copy)]) == 0
    printed = capsys.readouterr().out
    beside = tmp_path / "ck.summary.json"
    assert f"summary: {beside}" in printed and f"summary: {copy}" in printed
    assert beside.read_bytes() == copy.read_bytes()
    assert not [p for p in tmp_path.rglob("*.tmp")]  # the atomic writes left no temporary file
    text = copy.read_text()
    assert str(tmp_path) not in text  # names no folder of this machine
    summary = load_summary(copy)
    ckpt = load_checkpoint(out)
    assert summary["command"] == (
        "deepmnist train --steps 20 --batch-size 32 --out '<elsewhere>/ck.safetensors' --no-progress "
        "--summary '<elsewhere>/run.json'"
    )
    assert (summary["recipe"], summary["steps"], summary["batch_size"]) == ("fast", 20, 32)
    assert summary["config"]["batch_size"] == 32 and "threads" not in summary["config"]
    assert summary["epochs"] == round(20 * 32 / 60_000, 3) and summary["train_images"] == 60_000
    assert summary["test_accuracy"] == ckpt.test_accuracy and 0.1 < summary["test_accuracy"] < 0.99
    assert f"test accuracy: {summary['test_accuracy'] * 100:.2f}%" in printed
    assert summary["train_seconds"] == ckpt.train_seconds > 0
    assert (
        f"training time: {summary['train_seconds']:.1f} s ({summary['steps_per_second']:.1f} steps/s)"
        in printed
    )
    assert math.isclose(summary["steps_per_second"], 20 / ckpt.train_seconds, rel_tol=1e-3)
    assert summary["time_to_accuracy_s"] == {"99.0%": None, "99.2%": None}  # 20 steps reach neither
    assert summary["history"] == ckpt.history and summary["resumed_from_step"] == 0
    assert summary["checkpoint"] == {"file": "ck.safetensors", "sha256": sha256_file(out)}
    assert summary["data_checksum"] == mnist.checksum == ckpt.data_checksum
    assert summary["threads"] >= 1 and summary["torch_version"] and summary["cpu_model"]
    for load in (summary["loadavg_start"], summary["loadavg_end"]):
        assert len(load) == 3 and all(value >= 0 for value in load)
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", summary["git_commit"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", summary["started_utc"])
    json.loads(text)  # plain JSON: no NaN
    table = render([str(copy)], markdown=True)
    row = next(line for line in table.splitlines() if line.startswith("| fast"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:3] == ["fast", "20 x 32 (0.011 epochs)", f"{summary['test_accuracy'] * 100:.2f}%"]
    assert summary["command"] in table
