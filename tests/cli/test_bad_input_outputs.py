"""Bad output paths (issue 22: "data lost" and "escapes"), table-driven as ``tests/cli/test_bad_input.py``
(its runner and helpers): each case gives the command, its exit code, a phrase the message must
contain, the files that must be unchanged, and here also the paths that must not exist afterwards
and text no file of a folder may hold. ``base`` records what the code before the fix did with the
case (``data lost``, ``escape``, ``traceback``, ``silent wrong`` or ``fine``), for the issue's
before/after counts; after the fix every case passes.

- Never delete what the project did not write: export, report, history and portability write into a
  folder only when it is new, empty or the command's own (``models.outputs.claim_folder``); ``train
  --out X --summary X`` is refused in any spelling; FIFOs and devices are never outputs; SIGTERM to
  ``deepmnist bench`` writes the rows so far and exits 143.
- No file name comes from data: a hostile machine_id names no folder; a chart that is a symbolic
  link is not copied; Markdown output escapes HTML.

Nothing here needs a trained checkpoint or an export: each case is refused (or done) before one is
read. The character device is a real ``mknod`` (root, as on CI; skipped with the reason otherwise).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli import main
from models.paths import REPO_ROOT
from tests.cli.test_bad_input import BENCH, RESULTS_CSV, Case, _place, check_case

MARKER = ".deepmnist-output"  # models.outputs.MARKER (spelled out: the file also runs on older code)
DEMO = REPO_ROOT / "results" / "history-demo"  # three small runs of one machine, with their charts
DEMO_RUNS = sorted(DEMO.glob("*.csv"))
HOSTILE_IDS = {  # machine_ids a damaged or hostile sidecar may hold
    "dotdot": "../../escaped-dotdot",
    "absolute": "{tmp}/escaped-absolute",
    "nul": "nul\x00id",
    "script": "<script>alert(1)</script>",
}


def _copy_runs(folder: Path, machine_id: str | None = None, charts: bool = False) -> Path:
    """The demo runs (CSV and sidecar, with their charts if ``charts``) in ``folder``, each
    sidecar's machine_id replaced by ``machine_id`` if given."""
    folder.mkdir(parents=True)
    for run in DEMO_RUNS:
        for path in DEMO.glob(f"{run.stem}*"):
            if path.suffix in (".csv", ".json") or (charts and path.suffix == ".png"):
                shutil.copyfile(path, folder / path.name)
        if machine_id is not None:
            sidecar = folder / f"{run.stem}.json"
            data = json.loads(sidecar.read_text())
            data["environment"]["machine"]["machine_id"] = machine_id
            sidecar.write_text(json.dumps(data))
    return folder


def _user_folder(folder: Path, *extra: str) -> Path:
    """A folder of a user's files: notes.txt and photos/a.jpg (and ``extra`` empty-ish files)."""
    (folder / "photos").mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "photos" / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 a photo")
    for name in extra:
        (folder / name).write_text(f"{name}\n")
    return folder


def _legacy_export(folder: Path) -> Path:
    """An export folder as versions before the marker left it: a manifest listing its one file."""
    from exporters.manifest import Artifact, Manifest, TensorSpec
    from models.atomic import sha256_file

    folder.mkdir(parents=True)
    (folder / "deep_mnist.onnx").write_bytes(b"an older export's model\n")
    spec = [TensorSpec("input", ["batch", 1, 28, 28], "float32")]
    artifact = Artifact("model", "onnx", "deep_mnist.onnx", sha256_file(folder / "deep_mnist.onnx"),
                        24, spec, spec)  # fmt: skip
    Manifest("checkpoints/x.safetensors", "0" * 64, 0.99, {}, {}, [artifact]).save(folder)
    return folder


def _char_device(path: Path) -> str | None:
    """A character device node equal to /dev/null at ``path`` (never /dev itself); None if made,
    else why not."""
    try:
        os.mknod(path, 0o666 | __import__("stat").S_IFCHR, os.makedev(1, 3))
    except (OSError, AttributeError) as e:
        return f"cannot make a character device here (mknod needs root and CAP_MKNOD): {e}"
    return None


