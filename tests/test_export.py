import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from exporters.export import TOLERANCE, check_parity
from exporters.manifest import ExportError, load_manifest
from models.checkpoint import load_checkpoint


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_artifacts_pass_the_checker(exported):
    for artifact in exported.artifacts:
        if artifact.format != "onnx":
            continue
        model = onnx.load(str(exported.verified_path(artifact.target, "onnx")))
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version >= 17 and artifact.opset >= 17
        inputs = [
            (i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim])
            for i in model.graph.input
        ]
        assert inputs == [(s.name, s.shape) for s in artifact.inputs]
        assert [o.name for o in model.graph.output] == [s.name for s in artifact.outputs]


def test_the_whole_model_contract(exported):
    model = _session(exported.verified_path("model", "onnx"))
    (inp,) = model.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("input", "tensor(float)", ["batch", 1, 28, 28])
    assert [o.name for o in model.get_outputs()] == ["logits"]
    app = _session(exported.verified_path("model_uint8", "onnx"))
    (inp,) = app.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("pixels", "tensor(uint8)", ["batch", 28, 28])
    assert [(o.name, o.type) for o in app.get_outputs()] == [
        ("probabilities", "tensor(float)"),
        ("label", "tensor(int64)"),
    ]


def test_parity_on_the_full_test_set(exported, mnist):
    net = load_checkpoint(exported.checkpoint).model()
    results = check_parity(exported, net, mnist, progress=False)
    assert len(results) == len(exported.artifacts) == 15
    for p in results:
        assert p.images == 10_000
        assert p.max_abs_diff <= TOLERANCE, (p.target, p.format, p.max_abs_diff)
        if p.target.startswith("model"):
            assert p.agreement == 1.0, (p.target, p.format)
    assert "FAIL" not in exported.export_stdout
    assert (
        "parity on all 10000 test images" in exported.export_stdout or "up to date" in exported.export_stdout
    )


@pytest.mark.parametrize("batch", [1, 7, 256])
def test_dynamic_batch(exported, batch):
    rng = np.random.default_rng(batch)
    for artifact in exported.artifacts:
        path = exported.verified_path(artifact.target, artifact.format)
        (spec,) = artifact.inputs
        shape = [batch, *spec.shape[1:]]
        if spec.dtype == "uint8":
            x = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            x = rng.random(shape, dtype=np.float32)
        if artifact.format == "onnx":
            outputs = _session(path).run(None, {spec.name: x})
        else:
            outputs = [torch.jit.load(str(path))(torch.from_numpy(x)).numpy()]
        for out, out_spec in zip(outputs, artifact.outputs, strict=True):
            assert list(out.shape) == [batch, *out_spec.shape[1:]], (artifact.file, out.shape)


def test_metadata_is_readable(exported):
    ckpt = load_checkpoint(exported.checkpoint)
    for name in ("model", "model_uint8"):
        meta = _session(exported.verified_path(name, "onnx")).get_modelmeta().custom_metadata_map
        assert "uint8 / 255" in meta["input"] or "raw MNIST pixels" in meta["input"]
        assert "white digit on black" in meta["input"]
        assert json.loads(meta["labels"]) == [str(d) for d in range(10)]
        assert json.loads(meta["recipe"])["recipe"] == "fast"
        assert float(meta["test_accuracy"]) == pytest.approx(ckpt.test_accuracy, abs=1e-4)
        assert meta["checkpoint_sha256"] == ckpt.sha256 == exported.checkpoint_sha256
        assert set(json.loads(meta["producer"])) >= {"torch", "onnx", "onnxscript"}
    extra = {"deepmnist.json": ""}
    torch.jit.load(str(exported.verified_path("model", "torchscript")), _extra_files=extra)
    assert json.loads(extra["deepmnist.json"])["checkpoint_sha256"] == ckpt.sha256


def test_manifest_checksums_verify_and_catch_tampering(exported, tmp_path):
    exported.verify_all()
    copy = tmp_path / "export"
    shutil.copytree(exported.folder, copy)
    manifest = load_manifest(copy)
    manifest.verify_all()
    target = copy / "layers" / "fc1.onnx"
    data = bytearray(target.read_bytes())
    data[-5] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ExportError, match=f"{target}: SHA-256 .* does not match the manifest"):
        manifest.verified_path("fc1", "onnx")
    (copy / "layers" / "conv1.torchscript.pt").unlink()
    with pytest.raises(ExportError, match="missing"):
        manifest.verified_path("conv1", "torchscript")
    (copy / "manifest.json").write_text("{broken")
    with pytest.raises(ExportError, match="damaged manifest"):
        load_manifest(copy)


def test_torchscript_archive_is_reproducible(exported):
    path = exported.verified_path("model", "torchscript")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert all(n.startswith("deep_mnist/") for n in names)
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_reexport_gives_the_same_files(exported, tmp_path):
    out = tmp_path / "again"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "export", "--no-progress", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    again = load_manifest(out)
    assert {a.file: a.sha256 for a in again.artifacts} == {a.file: a.sha256 for a in exported.artifacts}
    # And an up-to-date export is only verified, not rewritten.
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "export", "--no-progress", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("up to date")


def test_export_errors_are_clear(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "export", "--checkpoint", str(tmp_path / "none.safetensors")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "none.safetensors: no such checkpoint" in proc.stderr
    with pytest.raises(ExportError, match="no export manifest"):
        load_manifest(tmp_path)
