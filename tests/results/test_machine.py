"""bench.results.machine and the machine-aware gate of ``deepmnist compare``, on the committed runs of two
machines: the reference run and the same default run made on another machine."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.results.machine import STABLE_FIELDS, collect_machine, differences, machine_id, machine_of_run

RESULTS = Path(__file__).resolve().parents[2] / "results"
REFERENCE = RESULTS / "20261128T124630Z-vm.csv"  # the reference machine's default run
SAME_MACHINE = RESULTS / "20261128T124047Z-vm.csv"  # an earlier run on the reference machine
OTHER = RESULTS / "20261128T152732Z-vm-other-machine.csv"  # the same default run, another machine
_LATENCY = re.compile(r"latency_ms_(mean|median|min|max|stddev|p90|p99|p999|median_ci_low|median_ci_high)")


def test_collected_fingerprint_names_the_hardware_and_hashes_only_stable_parts() -> None:
    record = collect_machine()
    assert re.fullmatch(r"[0-9a-f]{12}", record["machine_id"])
    assert record["machine_id"] == machine_id(record)
    assert record["logical_cpus"] >= 1 and record["memory_gib"] > 0 and record["kernel"]
    assert isinstance(record["isa"], list) and isinstance(record["gpus"], list)
    # the kernel, the driver and the hostname are not identity; the ISA and memory size are
    assert machine_id({**record, "kernel": "0.0-other", "gpu_driver": "999"}) == record["machine_id"]
    assert machine_id({**record, "memory_gib": record["memory_gib"] + 0.3}) == record["machine_id"]
    assert machine_id({**record, "isa": [*record["isa"], "amx_tile"]}) != record["machine_id"]
    assert "host" not in STABLE_FIELDS


def test_old_runs_get_a_derived_fingerprint_that_says_what_is_unknown() -> None:
    reference, earlier, other = (machine_of_run(p) for p in (REFERENCE, SAME_MACHINE, OTHER))
    assert reference.derived and reference.machine_id.startswith("~")
    assert reference.machine_id == earlier.machine_id != other.machine_id
    assert "isa" in reference.unknown and "memory_gib" in reference.unknown
    line = reference.describe()
    assert "\n" not in line and "AMD EPYC" in line and "cpu peak 452 GFLOP/s" in line and "unknown: " in line
    assert differences(reference, earlier) == []  # peaks 452 and 443: within 10%
    reasons = differences(reference, other)
    assert any("different machines" in r for r in reasons)
    assert any("peak 452 vs 202 GFLOP/s" in r for r in reasons)


def _compare(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main(["compare", *(str(a) for a in argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_raw_gate_refuses_runs_of_different_machines(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _compare(capsys, REFERENCE, OTHER, "--fail-slower", "10%")
    assert code == 2
    assert err.count("\n") == 1 and "not gating raw times" in err and "different machines" in err
    assert "peak 452 vs 202 GFLOP/s" in err and "--normalize peak" in err
    # both machines, one line each
    assert [line[:4] for line in out.splitlines() if line] == ["OLD ", "NEW "]


def test_normalized_gate_gives_a_verdict_and_each_regression_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _compare(capsys, REFERENCE, OTHER, "--fail-slower", "10%", "--normalize", "peak")
    assert code in (0, 1)
    assert "normalized by peak" in out and "cpu x0.448" in out
    code, out, err = _compare(capsys, REFERENCE, OTHER, "--fail-slower", "10%", "--allow-different-machines")
    assert code == 1 and "warning: gating raw times" in err
    listed = [line for line in out.splitlines() if line.startswith("- ")]
    assert listed and len(listed) == len(set(listed))
    assert int(re.search(r"beyond noise \(batch, single-stream lines\) \((\d+)\)", out)[1]) == len(listed)


def _doctored(source: Path, folder: Path, factor: float) -> Path:
    """A copy of a run (CSV and sidecar) whose every latency is ``factor`` times the original."""
    folder.mkdir()
    target = folder / source.name
    shutil.copy(source.with_suffix(".json"), target.with_suffix(".json"))
    with source.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    scaled = {i for i, name in enumerate(header) if _LATENCY.fullmatch(name)}
    with target.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(
            [header]
            + [
                [str(float(c) * factor) if i in scaled and c else c for i, c in enumerate(r)]
                for r in rows[1:]
            ]
        )
    return target


def test_a_doctored_two_times_slower_run_fails_the_normalized_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slow = _doctored(OTHER, tmp_path / "slow", 2.0)
    code, out, _ = _compare(capsys, REFERENCE, slow, "--fail-slower", "10%", "--normalize", "peak")
    assert code == 1
    assert "slower by more than 10% in time x peak beyond noise" in out
    assert "- vm, model, batch 1, torch-eager, cpu" in out


def _sidecar(folder: Path, source: Path, change) -> Path:
    folder.mkdir()
    target = folder / source.name
    shutil.copy(source, target)
    sidecar = json.loads(source.with_suffix(".json").read_text())
    change(sidecar)
    target.with_suffix(".json").write_text(json.dumps(sidecar))
    return target


def _no_peaks(sidecar: dict) -> None:
    sidecar["rooflines"] = {}


def _nan_peak(sidecar: dict) -> None:
    sidecar["rooflines"]["cpu"]["peak_gflops"] = float("nan")


def _no_environment(sidecar: dict) -> None:
    del sidecar["environment"]


@pytest.mark.parametrize(
    ("make", "flags", "message"),
    [
        ("no-peaks", ["--fail-slower", "10"], "unknown machine"),
        ("no-peaks", ["--normalize", "peak"], "has no measured cpu peak"),
        ("nan-peak", ["--fail-slower", "10"], "peak_gflops is nan; expected a positive number"),
        ("no-environment", ["--fail-slower", "10"], "not a deepmnist results sidecar"),
        ("one", ["--normalize", "peak"], "--normalize compares two files"),
        ("one", ["--allow-different-machines"], "--allow-different-machines compares two files"),
        ("cuda", ["--fail-slower", "10", "--normalize", "peak"], "no line was measured (ok) in both"),
    ],
)
def test_bad_input_to_the_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str, flags: list[str], message: str
) -> None:
    changes = {"no-peaks": _no_peaks, "nan-peak": _nan_peak, "no-environment": _no_environment}
    files = [REFERENCE, OTHER]
    if make == "one":
        files = [REFERENCE]
    elif make == "cuda":  # a CPU run against a CUDA-only run: no line in common
        files = [REFERENCE, RESULTS / "20261128T161345Z-cuda-h200.csv"]
    elif make == "no-peaks":  # two runs without fingerprints or peaks: nothing tells the machines apart
        files = [
            _sidecar(tmp_path / name, SAME_MACHINE if name == "a" else REFERENCE, changes[make])
            for name in "ab"
        ]
    else:
        files = [REFERENCE, _sidecar(tmp_path / "new", OTHER, changes[make])]
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    code, _, err = _compare(capsys, *files, *flags)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_plain_compare_survives_an_unreadable_sidecar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = _sidecar(tmp_path / "new", OTHER, _no_environment)
    code, out, _ = _compare(capsys, REFERENCE, new)
    assert code == 0 and "machines unknown: " in out and "not a deepmnist results sidecar" in out


REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS_PAGE = REPO_ROOT / "docs" / "machines-and-history.md"
_OUTPUT_BLOCK = re.compile(r"<!-- output: (deepmnist [^\n]*?) -->\n```\n(.*?)```\n", re.S)


def _command_output(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """What ``command`` (a deepmnist command line run from the checkout) prints: stdout, then stderr."""
    import os
    import shlex

    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        capsys.readouterr()
        main(shlex.split(command)[1:])
        captured = capsys.readouterr()
    finally:
        os.chdir(cwd)
    text = captured.out + captured.err
    return "".join(line.rstrip() + "\n" for line in text.rstrip("\n").split("\n"))


def test_docs_show_what_the_gates_print(capsys: pytest.CaptureFixture[str]) -> None:
    """The output blocks of docs/machines-and-history.md are the commands' output;
    ``UPDATE_DOCS=1 pytest -k docs_show`` writes them."""
    import os

    text = DOCS_PAGE.read_text()
    blocks = list(_OUTPUT_BLOCK.finditer(text))
    assert len(blocks) >= 2
    if os.environ.get("UPDATE_DOCS") == "1":
        text = _OUTPUT_BLOCK.sub(
            lambda m: f"<!-- output: {m[1]} -->\n```\n{_command_output(capsys, m[1])}```\n", text
        )
        DOCS_PAGE.write_text(text)
        blocks = list(_OUTPUT_BLOCK.finditer(text))
    for block in blocks:
        assert block[2] == _command_output(capsys, block[1]), (
            f"{DOCS_PAGE.name}: block of `{block[1]}` is stale"
        )


def test_normalization_uses_the_peak_of_each_precision_where_both_runs_measured_one() -> None:
    from bench.report.analysis import normalize_by_peak, peak_precisions
    from bench.report.tables import peak_note
    from bench.results.machine import Machine
    from bench.results.store import frame_from_rows
    from tests.report.test_compare import _timed

    rows = [_timed("onnxruntime", 1.0, 0.01), _timed("torch-eager-bf16", 1.0, 0.01, precision="bf16")]
    rows.append(_timed("onnxruntime-int8", 1.0, 0.01, precision="int8"))
    frame = frame_from_rows(rows)
    old = Machine("a", {}, {"cpu": (100.0, 10.0)}, precision_peaks={"cpu": {"bf16": 400.0}})
    new = Machine("b", {}, {"cpu": (200.0, 10.0)}, precision_peaks={"cpu": {"bf16": 400.0}})
    used = peak_precisions(frame, frame, old, new)
    assert used == {("cpu", "bf16"): "bf16", ("cpu", "fp32"): "fp32", ("cpu", "int8"): "fp32"}
    scaled = normalize_by_peak(frame, old, new, used)
    note = peak_note(used, old, new, "NEW")
    assert list(scaled["latency_ms_median"]) == pytest.approx([2.0, 1.0, 2.0])  # fp32 x2, bf16 x1, int8 x2
    assert "cpu x2 (200 / 100 GFLOP/s), cpu bf16 x1 (400 / 400 GFLOP/s)" in note
    assert "cpu int8 lines by the float32 peak" in note
