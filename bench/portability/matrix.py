"""``deepmnist portability``: every exported ONNX model in every installed consumer, side by side.

A consumer is another program that loads the same ``.onnx`` file: onnxruntime (Python; the
reference), onnx's ReferenceEvaluator, OpenVINO (its defaults, and with float32 asked for),
OpenCV DNN (``opencv-python-headless``; OpenCV 5.0 also with its classic engine), tract (``tract``
on PyPI), onnxruntime-node and onnxruntime-web (wasm, headless Chromium). For each model file x
consumer x batch size (1 and a larger one) a row says: loads, runs, max |diff| of the float
output against Python onnxruntime, argmax agreement with it, accuracy, the consumer's version,
and a status: ``ok``; ``differs`` (the same predictions, values beyond the model's tolerance);
``wrong results`` (argmax agreement below 99%); ``load failed`` / ``run failed`` / ``crashed``
with the error; ``skipped`` with the reason (consumer not installed). Each row also names the
model file's SHA-256 and the checkpoint's, as the export's manifest lists them (the file is
checked against the manifest before the run), so a matrix of another model is told apart.

``--repeats N`` runs each consumer x model in N fresh worker processes: a row then holds the
worst figures of the N (largest max |diff|, lowest agreement and accuracy) and the best agreement
beside them, and its note says when the outputs differed from one process to the next.

Each consumer x model runs in its own worker process (``python -m bench.portability.matrix --worker``):
a consumer that crashes the process (OpenCV has) becomes a row, never the end of the matrix.
Writes ``results/portability-<UTC>-<host>.csv`` and ``.md`` (atomically; never over a file).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from exporters.manifest import OPENVINO_BF16
from models.errors import parse_int
from models.paths import REPO_ROOT

BATCH_SIZES = (1, 100)
DEFAULT_IMAGES = 10_000
MAX_REPEATS = 20  # fresh worker processes per consumer x model (--repeats)
# max |diff| against Python onnxruntime accepted as "the same numbers", per model format: float32
# arithmetic in another order; float16 inside (a consumer may accumulate in float16 or float32:
# logits reach about 30, where one float16 step is 0.016, so 3 steps); int8 QDQ (a consumer may
# run the dequantized float graph instead of int8 kernels: about one quantization step of the
# logits either way, the int8 rows' max abs diff in docs/apps-and-portability.md).
TOLERANCE = {"onnx": 1e-4, "onnx-fp16": 0.05, "onnx-int8": 0.5}
MIN_AGREEMENT = 0.99  # below this argmax agreement with onnxruntime the results are wrong
WORKER_TIMEOUT_S = 1800

# One line of cause for results that are the consumer's, keyed by (consumer, file, the start of
# the consumer's version); shown when the row is not ok. Each was seen with the version named.
# This table is the one place that says them: the docs show the matrix with its notes.
KNOWN_CAUSES: dict[tuple[str, str, str], str] = {
    **{("openvino", f, ""): f"{OPENVINO_BF16} (the openvino-f32 rows)"
       for f in ("deep_mnist.onnx", "deep_mnist_uint8.onnx", "deep_mnist_fp16.onnx")},
    ("opencv", "deep_mnist_int8.onnx", "5.0."): "OpenCV 5's new DNN engine cannot build this QDQ graph "
    "(argTensor: bufidx >= 0); OpenCV 5.0's classic engine (opencv-classic) runs it",
    ("opencv", "deep_mnist_int8.onnx", "5.1."): "OpenCV 5's new DNN engine cannot build this QDQ graph "
    "(argTensor: bufidx >= 0) and OpenCV 5.1 has no classic engine, so the int8 model loads in no "
    "engine of 5.1; OpenCV 5.0's classic engine runs it",
    ("opencv-classic", "deep_mnist_fp16.onnx", "5.0."): "OpenCV's classic engine has no float16 layers "
    "(refuses CV_16F); OpenCV 5's default engine runs it",
    ("opencv", "deep_mnist_int8.onnx", "4."): "OpenCV 4's int8 layers give wrong logits at batch > 1, "
    "not the same ones in two fresh processes (see the agreement range); no variant tried avoids it "
    "(Flatten for the Reshape, conv1 quantized too, per-tensor weights): use batch 1, or OpenCV 5.0's "
    "classic engine (5.1 has none)",
    ("opencv", "deep_mnist_uint8.onnx", "4."): "OpenCV 4's ArgMax (the label output) returns float32 "
    "(N, 1) values that are not the argmax; the probabilities are right: take their argmax",
    ("tract", "deep_mnist_fp16.onnx", "0.23."): "tract computes the float16 layers in float16 (its "
    "logits lie 6x further from the float32 model's than onnxruntime's on this file, which computes "
    "them in float32), so its max |diff| can pass the 0.05 tolerance: 0.0508 on an earlier checkpoint's "
    "model; the same predictions",
}  # fmt: skip


@dataclass
class Row:
    file: str
    format: str
    consumer: str
    version: str
    batch: int
    images: int
    loads: str  # "yes" / "no" / "" (skipped)
    runs: str
    max_abs_diff: float | None
    argmax_agreement: float | None  # fraction, against Python onnxruntime
    accuracy: float | None  # fraction of the images
    status: str
    note: str
    # the fresh worker processes the figures come from (--repeats; 0 when skipped): max_abs_diff,
    # argmax_agreement and accuracy are the worst of them, argmax_agreement_max the best agreement
    processes: int = 1
    argmax_agreement_max: float | None = None
    sha256: str = ""  # the model file's SHA-256, as the export's manifest lists it
    checkpoint_sha256: str = ""  # the SHA-256 of the checkpoint the export was made from


# ----------------------------------------------------------------------------- consumers
# Each runs in the worker: ``load(path) -> run``, ``run(x) -> {output name: array}``.


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _ort_load(path: Path, threads: int):
    # deliberate: a consumer's worker runs this module under another Python; its top stays light
    from exporters.onnxrt import cpu_session

    session = cpu_session(path, threads)
    names = [o.name for o in session.get_outputs()]
    return lambda x: dict(zip(names, session.run(None, {session.get_inputs()[0].name: x}), strict=True))


def _reference_load(path: Path, threads: int):
    import onnx
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(onnx.load(str(path)))
    names = list(evaluator.output_names)
    return lambda x: dict(zip(names, evaluator.run(None, {evaluator.input_names[0]: x}), strict=True))


def _openvino_load(path: Path, threads: int, f32: bool = False):
    import openvino as ov

    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads}
    if f32:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()

    def run(x):
        result = request.infer([x])
        return {out.get_any_name(): np.array(result[out]) for out in compiled.outputs}

    return run


def _opencv_load(path: Path, threads: int, classic: bool = False):
    import cv2

    cv2.setNumThreads(threads)
    if classic:
        net = cv2.dnn.readNetFromONNX(str(path), engine=cv2.dnn.ENGINE_CLASSIC)
    else:
        net = cv2.dnn.readNetFromONNX(str(path))
    names = list(net.getUnconnectedOutLayersNames())

    def run(x):
        net.setInput(x)
        return dict(zip(names, net.forward(names), strict=True))

    return run


def _opencv_classic_reason() -> str | None:
    import cv2

    if not hasattr(cv2.dnn, "ENGINE_CLASSIC"):
        return (
            f"OpenCV {cv2.__version__} has no classic DNN engine to choose "
            "(OpenCV 5.0 has: its ENGINE_CLASSIC; 4.x has that engine only, 5.1 removed it)"
        )
    return None


def _tract_load(path: Path, threads: int):
    import tract

    model = tract.onnx().load(str(path))
    names = [model.output_name(i) for i in range(model.output_count())]
    runnable = model.into_model().into_runnable()
    return lambda x: dict(zip(names, [t.to_numpy() for t in runnable.run([x])], strict=True))


class _JsRun:
    """onnxruntime-node or onnxruntime-web through bench.runtimes.js_host, fed through a temporary file."""

    def __init__(self, path: Path, threads: int, web: bool) -> None:
        # deliberate: a consumer's worker runs this module under another Python; its top stays light
        from bench.runtimes.js_host import NodeSession, WebSession

        self.tmp = Path(tempfile.mkdtemp(prefix="deepmnist-js-"))
        self.web = web
        if web:
            self.session = WebSession({"models": path.parent, "tmp": self.tmp})
            model = self.session.url("models", path.name)
        else:
            self.session = NodeSession()
            model = str(path)
        self.session.request(cmd="load", model=model, threads=threads)

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        # deliberate: a consumer's worker runs this module under another Python; its top stays light
        from bench.runtimes.js_host import decode_outputs

        (self.tmp / "input.bin").write_bytes(np.ascontiguousarray(x).tobytes())
        where = self.session.url("tmp", "input.bin") if self.web else str(self.tmp / "input.bin")
        answer = self.session.request(
            cmd="run",
            input=where,
            dtype=str(x.dtype),
            shape=list(x.shape),
            batch=len(x),
            out=f"{self.tmp}/out-",
        )
        return decode_outputs(answer, self.tmp / "out-")


def _pkg_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


@dataclass(frozen=True)
class Consumer:
    name: str
    module: str  # what must import for it to be installed
    version: Any  # () -> str
    load: Any  # (path, threads) -> run
    max_images: int | None = None  # a stated subset where it is slow
    max_images_by_format: dict[str, int] | None = None  # the same, for one model format only
    reason: Any = None  # () -> str | None, beyond the import
    install: str = ""


def _js(web: bool) -> Consumer:
    # deliberate: a consumer's worker runs this module under another Python; its top stays light
    from bench.runtimes import js_host

    return Consumer(
        "onnxruntime-web" if web else "onnxruntime-node",
        "selenium" if web else "json",
        js_host.web_version if web else js_host.node_version,
        lambda p, t: _JsRun(p, t, web),
        reason=js_host.web_reason if web else js_host.node_reason,
    )


CONSUMERS: dict[str, Consumer] = {
    c.name: c
    for c in (
        Consumer("onnxruntime", "onnxruntime", _ort_version, _ort_load),
        # pure numpy, orders of magnitude slower than onnxruntime: a stated subset
        Consumer("onnx-reference", "onnx", lambda: "onnx " + _pkg_version("onnx"), _reference_load,
                 max_images=200),
        Consumer("openvino", "openvino", lambda: _pkg_version("openvino"), _openvino_load,
                 install='pip install -e ".[openvino]"'),
        Consumer("openvino-f32", "openvino", lambda: _pkg_version("openvino"),
                 lambda p, t: _openvino_load(p, t, f32=True), install='pip install -e ".[openvino]"'),
        Consumer("opencv", "cv2", lambda: _pkg_version("opencv-python-headless"), _opencv_load,
                 install='pip install -e ".[portability]"'),
        Consumer("opencv-classic", "cv2", lambda: _pkg_version("opencv-python-headless"),
                 lambda p, t: _opencv_load(p, t, classic=True), reason=_opencv_classic_reason,
                 install='pip install -e ".[portability]"'),
        # tract 0.23 on the float16 model: ~0.3 s an image on an AVX2 CPU, in every run, the first
        # included (the float32 model: ~2 ms): a stated subset
        Consumer("tract", "tract", lambda: _pkg_version("tract"), _tract_load,
                 max_images_by_format={"onnx-fp16": 1000}, install='pip install -e ".[portability]"'),
        _js(web=False),
        _js(web=True),
    )
}  # fmt: skip


def unavailable_reason(consumer: Consumer) -> str | None:
    import importlib.util

    if importlib.util.find_spec(consumer.module) is None:
        return f"{consumer.module} is not installed" + (f" ({consumer.install})" if consumer.install else "")
    return consumer.reason() if consumer.reason else None


# ----------------------------------------------------------------------------- worker


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")
    return f"{type(error).__name__}: {text}"[:300]


def worker(
    consumer_name: str, model: Path, images_npy: Path, batches: list[int], out: Path, threads: int
) -> int:
    """Load ``model`` in the consumer, run the images at each batch size; write ``out`` (JSON) after
    each step, and ``out``.<batch>.npz with the outputs, so a crash keeps what came before."""
    consumer = CONSUMERS[consumer_name]
    report: dict[str, Any] = {"version": "", "load_error": None, "runs": {}}

    def save() -> None:
        out.write_text(json.dumps(report))

    if reason := unavailable_reason(consumer):  # in this Python, which may be another environment's
        report["skipped"] = reason
        save()
        return 0

    try:
        report["version"] = consumer.version()
    except Exception as e:  # a broken install: the row says so
        report["version"] = f"? ({_first_line(e)})"
    save()
    images = np.load(images_npy)
    try:
        run = consumer.load(model, threads)
    except Exception as e:  # every consumer has its own error types
        report["load_error"] = _first_line(e)
        save()
        return 0
    for batch in batches:
        report["runs"][str(batch)] = {"error": "started, did not finish"}
        save()
        try:
            parts: dict[str, list[np.ndarray]] = {}
            for start in range(0, len(images), batch):
                for name, value in run(images[start : start + batch]).items():
                    parts.setdefault(name, []).append(np.asarray(value))
            np.savez(f"{out}.{batch}.npz", **{k: np.concatenate(v) for k, v in parts.items()})
            report["runs"][str(batch)] = {"error": None}
        except Exception as e:  # as above
            report["runs"][str(batch)] = {"error": _first_line(e)}
        save()
    return 0


# ----------------------------------------------------------------------------- matrix


@dataclass(frozen=True)
class Model:
    file: str
    format: str
    uint8: bool  # pixels uint8 (N, 28, 28) in, probabilities + label out
    path: Path
    sha256: str = ""  # as the manifest lists it (and the file was checked against)
    checkpoint_sha256: str = ""  # the manifest's


def exported_models(export_folder: Path) -> list[Model]:
    """Every whole-model ONNX file of the export, after its SHA-256 matched the manifest."""
    # deliberate: a consumer's worker runs this module under another Python; its top stays light
    from exporters.manifest import load_manifest

    manifest = load_manifest(export_folder)
    models = []
    for artifact in manifest.artifacts:
        if artifact.format.startswith("onnx") and artifact.target.startswith("model"):
            path = manifest.verified_path(artifact.target, artifact.format)
            uint8 = artifact.target == "model_uint8"
            models.append(
                Model(
                    artifact.file, artifact.format, uint8, path, artifact.sha256, manifest.checkpoint_sha256
                )
            )
    return models


def _float_output(model: Model, outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The output compared against onnxruntime: logits, or the uint8 model's probabilities."""
    name = "probabilities" if model.uint8 else "logits"
    if name in outputs:
        return outputs[name]
    floats = [v for v in outputs.values() if v.dtype.kind == "f" and v.ndim == 2]
    if len(floats) != 1:
        raise ValueError(f"no output named {name!r} (got {sorted(outputs)})")
    return floats[0]


