import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from exporters.export import TOLERANCE, _metadata, _plan, check_parity
from exporters.formats import Pt2Error, check_pt2_archive, portable_path
from exporters.manifest import ExportError, checkpoint_path, load_manifest, portable_checkpoint
from exporters.registry import FORMATS
from models.atomic import sha256_file
from models.checkpoint import Checkpoint, load_checkpoint
from models.data import to_input
from models.network import DeepMNIST
from models.paths import REPO_ROOT, artifacts_dir


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _load(artifact, path):
    """A callable numpy -> list of numpy outputs for any artifact, on its own runtime (the .pt2
    files only after their SHA-256 was verified and the archive inspected)."""
    if artifact.format.startswith("onnx"):
        session = _session(path)
        return lambda x: session.run(None, {artifact.inputs[0].name: x})
    if artifact.format == "torchscript":
        module = torch.jit.load(str(path))
    elif artifact.format == "torch-export":
        check_pt2_archive(path, compiled=False)
        module = torch.export.load(str(path)).module()
    else:
        assert artifact.format == "aoti-cpu", artifact.format
        check_pt2_archive(path, compiled=True)
        module = torch._inductor.aoti_load_package(str(path))
    return lambda x: [module(torch.from_numpy(x)).detach().numpy()]


def test_every_planned_format_is_registered_once():
    """The registry is the only list of export formats: each planned artifact's format is in it,
    each registered format is planned, and only the formats added after ONNX and TorchScript name
    themselves in their metadata (as the files made before the registry do)."""
    planned = {step.format for step in _plan(DeepMNIST())}
    assert planned == set(FORMATS)
    assert all(fmt.name == name for name, fmt in FORMATS.items())
    assert {name for name, fmt in FORMATS.items() if fmt.onnx} == {f for f in FORMATS if f.startswith("onnx")}
    ckpt = Checkpoint(model_state={}, sha256="0" * 64)
    for name in FORMATS:
        assert ("format" in _metadata(ckpt, "model", "in", "out", name)) == (
            name not in ("onnx", "torchscript")
        )


def test_the_manifest_lists_every_planned_artifact(exported):
    entries = {(a.target, a.format): a.file for a in exported.artifacts}
    expected = {
        ("model", "onnx"): "deep_mnist.onnx",
        ("model_uint8", "onnx"): "deep_mnist_uint8.onnx",
        ("model", "torchscript"): "deep_mnist.torchscript.pt",
        ("model", "onnx-int8"): "deep_mnist_int8.onnx",
        ("model", "onnx-fp16"): "deep_mnist_fp16.onnx",
        ("model", "torch-export"): "deep_mnist.pt2",
        ("model", "aoti-cpu"): "deep_mnist.aoti-cpu.pt2",
    }
    if "model/aoti-cpu" in exported.skipped:  # no C++ compiler here: skipped, with the reason
        del expected[("model", "aoti-cpu")]
        assert exported.skipped["model/aoti-cpu"]
    assert {k: v for k, v in entries.items() if k[0].startswith("model")} == expected
    assert len(entries) == len(expected) + 12  # and each layer as ONNX and TorchScript


def test_onnx_artifacts_pass_the_checker(exported):
    for artifact in exported.artifacts:
        if not artifact.format.startswith("onnx"):
            continue
        model = onnx.load(str(exported.verified_path(artifact.target, artifact.format)))
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
    net = load_checkpoint(exported.checkpoint_path()).model()
    results = check_parity(exported, net, mnist, progress=False)
    assert len(results) == len(exported.artifacts) == 19 - len(exported.skipped)
    for p in results:
        assert p.images == 10_000
        assert p.ok, p
        if p.format in ("onnx-int8", "onnx-fp16"):  # reduced precision: their own tests, test_quantize.py
            continue
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
        outputs = _load(artifact, path)(x)
        for out, out_spec in zip(outputs, artifact.outputs, strict=True):
            assert list(out.shape) == [batch, *out_spec.shape[1:]], (artifact.file, out.shape)


