"""deepmnist portability: the exported models in other consumers, as a table; failures are rows.

Every row names the model file by SHA-256, and the committed matrix must be of the model the
committed reference results are of (``test_the_committed_matrix_is_of_the_committed_model``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.portability.matrix import (
    CONSUMERS,
    KNOWN_CAUSES,
    MAX_REPEATS,
    Model,
    Row,
    _crash,
    _one,
    read_rows,
    summary,
    unavailable_reason,
    write_outputs,
)
from models.paths import REPO_ROOT
from tests.cli.test_bad_input import Case, check_case

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
    # each row names its model file by the SHA-256 the manifest lists, and the checkpoint's
    listed = {a.file: a.sha256 for a in exported.artifacts}
    assert all(r.sha256 == listed[r.file] and r.checkpoint_sha256 == exported.checkpoint_sha256 for r in rows)
    assert {r.processes for r in rows if r.status != "skipped"} == {1}
    page = path.with_suffix(".md").read_text()
    assert all(f"`{r.file}` {r.sha256}" in page for r in rows) and exported.checkpoint_sha256 in page


@pytest.mark.parametrize("consumer", ["onnxruntime", "onnx-reference", "tract", "opencv", "openvino"])
def test_a_model_that_does_not_load_is_a_row_with_the_error(tmp_path, consumer, mnist):
    import numpy as np

    if reason := unavailable_reason(CONSUMERS[consumer]):
        pytest.skip(reason)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an ONNX model")
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((4, 1, 28, 28), np.float32))
    model = Model("broken.onnx", "onnx", False, broken, "0" * 64, "1" * 64)
    refs = {"broken.onnx": np.zeros((4, 10), np.float32)}
    rows = _one(
        model, CONSUMERS[consumer], None, {False: images}, mnist.test_labels[:4], refs, (1, 2), 1, tmp_path
    )
    assert [(r.batch, r.loads, r.status) for r in rows] == [
        (1, "no", "load failed"),
        (2, "no", "load failed"),
    ]
    assert rows[0].note and rows[0].version
    assert {(r.sha256, r.checkpoint_sha256) for r in rows} == {("0" * 64, "1" * 64)}


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
    from bench.portability.matrix import summary
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


# ----------------------------------------------------------------------------- the committed matrix


def _reference_run() -> Path:
    """The committed run the README's figures come from (its "committed reference run" line)."""
    readme = (REPO_ROOT / "README.md").read_text()
    names = set(re.findall(r"committed reference run `(results/[\w.-]+\.csv)`", readme))
    assert len(names) == 1, f"README.md names {len(names)} committed reference runs: {sorted(names)}"
    return REPO_ROOT / names.pop()


def _committed_matrices() -> list[Path]:
    """The newest committed matrix and every one docs/apps-and-portability.md shows."""
    page = (REPO_ROOT / "docs" / "apps-and-portability.md").read_text()
    block = page.split("<!-- portability:begin -->")[1].split("<!-- portability:end -->")[0]
    shown = {REPO_ROOT / name for name in re.findall(r"results/portability-[\w.-]+\.csv", block)}
    newest = max((REPO_ROOT / "results").glob("portability-*.csv"))  # the names start with the UTC time
    return sorted(shown | {newest})


def _stale(matrices: dict[str, list[Row]], checkpoint: str, listed: dict[str, str] | None) -> list[str]:
    """Why the matrices (name -> rows) are not of the export of ``checkpoint`` (a SHA-256), whose
    model files are ``listed`` (file -> SHA-256) where this machine has that export; [] if they are."""
    problems = []
    hashes: dict[str, set[str]] = {}
    for name, rows in matrices.items():
        if {r.checkpoint_sha256 for r in rows} != {checkpoint}:
            found = sorted({r.checkpoint_sha256[:12] or "none" for r in rows})
            problems.append(f"{name}: of the checkpoint {', '.join(found)}, not {checkpoint[:12]}")
        for r in rows:
            hashes.setdefault(r.file, set()).add(r.sha256)
    if set(hashes) != MODELS:
        problems.append(f"the model files are {sorted(hashes)}, not {sorted(MODELS)}")
    for file, found in sorted(hashes.items()):
        if len(found) != 1 or "" in found:
            problems.append(
                f"{file}: {len(found - {''})} SHA-256s{' and rows without one' if '' in found else ''}"
            )
        elif listed is not None and found != {listed.get(file)}:
            problems.append(
                f"{file}: SHA-256 {found.pop()[:12]}, this export's is {str(listed.get(file))[:12]}"
            )
    return problems