def _status(model: Model, diff: float, agreement: float) -> str:
    if agreement < MIN_AGREEMENT:
        return "wrong results"
    return "ok" if diff <= TOLERANCE[model.format] and agreement >= 0.999 else "differs"


def run_matrix(
    export_folder: Path,
    images: np.ndarray,
    labels: np.ndarray,
    consumers: list[str],
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    threads: int = 1,
    progress: bool = True,
    python: str = sys.executable,
    repeats: int = 1,
) -> list[Row]:
    import shutil

    from tqdm import tqdm

    # deliberate: a consumer's worker runs this module under another Python; its top stays light
    from models.data import to_input

    models = exported_models(export_folder)
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="deepmnist-portability-"))
    try:
        inputs = {}
        for uint8 in (False, True):
            inputs[uint8] = work / f"images-{'uint8' if uint8 else 'float32'}.npy"
            np.save(inputs[uint8], images if uint8 else to_input(images).numpy())
        references = {}
        for model in models:  # Python onnxruntime, the reference, at the larger batch
            run = _ort_load(model.path, threads)
            x = np.load(inputs[model.uint8])
            step = max(batch_sizes)
            references[model.file] = np.concatenate(
                [_float_output(model, run(x[i : i + step])) for i in range(0, len(x), step)]
            )
        bar = tqdm(total=len(models) * len(consumers), desc="portability", unit="run", disable=not progress)
        for name in consumers:
            consumer = CONSUMERS[name]
            reason = unavailable_reason(consumer) if python == sys.executable else None  # else: the worker's
            for model in models:
                bar.set_postfix_str(f"{name} {model.file}")
                rows += _one(model, consumer, reason, inputs, labels, references, batch_sizes, threads, work,
                             python, repeats)  # fmt: skip
                bar.update()
        bar.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the folder mkdtemp made above: ours
    return rows