def test_metadata_is_readable(exported):
    ckpt = load_checkpoint(exported.checkpoint_path())
    for name in ("model", "model_uint8"):
        meta = _session(exported.verified_path(name, "onnx")).get_modelmeta().custom_metadata_map
        assert "uint8 / 255" in meta["input"] or "raw MNIST pixels" in meta["input"]
        assert "white digit on black" in meta["input"]
        assert json.loads(meta["labels"]) == [str(d) for d in range(10)]
        assert json.loads(meta["recipe"])["recipe"] == "fast"
        assert float(meta["test_accuracy"]) == pytest.approx(ckpt.test_accuracy, abs=1e-4)
        assert meta["checkpoint_sha256"] == ckpt.sha256 == exported.checkpoint_sha256
        assert set(json.loads(meta["producer"])) >= {"torch", "onnx", "onnxscript"}
    # the manifest carries each file's metadata as JSON values, for apps that cannot read the file's
    # (onnxruntime's JS APIs)
    for artifact in exported.artifacts:
        assert artifact.metadata["checkpoint_sha256"] == ckpt.sha256, artifact.file
        assert artifact.metadata["labels"] == [str(d) for d in range(10)]
        assert isinstance(artifact.metadata["recipe"], dict)
    uint8 = exported.find("model_uint8", "onnx")
    meta = _session(exported.verified_path("model_uint8", "onnx")).get_modelmeta().custom_metadata_map
    assert uint8.metadata["test_accuracy"] == float(meta["test_accuracy"])
    assert uint8.metadata["input"] == meta["input"]
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


@pytest.fixture(scope="module")
def reexported(exported, tmp_path_factory):
    """A second export of the default checkpoint by the real command, into a tmp folder whose
    path is longer than the default export folder's and the no-compiler test's (a file that held
    its folder would differ in length, not only in content)."""
    out = tmp_path_factory.mktemp("reexport") / ("a-deeper-export-folder-" * 3) / "again"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "export", "--no-progress", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    return load_manifest(out)


def _files(folder):
    """Every file of an export folder but its manifest, with its SHA-256 as read from disk."""
    found = {p.relative_to(folder).as_posix(): sha256_file(p) for p in folder.rglob("*") if p.is_file()}
    del found["manifest.json"]
    return found


