"""Bad input of issue 22's "silent wrong" list, table-driven as tests/cli/test_bad_input.py (its case
record and runner): the regression gate fails on lines that crashed or went missing, thresholds and
peaks are finite and in range, one run given twice is refused, duplicate row keys are refused when
writing and reading, rows whose median is missing or outside its CI are refused, a checkpoint's
accuracy is a fraction, predict says when a model's output is not probabilities, a summary's recipe
cannot break its table, and inputs without end (``/dev/zero``, ``--threads 100000``, ``--steps
10**20``) are refused. Every case runs in this process, on copies of the committed runs; nothing is
trained.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from bench.cli import main
from bench.results.store import MEASURED_COLUMNS
from models.checkpoint import Checkpoint, save_checkpoint
from models.network import DeepMNIST
from models.paths import REPO_ROOT
from models.train import recipe_config
from tests.cli.test_bad_input import TRAINING_SUMMARY, Case, check_case

RESULTS = REPO_ROOT / "results"
REFERENCE = RESULTS / "20261202T012129Z-vm.csv"  # the committed reference run: CIs, a fingerprint
OTHER_RUN = RESULTS / "20261128T124630Z-vm.csv"  # an earlier run, another machine
BENCH = "--devices cpu --targets conv1 --no-roofline --no-accuracy --no-single-stream --no-profile "
BENCH += "--max-time 0.05 --results-dir {tmp}/bench-results"
GATED = ("batch", "single-stream")


# ----------------------------------------------------------------------------- the places cases use


def _copy_run(source: Path, folder: Path, edit=None, run_id: str | None = "copy", name: str | None = None,
              sidecar=None, charts: bool = False) -> Path:  # fmt: skip
    """A copy of a committed run (CSV and JSON sidecar) in ``folder``: rows passed through ``edit``
    (a list of dicts in, a list out), with another ``run_id`` (None: the same run), the sidecar
    through ``sidecar`` and, with ``charts``, the PNGs beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name or source.name)
    with source.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    if run_id is not None:
        rows = [{**row, "run_id": run_id} for row in rows]
    if edit is not None:
        rows = edit(rows)
    with target.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    meta = json.loads(source.with_suffix(".json").read_text(encoding="utf-8"))
    if run_id is not None:
        meta["run_id"] = run_id
    if sidecar is not None:
        sidecar(meta)
    target.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")
    if charts:
        for png in source.parent.glob(f"{source.stem}-*.png"):
            shutil.copyfile(png, folder / png.name.replace(source.stem, target.stem, 1))
    return target


def _not_measured(row: dict, status: str, reason: str) -> dict:
    """``row`` as a run writes a case that did not measure: the measured columns empty."""
    return {**row, **dict.fromkeys(MEASURED_COLUMNS, ""), "status": status, "reason": reason}


def _crash_onnxruntime(rows: list[dict]) -> list[dict]:
    """Every ok onnxruntime row crashed (as a dying worker writes them; no offline row then)."""
    out = []
    for row in rows:
        if row["runtime"] == "onnxruntime" and row["status"] == "ok":
            if row["scenario"] == "offline":
                continue
            row = _not_measured(row, "crashed", "worker exited with signal 11 (SIGSEGV)")
        out.append(row)
    return out


def _drop_75(rows: list[dict]) -> list[dict]:
    """75 ok rows of the gated scenarios left out."""
    gone = {i for i, row in enumerate(rows) if row["status"] == "ok" and row["scenario"] in GATED}
    gone = set(sorted(gone)[:75])
    assert len(gone) == 75
    return [row for i, row in enumerate(rows) if i not in gone]


def _first_ok(**changes: str):
    def edit(rows: list[dict]) -> list[dict]:
        i = next(i for i, row in enumerate(rows) if row["status"] == "ok" and row["scenario"] == "batch")
        rows[i] = {**rows[i], **changes}
        return rows

    return edit


def _duplicate_a_row(rows: list[dict]) -> list[dict]:
    i = next(i for i, row in enumerate(rows) if row["status"] == "ok")
    return [*rows, dict(rows[i])]


def _tiny_peak(meta: dict) -> None:
    meta["rooflines"]["cpu"]["peak_gflops"] = 1e-300