def _worker_process(
    consumer, model, source, batch_sizes, threads, out: Path, python
) -> tuple[dict, str | None]:
    """One fresh worker process: its report (``worker``'s JSON) and how it crashed (None if it did not)."""
    cmd = [python, "-m", "bench.portability.matrix", "--worker", consumer.name, str(model.path),
           str(source), ",".join(map(str, batch_sizes)), str(out), str(threads)]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, cwd=REPO_ROOT)
        crash = _crash(proc.returncode, proc.stderr)
    except subprocess.TimeoutExpired:
        crash = f"did not finish in {WORKER_TIMEOUT_S} s"
    report = json.loads(out.read_text()) if out.is_file() else {"version": "", "load_error": None, "runs": {}}
    if crash and not report.get("skipped") and not report["runs"] and report["load_error"] is None:
        report["load_error"] = crash
    return report, crash


@dataclass
class _Attempt:
    """One process's outcome at one batch size: ``value`` (the float output compared) when it ran,
    else the failure; ``error`` goes into the note after the known cause."""

    loads: str
    runs: str
    status: str
    error: str = ""
    known: bool = True  # the note starts with the known cause (not for an output of the wrong shape)
    value: np.ndarray | None = None
    max_abs_diff: float | None = None
    agreement: float | None = None
    accuracy: float | None = None


