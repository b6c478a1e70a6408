"""``deepmnist export``: every artifact from a trained checkpoint, proved equal to eager PyTorch.

Writes into ``<artifacts>/export/`` (or ``--out``):
  deep_mnist.onnx              float32 input (N, 1, 28, 28) -> logits (N, 10)
  deep_mnist_uint8.onnx        uint8 pixels (N, 28, 28) -> probabilities (N, 10), label (N,) int64
  deep_mnist.torchscript.pt    traced and frozen, same contract as deep_mnist.onnx
  deep_mnist_int8.onnx         int8 (QDQ), calibrated on training images; same contract   onnx-int8
  deep_mnist_fp16.onnx         float16 inside, float32 input and output; same contract  onnx-fp16
  deep_mnist.pt2               torch.export program, dynamic batch; same contract       torch-export
  deep_mnist.aoti-cpu.pt2      AOTInductor CPU package of that program (needs a C++ compiler,
                               skipped with the reason otherwise); same contract         aoti-cpu
  layers/<layer>.onnx, layers/<layer>.torchscript.pt   conv1 (+ReLU), pool1, conv2 (+ReLU), pool2,
                               fc1 (+ReLU), fc2, each with the input shape it sees in the network
  manifest.json                every file with SHA-256, inputs, outputs, dtypes, opset, details and
                               its metadata as JSON values (for apps that cannot read the file's)
All or nothing: the export is built in a sibling temporary folder, parity-checked, its manifest
written last, and only then swapped in for the old folder, so a manifest always describes a
complete, checked export and a failure (parity, a full disk, Ctrl-C) leaves the old one as it
was. Exporting again from the same checkpoint, into this or any other folder, gives the same
bytes (on the same machine and Python environment: the AOTInductor library is built for this CPU
and names the environment's folders, see docs/export.md); the manifest names no folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from tqdm import tqdm

from exporters.formats import OPSET
from exporters.manifest import (
    MANIFEST,
    NOTES,
    Artifact,
    ExportError,
    Manifest,
    TensorSpec,
    decode_metadata,
    load_manifest,
    portable_checkpoint,
)
from exporters.quantize import FP16_MIN_AGREEMENT, INT8_MAX_ACCURACY_DIFF
from exporters.registry import FORMATS, TOLERANCE, Parity, Step, WriteContext
from exporters.wrappers import Uint8Classifier, layer_example, single_layer
from models.atomic import sha256_file, special_kind
from models.checkpoint import Checkpoint, load_checkpoint
from models.data import MNIST, load_mnist, to_input
from models.errors import CheckFailed, is_out_of_space, parse_int
from models.network import LAYER_NAMES, LAYERS, DeepMNIST, trace_layers
from models.outputs import claim_folder
from models.paths import export_dir
from models.train import default_checkpoint_path

MODEL_ONNX = "deep_mnist.onnx"
UINT8_ONNX = "deep_mnist_uint8.onnx"
MODEL_TORCHSCRIPT = "deep_mnist.torchscript.pt"
INT8_ONNX = "deep_mnist_int8.onnx"
FP16_ONNX = "deep_mnist_fp16.onnx"
MODEL_PT2 = "deep_mnist.pt2"
AOTI_CPU = "deep_mnist.aoti-cpu.pt2"

INPUT_MEANING = (
    "float32 (N, 1, 28, 28), NCHW: pixel = uint8 / 255, white digit on black, 28x28 centred by "
    "centre of mass as in MNIST"
)
UINT8_MEANING = "uint8 (N, 28, 28): raw MNIST pixels, white digit on black, 28x28 centred as in MNIST"


@dataclass(frozen=True)
class ExportConfig:
    checkpoint: Path
    out_dir: Path
    opset: int = OPSET
    force: bool = False  # re-export even if the manifest says the export is up to date
    parity_batch: int = 500  # test images per parity batch
    # the artifacts root the manifest names the checkpoint relative to (None: $DEEPMNIST_ARTIFACTS
    # or <checkout>/artifacts)
    artifacts: str | os.PathLike | None = None


def _producer() -> dict[str, str]:
    import onnxscript

    return {
        "deepmnist-bench": "0.1.0",
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
    }


def _metadata(ckpt: Checkpoint, target: str, meaning: str, outputs: str, fmt: str = "") -> dict[str, str]:
    """The facts every artifact carries; the formats added later also name their format."""
    extra = {"format": fmt} if fmt and FORMATS[fmt].names_itself else {}
    what = f"{target}, {fmt}" if extra else target
    return {
        **extra,
        "description": f"Deep MNIST CNN ({what}), trained with deepmnist-bench",
        "target": target,
        "input": meaning,
        "output": outputs,
        "labels": json.dumps([str(d) for d in range(10)]),
        "recipe": json.dumps(ckpt.config, sort_keys=True),
        "test_accuracy": "" if ckpt.test_accuracy is None else f"{ckpt.test_accuracy:.4f}",
        "checkpoint_sha256": ckpt.sha256,
        "producer": json.dumps(_producer(), sort_keys=True),
    }


def _spec(name: str, shape: tuple[int, ...], dtype: str) -> list[TensorSpec]:
    return [TensorSpec(name, ["batch", *shape], dtype)]


def _plan(net: DeepMNIST) -> list[Step]:
    image = (1, 28, 28)
    float_in, logits = _spec("input", image, "float32"), _spec("logits", (10,), "float32")
    model = dict(inputs=float_in, outputs=logits, meaning=INPUT_MEANING, out_meaning="logits float32 (N, 10)")
    plan = [
        Step("model", "onnx", MODEL_ONNX, **model, module=net, example=torch.rand(2, *image)),
        Step("model_uint8", "onnx", UINT8_ONNX, _spec("pixels", (28, 28), "uint8"),
             [*_spec("probabilities", (10,), "float32"), *_spec("label", (), "int64")], UINT8_MEANING,
             "probabilities float32 (N, 10) (softmax), label int64 (N,)",
             module=Uint8Classifier(net), example=torch.zeros(2, 28, 28, dtype=torch.uint8)),
        Step("model", "torchscript", MODEL_TORCHSCRIPT, **model, module=net, example=torch.rand(2, *image)),
        Step("model", "onnx-int8", INT8_ONNX, **model),
        Step("model", "onnx-fp16", FP16_ONNX, **model),
        # the example is stored in the archive: zeros, not random, keep it reproducible
        Step("model", "torch-export", MODEL_PT2, **model, module=net, example=torch.zeros(2, *image)),
        Step("model", "aoti-cpu", AOTI_CPU, **model),
    ]  # fmt: skip
    for spec in LAYERS:
        for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".torchscript.pt")):
            plan.append(
                Step(spec.name, fmt, f"layers/{spec.name}{suffix}", _spec("input", spec.input_shape, "float32"),
                     _spec("output", spec.output_shape, "float32"),
                     f"float32 (N, {', '.join(map(str, spec.input_shape))}): the input {spec.name} sees in the network",
                     f"float32 (N, {', '.join(map(str, spec.output_shape))})",
                     module=single_layer(net, spec.name), example=layer_example(spec.name))
            )  # fmt: skip
    return plan


def _export_files(
    ckpt: Checkpoint, net: DeepMNIST, config: ExportConfig, mnist: MNIST, progress: bool
) -> tuple[list[Artifact], dict[str, str]]:
    """Write every planned file; returns the artifacts and the skipped ones ("target/format" -> why)."""
    artifacts, skipped = [], {}
    context = WriteContext(config.out_dir, config.opset, mnist)
    bar = tqdm(_plan(net), desc="export", unit="file", disable=not progress)
    for step in bar:
        bar.set_postfix_str(step.file)
        path = config.out_dir / step.file
        metadata = _metadata(ckpt, step.target, step.meaning, step.out_meaning, step.format)
        fmt = FORMATS[step.format]
        try:
            details = fmt.write(step, path, metadata, context)
        except fmt.unavailable as e:
            path.unlink(missing_ok=True)  # a file from an earlier export is not described any more
            skipped[f"{step.target}/{step.format}"] = str(e)
            bar.write(f"skipped {step.file}: {e}")
            continue
        context.written[step.target, step.format] = path
        artifacts.append(
            Artifact(
                target=step.target,
                format=step.format,
                file=step.file,
                sha256=sha256_file(path),
                bytes=path.stat().st_size,
                inputs=step.inputs,
                outputs=step.outputs,
                opset=_onnx_opset(path) if fmt.onnx else None,
                details=details,
                metadata=decode_metadata(_onnx_metadata(path) if fmt.onnx else metadata),
            )
        )
    return artifacts, skipped


def _onnx_metadata(path: Path) -> dict[str, str]:
    """The metadata_props the written file carries (the int8 and fp16 writers add keys)."""
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def _onnx_opset(path: Path) -> int:
    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


@torch.no_grad()
def check_parity(manifest: Manifest, net: DeepMNIST, mnist: MNIST, batch: int = 500, progress: bool = True):
    """Run every artifact on its own runtime over the full test set against eager PyTorch."""
    net = net.eval()
    runners = {}
    for artifact in manifest.artifacts:
        path = manifest.verified_path(artifact.target, artifact.format)
        if artifact.format not in FORMATS:
            raise ExportError(f"{path}: unknown artifact format {artifact.format!r} in the manifest")
        runners[artifact.target, artifact.format] = FORMATS[artifact.format].runner(path)
    worst = {key: 0.0 for key in runners}
    agree = {key: 0 for key in runners}
    correct = {key: 0 for key in runners}
    eager_correct = 0
    images = mnist.test_images
    for start in tqdm(range(0, len(images), batch), desc="parity", unit="batch", disable=not progress):
        pixels = images[start : start + batch]  # (B, 28, 28) uint8
        labels = mnist.test_labels[start : start + batch]  # (B,)
        x = to_input(pixels)  # (B, 1, 28, 28)
        acts = trace_layers(net, x)
        logits = acts[LAYER_NAMES[-1]][1].numpy()  # (B, 10)
        expected_label = logits.argmax(1)
        eager_correct += int((expected_label == labels).sum())
        for (target, fmt), run in runners.items():
            if target == "model":
                out = run(x.numpy())[0]
                label = out.argmax(1)
                ref = logits
            elif target == "model_uint8":
                out, label = run(pixels)
                ref = torch.softmax(torch.from_numpy(logits), 1).numpy()
            else:
                layer_in, layer_out = acts[target]
                out, ref = run(layer_in.numpy())[0], layer_out.numpy()
            if target.startswith("model"):
                agree[(target, fmt)] += int((label == expected_label).sum())
                correct[(target, fmt)] += int((label == labels).sum())
            worst[(target, fmt)] = max(worst[(target, fmt)], float(np.abs(out - ref).max()))
    n = len(images)
    return [
        Parity(t, f, worst[(t, f)], agree[(t, f)] / n, n, correct[(t, f)] / n, eager_correct / n)
        if t.startswith("model")
        else Parity(t, f, worst[(t, f)], None, n)
        for (t, f) in runners
    ]


def export_all(
    config: ExportConfig, mnist: MNIST, progress: bool = True, recheck: bool = True, repair: bool = True
) -> tuple[Manifest, list[Parity], bool]:
    """Export (unless up to date), prove parity, write the manifest. Returns (manifest, parity, exported).

    All or nothing: the new export is built in a sibling temporary folder, checked, and only then
    swapped in for the old one; a failure at any point (parity, a full disk, Ctrl-C) leaves the old
    export as it was. An up-to-date export (same checkpoint, files verified) is parity-checked
    again only if ``recheck``. ``repair=False`` (the benchmark) refuses an export whose files no
    longer match its manifest instead of exporting over them."""
    ckpt = load_checkpoint(config.checkpoint)
    check_finite_weights(ckpt)
    net = ckpt.model()
    out = _export_folder(config.out_dir)
    if not config.force:
        if not repair and (out / MANIFEST).exists():
            load_manifest(out).verify_all()  # ExportError names the changed file and the way out
        if is_up_to_date(out, ckpt.sha256, net):
            manifest = load_manifest(out)
            parity = check_parity(manifest, net, mnist, config.parity_batch, progress) if recheck else []
            return manifest, parity, False
    _remove_stale_staging(out)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}{_STAGING}", dir=out.parent))
    except OSError as e:
        raise _write_error(out, e) from None
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; the export gets the usual mode
        staged = dataclasses.replace(config, out_dir=staging)
        artifacts, skipped = _export_files(ckpt, net, staged, mnist, progress)
        manifest = Manifest(
            checkpoint=portable_checkpoint(config.checkpoint, config.artifacts),
            checkpoint_sha256=ckpt.sha256,
            test_accuracy=ckpt.test_accuracy,
            recipe=ckpt.config,
            producer=_producer(),
            artifacts=artifacts,
            folder=staging,
            skipped=skipped,
            notes=dict(NOTES),
        )
        parity = check_parity(manifest, net, mnist, config.parity_batch, progress)
        failed = [p for p in parity if not p.ok]
        if failed:
            raise CheckFailed(
                f"{out}: parity failed for "
                + ", ".join(f"{p.target} {p.format} ({FORMATS[p.format].describe(p)})" for p in failed)
                + "; the previous export is unchanged"
            )
        manifest.save(staging)
        load_manifest(staging).verify_all()  # what is swapped in reads back complete
        _swap_in(staging, out)
    except OSError as e:
        raise _write_error(out, e) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest.folder = out
    return manifest, parity, True


_STAGING = ".new-"  # .<folder>.new-XXXXXXXX: an export being built beside <folder>
_RETIRED = ".old-"  # .<folder>.old-XXXXXXXX: the previous export while the new one is swapped in


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _planned_files() -> set[str]:
    """Every file an export of this version writes (relative paths), the manifest included."""
    files = {MANIFEST, MODEL_ONNX, UINT8_ONNX, MODEL_TORCHSCRIPT, INT8_ONNX, FP16_ONNX, MODEL_PT2, AOTI_CPU}
    return files | {
        f"layers/{spec.name}{suffix}" for spec in LAYERS for suffix in (".onnx", ".torchscript.pt")
    }


def _is_export(folder: Path) -> bool:
    """An earlier export: its manifest.json is a deepmnist export manifest (the export's own mark;
    an export folder carries no other)."""
    try:
        load_manifest(folder)
    except ExportError:
        return False
    return True


def _owned_by_export(folder: Path) -> Callable[[str, bool], bool]:
    """Which entries of an earlier export the export may replace: the files this version writes,
    those the folder's manifest lists (an older version's), and the ``layers`` folder."""
    try:
        listed = {a.file for a in load_manifest(folder).artifacts}
    except ExportError:
        listed = set()
    files = _planned_files() | listed
    return lambda relative, is_folder: relative == "layers" if is_folder else relative in files


def _export_folder(out: Path) -> Path:
    """The export folder, checked before any work: not a file, a FIFO or a device; new, empty or an
    earlier export holding nothing else (``models.outputs.claim_folder``: the swap replaces the
    whole folder); and its parent writable (the new export is built beside it). A symlinked folder
    is resolved, so the link keeps pointing at it."""
    out = Path(out)
    if out.is_symlink():
        out = out.resolve()
    if out.exists() and not out.is_dir() and not special_kind(out):
        raise ExportError(f"{out}: --out is a file, expected a folder for the export")
    claim_folder(out, command="export", what="export", option="--out", recognise=_is_export,
                 owns=_owned_by_export(out), mark=f"export {MANIFEST}")  # fmt: skip
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _write_error(out, e) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(
            f"{out}: cannot export there: {parent} is not writable (the new export is built beside the "
            "old one, then swapped in)"
        )
    return out


def _write_error(out: Path, error: OSError) -> ExportError:
    where = f" ({error.filename})" if error.filename else ""
    if is_out_of_space(error):
        return ExportError(
            f"{out}: no space left on device while exporting{where}; the previous export is unchanged"
        )
    return ExportError(
        f"{out}: cannot write the export: {error.strerror or error}{where}; the previous export is unchanged"
    )


def _swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by the complete ``staging`` folder (two renames; the old one is restored if
    the second fails), then delete the old export."""
    if not out.exists():
        os.rename(staging, out)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}{_RETIRED}", dir=out.parent))
    os.rename(out, retired / out.name)
    try:
        os.rename(staging, out)
    except OSError:
        os.rename(retired / out.name, out)
        raise
    finally:
        if out.exists():
            shutil.rmtree(retired, ignore_errors=True)