def _checkpoint(path: Path, **fields) -> Path:
    config = dataclasses.asdict(recipe_config("fast", steps=3, batch_size=8))
    save_checkpoint(Checkpoint(model_state=DeepMNIST().state_dict(), step=3, config=config, **fields), path)
    return path


def _no_softmax_onnx(path: Path) -> Path:
    """The uint8 contract (uint8 [batch, 28, 28] in, ``probabilities`` [batch, 10] out) without its
    softmax: large scores (as a model exported without its last layer gives)."""
    weights = np.random.default_rng(0).normal(0, 1e5, (784, 10)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["input"], ["pixels"], to=TensorProto.FLOAT),
            helper.make_node("Reshape", ["pixels", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["probabilities"]),
        ],
        "no-softmax",
        [helper.make_tensor_value_info("input", TensorProto.UINT8, ["batch", 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        [
            helper.make_tensor("w", TensorProto.FLOAT, [784, 10], weights.ravel().tolist()),
            helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 784]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def _summary(path: Path, **changes) -> Path:
    path.write_text(json.dumps({**json.loads(TRAINING_SUMMARY.read_text()), **changes}))
    return path


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("bad-input-gate")
    p: dict[str, Path] = {"tmp": tmp, "old": REFERENCE, "other": OTHER_RUN}
    p["crashed"] = _copy_run(REFERENCE, tmp / "crashed", _crash_onnxruntime)
    p["missing75"] = _copy_run(REFERENCE, tmp / "missing75", _drop_75)
    p["tiny_peak"] = _copy_run(REFERENCE, tmp / "tiny-peak", sidecar=_tiny_peak)
    p["same_run"] = _copy_run(REFERENCE, tmp / "same-run", run_id=None)  # a copy: the same run_id
    p["dup_key"] = _copy_run(REFERENCE, tmp / "dup-key", _duplicate_a_row)
    p["no_median"] = _copy_run(REFERENCE, tmp / "no-median", _first_ok(latency_ms_median=""))
    p["outside_ci"] = _copy_run(REFERENCE, tmp / "outside-ci", _first_ok(
        latency_ms_median="1.421", latency_ms_median_ci_low="9.0", latency_ms_median_ci_high="0.001"))  # fmt: skip
    p["acc5"] = _checkpoint(tmp / "acc5.safetensors", test_accuracy=5)
    p["acc_high"] = _checkpoint(tmp / "acc-high.safetensors", test_accuracy="high")
    p["no_softmax"] = _no_softmax_onnx(tmp / "no-softmax.onnx")
    p["png"] = tmp / "digit.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)).save(p["png"])
    p["recipe_newline"] = _summary(tmp / "recipe-newline.json", recipe="fa\nst")
    p["command_newline"] = _summary(tmp / "command-newline.json", command="deepmnist train --summary 'a\nb'")
    return p


# ----------------------------------------------------------------------------- the cases

THOUSAND_DIGITS = "9" * 400  # float() reads it as inf

GATE = [
    Case("ok-to-crashed", "compare {old} {crashed} --fail-slower 10", 1,
         "ok in OLD, failed, crashed or timed out in NEW (batch, single-stream lines)", ("old", "crashed")),
    Case("ok-to-crashed-allow-missing", "compare {old} {crashed} --fail-slower 10 --allow-missing", 1,
         "-> crashed (worker exited with signal 11"),
    Case("75-rows-missing", "compare {old} {missing75} --fail-slower 10", 1,
         "measured in OLD, missing or skipped in NEW (batch, single-stream lines) (75); --allow-missing"),
    Case("75-rows-missing-allowed", "compare {old} {missing75} --fail-slower 10 --allow-missing", 0,
         "(75) (allowed by --allow-missing)"),
    Case("allow-missing-alone", "compare {old} {missing75} --allow-missing", 2,
         "--allow-missing goes with --fail-slower"),
    Case("threshold-400-digits", f"compare {{old}} {{crashed}} --fail-slower {THOUSAND_DIGITS}", 2,
         "--fail-slower '99999999999999999999... (400 characters)': at most 1000"),
    Case("threshold-huge", "compare {old} {crashed} --fail-slower 5000%", 2, "at most 1000 (percent)"),
    Case("peak-1e-300", "compare {old} {tiny_peak} --fail-slower 10 --normalize peak", 2,
         "rooflines.cpu.peak_gflops is 1e-300; a measured one lies between 0.01 and 1e+08", ("tiny_peak",)),
]  # fmt: skip

SAME_RUN = [
    Case("compare-a-a", "compare {old} {old}", 2, "20261202T012129Z-vm.csv: given twice; give each run once"),
    Case("compare-a-copy", "compare {old} {same_run} --fail-slower 10", 2,
         "hold the same run (run_id 20261202T011411Z-b049b9ad); give each run once"),
    Case("merge-a-a", "compare --merge {old} {old}", 2, "given twice"),
    Case("history-a-a", "history {old} {old} -o {tmp}/history", 2, "given twice"),
    Case("report-a-a", "report {old} {old} -o {tmp}/report-a-a", 2, "given twice"),
]  # fmt: skip

KEYS = [
    Case("bench-batch-sizes-1-1", f"bench {BENCH} --runtimes onnxruntime --batch-sizes 1,1", 2,
         "--batch-sizes 1,1: 1 is given twice"),
    Case("bench-runtimes-twice", f"bench {BENCH} --runtimes onnxruntime,onnxruntime --batch-sizes 1", 2,
         "--runtimes onnxruntime,onnxruntime: onnxruntime is given twice"),
    Case("bench-threads-twice", f"bench {BENCH} --runtimes onnxruntime --batch-sizes 1 --threads 1,1", 2,
         "--threads 1,1: 1 is given twice"),
    Case("csv-duplicate-key", "compare {dup_key}", 2, "the same row key as line ", ("dup_key",)),
    Case("csv-ok-no-median", "compare {no_median}", 2, "an ok row with no latency_ms_median"),
    Case("csv-median-outside-ci", "compare {outside_ci}", 2,
         "latency_ms_median 1.421 lies outside its 95% CI [9.0, 0.001]"),
    Case("history-median-outside-ci", "history {outside_ci} {old} -o {tmp}/h2", 2, "lies outside its 95% CI"),
]  # fmt: skip

OTHER = [
    Case("export-accuracy-5", "export --checkpoint {acc5} --out {tmp}/export-5 --no-progress", 2,
         "test_accuracy 5 is not a fraction of the test images in [0, 1]", ("acc5",)),
    Case("export-accuracy-high", "export --checkpoint {acc_high} --out {tmp}/export-high --no-progress", 2,
         "test_accuracy 'high' is not a fraction"),
    Case("evaluate-accuracy-5", "evaluate {acc5}", 2, "test_accuracy 5 is not a fraction"),
    Case("predict-no-softmax", "predict {no_softmax} {png}", 0,
         "output 'probabilities' is not probabilities"),
    Case("summary-recipe-newline", "train-summary {recipe_newline}", 2,
         "recipe 'fa\\nst' holds a control character"),
    Case("summary-command-newline", "train-summary {command_newline}", 0, "--summary 'a\\nb'"),
    Case("compare-dev-zero", "compare /dev/zero", 2,
         "/dev/zero: more than 64 MiB (or without end); too large for a results CSV"),
    Case("history-dev-zero", "history /dev/zero {old} -o {tmp}/h3", 2, "too large for a results CSV"),
    Case("train-summary-dev-zero", "train-summary /dev/zero", 2, "too large for a training summary"),
    Case("portability-threads", "portability --threads 100000 --results-dir {tmp}/p", 2,
         "--threads 100000: must be at most"),
    Case("train-steps-10-20", "train --steps 100000000000000000000 --out {tmp}/t.safetensors", 2,
         "--steps 100000000000000000000: must be at most 1e+07"),
]  # fmt: skip

TABLE = [
    pytest.param(case, id=f"{group}-{case.id}")
    for group, cases in (("gate", GATE), ("same-run", SAME_RUN), ("keys", KEYS), ("other", OTHER))
    for case in cases
]


@pytest.mark.parametrize("case", TABLE)
def test_bad_input(case: Case, places: dict[str, Path], capsys) -> None:
    check_case(case, places, capsys)


# ----------------------------------------------------------------------------- what the cases print


def test_the_gate_lists_each_crashed_line(places, capsys) -> None:
    """The 31 onnxruntime lines of the batch and single-stream scenarios, each once."""
    assert main(["compare", str(REFERENCE), str(places["crashed"]), "--fail-slower", "10"]) == 1
    out = capsys.readouterr().out
    listed = [line for line in out.splitlines() if line.endswith("(worker exited with signal 11 (SIGSEGV))")]
    with REFERENCE.open(newline="") as f:
        expected = sum(r["runtime"] == "onnxruntime" and r["status"] == "ok" and r["scenario"] in GATED
                       for r in csv.DictReader(f))  # fmt: skip
    assert len(listed) == len(set(listed)) == expected > 0
    assert all(": ok -> crashed (" in line and "onnxruntime" in line for line in listed)


def test_predict_prints_a_probability_for_a_model_without_softmax(places, capsys) -> None:
    assert main(["predict", str(places["no_softmax"]), str(places["png"]), "--json"]) == 0
    captured = capsys.readouterr()
    (result,) = json.loads(captured.out)
    assert 0 <= result["probability"] <= 1 and abs(sum(result["probabilities"]) - 1) < 1e-4
    assert "the probabilities shown are its softmax" in captured.err


def test_a_real_model_prints_no_note(tmp_path, capsys) -> None:
    """A model that outputs probabilities (a softmax) is shown as it is, with no note."""
    path = tmp_path / "softmax.onnx"
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["input"], ["pixels"], to=TensorProto.FLOAT),
            helper.make_node("Reshape", ["pixels", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "softmax",
        [helper.make_tensor_value_info("input", TensorProto.UINT8, ["batch", 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        [
            helper.make_tensor("w", TensorProto.FLOAT, [784, 10], np.full(7840, 1e-3).tolist()),
            helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 784]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    image = tmp_path / "d.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    assert main(["predict", str(path), str(image)]) == 0
    captured = capsys.readouterr()
    assert captured.out.rstrip().endswith("\t0.1000") and "note:" not in captured.err


def test_a_command_with_a_newline_stays_one_line(places, capsys) -> None:
    assert main(["train-summary", str(places["command_newline"])]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]
    assert len(lines) == 1 and "--summary 'a\\nb'" in lines[0]


def test_two_runs_of_one_file_name_are_told_apart_in_the_report(tmp_path, capsys) -> None:
    """a/X.csv and b/X.csv, two runs: each its own charts and its own name in the page."""
    a = _copy_run(REFERENCE, tmp_path / "a", run_id=None, name="X.csv", charts=True)
    b = _copy_run(OTHER_RUN, tmp_path / "b", run_id=None, name="X.csv", charts=True)
    site = tmp_path / "site"
    assert main(["report", str(a), str(b), "-o", str(site)]) == 0, capsys.readouterr().err
    page = (site / "index.html").read_text()
    assert f"Run {a}" in page and f"Run {b}" in page
    for chart in ("throughput", "roofline", "layers"):
        shown = sorted(p for p in (site / "charts").glob(f"X*-{chart}.png"))
        assert len(shown) == 2, shown
        assert shown[0].read_bytes() != shown[1].read_bytes()
        assert all(f"src='{p.relative_to(site)}'" in page for p in shown)
        for run, png in ((REFERENCE, shown[0]), (OTHER_RUN, shown[1])):
            assert png.read_bytes() == run.with_name(f"{run.stem}-{chart}.png").read_bytes()


def test_history_takes_two_runs_of_one_file_name(tmp_path, capsys) -> None:
    """Two runs named alike in two folders are two runs (their run ids differ), not one twice."""
    earlier = RESULTS / "20261128T124047Z-vm.csv"  # the same machine as OTHER_RUN
    a = _copy_run(earlier, tmp_path / "a", run_id=None, name="X.csv")
    b = _copy_run(OTHER_RUN, tmp_path / "b", run_id=None, name="X.csv")
    assert main(["history", str(a), str(b), "-o", str(tmp_path / "h")]) == 0, capsys.readouterr().err
    assert "| 1 |" in capsys.readouterr().out