def test_the_committed_matrix_is_of_the_committed_model():
    """A stale matrix cannot stay: the newest committed matrix, and every one the docs show, must
    be of the model that the committed reference results are of.

    Which hashes: the export itself is not committed (``artifacts/`` is not in git), and no other
    machine can remake it byte for byte: a checkpoint records its training's wall-clock times, so
    its SHA-256 is new with every training, and so are the model files' (they carry it in their
    metadata). What the repository commits about the model is the reference run's sidecar
    (``config.artifacts.checkpoint_sha256``): the checkpoint whose export the README's figures were
    measured on. So every row must name that checkpoint, with one SHA-256 per model file across the
    matrices; and where this machine's export is of that checkpoint, the SHA-256s its manifest lists.
    A matrix made before the hash columns existed names no checkpoint: stale.
    """
    from exporters.manifest import MANIFEST, load_manifest
    from models.paths import export_dir

    reference = _reference_run()
    sidecar = json.loads(reference.with_suffix(".json").read_text())
    checkpoint = sidecar["config"]["artifacts"]["checkpoint_sha256"]
    listed = None
    if (export_dir() / MANIFEST).is_file():
        manifest = load_manifest(export_dir())
        if manifest.checkpoint_sha256 == checkpoint:
            listed = {a.file: a.sha256 for a in manifest.artifacts}
    matrices = {path.name: read_rows(path) for path in _committed_matrices()}
    problems = _stale(matrices, checkpoint, listed)
    assert not problems, (
        f"the committed portability matrix is not of the model of {reference.name}: {'; '.join(problems)}; "
        "run `deepmnist portability` on that export and commit its results"
    )


def _rows(**changes) -> list[Row]:
    base = Row(file="", format="onnx", consumer="onnxruntime", version="1.0", batch=1, images=10, loads="yes",
               runs="yes", max_abs_diff=0.0, argmax_agreement=1.0, accuracy=1.0, status="ok", note="",
               sha256="a" * 64, checkpoint_sha256="c" * 64)  # fmt: skip
    return [dataclasses.replace(base, file=f, **changes) for f in sorted(MODELS)]


@pytest.mark.parametrize(
    ("matrix", "listed", "phrase"),
    [
        (_rows(), None, None),
        (_rows(), dict.fromkeys(MODELS, "a" * 64), None),
        (_rows(checkpoint_sha256="d" * 64), None, "of the checkpoint dddddddddddd, not cccccccccccc"),
        (_rows(checkpoint_sha256="", sha256=""), None, "of the checkpoint none"),  # before the columns
        (_rows(), dict.fromkeys(MODELS, "b" * 64), "this export's is bbbbbbbbbbbb"),
        (_rows()[:3], None, "the model files are"),
    ],
    ids=[
        "current",
        "current-and-this-export",
        "another-checkpoint",
        "no-hashes",
        "other-files",
        "a-file-gone",
    ],
)
def test_the_staleness_check_fails_on_a_stale_matrix(matrix, listed, phrase):
    problems = _stale({"m.csv": matrix}, "c" * 64, listed)
    assert (phrase is None and problems == []) or any(phrase in p for p in problems), problems


def test_two_matrices_of_different_files_are_stale():
    problems = _stale({"a.csv": _rows(), "b.csv": _rows(sha256="b" * 64)}, "c" * 64, None)
    assert any("2 SHA-256s" in p for p in problems), problems