def _attempt(model: Model, report: dict, crash: str | None, batch: int, out: Path, ref, labels) -> _Attempt:
    run = report["runs"].get(str(batch))
    if report["load_error"] is not None:
        return _Attempt("no", "", "load failed", report["load_error"])
    if run is None or run["error"] is not None:
        error = (run or {}).get("error")
        if crash and (run is None or error == "started, did not finish"):
            return _Attempt("yes", "no", "crashed", crash)
        return _Attempt("yes", "no", "run failed", error or "")
    outputs = dict(np.load(f"{out}.{batch}.npz"))
    try:
        value = _float_output(model, outputs).astype(np.float32)
        if value.shape != ref.shape:
            raise ValueError(f"output shape {value.shape}, expected {ref.shape}")
    except ValueError as e:
        return _Attempt("yes", "yes", "wrong results", str(e), known=False)
    predicted = value.argmax(1)
    diff = float(np.abs(value - ref).max())
    agreement = float((predicted == ref.argmax(1)).mean())
    result = _Attempt("yes", "yes", _status(model, diff, agreement), value=value, max_abs_diff=diff,
                      agreement=agreement, accuracy=float((predicted == labels).mean()))  # fmt: skip
    if model.uint8 and "label" in outputs and result.status != "wrong results":
        label = outputs["label"].reshape(-1)  # (N,); a consumer may return (N, 1)
        same = label.astype(np.int64) == predicted if label.shape == predicted.shape else np.zeros(1, bool)
        if not same.all():
            result.status = "wrong results"
            result.error = f"the label output agrees with the argmax on {same.mean():.2%}"
    return result