def _strings(tree):
    """Every string in a JSON tree, keys included."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield key
            yield from _strings(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from _strings(item)
    elif isinstance(tree, str):
        yield tree


def _local_folders(*folders):
    """Folders of this machine a portable file must not name: the given ones, the checkout, the
    Python environment and the home folder, each as given and resolved; short ones (``/usr``)
    are left out, as 4 bytes can occur by chance in the weights."""
    found = {*map(str, folders), str(REPO_ROOT), sys.prefix, sys.base_prefix, str(artifacts_dir())}
    found |= {sysconfig.get_paths()["purelib"], os.path.expanduser("~") + os.sep}
    found |= {os.path.realpath(f) for f in found}
    return {f for f in found if len(f.rstrip(os.sep)) > 4}


def test_reexport_gives_the_same_files(exported, reexported):
    """The same checkpoint exported into another folder (a longer path) gives the same bytes for
    every file, the AOTInductor package included, and a manifest that names no folder."""
    again, out = reexported, reexported.folder
    assert len(str(out)) != len(str(exported.folder))
    assert {a.file: a.sha256 for a in again.artifacts} == {a.file: a.sha256 for a in exported.artifacts}
    assert _files(out) == _files(exported.folder) == {a.file: a.sha256 for a in again.artifacts}
    # And an up-to-date export is only verified, not rewritten.
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "export", "--no-progress", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("up to date")


def test_the_manifest_names_no_folder(reexported, trained_checkpoint):
    """The manifest records the checkpoint relative to the artifacts root, next to its SHA-256,
    and holds no absolute path: a copied manifest reveals nothing local, and the same checkpoint
    exported from two folders gives the same record."""
    text = (reexported.folder / "manifest.json").read_text()
    for value in _strings(json.loads(text)):
        assert not os.path.isabs(value), value
    for folder in _local_folders(reexported.folder):
        assert folder not in text, folder
    assert reexported.checkpoint == f"checkpoints/{trained_checkpoint.name}"
    assert reexported.checkpoint_path() == trained_checkpoint
    assert sha256_file(reexported.checkpoint_path()) == reexported.checkpoint_sha256


def test_checkpoint_records_are_portable_and_old_ones_still_read(tmp_path):
    """Inside the artifacts root: the path relative to it (through a symlinked root too);
    elsewhere: the file name only. An absolute record (manifests written before) is read as is."""
    root = tmp_path / "artifacts"
    (root / "checkpoints").mkdir(parents=True)
    inside = root / "checkpoints" / "a.safetensors"
    assert portable_checkpoint(inside, root) == "checkpoints/a.safetensors"
    assert portable_checkpoint(tmp_path / "elsewhere" / "b.safetensors", root) == "b.safetensors"
    (tmp_path / "link").symlink_to(root)
    assert portable_checkpoint(tmp_path / "link" / "checkpoints" / "a.safetensors", root) == (
        "checkpoints/a.safetensors"
    )
    assert portable_checkpoint(inside, tmp_path / "link") == "checkpoints/a.safetensors"
    assert (
        checkpoint_path("checkpoints/a.safetensors", root) == root.resolve() / "checkpoints" / "a.safetensors"
    )
    assert checkpoint_path("/old/place/c.safetensors", root) == Path("/old/place/c.safetensors")


def test_a_manifest_with_an_absolute_checkpoint_still_loads(reexported, tmp_path):
    """Exports made before the checkpoint record became portable named it by absolute path."""
    copy = tmp_path / "export"
    shutil.copytree(reexported.folder, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["checkpoint"] = str(reexported.checkpoint_path())
    (copy / "manifest.json").write_text(json.dumps(data))
    old = load_manifest(copy)
    old.verify_all()
    assert old.checkpoint_path() == reexported.checkpoint_path()


def test_no_artifact_names_a_folder_of_this_machine(exported, reexported):
    """No file of an export holds the export folder, the artifacts root or (except the
    AOTInductor package, whose compiled library and sources torch writes with the Python
    environment's and the build folder's paths, docs/export.md) the checkout, the environment or
    the home folder: zip members are stored uncompressed, so a path would show in the bytes."""
    exports = [reexported.folder, exported.folder, artifacts_dir()]
    exports = {str(f) for f in exports} | {os.path.realpath(f) for f in exports}
    for artifact in reexported.artifacts:
        data = reexported.verified_path(artifact.target, artifact.format).read_bytes()
        local = exports if artifact.format == "aoti-cpu" else _local_folders(*exports)
        for folder in local:
            assert folder.encode() not in data, (artifact.file, folder)


def test_portable_paths_name_no_folder_of_this_machine():
    site = sysconfig.get_paths()["purelib"]
    assert portable_path(str(REPO_ROOT / "models" / "network.py")) == "models/network.py"
    assert portable_path(f"{site}/torch/nn/modules/conv.py") == "<site-packages>/torch/nn/modules/conv.py"
    assert portable_path("/usr/lib/python3/dist-packages/onnx/a.py") == "<site-packages>/onnx/a.py"
    assert portable_path(f"{sysconfig.get_paths()['stdlib']}/contextlib.py") == "<stdlib>/contextlib.py"
    assert portable_path("/home/someone/elsewhere/tool.py") == "<elsewhere>/tool.py"
    assert portable_path("<frozen runpy>") == "<frozen runpy>"


def test_exported_onnx_files_hold_no_local_paths(exported, reexported, mnist):
    """torch.onnx stores each op's Python call stack in the file (node metadata); a fresh export
    names its source files relative to the repository and site-packages, so no ONNX file holds
    the checkout's or the environment's folder, the manifest's SHA-256 is that of the rewritten
    file, and onnxruntime gives the same outputs as from the export the other tests use."""
    local = {str(REPO_ROOT), os.path.realpath(REPO_ROOT), sys.prefix, os.path.realpath(sys.prefix)}
    local |= {sysconfig.get_paths()["purelib"], sys.base_prefix}
    local = {folder for folder in local if len(folder) > 4}  # "/usr" could occur in weight bytes
    x = to_input(mnist.test_images[:256]).numpy()  # (256, 1, 28, 28)
    onnx_files = [a for a in reexported.artifacts if FORMATS[a.format].onnx]
    assert len(onnx_files) == 4 + 6  # float32, uint8, int8, fp16 and the six layers
    for artifact in onnx_files:
        path = reexported.verified_path(artifact.target, artifact.format)
        data = path.read_bytes()
        assert sha256_file(path) == artifact.sha256
        for folder in local:
            assert folder.encode() not in data, (artifact.file, folder)
        assert b'File "/' not in data, artifact.file  # no absolute path in any stack trace
        model = onnx.load_from_string(data)
        traces = [
            p.value
            for n in model.graph.node
            for p in n.metadata_props
            if p.key == "pkg.torch.onnx.stack_trace"
        ]
        if artifact.format != "onnx-int8":  # the quantizer writes new nodes, without traces
            assert traces, artifact.file
        if artifact.file == "deep_mnist.onnx":  # the traces are kept, with portable paths
            assert any('File "models/network.py", line' in t for t in traces)
            assert any('File "<site-packages>/torch/nn/modules/' in t for t in traces)
        if artifact.target.startswith("model"):
            before = exported.verified_path(artifact.target, artifact.format)
            inputs = mnist.test_images[:256] if artifact.inputs[0].dtype == "uint8" else x
            for new, old in zip(_load(artifact, path)(inputs), _load(artifact, before)(inputs), strict=True):
                assert np.array_equal(new, old), artifact.file


def test_without_a_cpp_compiler_aoti_is_skipped_with_the_reason(exported, reexported, tmp_path):
    """A machine without a C++ compiler (here: CXX names none) still exports everything else; the
    manifest records why AOTInductor is missing, and that export counts as up to date. Its
    manifest is the one of the export into another tmp folder (``reexported``, a longer path)
    but for the AOTInductor entry: it names neither folder."""
    out = tmp_path / "no-compiler"
    env = {**os.environ, "CXX": str(tmp_path / "no-such-g++")}
    command = [sys.executable, "-m", "bench", "export", "--no-progress", "--out", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "skipped deep_mnist.aoti-cpu.pt2: no C++ compiler for AOTInductor" in proc.stdout + proc.stderr
    manifest = load_manifest(out)
    assert "no C++ compiler" in manifest.skipped["model/aoti-cpu"]
    assert ("model", "aoti-cpu") not in {(a.target, a.format) for a in manifest.artifacts}
    assert not (out / "deep_mnist.aoti-cpu.pt2").exists()
    listed = {a.file: a.sha256 for a in manifest.artifacts}
    assert listed == {a.file: a.sha256 for a in exported.artifacts if a.format != "aoti-cpu"}
    assert len(str(out)) != len(str(reexported.folder))
    other = json.loads((reexported.folder / "manifest.json").read_text())
    other["artifacts"] = [a for a in other["artifacts"] if a["format"] != "aoti-cpu"]
    assert json.loads((out / "manifest.json").read_text()) == {**other, "skipped": manifest.skipped}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0 and proc.stdout.startswith("up to date"), proc.stderr


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


@pytest.mark.parametrize("fmt", ["torch-export", "aoti-cpu"])
def test_pt2_parity_with_eager_on_all_test_images(exported, mnist, fmt):
    if fmt == "aoti-cpu" and "model/aoti-cpu" in exported.skipped:
        pytest.skip(f"AOTInductor skipped by the export: {exported.skipped['model/aoti-cpu']}")
    artifact = exported.find("model", fmt)
    run = _load(artifact, exported.verified_path("model", fmt))
    net = load_checkpoint(exported.checkpoint_path()).model().eval()
    worst = 0.0
    with torch.no_grad():
        for start in range(0, len(mnist.test_images), 1000):
            x = to_input(mnist.test_images[start : start + 1000])  # (1000, 1, 28, 28)
            out, ref = run(x.numpy())[0], net(x).numpy()
            assert np.array_equal(out.argmax(1), ref.argmax(1))
            worst = max(worst, float(np.abs(out - ref).max()))
    assert worst <= TOLERANCE, worst


def test_pt2_files_carry_the_metadata(exported):
    ckpt = load_checkpoint(exported.checkpoint_path())
    path = exported.verified_path("model", "torch-export")
    check_pt2_archive(path, compiled=False)
    extra = {"deepmnist.json": ""}
    torch.export.load(str(path), extra_files=extra)
    meta = json.loads(extra["deepmnist.json"])
    assert (meta["format"], meta["checkpoint_sha256"]) == ("torch-export", ckpt.sha256)
    if "model/aoti-cpu" in exported.skipped:
        return
    path = exported.verified_path("model", "aoti-cpu")
    check_pt2_archive(path, compiled=True)
    meta = torch._inductor.aoti_load_package(str(path)).get_metadata()
    assert (meta["format"], meta["checkpoint_sha256"]) == ("aoti-cpu", ckpt.sha256)
    details = exported.find("model", "aoti-cpu").details
    assert details["compile_s"] > 0 and details["compiler"]


def _rewrite(src, dst, edit):
    """Copy the zip ``src`` to ``dst`` with ``edit(name, data) -> data`` applied to each entry."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, edit(info.filename.split("/", 1)[1], zin.read(info)))