# ----------------------------------------------------------------------------- the CSV, repeats


def test_the_csv_carries_the_hashes_and_the_processes(tmp_path):
    rows = _rows(processes=5, argmax_agreement=0.5612, argmax_agreement_max=0.874, status="wrong results")
    path = write_outputs(rows, tmp_path, "# test")
    assert read_rows(path) == rows
    with open(path) as f:
        header = next(csv.reader(f))
    assert {"sha256", "checkpoint_sha256", "processes", "argmax_agreement_max"} <= set(header)
    assert "56.12-87.40%" in summary(rows) and "56.12-87.40%" in path.with_suffix(".md").read_text()
    # a matrix written before these columns reads with them empty, one process each
    old = tmp_path / "old.csv"
    with open(path) as f, open(old, "w", newline="") as out:
        kept = [
            c for c in header if c not in ("sha256", "checkpoint_sha256", "processes", "argmax_agreement_max")
        ]
        writer = csv.DictWriter(out, fieldnames=kept, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(csv.DictReader(f))
    assert {(r.sha256, r.processes, r.argmax_agreement_max) for r in read_rows(old)} == {("", 1, None)}


def test_repeats_run_fresh_processes(exported, tmp_path):
    """``--repeats 3``: three worker processes per consumer x model; onnxruntime gives the same
    outputs in each, so no row says it is not deterministic."""
    proc = _cli("--images", "20", "--batch-sizes", "1,4", "--consumers", "onnxruntime", "--repeats", "3",
                "--results-dir", str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (path,) = tmp_path.glob("portability-*.csv")
    rows = read_rows(path)
    assert len(rows) == 8 and {r.processes for r in rows} == {3}
    assert all(r.status == "ok" and r.argmax_agreement == r.argmax_agreement_max == 1.0 for r in rows)
    assert not any("not deterministic" in r.note for r in rows)
    assert "--repeats 3" in path.with_suffix(".md").read_text()


def test_the_committed_opencv_4_run_shows_its_nondeterminism():
    """OpenCV 4.14 on the int8 model at the larger batch, in fresh processes: the committed run says
    how far the agreement ranged, and the note says the outputs differ from process to process."""
    rows = [r for path in _committed_matrices() for r in read_rows(path)
            if (r.consumer, r.file) == ("opencv", "deep_mnist_int8.onnx") and r.version.startswith("4.")]  # fmt: skip
    assert rows, "no committed OpenCV 4 run"
    larger = max(rows, key=lambda r: r.batch)
    assert larger.processes >= 5 and larger.status == "wrong results"
    assert larger.argmax_agreement < larger.argmax_agreement_max and "not deterministic" in larger.note


# ----------------------------------------------------------------------------- notes


def test_known_causes_name_a_version_and_the_docs_do_not_repeat_them():
    """KNOWN_CAUSES is the one place of the consumers' causes: the docs' prose does not restate
    them (the matrix tables shown there carry them as notes)."""
    page = (REPO_ROOT / "docs" / "apps-and-portability.md").read_text()
    prose = re.sub(r"<!-- portability:begin -->.*<!-- portability:end -->", "", page, flags=re.S)
    for (consumer, file, _), text in KNOWN_CAUSES.items():
        assert consumer in CONSUMERS and file in MODELS
        assert text[:60] not in prose, f"docs/apps-and-portability.md restates {text[:60]!r}"


def test_the_manifest_and_the_app_section_say_openvino_computes_in_bf16(tmp_path):
    """Every export's manifest carries ``NOTES`` (OpenVINO's bf16 default); a manifest written
    before notes existed reads with none. The app section of the docs says it too."""
    from exporters.manifest import NOTES, Manifest, load_manifest

    assert "bf16" in NOTES["openvino"] and "INFERENCE_PRECISION_HINT=f32" in NOTES["openvino"]
    manifest = Manifest("c.safetensors", "c" * 64, 0.99, {}, {}, notes=dict(NOTES))
    manifest.save(tmp_path)
    assert load_manifest(tmp_path).notes == NOTES
    data = json.loads((tmp_path / "manifest.json").read_text())
    del data["notes"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    assert load_manifest(tmp_path).notes == {}
    page = (REPO_ROOT / "docs" / "apps-and-portability.md").read_text()
    app = page.split("## Using the exported model in your app")[1].split("\n## ")[0]
    assert "bf16" in app and '"INFERENCE_PRECISION_HINT": "f32"' in app and "`notes`" in app


# ----------------------------------------------------------------------------- bad input


CASES = [
    Case("show-a-bad-sha256", "portability --show {bad_sha}", 2, "sha256 'abc' is not a SHA-256", ("bad_sha",)),
    Case("repeats-0", "portability --repeats 0 --results-dir {tmp}/out", 2, "--repeats 0: must be at least 1"),
    Case("repeats-over-the-limit", f"portability --repeats {MAX_REPEATS + 1} --results-dir {{tmp}}/out", 2,
         f"--repeats {MAX_REPEATS + 1}: must be at most {MAX_REPEATS}"),
]  # fmt: skip


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("portability-bad-input")
    bad = tmp / "bad-sha.csv"
    rows = _rows()
    write = tmp / "written"
    path = write_outputs(rows, write, "# test")
    bad.write_text(path.read_text().replace("a" * 64, "abc", 1))
    return {"tmp": tmp, "bad_sha": bad}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, places: dict[str, Path], capsys) -> None:
    check_case(case, places, capsys)
    assert not (places["tmp"] / "out").exists()  # refused before anything was written


# ----------------------------------------------------------------------------- onnxruntime-web's wasmPaths

_WASM_PAGE = """<!doctype html><meta charset="utf-8"><script type="module">
import * as ort from "/ort/ort.wasm.min.mjs";
const paths = new URLSearchParams(location.search).get("paths");
if (paths !== null) ort.env.wasm.wasmPaths = paths === "absolute" ? new URL("/ort/", location.href).href : paths;
ort.env.wasm.numThreads = 1;
try {
  const session = await ort.InferenceSession.create("/models/deep_mnist_uint8.onnx");
  await session.run({ pixels: new ort.Tensor("uint8", new Uint8Array(784), [1, 28, 28]) });
  window.result = "ok";
} catch (e) { window.result = "error: " + e; }
</script>
"""


def test_wasm_paths_works_unset_absolute_or_from_the_root(exported, tmp_path):
    """What docs/apps-and-portability.md says of ``ort.env.wasm.wasmPaths``, in headless Chromium: a
    page at /page/ loads onnxruntime-web from /ort/; unset, an absolute URL, "/ort/" and even
    "../ort/" work (a relative path is resolved against onnxruntime-web's own module, /ort/...),
    while "./ort/" (-> /ort/ort/) and "ort/" (a bare module name) fail."""
    from bench.runtimes.js_host import StaticServer, chrome, web_mounts, web_reason

    if reason := web_reason():
        pytest.skip(reason)
    (tmp_path / "index.html").write_text(_WASM_PAGE)
    results = {}
    with StaticServer(web_mounts(models=exported.folder, page=tmp_path)) as server:
        driver = chrome()
        try:
            driver.set_script_timeout(120)
            for paths in (None, "absolute", "/ort/", "../ort/", "./ort/", "ort/"):
                driver.get(f"{server.url}page/index.html" + ("" if paths is None else f"?paths={paths}"))
                results[paths] = driver.execute_async_script(
                    "const done = arguments[0];"
                    "(function wait() { window.result ? done(window.result) : setTimeout(wait, 20); })();"
                )
        finally:
            driver.quit()
    assert {p: r == "ok" for p, r in results.items()} == {
        None: True, "absolute": True, "/ort/": True, "../ort/": True, "./ort/": False, "ort/": False
    }, results  # fmt: skip