def _one(
    model, consumer, reason, inputs, labels, references, batch_sizes, threads, work, python=sys.executable,
    repeats=1,
) -> list[Row]:  # fmt: skip
    limits = [consumer.max_images, (consumer.max_images_by_format or {}).get(model.format)]
    n = min([len(labels), *(m for m in limits if m is not None)])
    base = dict(file=model.file, format=model.format, consumer=consumer.name, images=n, sha256=model.sha256,
                checkpoint_sha256=model.checkpoint_sha256)  # fmt: skip
    if reason:
        return [Row(**base, version="", batch=b, loads="", runs="", max_abs_diff=None, processes=0,
                    argmax_agreement=None, accuracy=None, status="skipped", note=reason)
                for b in batch_sizes]  # fmt: skip
    source = inputs[model.uint8]
    if n < len(labels):
        source = work / f"{source.stem}-{n}.npy"
        np.save(source, np.load(inputs[model.uint8])[:n])
    processes = []
    for k in range(repeats):  # each a fresh process
        out = work / f"{consumer.name}-{model.file}-{k}.json"
        processes.append((*_worker_process(consumer, model, source, batch_sizes, threads, out, python), out))
        if processes[-1][0].get("skipped"):
            return _one(model, consumer, processes[-1][0]["skipped"], inputs, labels, references, batch_sizes,
                        threads, work)  # fmt: skip
    version = processes[0][0]["version"]
    known = next(
        (text for (name, file, start), text in KNOWN_CAUSES.items()
         if (name, file) == (consumer.name, model.file) and version.startswith(start)),
        "",
    )  # fmt: skip

    def cause(error: str, with_known: bool = True) -> str:
        return "; ".join(t for t in (known if with_known else "", error) if t)

    rows = []
    for batch in batch_sizes:
        ref = references[model.file][:n]
        attempts = [
            _attempt(model, report, crash, batch, out, ref, labels[:n]) for report, crash, out in processes
        ]
        row = dict(base, version=version, batch=batch, processes=repeats)
        failed = [a for a in attempts if a.value is None]
        if failed:  # the first failure is the row; how many processes failed when not all
            a = failed[0]
            note = cause(a.error, a.known)
            if len(failed) < repeats:
                note += f" (in {len(failed)} of {repeats} processes)"
            figures = dict(max_abs_diff=a.max_abs_diff, argmax_agreement=a.agreement, accuracy=a.accuracy)
            rows.append(Row(**row, **figures, loads=a.loads, runs=a.runs, status=a.status, note=note))
            continue
        diff = max(a.max_abs_diff for a in attempts)
        agreements = [a.agreement for a in attempts]
        accuracies = [a.accuracy for a in attempts]
        status = _status(model, diff, min(agreements))
        label_error = next((a.error for a in attempts if a.error), "")
        if label_error:
            status = "wrong results"
        note = "" if status == "ok" else cause(label_error)
        between = max(float(np.abs(a.value - attempts[0].value).max()) for a in attempts)
        if between > 0:  # the same consumer, file and input gave other outputs in another process
            note = "; ".join(t for t in (note, _nondeterminism(between, agreements, accuracies)) if t)
        rows.append(Row(**row, loads="yes", runs="yes", max_abs_diff=diff, argmax_agreement=min(agreements),
                        argmax_agreement_max=max(agreements), accuracy=min(accuracies), status=status,
                        note=note))  # fmt: skip
    return rows


