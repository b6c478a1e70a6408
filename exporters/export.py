"""``deepmnist export``: every artifact from a trained checkpoint, proved equal to eager PyTorch.

Writes into ``<artifacts>/export/`` (or ``--out``):
  deep_mnist.onnx              float32 input (N, 1, 28, 28) -> logits (N, 10)
  deep_mnist_uint8.onnx        uint8 pixels (N, 28, 28) -> probabilities (N, 10), label (N,) int64
  deep_mnist.torchscript.pt    traced and frozen, same contract as deep_mnist.onnx
  layers/<layer>.onnx, layers/<layer>.torchscript.pt   conv1 (+ReLU), pool1, conv2 (+ReLU), pool2,
                               fc1 (+ReLU), fc2, each with the input shape it sees in the network
  manifest.json                every file with SHA-256, inputs, outputs, dtypes, opset
The manifest is written last, and only after parity held, so a manifest always describes a
complete, checked export. Exporting again from the same checkpoint gives the same bytes.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from tqdm import tqdm

from exporters.formats import OPSET, export_onnx, export_torchscript
from exporters.manifest import MANIFEST, Artifact, ExportError, Manifest, TensorSpec, load_manifest
from exporters.wrappers import Uint8Classifier, layer_example, single_layer
from models.atomic import sha256_file
from models.checkpoint import Checkpoint, load_checkpoint
from models.data import MNIST, to_input
from models.network import LAYER_NAMES, LAYERS, DeepMNIST, trace_layers
from models.paths import export_dir

MODEL_ONNX = "deep_mnist.onnx"
UINT8_ONNX = "deep_mnist_uint8.onnx"
MODEL_TORCHSCRIPT = "deep_mnist.torchscript.pt"
TOLERANCE = 1e-4  # max |difference| of float32 outputs against eager PyTorch

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


@dataclass(frozen=True)
class Parity:
    target: str
    format: str
    max_abs_diff: float
    agreement: float | None  # argmax agreement with eager (model artifacts)
    images: int

    @property
    def ok(self) -> bool:
        agree = self.agreement is None or self.agreement == 1.0
        return self.max_abs_diff <= TOLERANCE and agree


def _producer() -> dict[str, str]:
    import onnxscript

    return {
        "deepmnist-bench": "0.1.0",
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
    }


def _metadata(ckpt: Checkpoint, target: str, meaning: str, outputs: str) -> dict[str, str]:
    return {
        "description": f"Deep MNIST CNN ({target}), trained with deepmnist-bench",
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


def _plan(net: DeepMNIST) -> list[tuple[str, str, str, torch.nn.Module, torch.Tensor, list, list, str, str]]:
    """(target, format, file, module, example, inputs, outputs, input meaning, output meaning)."""
    image = (1, 28, 28)
    plan = [
        ("model", "onnx", MODEL_ONNX, net, torch.rand(2, *image), _spec("input", image, "float32"),
         _spec("logits", (10,), "float32"), INPUT_MEANING, "logits float32 (N, 10)"),
        ("model_uint8", "onnx", UINT8_ONNX, Uint8Classifier(net), torch.zeros(2, 28, 28, dtype=torch.uint8),
         _spec("pixels", (28, 28), "uint8"),
         [*_spec("probabilities", (10,), "float32"), *_spec("label", (), "int64")],
         UINT8_MEANING, "probabilities float32 (N, 10) (softmax), label int64 (N,)"),
        ("model", "torchscript", MODEL_TORCHSCRIPT, net, torch.rand(2, *image), _spec("input", image, "float32"),
         _spec("logits", (10,), "float32"), INPUT_MEANING, "logits float32 (N, 10)"),
    ]  # fmt: skip
    for spec in LAYERS:
        for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".torchscript.pt")):
            plan.append(
                (spec.name, fmt, f"layers/{spec.name}{suffix}", single_layer(net, spec.name),
                 layer_example(spec.name), _spec("input", spec.input_shape, "float32"),
                 _spec("output", spec.output_shape, "float32"),
                 f"float32 (N, {', '.join(map(str, spec.input_shape))}): the input {spec.name} sees in the network",
                 f"float32 (N, {', '.join(map(str, spec.output_shape))})")
            )  # fmt: skip
    return plan


def _export_files(ckpt: Checkpoint, net: DeepMNIST, config: ExportConfig, progress: bool) -> list[Artifact]:
    artifacts = []
    plan = _plan(net)
    for target, fmt, file, module, example, inputs, outputs, meaning, out_meaning in tqdm(
        plan, desc="export", unit="file", disable=not progress
    ):
        path = config.out_dir / file
        metadata = _metadata(ckpt, target, meaning, out_meaning)
        if fmt == "onnx":
            export_onnx(
                module, example, path, inputs[0].name, [o.name for o in outputs], metadata, config.opset
            )
        else:
            export_torchscript(module, example, path, json.dumps(metadata, sort_keys=True))
        artifacts.append(
            Artifact(
                target=target,
                format=fmt,
                file=file,
                sha256=sha256_file(path),
                bytes=path.stat().st_size,
                inputs=inputs,
                outputs=outputs,
                opset=config.opset if fmt == "onnx" else None,
            )
        )
    return artifacts


def _onnx_runner(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda *arrays: session.run(
        None, {i.name: a for i, a in zip(session.get_inputs(), arrays, strict=True)}
    )


@torch.no_grad()
def check_parity(manifest: Manifest, net: DeepMNIST, mnist: MNIST, batch: int = 500, progress: bool = True):
    """Run every artifact on its own runtime over the full test set against eager PyTorch."""
    net = net.eval()
    runners = {}
    for artifact in manifest.artifacts:
        path = manifest.verified_path(artifact.target, artifact.format)
        if artifact.format == "onnx":
            runners[(artifact.target, "onnx")] = _onnx_runner(path)
        else:
            module = torch.jit.load(str(path)).eval()
            runners[(artifact.target, "torchscript")] = lambda x, m=module: [m(torch.from_numpy(x)).numpy()]
    worst = {key: 0.0 for key in runners}
    agree = {key: 0 for key in runners}
    images = mnist.test_images
    for start in tqdm(range(0, len(images), batch), desc="parity", unit="batch", disable=not progress):
        pixels = images[start : start + batch]  # (B, 28, 28) uint8
        x = to_input(pixels)  # (B, 1, 28, 28)
        acts = trace_layers(net, x)
        logits = acts[LAYER_NAMES[-1]][1].numpy()  # (B, 10)
        expected_label = logits.argmax(1)
        for (target, fmt), run in runners.items():
            if target == "model":
                out = run(x.numpy())[0]
                agree[(target, fmt)] += int((out.argmax(1) == expected_label).sum())
                ref = logits
            elif target == "model_uint8":
                out, label = run(pixels)
                agree[(target, fmt)] += int((label == expected_label).sum())
                ref = torch.softmax(torch.from_numpy(logits), 1).numpy()
            else:
                layer_in, layer_out = acts[target]
                out, ref = run(layer_in.numpy())[0], layer_out.numpy()
            worst[(target, fmt)] = max(worst[(target, fmt)], float(np.abs(out - ref).max()))
    n = len(images)
    return [
        Parity(t, f, worst[(t, f)], agree[(t, f)] / n if t.startswith("model") else None, n)
        for (t, f) in runners
    ]


def export_all(
    config: ExportConfig, mnist: MNIST, progress: bool = True, recheck: bool = True
) -> tuple[Manifest, list[Parity], bool]:
    """Export (unless up to date), prove parity, write the manifest. Returns (manifest, parity, exported).

    An up-to-date export (same checkpoint, files verified) is parity-checked again only if ``recheck``."""
    ckpt = load_checkpoint(config.checkpoint)
    net = ckpt.model()
    if not config.force and is_up_to_date(config.out_dir, ckpt.sha256, net):
        manifest = load_manifest(config.out_dir)
        parity = check_parity(manifest, net, mnist, config.parity_batch, progress) if recheck else []
        return manifest, parity, False
    (config.out_dir / MANIFEST).unlink(missing_ok=True)  # a half-updated folder is never described
    artifacts = _export_files(ckpt, net, config, progress)
    manifest = Manifest(
        checkpoint=str(config.checkpoint),
        checkpoint_sha256=ckpt.sha256,
        test_accuracy=ckpt.test_accuracy,
        recipe=ckpt.config,
        producer=_producer(),
        artifacts=artifacts,
        folder=config.out_dir,
    )
    parity = check_parity(manifest, net, mnist, config.parity_batch, progress)
    failed = [p for p in parity if not p.ok]
    if failed:
        raise ExportError(
            f"{config.out_dir}: parity failed for "
            + ", ".join(
                f"{p.target} {p.format} (max diff {p.max_abs_diff:.2e}, agreement {p.agreement})"
                for p in failed
            )
            + "; no manifest written"
        )
    manifest.save(config.out_dir)
    return manifest, parity, True


def is_up_to_date(folder: Path, checkpoint_sha256: str, net: DeepMNIST) -> bool:
    """The manifest lists exactly the planned artifacts, from this checkpoint, and all verify."""
    try:
        manifest = load_manifest(folder)
        manifest.verify_all()
    except ExportError:
        return False
    planned = {(target, fmt) for target, fmt, *_ in _plan(net)}
    listed = {(a.target, a.format) for a in manifest.artifacts}
    return manifest.checkpoint_sha256 == checkpoint_sha256 and listed == planned


def format_report(manifest: Manifest, parity: list[Parity]) -> str:
    by_key = {(p.target, p.format): p for p in parity}
    lines = [f"{'artifact':34} {'sha256':16} {'max |diff|':>10} {'argmax agree':>12}  vs eager PyTorch"]
    for a in manifest.artifacts:
        p = by_key[(a.target, a.format)]
        agree = "" if p.agreement is None else f"{p.agreement * 100:.2f}%"
        lines.append(
            f"{a.file:34} {a.sha256[:16]} {p.max_abs_diff:10.2e} {agree:>12}  {'ok' if p.ok else 'FAIL'}"
        )
    lines.append(f"parity on all {parity[0].images} test images; tolerance {TOLERANCE:g} (float32)")
    return "\n".join(lines)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export ONNX and TorchScript artifacts and prove parity")
    p.add_argument(
        "--artifacts", metavar="DIR", help="artifacts folder (default $DEEPMNIST_ARTIFACTS or ./artifacts)"
    )
    p.add_argument("--data-dir", metavar="DIR", help="read MNIST IDX files from this folder")
    p.add_argument(
        "--checkpoint", metavar="PATH", help="checkpoint (default: the default recipe's in <artifacts>)"
    )
    p.add_argument("--out", metavar="DIR", help="export folder (default <artifacts>/export)")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    p.add_argument("--force", action="store_true", help="export again even if up to date")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from models.data import load_mnist
    from models.train import default_checkpoint_path

    checkpoint = (
        Path(args.checkpoint) if args.checkpoint else default_checkpoint_path(artifacts=args.artifacts)
    )
    out = Path(args.out) if args.out else export_dir(args.artifacts)
    if args.opset < 17:
        raise ExportError(f"--opset {args.opset}: use 17 or newer")
    config = ExportConfig(checkpoint=checkpoint, out_dir=out, opset=args.opset, force=args.force)
    mnist = load_mnist(data_dir=args.data_dir, artifacts=args.artifacts)
    manifest, parity, exported = export_all(config, mnist, progress=not args.no_progress)
    print(("exported" if exported else "up to date (same checkpoint, files verified)") + f": {out}")
    print(format_report(manifest, parity))
    print(f"manifest: {out / MANIFEST}")
    return 0
