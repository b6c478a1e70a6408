"""Writers for the artifact formats made from PyTorch, each atomic and byte-for-byte reproducible.

ONNX: ``torch.onnx.export(..., dynamo=True)``, the exporter current PyTorch recommends, with its
optimizer on (constant folding, dead-code removal: the simplification that is always safe), then
``onnx.checker.check_model(full_check=True)`` and strict shape inference; the Python call stack
torch.onnx stores on each node names its files relative to the repository and site-packages
(``write_onnx``, which writes every ONNX file, the int8 and fp16 ones too).
TorchScript: traced, frozen, saved; the archive's random ``serialization_id`` is replaced by one
derived from the content so that the same weights give the same file.
torch.export: ``torch.export.export`` with a dynamic batch dimension, saved with
``torch.export.save`` (the same archive rewrite; the trace's stack traces, which hold local paths,
are dropped). AOTInductor: that program compiled for the CPU by ``aoti_compile_and_package``.
``check_pt2_archive`` inspects a .pt2 before anything loads it (see its docstring for why).
(The derived ONNX files, int8 and fp16, are made in ``exporters.quantize``.)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sysconfig
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import onnx
import torch
from torch import nn

from models.atomic import atomic_path
from models.errors import UserError, is_out_of_space
from models.paths import REPO_ROOT

OPSET = 18  # >= 17, and old enough for every onnxruntime of the last three years
PT2_FOLDER = "deep_mnist"  # top folder inside every .pt2 zip we write (torch names it after the file)


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Silence the exporters' chatter (deprecations, optional-op registrations) during one export."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(
    module: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike,
    input_name: str,
    output_names: Sequence[str],
    metadata: dict[str, str],
    opset: int = OPSET,
) -> onnx.ModelProto:
    """Export ``module`` with a dynamic batch dimension on its one input, validate it, save it."""
    module = module.eval()
    with quiet_export(), torch.no_grad():
        program = torch.onnx.export(
            module,
            (example,),
            input_names=[input_name],
            output_names=list(output_names),
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            optimize=True,
            opset_version=opset,
            verbose=False,
        )
    model = program.model_proto
    write_onnx(model, path, metadata)
    return model


def write_onnx(model: onnx.ModelProto, path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """Replace the metadata, make the stack traces portable (``portable_stack_traces``), validate
    (full check, strict shape inference), write atomically. Every ONNX file of an export is
    written here."""
    portable_stack_traces(model)
    model.doc_string = metadata.get("description", "")
    del model.metadata_props[:]
    for key in sorted(metadata):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, metadata[key]
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(model.SerializeToString())


# Node metadata torch.onnx writes on every op: the Python call stack that made it, one
# 'File "<path>", line N, in <function>' line per frame, with the exporting machine's paths.
STACK_TRACE = "pkg.torch.onnx.stack_trace"
_FRAME_FILE = re.compile(r'(File ")([^"]+)(")')


def _source_roots() -> list[tuple[str, str]]:
    """(folder, what a stack trace names it): the checkout, then Python's standard library; each
    folder as given and resolved."""
    paths = sysconfig.get_paths()
    roots = [(str(REPO_ROOT), ""), (paths["stdlib"], "<stdlib>/"), (paths["platstdlib"], "<stdlib>/")]
    found = []
    for folder, name in roots:
        for variant in (folder, os.path.realpath(folder)):
            if (variant.rstrip(os.sep), name) not in found:
                found.append((variant.rstrip(os.sep), name))
    return found


def portable_path(path: str, roots: list[tuple[str, str]] | None = None) -> str:
    """A source file as an exported file's stack trace names it, the same on every checkout:
    relative to site-packages (``<site-packages>/torch/nn/modules/conv.py``: any environment's
    site-packages or dist-packages folder, so a virtual environment inside the checkout too),
    to the repository (``models/network.py``) or to the standard library (``<stdlib>/...``); any
    other absolute path is reduced to its file name (``<elsewhere>/x.py``). Names that are not
    absolute paths (``<frozen importlib._bootstrap>``) stay as they are."""
    if not os.path.isabs(path):
        return path
    parts = Path(path).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            at = len(parts) - 1 - parts[::-1].index(marker)  # the innermost one
            return "<site-packages>/" + "/".join(parts[at + 1 :])
    for folder, name in _source_roots() if roots is None else roots:
        if path.startswith(folder + os.sep):
            return name + Path(path[len(folder) + 1 :]).as_posix()
    return "<elsewhere>/" + Path(path).name


def _all_nodes(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.NodeProto]:
    """``nodes`` and the nodes of their subgraphs (If, Loop, Scan bodies), depth first."""
    for node in nodes:
        yield node
        for attribute in node.attribute:
            subgraphs = [attribute.g] if attribute.HasField("g") else []
            for graph in [*subgraphs, *attribute.graphs]:
                yield from _all_nodes(graph.node)


def portable_stack_traces(model: onnx.ModelProto) -> int:
    """Rewrite the file paths in every node's ``STACK_TRACE`` (graph, subgraphs, functions) with
    ``portable_path``, in place, so the file neither depends on nor reveals where the repository
    and the Python environment were on the exporting machine; the traces stay useful (file, line,
    function). Returns the number of traces rewritten."""
    roots = _source_roots()

    def portable(match: re.Match[str]) -> str:
        return match[1] + portable_path(match[2], roots) + match[3]

    count = 0
    for node in _all_nodes([*model.graph.node, *(n for f in model.functions for n in f.node)]):
        for entry in node.metadata_props:
            if entry.key == STACK_TRACE:
                entry.value = _FRAME_FILE.sub(portable, entry.value)
                count += 1
    return count


def export_torchscript(
    module: nn.Module, example: torch.Tensor, path: str | os.PathLike, metadata_json: str
) -> None:
    """Trace and freeze ``module`` (batch-agnostic ops only, so any batch size runs)."""
    module = module.eval()
    with quiet_export(), torch.no_grad():
        frozen = torch.jit.freeze(torch.jit.trace(module, example))
    with atomic_path(path) as tmp:
        torch.jit.save(frozen, str(tmp), _extra_files={"deepmnist.json": metadata_json})
        _make_reproducible(tmp, Path(path).name.split(".")[0])


def _make_reproducible(archive: Path, folder: str) -> None:
    """Rewrite the zip reproducibly: torch names its top folder after the (temporary) file name,
    writes a random ``.data/serialization_id`` and debug records holding the Python call stack
    of the trace (local paths); use ``folder``, a content-derived id, and drop the debug records."""
    with zipfile.ZipFile(archive) as src:
        entries = [
            (info.filename.split("/", 1)[1], src.read(info))
            for info in src.infolist()
            if not info.filename.endswith(".debug_pkl")  # trace call stacks with local paths; optional
        ]
    digest = hashlib.sha256()
    for name, data in entries:
        if name != ".data/serialization_id":
            digest.update(name.encode() + data)
    serial = str(int(digest.hexdigest(), 16))[:40].encode()
    staged = archive.with_suffix(".rewrite")
    try:
        with zipfile.ZipFile(staged, "w", compression=zipfile.ZIP_STORED) as dst:
            for name, data in entries:
                content = serial if name == ".data/serialization_id" else data
                dst.writestr(zipfile.ZipInfo(f"{folder}/{name}", date_time=(1980, 1, 1, 0, 0, 0)), content)
        os.replace(staged, archive)
    finally:
        staged.unlink(missing_ok=True)  # a full disk leaves no partial rewrite behind


# ----------------------------------------------------------------------------- torch.export


def export_program(
    module: nn.Module, example: torch.Tensor, path: str | os.PathLike, metadata_json: str
) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``module`` (eval mode) with a dynamic batch dimension (1 or more
    images) on its one input; saved with ``torch.export.save`` and ``metadata_json`` as the extra
    file ``deepmnist.json``. ``example`` must not be random: it is stored in the archive."""
    module = module.eval()
    batch = torch.export.Dim("batch", min=1)
    with quiet_export(), torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    for node in program.graph.nodes:
        node.meta.pop("stack_trace", None)  # the trace's Python call stack: local paths, not needed
    buffer = io.BytesIO()
    with quiet_export():
        torch.export.save(program, buffer, extra_files={"deepmnist.json": metadata_json})
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
        _make_reproducible(tmp, PT2_FOLDER)
    return program