def _nondeterminism(between: float, agreements: list[float], accuracies: list[float]) -> str:
    text = f"not deterministic: the outputs of the {len(agreements)} processes differ by up to {between:.3g}"
    if min(agreements) != max(agreements):
        text += (f", argmax agreement {min(agreements):.2%}-{max(agreements):.2%}, "
                 f"accuracy {min(accuracies):.2%}-{max(accuracies):.2%}")  # fmt: skip
    return text


def _crash(returncode: int, stderr: str) -> str | None:
    if returncode == 0:
        return None
    if returncode < 0:
        try:
            return f"the process died: {signal.Signals(-returncode).name}"
        except ValueError:
            return f"the process died: signal {-returncode}"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return f"the worker exited with status {returncode}: {lines[-1] if lines else ''}"[:300]


# ----------------------------------------------------------------------------- output


def _fmt(value: float | None, kind: str) -> str:
    if value is None:
        return ""
    if kind == "pct":
        return f"{value * 100:.2f}%"
    return f"{value:.2e}"


def _agreement(row: Row) -> str:
    """The argmax agreement, as a range over the processes where they differed."""
    low, high = row.argmax_agreement, row.argmax_agreement_max
    if low is None or high is None or high == low:
        return _fmt(low, "pct")
    return f"{low * 100:.2f}-{high * 100:.2f}%"


def model_hashes(rows: list[Row]) -> str:
    """The model files the rows are of, with their SHA-256 and the checkpoint's (one line)."""
    files = {r.file: r.sha256 for r in rows}
    checkpoints = sorted({r.checkpoint_sha256 for r in rows})
    text = "; ".join(f"`{file}` {sha or '(not recorded)'}" for file, sha in files.items())
    return f"Model files (SHA-256): {text}; from the checkpoint {', '.join(checkpoints) or '(not recorded)'}."