def _remove_stale_staging(out: Path) -> None:
    """Folders left by an export that was killed (SIGKILL, power loss) before it could clean up:
    exactly the names ``tempfile.mkdtemp`` gave them (``.<folder>.new-`` or ``.old-`` and 8 of its
    characters), real folders, not links."""
    for tag in (_STAGING, _RETIRED):
        made = re.compile(re.escape(f".{out.name}{tag}") + r"[A-Za-z0-9_]{8}")
        for stale in out.parent.glob(f".{glob.escape(out.name)}{tag}*"):
            if made.fullmatch(stale.name) and stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)


def check_finite_weights(ckpt: Checkpoint) -> None:
    """A checkpoint with NaN or infinite weights makes an export that classifies nothing."""
    for name, tensor in ckpt.model_state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ExportError(
                f"{ckpt.path}: weight {name} holds NaN or infinite values; the checkpoint is damaged "
                "(train again)"
            )


def is_up_to_date(folder: Path, checkpoint_sha256: str, net: DeepMNIST) -> bool:
    """The manifest lists (or records as skipped) exactly the planned artifacts, from this
    checkpoint, with their metadata, and all verify."""
    try:
        manifest = load_manifest(folder)
        manifest.verify_all()
    except ExportError:
        return False
    planned = {(step.target, step.format) for step in _plan(net)}
    listed = {(a.target, a.format) for a in manifest.artifacts}
    listed |= {tuple(key.split("/", 1)) for key in manifest.skipped}
    # an export from before the manifest carried each file's metadata is made again
    described = all(a.metadata is not None for a in manifest.artifacts)
    return manifest.checkpoint_sha256 == checkpoint_sha256 and listed == planned and described