@pytest.fixture(scope="module")
def out_places(tmp_path_factory) -> dict[str, Path]:
    """Every path a case names (``{name}`` in a case's command), made once."""
    tmp = tmp_path_factory.mktemp("bad-outputs")
    p: dict[str, Path] = {"tmp": tmp}
    p["demo_run"] = DEMO_RUNS[0]
    p["runs"] = _copy_runs(tmp / "runs")
    p["userdir"] = _user_folder(tmp / "userdir")
    p["site"] = _user_folder(tmp / "site", "index.html")
    p["resdir"] = _copy_runs(tmp / "resdir")
    (p["resdir"] / "index.html").write_text("<p>my page</p>\n")
    p["legacy_export"] = _legacy_export(tmp / "legacy-export")
    p["export_plus"] = _legacy_export(tmp / "export-plus")
    (p["export_plus"] / "notes.txt").write_text("my notes\n")
    # a report the command wrote (marker), one written before the marker, and a marked one a user
    # added a file to
    p["report_ok"] = tmp / "report-ok"
    assert main(["report", str(p["demo_run"]), "-o", str(p["report_ok"])]) == 0
    p["report_plus"] = tmp / "report-plus"
    shutil.copytree(p["report_ok"], p["report_plus"])
    (p["report_plus"] / "charts" / "holiday.jpg").write_bytes(b"a photo")
    p["legacy_report"] = tmp / "legacy-report"
    shutil.copytree(p["report_ok"], p["legacy_report"])
    (p["legacy_report"] / MARKER).unlink(missing_ok=True)
    p["legacy_history"] = tmp / "legacy-history"
    shutil.copytree(DEMO / "history", p["legacy_history"])
    # train: a checkpoint-like file, and other spellings of its path
    p["ck"] = tmp / "ck.safetensors"
    p["ck"].write_bytes(b"a precious checkpoint\n")
    (tmp / "sub").mkdir()
    p["ck_link"] = tmp / "ck-link.safetensors"
    p["ck_link"].symlink_to(p["ck"])
    p["ck_hard"] = tmp / "ck-hard.safetensors"
    os.link(p["ck"], p["ck_hard"])
    # special files: a FIFO, a character device (if this process may make one)
    p["fifo"] = tmp / "fifo"
    os.mkfifo(p["fifo"])
    os.mkfifo(tmp / "fifo-plot-throughput.png")  # what `plot --out {tmp}/fifo-plot` writes first
    p["chardev"] = tmp / "chardev"
    if not _char_device(p["chardev"]):
        _char_device(tmp / "chardev-plot-throughput.png")
    # escapes: runs whose sidecars name hostile machine ids; a chart that links outside
    for name, machine_id in HOSTILE_IDS.items():
        p[f"hostile_{name}"] = _copy_runs(tmp / f"hostile-{name}", machine_id.format(tmp=tmp), charts=True)
    p["secret"] = tmp / "secret.txt"
    p["secret"].write_text("SECRET outside the results folder\n")
    p["linked"] = _copy_runs(tmp / "linked", charts=True)
    run = DEMO_RUNS[0].stem
    (p["linked"] / f"{run}-layers.png").symlink_to(p["secret"])
    (p["linked"] / f"{run}-throughput.png").unlink()
    (p["linked"] / f"{run}-throughput.png").symlink_to(DEMO / f"{run}-throughput.png")  # a PNG, linked
    p["linked_run"] = p["linked"] / f"{run}.csv"
    p["script_csv"] = tmp / "script.csv"
    _with_runtime(RESULTS_CSV, p["script_csv"], "<script>alert(1)</script>")
    return p


def _with_runtime(source: Path, target: Path, runtime: str) -> None:
    """``source`` with every onnxruntime row's runtime renamed (its sidecar copied beside it)."""
    import csv

    with source.open(newline="") as f:
        rows = list(csv.reader(f))
    column = rows[0].index("runtime")
    for row in rows[1:]:
        if row[column] == "onnxruntime":
            row[column] = runtime
    with target.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


@dataclasses.dataclass(frozen=True)
class OutCase(Case):
    base: str = ""  # what the code before the fix did: data lost, escape, traceback, silent wrong, fine
    absent: tuple[str, ...] = ()  # places that must not exist afterwards (a file written outside)
    clean: tuple[str, str] | None = None  # (folder place, text): no file under it may hold the text
    shown: str = ""  # the output must not contain this (escaped Markdown)