def markdown(rows: list[Row], title: str = "") -> str:
    """One table: a row per model file x consumer x batch size."""
    head = ["model", "consumer", "version", "batch", "images", "processes", "loads", "runs", "max abs diff",
            "argmax agree", "accuracy", "status", "note"]  # fmt: skip
    lines = ([f"{title}", ""] if title else []) + [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for r in rows:
        status = f"**{r.status}**" if r.status not in ("ok", "skipped") else r.status
        cells = [f"`{r.file}`", r.consumer, r.version, str(r.batch), f"{r.images:,}", str(r.processes), r.loads,
                 r.runs, _fmt(r.max_abs_diff, "e"), _agreement(r), _fmt(r.accuracy, "pct"),
                 status, r.note.replace("|", "\\|")]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary(rows: list[Row]) -> str:
    """The table of docs/apps-and-portability.md: one line per model file x consumer, the batch sizes side by side
    (status per batch; worst max |diff| and agreement over them, the agreement a range where it differed
    between processes; accuracy at the largest batch)."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.file, r.consumer), []).append(r)
    batches = sorted({r.batch for r in rows})
    head = ["model", "consumer", "version", *(f"batch {b}" for b in batches), "images", "max abs diff",
            "argmax agree", "accuracy", "note"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for (file, consumer), group in groups.items():
        by_batch = {r.batch: r for r in group}
        diffs = [r.max_abs_diff for r in group if r.max_abs_diff is not None]
        agreeing = [r for r in group if r.argmax_agreement is not None]
        worst = min(agreeing, key=lambda r: r.argmax_agreement) if agreeing else None
        last = by_batch[batches[-1]] if batches[-1] in by_batch else group[-1]
        statuses = [by_batch[b].status if b in by_batch else "" for b in batches]
        cells = [f"`{file}`", consumer, group[0].version,
                 *(s if s in ("ok", "skipped", "") else f"**{s}**" for s in statuses), f"{group[0].images:,}",
                 _fmt(max(diffs) if diffs else None, "e"), _agreement(worst) if worst else "",
                 _fmt(last.accuracy, "pct"), next((r.note for r in group if r.note), "").replace("|", "\\|")]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(rows: list[Row], results_dir: Path, header: str) -> Path:
    """``portability-<UTC>-<host>.csv`` and ``.md`` in ``results_dir``; never over an existing file."""
    import csv
    import io
    from datetime import datetime, timezone

    # deliberate: a consumer's worker runs this module under another Python; its top stays light
    from models.atomic import atomic_write_text

    host = re.sub(r"[^A-Za-z0-9._-]+", "-", platform.node()).strip(".-") or "host"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results_dir.mkdir(parents=True, exist_ok=True)
    base = results_dir / f"portability-{stamp}-{host}"
    k = 1
    while base.with_suffix(".csv").exists() or base.with_suffix(".md").exists():
        k += 1
        base = results_dir / f"portability-{stamp}-{host}-{k}"
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[f.name for f in fields(Row)], lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if v is None else v for k, v in asdict(r).items()})
    atomic_write_text(
        base.with_suffix(".md"), f"{header}\n\n{summary(rows)}\n## Every row\n\n{markdown(rows)}"
    )
    atomic_write_text(base.with_suffix(".csv"), text.getvalue())
    return base.with_suffix(".csv")


SHA256 = re.compile(r"[0-9a-f]{64}")


def read_rows(path: Path) -> list[Row]:
    """The rows of a portability CSV; one written before the hash and process columns existed reads
    with them empty (``processes`` 1). ValueError names a malformed value."""
    import csv
    import io

    # deliberate: a consumer's worker runs this module under another Python; its top stays light
    from models.files import read_text_limited

    def parse(name: str, value: str) -> Any:
        if name in ("batch", "images", "processes"):
            return int(value)
        if name in ("max_abs_diff", "argmax_agreement", "argmax_agreement_max", "accuracy"):
            return float(value) if value else None
        if name in ("sha256", "checkpoint_sha256") and value and not SHA256.fullmatch(value):
            raise ValueError(f"{name} {value[:80]!r} is not a SHA-256 (64 lowercase hex digits)")
        return value

    text = read_text_limited(path, "a portability table")
    return [
        Row(**{k: parse(k, v) for k, v in rec.items()})
        for rec in csv.DictReader(io.StringIO(text, newline=""))
    ]


# ----------------------------------------------------------------------------- CLI


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "portability", help="run every exported ONNX model in every installed consumer (a table)"
    )
    p.add_argument(
        "--artifacts", metavar="DIR", help="artifacts folder (default $DEEPMNIST_ARTIFACTS or ./artifacts)"
    )
    p.add_argument("--data-dir", metavar="DIR", help="read MNIST IDX files from this folder")
    p.add_argument(
        "--consumers",
        default=",".join(CONSUMERS),
        help=f"comma-separated (default all: {', '.join(CONSUMERS)})",
    )
    p.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)), help="default 1,100")
    p.add_argument(
        "--images", type=parse_int, default=DEFAULT_IMAGES, help="first N test images (default all 10,000)"
    )
    p.add_argument("--threads", type=parse_int, default=1, help="threads per consumer (default 1)")
    p.add_argument("--repeats", type=parse_int, default=1, metavar="N",
                   help=f"run each consumer x model in N fresh processes, the worst figures and the agreement "
                   f"range of them in each row (default 1, at most {MAX_REPEATS})")  # fmt: skip
    p.add_argument(
        "--results-dir", metavar="DIR", default=str(REPO_ROOT / "results"), help="default results/"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--python",
        metavar="PATH",
        default=sys.executable,
        help="run the consumers in this Python (another environment: another OpenCV, ...); "
        "it needs numpy and the consumer; the reference stays this one's onnxruntime",
    )
    p.add_argument("--show", metavar="CSV", help="print the summary table of a written CSV (runs nothing)")
    p.set_defaults(func=_cmd)  # fmt: skip


def _parse_list(text: str, what: str, allowed: Any = None) -> list[str]:
    # deliberate: a consumer's worker runs this module under another Python; its top stays light
    from models.errors import UserError

    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(f"--{what}: empty")
    if allowed is not None and (bad := [t for t in items if t not in allowed]):
        raise UserError(f"--{what}: unknown {', '.join(bad)}; choose from {', '.join(allowed)}")
    return items


def holds_results(folder: Path) -> bool:
    """A results folder (``portability --results-dir``, which only adds new files): it holds a
    portability table or a benchmark run's CSV."""
    # deliberate: a consumer's worker runs this module under another Python; its top stays light
    from bench.report.history import RUN_NAME

    return any(
        path.is_file() and (path.match("portability-*.csv") or RUN_NAME.fullmatch(path.name) is not None)
        for path in folder.glob("*.csv")
    )


def _machine_line() -> str:
    """This machine in one line, its ISA included (OpenVINO's default precision depends on it)."""
    # deliberate: a consumer's worker runs this module under another Python; its top stays light
    from bench.results.machine import Machine, collect_machine

    record = collect_machine()
    return Machine(record["machine_id"], record).describe().replace("; no measured peak", "")


def _cmd(args: argparse.Namespace) -> int:
    # deliberate: a consumer's worker runs this module under another Python; its top stays light
    from models.data import load_mnist
    from models.errors import UserError, check_number, max_threads
    from models.outputs import claim_folder
    from models.paths import export_dir

    if args.show:
        try:
            print(summary(read_rows(Path(args.show))), end="")
        except (OSError, KeyError, TypeError, ValueError) as e:
            raise UserError(f"{args.show}: not a portability CSV ({e})") from None
        return 0
    consumers = _parse_list(args.consumers, "consumers", CONSUMERS)
    # deliberate: a consumer's worker runs this module under another Python; its top stays light
    from models.errors import parse_list

    batches = parse_list(args.batch_sizes, int, "--batch-sizes")
    if any(b < 1 for b in batches) or not 1 <= args.images <= DEFAULT_IMAGES or args.threads < 1:
        raise UserError("--batch-sizes and --threads must be >= 1, --images between 1 and 10000")
    check_number("--threads", args.threads, minimum=1, maximum=max_threads())  # as every command's
    claim_folder(args.results_dir, command="portability", what="results folder", option="--results-dir",
                 recognise=holds_results)  # fmt: skip
    check_number("--repeats", args.repeats, minimum=1, maximum=MAX_REPEATS)
    mnist = load_mnist(data_dir=args.data_dir, artifacts=args.artifacts)
    images, labels = mnist.test_images[: args.images], mnist.test_labels[: args.images]
    start = time.perf_counter()
    if args.python != sys.executable:
        probe = subprocess.run([args.python, "-c", "import numpy"], capture_output=True, cwd=REPO_ROOT)
        if probe.returncode != 0:
            raise UserError(f"--python {args.python}: cannot run it with numpy")
    rows = run_matrix(export_dir(args.artifacts), images, labels, consumers, batches, args.threads,
                      progress=not args.no_progress, python=args.python, repeats=args.repeats)  # fmt: skip
    seconds = time.perf_counter() - start
    command = f"deepmnist portability --images {args.images} --batch-sizes {args.batch_sizes} --threads {args.threads}"
    if consumers != list(CONSUMERS):
        command += f" --consumers {','.join(consumers)}"
    if args.repeats != 1:
        command += f" --repeats {args.repeats}"
    if args.python != sys.executable:
        command += f" --python {args.python}"
    header = (
        f"# Portability of the exported models\n\n`{command}` on {platform.node()} "
        f"({platform.machine()}, Python {platform.python_version()}), {len(labels):,} test images "
        f"(stated subsets: the `images` column), {seconds:.0f} s. "
        "max abs diff and argmax agreement are against Python onnxruntime on the same file.\n\n"
        f"{_machine_line()}\n\n{model_hashes(rows)}"
    )
    path = write_outputs(rows, Path(args.results_dir), header)
    print(markdown(rows))
    print(f"written: {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, name, model, npy, batches, out, threads = sys.argv
        sys.exit(
            worker(
                name, Path(model), Path(npy), [int(b) for b in batches.split(",")], Path(out), int(threads)
            )
        )
    sys.exit("usage: deepmnist portability (this module's --worker mode is for its own use)")