class AotiUnavailable(Exception):
    """AOTInductor cannot compile on this machine (no C++ compiler, or the compile failed)."""


def aoti_build_dir() -> Path:
    """The place AOTInductor builds in: fixed, because the compiled package records its build
    paths (file names and sources differ with the folder), so a fixed folder keeps re-exports
    byte-identical. It is private: in the user's cache (``$XDG_CACHE_HOME`` or ``~/.cache``), not in
    a shared temporary folder where another user could plant it or a symlink in its place."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "deepmnist" / "aoti-build"


def _private_folder(path: Path) -> bool:
    """Make ``path`` a folder only this user can write, never following a symlink; False if the
    place is not usable (then the caller builds in a fresh ``tempfile.mkdtemp`` folder)."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022


@contextlib.contextmanager
def _build_folder() -> Iterator[Path]:
    """An empty private build folder, held alone (a lock) for the duration."""
    build = aoti_build_dir()
    if not _private_folder(build.parent):
        fresh = Path(tempfile.mkdtemp(prefix="deepmnist-aoti-build-"))  # private (0700), unique
        try:
            yield fresh
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
        return
    # O_NOFOLLOW: a symlink planted as the lock file is refused, never opened through
    lock = os.open(build.with_name(build.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one export at a time uses the fixed build folder
        _remove(build)
        os.mkdir(build, 0o700)
        try:
            yield build
        finally:
            _remove(build)
    finally:
        os.close(lock)


def _remove(path: Path) -> None:
    """Delete a file, a symlink (not what it points to) or a folder tree."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def compile_aoti(
    program: torch.export.ExportedProgram, path: str | os.PathLike, metadata: dict[str, str]
) -> dict[str, object]:
    """Compile ``program`` with AOTInductor for the CPU into a package at ``path``, with
    ``metadata`` readable through ``get_metadata()`` of the loaded model. Returns the facts for
    the manifest: ``compile_s``, the compile time in seconds (wall clock, cold: a fresh Inductor
    cache, so it is the cost of a first compile, C++ compiler included) and the compiler. The
    library is built with ``-march=native``: the package runs on CPUs with this machine's
    instruction set. Raises ``AotiUnavailable`` when this machine cannot compile; a full disk is
    an OSError (ENOSPC), never a reason to skip."""
    from torch._inductor import aoti_compile_and_package
    from torch._inductor.cpp_builder import get_cpp_compiler
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

    try:
        compiler = get_cpp_compiler()
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60)
    except Exception as e:  # torch raises RuntimeError or its own error types for a missing compiler
        raise AotiUnavailable(f"no C++ compiler for AOTInductor ({_first_line(e)})") from None
    with _build_folder() as build:
        try:
            start = time.perf_counter()
            with quiet_export(), temporary_cache_dir(str(build)):
                package = aoti_compile_and_package(
                    program,
                    package_path=str(build / "package.pt2"),
                    inductor_configs={"aot_inductor.metadata": dict(metadata)},
                )
            seconds = time.perf_counter() - start
        except Exception as e:  # a compiler or linker failure surfaces as one of many error types
            if is_out_of_space(e):
                raise OSError(
                    errno.ENOSPC, f"no space left on device ({_first_line(e)})", str(build)
                ) from None
            raise AotiUnavailable(f"AOTInductor compile failed: {_first_line(e)}") from None
        with atomic_path(path) as tmp:  # a write error here is the export's, not a reason to skip
            shutil.copyfile(package, tmp)
            _make_reproducible(tmp, PT2_FOLDER)
    return {
        "compile_s": round(seconds, 2),
        "compiler": (version.stdout.splitlines() or [compiler])[0],
        "built_for": "this machine's CPU (-march=native)",
    }


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


# ----------------------------------------------------------------------------- .pt2 inspection


class Pt2Error(UserError):
    """A .pt2 archive holds something that would make loading it run code."""


# Names a symbolic-shape expression may use: torch.export's deserializer hands these strings to
# sympy.sympify, which evaluates them with Python's eval. Symbols are s<N>, u<N>, ...
_SYMPY_NAMES = frozenset(
    ["Symbol", "Integer", "Rational", "Add", "Mul", "Pow", "Max", "Min", "Mod", "FloorDiv", "CeilDiv",
     "CleanDiv", "ModularIndexing", "PythonMod", "FloorToInt", "CeilToInt", "Where", "positive",
     "integer", "nonnegative", "True", "False", "oo", "int_oo"]
)  # fmt: skip
_EXPR_CHARS = re.compile(r"[A-Za-z0-9_\s'(),=+\-*/<>]*")


def check_pt2_archive(path: str | os.PathLike, compiled: bool) -> None:
    """Refuse a .pt2 whose loading would run code beyond torch's own, before anything loads it.

    ``torch.export.load`` (torch 2.13) unpickles in several places: sample inputs are tried with
    ``torch.load(weights_only=True)`` and, if that fails, again with ``weights_only=False``;
    weights or constants marked ``use_pickle`` and custom objects are unpickled without limits;
    symbolic-shape strings go through ``sympy.sympify`` (``eval``); ``guards_code`` is Python
    source that is compiled and run; node targets are resolved by name. So only a file we made
    and whose SHA-256 matches the manifest should be loaded, and this check refuses anything that
    would take one of those paths: pickled payloads, custom objects, torch.save files (sample
    inputs, legacy layouts) that need more than ``weights_only=True``, guard code, targets outside
    ``torch.ops.aten``, and shape expressions with anything but symbols, numbers and sympy's
    arithmetic (such a string can still be slow to evaluate; it cannot import or call anything).
    An AOTInductor package (``compiled``) holds a native shared library that is loaded and run by
    design: no inspection makes that safe, only the SHA-256 check; here it must hold nothing else
    that torch unpickles.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            entries = {info.filename.split("/", 1)[-1]: info.filename for info in zf.infolist()}

            def read(name: str) -> bytes:
                return zf.read(entries[name])

            _check_pt2_entries(path, entries, read, compiled)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as e:
        raise Pt2Error(f"{path}: not a readable .pt2 archive ({e})") from None


def _check_pt2_entries(path: Path, entries: dict[str, str], read, compiled: bool) -> None:
    def refuse(what: str) -> Pt2Error:
        return Pt2Error(f"{path}: {what}; refusing to load it")

    models = [n for n in entries if n.startswith("models/") and n.endswith(".json")]
    has_library = any(n.startswith("data/aotinductor/") and n.endswith(".so") for n in entries)
    if compiled and (not has_library or models):
        raise refuse("expected an AOTInductor package (a compiled library and no exported program)")
    if not compiled and (has_library or not models):
        raise refuse("expected one exported program (models/*.json) and no compiled library")
    configs = ("data/weights/", "_weights_config.json"), ("data/constants/", "_constants_config.json")
    for name in entries:
        if any(name.startswith(folder) and name.endswith(suffix) for folder, suffix in configs):
            for fqn, payload in json.loads(read(name))["config"].items():
                if payload.get("use_pickle") or not str(payload.get("path_name", "")).startswith(
                    ("weight_", "tensor_")
                ):
                    raise refuse(f"{name} stores {fqn!r} as a pickle or custom object")
        elif _is_torch_pickle(name):
            try:
                torch.load(io.BytesIO(read(name)), weights_only=True)
            except Exception as e:  # the restricted unpickler raises UnpicklingError and others
                raise refuse(f"{name} needs more than weights_only=True ({_first_line(e)})") from None
    for name in models:
        program = json.loads(read(name))
        if program.get("guards_code"):
            raise refuse(f"{name} carries guard code")
        module = program["graph_module"]
        for node in module["graph"]["nodes"]:
            if not str(node["target"]).startswith("torch.ops.aten."):
                raise refuse(f"{name} calls {node['target']!r} (only torch.ops.aten operators are allowed)")
        for expr in _values_of(program, "expr_str"):
            words = set(re.findall(r"[A-Za-z_]\w*", expr))
            symbols = {w for w in words if re.fullmatch(r"[a-z]+\d+", w)}
            if not _EXPR_CHARS.fullmatch(expr) or words - symbols - _SYMPY_NAMES:
                raise refuse(f"{name} has a shape expression outside symbols and arithmetic: {expr[:80]!r}")


def _is_torch_pickle(name: str) -> bool:
    """Entries torch.export.load passes to torch.load with a weights_only=False fallback: sample
    inputs, legacy whole-state-dict files (``data/weights/<model>.pt``, ...) and the pre-2.7
    layout's ``serialized_*`` files."""
    base = name.rsplit("/", 1)[-1]
    return (
        name.startswith("data/sample_inputs/")
        or name.endswith(".pt")
        or (base.startswith("serialized_") and not base.endswith(".json"))
    )


def _values_of(tree: object, key: str) -> Iterator[str]:
    """Every value stored under ``key`` anywhere in a JSON tree."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == key:
                yield str(v)
            else:
                yield from _values_of(v, key)
    elif isinstance(tree, list):
        for item in tree:
            yield from _values_of(item, key)
