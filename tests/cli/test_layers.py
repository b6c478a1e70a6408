"""The layers of the code (tools/imports.py): no circles, no import up a layer, no private name used
outside its module, and a reason beside every import of the project made inside a function."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from models.paths import REPO_ROOT

_spec = importlib.util.spec_from_file_location("imports_tool", REPO_ROOT / "tools" / "imports.py")
imports = sys.modules["imports_tool"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(imports)


def _graph():
    mods = imports.discover()
    imports.scan(mods)
    return mods


def test_no_circles_no_upward_imports_no_private_names():
    mods = _graph()
    assert imports.circles(mods) == []
    assert imports.upward(mods) == []
    private = [(m.name, t, n) for m in mods.values() for t, n, _ in m.private if t != m.name]
    assert private == []
    assert [(m.name, line) for m in mods.values() for _, line in m.uncommented] == []


def test_every_module_of_bench_is_in_a_layer():
    """A new subpackage must be placed in ``LAYERS`` (else its imports are not checked)."""
    for name in _graph():
        assert imports.layer_of(name)[0] >= 0, name


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path, monkeypatch):
    """The rules can fail: a tree with a circle, an upward import and a private name is refused."""
    pkg = tmp_path / "bench"
    (pkg / "results").mkdir(parents=True)
    (pkg / "report").mkdir()
    for folder in (pkg, pkg / "results", pkg / "report"):
        (folder / "__init__.py").write_text("")
    (pkg / "results" / "a.py").write_text("from bench.report.b import _hidden\n")
    (pkg / "report" / "b.py").write_text("import bench.results.a\n\n_hidden = 1\n")
    for name in ("models", "exporters"):
        (tmp_path / name).mkdir()
    monkeypatch.setattr(imports, "ROOT", tmp_path)
    mods = _graph()
    assert imports.circles(mods) == [["bench.report.b", "bench.results.a"]]
    assert len(imports.upward(mods)) == 1 and "bench.results.a" in imports.upward(mods)[0]
    assert mods["bench.results.a"].private == [("bench.report.b", "_hidden", 1)]


def test_the_command_prints_the_graph_and_exits_0():
    proc = subprocess.run(
        [sys.executable, "tools/imports.py"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 circles" in proc.stdout and "0 upward imports" in proc.stdout