def format_report(manifest: Manifest, parity: list[Parity]) -> str:
    by_key = {(p.target, p.format): p for p in parity}
    lines = [f"{'artifact':34} {'sha256':16} {'max |diff|':>10} {'argmax agree':>12}  vs eager PyTorch"]
    for a in manifest.artifacts:
        p = by_key[(a.target, a.format)]
        agree = "" if p.agreement is None else f"{p.agreement * 100:.2f}%"
        status = ("ok" if p.ok else "FAIL") + FORMATS[a.format].note(a, p)
        lines.append(f"{a.file:34} {a.sha256[:16]} {p.max_abs_diff:10.2e} {agree:>12}  {status}")
    for key, reason in manifest.skipped.items():
        lines.append(f"skipped {key}: {reason}")
    lines.append(
        f"parity on all {parity[0].images} test images; tolerance {TOLERANCE:g} (float32); onnx-int8: "
        f"test accuracy within {INT8_MAX_ACCURACY_DIFF * 100:.1f} points of float32; onnx-fp16: argmax "
        f"agreement >= {FP16_MIN_AGREEMENT:.1%}"
    )
    return "\n".join(lines)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export ONNX (float32, int8, fp16), TorchScript, torch.export and AOTInductor artifacts",
    )
    p.add_argument(
        "--artifacts", metavar="DIR", help="artifacts folder (default $DEEPMNIST_ARTIFACTS or ./artifacts)"
    )
    p.add_argument("--data-dir", metavar="DIR", help="read MNIST IDX files from this folder")
    p.add_argument(
        "--checkpoint", metavar="PATH", help="checkpoint (default: the default recipe's in <artifacts>)"
    )
    p.add_argument("--out", metavar="DIR", help="export folder (default <artifacts>/export)")
    p.add_argument("--opset", type=parse_int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    p.add_argument("--force", action="store_true", help="export again even if up to date")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:

    checkpoint = (
        Path(args.checkpoint) if args.checkpoint else default_checkpoint_path(artifacts=args.artifacts)
    )
    out = Path(args.out) if args.out else export_dir(args.artifacts)
    newest = onnx.defs.onnx_opset_version()
    if not 17 <= args.opset <= newest:
        raise ExportError(f"--opset {args.opset}: use 17 to {newest} (this onnx's newest)")
    config = ExportConfig(
        checkpoint=checkpoint, out_dir=out, opset=args.opset, force=args.force, artifacts=args.artifacts
    )
    _export_folder(out)  # first: a folder of someone else's files is refused before anything is read
    check_finite_weights(load_checkpoint(checkpoint))  # before fetching MNIST: a bad checkpoint fails fast
    mnist = load_mnist(data_dir=args.data_dir, artifacts=args.artifacts)
    start = time.perf_counter()
    manifest, parity, exported = export_all(config, mnist, progress=not args.no_progress)
    seconds = time.perf_counter() - start
    print(
        ("exported" if exported else "up to date (same checkpoint, files verified)")
        + f": {out} ({seconds:.1f} s)"
    )
    print(format_report(manifest, parity))
    print(f"manifest: {out / MANIFEST}")
    return 0