DATA_LOST = [
    # 1. export --out onto a folder of a user's files (the case; `--out ~` was the same)
    OutCase("export-user-folder", "export --no-progress --out {userdir}", 2, "not an earlier export",
            ("userdir",), base="data lost"),
    OutCase("export-export-plus-user-file", "export --no-progress --out {export_plus}", 2,
            "it holds notes.txt, which `deepmnist export` does not write", ("export_plus",), base="data lost"),
    # an export of an earlier version (its manifest, nothing else) is still the export's: past the
    # folder check, to the checkpoint
    OutCase("export-legacy-export-accepted", "export --checkpoint {tmp}/none.safetensors --out {legacy_export}",
            2, "none.safetensors: no such checkpoint", ("legacy_export",), base="fine"),
    # 2. report of a results folder into itself
    OutCase("report-into-its-results", "report {resdir} -o {resdir}", 2, "not an earlier report",
            ("resdir",), base="data lost"),
    # 3. report into a site folder holding a user's files
    OutCase("report-user-site", "report {demo_run} -o {site}", 2, "not an earlier report", ("site",),
            base="data lost"),
    OutCase("report-marked-plus-user-file", "report {demo_run} -o {report_plus}", 2,
            "it holds charts/holiday.jpg, which `deepmnist report` does not write", ("report_plus",),
            base="data lost"),
    OutCase("report-refreshes-its-own", "report {demo_run} -o {report_ok}", 0, "wrote", base="fine"),
    OutCase("report-refreshes-a-legacy-one", "report {demo_run} -o {legacy_report}", 0, "wrote", base="fine"),
    # the same for history -o
    OutCase("history-user-folder", "history {runs} -o {userdir}", 2, "not an earlier history", ("userdir",),
            base="silent wrong"),
    OutCase("history-into-its-results", "history {resdir} -o {resdir}", 2, "not an earlier history",
            ("resdir",), base="silent wrong"),
    OutCase("history-refreshes-a-legacy-one", "history {runs} -o {legacy_history}", 0, "wrote", base="fine"),
    # portability's results folder
    OutCase("portability-user-folder", "portability --results-dir {userdir}", 2, "not an earlier results folder",
            ("userdir",), base="silent wrong"),
    # 4. train --out X --summary X, in several spellings
    OutCase("train-summary-is-out", "train --steps 1 --out {ck} --summary {ck}", 2, "the same file as --out",
            ("ck",), base="data lost"),
    OutCase("train-summary-is-out-dotdot", "train --steps 1 --out {ck} --summary {tmp}/sub/../ck.safetensors",
            2, "the same file as --out", ("ck",), base="data lost"),
    OutCase("train-summary-is-out-symlink", "train --steps 1 --out {ck} --summary {ck_link}", 2,
            "the same file as --out", ("ck",), base="data lost"),
    OutCase("train-summary-is-out-hardlink", "train --steps 1 --out {ck} --summary {ck_hard}", 2,
            "the same file as --out", ("ck",), base="data lost"),
]  # fmt: skip

# 5. a FIFO or a character device as an output, for every output option
SPECIAL = [
    ("train-out", "train --steps 1 --out {node}", "data lost"),
    ("train-summary", "train --steps 1 --out {tmp}/t.safetensors --summary {node}", "data lost"),
    ("export-out", "export --no-progress --out {node}", "fine"),
    ("report-o", "report {demo_run} -o {node}", "fine"),
    ("history-o", "history {runs} -o {node}", "fine"),
    ("portability-results-dir", "portability --results-dir {node}", "fine"),
    ("plot-out", "plot {demo_run} --out {node}-plot", "data lost"),
    ("bench-results-dir", f"bench {BENCH} --results-dir {{node}}", "fine"),
]
SPECIAL_CASES = [
    OutCase(f"{kind}-{name}", command.replace("{node}", "{" + kind + "}"), 2,
            f"is {'a FIFO' if kind == 'fifo' else 'a character device'}",
            runner="process" if name.startswith("bench") else "cli", base=base)
    for kind in ("fifo", "chardev")
    for name, command, base in SPECIAL
]  # fmt: skip

# a NUL in machine_id is refused by the sidecar's schema (bench/results/sidecar.py): exit 2, nothing written
ESCAPES = [
    *(
        OutCase(f"history-machine-id-{name}", f"history {{hostile_{name}}} -o {{tmp}}/h-{name}",
                2 if name == "nul" else 0, "no control characters" if name == "nul" else "wrote",
                absent=("tmp/../escaped-dotdot.png", "tmp/escaped-absolute.png"),
                base="traceback" if name == "nul" else "escape" if name != "script" else "silent wrong")
        for name in HOSTILE_IDS
    ),
    *(
        OutCase(f"report-machine-id-{name}", f"report {{hostile_{name}}} -o {{tmp}}/r-{name}",
                2 if name == "nul" else 0, "no control characters" if name == "nul" else "wrote",
                absent=("tmp/../escaped-dotdot.png", "tmp/escaped-absolute.png"),
                base="traceback" if name != "script" else "fine")
        for name in HOSTILE_IDS
    ),
    OutCase("report-chart-symlink", "report {linked_run} -o {tmp}/r-linked", 0, "a symbolic link; not copied",
            clean=("tmp/r-linked", "SECRET"), base="escape"),
    OutCase("history-steps-md-script", "history {hostile_script} -o {tmp}/h-md", 0, "&lt;script>alert(1)&lt;/script>",
            clean=("tmp/h-md", "<script>"), shown="<script>", base="escape"),
    OutCase("compare-markdown-script", "compare {script_csv} --markdown", 0, "&lt;script>alert(1)&lt;/script>",
            shown="<script>", base="escape"),
]  # fmt: skip