def _edit_json(name_suffix, change):
    def edit(name, data):
        if not name.endswith(name_suffix):
            return data
        tree = json.loads(data)
        change(tree)
        return json.dumps(tree).encode()

    return edit


class Payload:
    """Any class outside torch's weights_only allow-list: unpickling it means running a reducer."""


def test_pt2_inspection_refuses_what_would_run_code(exported, tmp_path):
    """Real archives, each changed the way a hostile file would be: every one is refused before
    torch.export.load could unpickle, eval or exec anything."""
    good = exported.verified_path("model", "torch-export")
    check_pt2_archive(good, compiled=False)

    def pickled_weight(tree):
        next(iter(tree["config"].values()))["use_pickle"] = True

    def guard_code(tree):
        tree["guards_code"] = ["__import__('os').system('true')"]

    def foreign_target(tree):
        tree["graph_module"]["graph"]["nodes"][0]["target"] = "builtins.exec"

    def evil_expression(tree):
        values = tree["graph_module"]["graph"]["sym_int_values"]
        values["s99"] = {"as_expr": {"expr_str": "__import__('os').system('true')", "hint": None}}

    cases = [
        ("model_weights_config.json", pickled_weight, "as a pickle or custom object"),
        ("models/model.json", guard_code, "carries guard code"),
        ("models/model.json", foreign_target, "calls 'builtins.exec'"),
        ("models/model.json", evil_expression, "shape expression outside symbols"),
    ]
    for k, (suffix, change, message) in enumerate(cases):
        bad = tmp_path / f"bad{k}.pt2"
        _rewrite(good, bad, _edit_json(suffix, change))
        with pytest.raises(Pt2Error, match=message):
            check_pt2_archive(bad, compiled=False)
    hostile_inputs = tmp_path / "inputs.pt2"

    buffer = io.BytesIO()
    torch.save({"x": Payload()}, buffer)
    _rewrite(
        good, hostile_inputs, lambda n, d: buffer.getvalue() if n.startswith("data/sample_inputs/") else d
    )
    with pytest.raises(Pt2Error, match=r"sample_inputs/model\.pt needs more than weights_only=True"):
        check_pt2_archive(hostile_inputs, compiled=False)
    legacy = tmp_path / "legacy.pt2"  # the legacy whole-state-dict file torch.export.load still reads
    shutil.copyfile(good, legacy)
    with zipfile.ZipFile(legacy, "a") as zf:
        zf.writestr("deep_mnist/data/weights/model.pt", buffer.getvalue())
    with pytest.raises(Pt2Error, match=r"weights/model\.pt needs more than weights_only=True"):
        check_pt2_archive(legacy, compiled=False)
    with pytest.raises(Pt2Error, match="expected an AOTInductor package"):
        check_pt2_archive(good, compiled=True)
    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    with pytest.raises(Pt2Error, match=r"not a readable \.pt2 archive"):
        check_pt2_archive(tmp_path / "junk.pt2", compiled=False)


def test_reshape_targets_are_constants(exported):
    """Static shapes for consumers that cannot follow computed ones: each Reshape's target is an
    initializer with -1 for the batch only, and the uint8 model has no Unsqueeze (OpenCV DNN's
    classic engine inferred a negative pooling height from it at batch > 1)."""
    for target, fmt in (
        ("model", "onnx"),
        ("model_uint8", "onnx"),
        ("model", "onnx-int8"),
        ("model", "onnx-fp16"),
    ):
        model = onnx.load(str(exported.verified_path(target, fmt)))
        constants = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
        reshapes = [n for n in model.graph.node if n.op_type == "Reshape"]
        assert reshapes, (target, fmt)
        for node in reshapes:
            shape = constants[node.input[1]]
            assert shape[0] == -1 and (shape[1:] > 0).all(), (target, fmt, shape)
        assert "Unsqueeze" not in {n.op_type for n in model.graph.node}