TABLE = [
    pytest.param(case, id=f"{group}-{case.id}")
    for group, cases in (("data-lost", DATA_LOST), ("special", SPECIAL_CASES), ("escape", ESCAPES))
    for case in cases
]


@pytest.mark.parametrize("case", TABLE)
def test_bad_output(case: OutCase, out_places: dict[str, Path], capsys) -> None:
    if "{chardev}" in case.command and not out_places["chardev"].exists():
        pytest.skip(_char_device(out_places["tmp"] / "probe") or "no character device")
    message = check_case(case, out_places, capsys)
    if case.shown:
        assert case.shown not in message, message
    for name in case.absent:
        assert not os.path.lexists(_place(name, out_places)), f"{name} was written"
    if case.clean:
        folder, text = case.clean
        for path in _place(folder, out_places).rglob("*"):
            if path.is_file():
                assert text.encode() not in path.read_bytes(), f"{path} holds {text!r}"
    if case.id.startswith(("history-machine-id", "report-machine-id")) and case.code == 0:
        out = _place(f"tmp/{case.command.split()[-1].rsplit('/', 1)[-1]}", out_places)
        pngs = list(out.rglob("*.png"))
        assert pngs and all(p.resolve().is_relative_to(out.resolve()) for p in pngs)


def test_the_required_case_leaves_the_users_files(out_places) -> None:
    """The issue's own case, said plainly: ``export --out`` on a folder holding a user's file exits
    2 and leaves the files."""
    userdir = out_places["userdir"]
    assert main(["export", "--no-progress", "--out", str(userdir)]) == 2
    assert (userdir / "notes.txt").read_text() == "my notes\n"
    assert (userdir / "photos" / "a.jpg").read_bytes() == b"\xff\xd8\xff\xe0 a photo"


def test_a_report_and_a_history_carry_the_marker(out_places, tmp_path) -> None:
    from models import outputs

    assert outputs.MARKER == MARKER
    assert main(["history", str(out_places["runs"]), "-o", str(tmp_path / "h")]) == 0
    assert json.loads((tmp_path / "h" / MARKER).read_text())["command"] == "history"
    assert json.loads((out_places["report_ok"] / MARKER).read_text())["command"] == "report"
    # a folder marked by one command is not another's
    assert main(["report", str(out_places["demo_run"]), "-o", str(tmp_path / "h")]) == 2
    assert (tmp_path / "h" / "steps.md").is_file()


def test_sigterm_to_bench_writes_the_rows_so_far(tmp_path) -> None:
    """A real small bench of two groups (batch 1, then 2), sent SIGTERM once the second group's
    timing has started: the first group's rows are written, a message says so, exit 143."""
    results = tmp_path / "results"
    command = [sys.executable, "-m", "bench", "bench", *BENCH.split(), "--batch-sizes", "1,2", "--max-time", "3",
               "--results-dir", str(results)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("[2/2]"):
                break
        time.sleep(1.0)  # inside the second group: its worker started, timing under way
        proc.send_signal(signal.SIGTERM)
        lines.append(proc.stderr.read())
        proc.wait(timeout=120)
    finally:
        proc.kill()
    err = "".join(lines)
    assert "Traceback" not in err, err
    assert proc.returncode == 143, err
    assert "deepmnist bench: terminated (SIGTERM)" in err and "the rows measured so far are in" in err, err
    from bench.results.store import read_results

    (csv_path,) = results.glob("*.csv")
    rows = read_results(csv_path)
    assert set(rows["batch_size"]) == {1} and (rows["status"] == "ok").any()
    assert json.loads(csv_path.with_suffix(".json").read_text())["interrupted"] is True


def test_safe_names_and_inside() -> None:
    from models.atomic import OutputError
    from models.outputs import inside, safe_name

    assert safe_name("ad6d85c4dd35") == "ad6d85c4dd35"  # a machine_id as written stays as it is
    for hostile in ("../../..", "/etc/passwd", "a\x00b", "..", ".", "~abc", "<script>", "x" * 300):
        name = safe_name(hostile)
        assert "/" not in name and "\x00" not in name and not name.startswith(".") and len(name) <= 60
    assert safe_name("a/b") != safe_name("a-b") and safe_name("~abc") != safe_name("abc")
    with pytest.raises(OutputError, match="outside the output folder"):
        inside("/tmp/x", "/tmp/x/../y.png")
