"""The import graph of the project's own packages, and its three rules.

    python tools/imports.py           # the layers, the counts, and every breach; exit 1 on a breach
    python tools/imports.py --edges   # also every module's imports of the project

Rules (issue 23):
- no circles: no two modules reach each other through imports, counted at any depth and wherever
  the import sits (at the top of the file or inside a function);
- no arrow up: a module imports only from its own package or from a lower layer (LAYERS below);
- no private name crosses a module: nothing imports `_name` from another module, or reads
  `module._name` of an imported project module;
- an import of the project inside a function is deliberate, with a comment on its line or the line
  above saying why (a worker kept lean, an optional package, a heavy import kept off a command).
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "exporters", "bench")

# The layers, lowest first. A module imports from its own package and from lower layers only;
# packages of one layer do not import each other. The longest prefix names a module's package.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("models",),
    ("exporters",),
    ("bench.results",),
    ("bench.runtimes",),
    ("bench.harness", "bench.report"),
    ("bench.portability", "bench.checks"),
    ("bench",),  # the entry points: cli, __main__, the pytest adapter
)


@dataclass
class Module:
    name: str
    path: Path
    imports: list[tuple[str, int, bool]] = field(default_factory=list)  # (module, line, in function)
    private: list[tuple[str, str, int]] = field(default_factory=list)  # (module, name, line)
    uncommented: list[tuple[str, int]] = field(default_factory=list)  # function-level, no reason


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover() -> dict[str, Module]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = module_name(path)
            mods[name] = Module(name, path)
    return mods


def resolve(mods: dict[str, Module], name: str) -> str | None:
    """The project module a dotted import names (a name inside a module resolves to the module)."""
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


def _commented(lines: list[str], lineno: int) -> bool:
    """A reason on the import's line, or in a comment just above its block of imports."""
    i = lineno - 1
    while i >= 0:
        line = lines[i].strip()
        if "#" in line:
            return True
        if not line.startswith(("from ", "import ", ")")) and not line.endswith(","):
            return False
        i -= 1
    return False


def scan(mods: dict[str, Module]) -> None:
    for mod in mods.values():
        text = mod.path.read_text()
        _Scanner(mods, mod, text.splitlines()).visit(ast.parse(text), False)


class _Scanner:
    """One module's imports of the project, and the private names it reads from them."""

    def __init__(self, mods: dict[str, Module], mod: Module, lines: list[str]) -> None:
        self.mods, self.mod, self.lines = mods, mod, lines
        self.package = mod.name if mod.path.name == "__init__.py" else mod.name.rpartition(".")[0]
        self.aliases: dict[str, str] = {}  # local name -> project module

    def visit(self, node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import | ast.ImportFrom):
                self.record(child, in_function)
            elif isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name):
                target = self.aliases.get(child.value.id)
                if target and _private(child.attr):
                    self.mod.private.append((target, child.attr, child.lineno))
            self.visit(child, inner)

    def record(self, node: ast.Import | ast.ImportFrom, in_function: bool) -> None:
        found = []
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(self.mods, alias.name)
                if target:
                    found.append(target)
                    self.aliases[alias.asname or alias.name] = target
        else:
            base = node.module or ""
            if node.level:
                anchor = self.package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in self.mods:  # `from bench.harness import run` imports the module
                    found.append(sub)
                    self.aliases[alias.asname or alias.name] = sub
                    continue
                target = resolve(self.mods, base)
                if target:
                    found.append(target)
                    if _private(alias.name) and target != self.mod.name:
                        self.mod.private.append((target, alias.name, node.lineno))
        for target in dict.fromkeys(found):
            if target == self.mod.name:
                continue
            self.mod.imports.append((target, node.lineno, in_function))
            if in_function and not _commented(self.lines, node.lineno):
                self.mod.uncommented.append((target, node.lineno))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def layer_of(name: str) -> tuple[int, str]:
    best = (-1, "")
    for rank, packages in enumerate(LAYERS):
        for pkg in packages:
            if (name == pkg or name.startswith(pkg + ".")) and len(pkg) > len(best[1]):
                best = (rank, pkg)
    return best


def circles(mods: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in {t for t, _, _ in mods[v].imports}:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in mods:
        if v not in index:
            strong(v)
    return out


def upward(mods: dict[str, Module]) -> list[str]:
    out = []
    for mod in mods.values():
        rank, pkg = layer_of(mod.name)
        for target, line, _ in mod.imports:
            trank, tpkg = layer_of(target)
            if tpkg == pkg:
                continue
            if trank > rank or (trank == rank and tpkg != pkg):
                out.append(
                    f"{mod.path.relative_to(ROOT)}:{line}: {mod.name} ({pkg}) imports {target} ({tpkg})"
                )
    return out


def report(edges: bool = False) -> int:
    mods = discover()
    scan(mods)
    loops = circles(mods)
    ups = upward(mods)
    private = [
        f"{m.path.relative_to(ROOT)}:{line}: {m.name} uses {name} of {target}"
        for m in mods.values()
        for target, name, line in m.private
        if target != m.name
    ]
    uncommented = [
        f"{m.path.relative_to(ROOT)}:{line}: {m.name} imports {target} inside a function, with no comment why"
        for m in mods.values()
        for target, line in m.uncommented
    ]
    imports = [i for m in mods.values() for i in m.imports]
    inside = sum(1 for _, _, f in imports if f)
    print(f"{len(mods)} modules, {len(imports)} project imports ({inside} inside functions)")
    print("layers, lowest first:")
    for rank, packages in enumerate(LAYERS):
        names = ", ".join(f"{p} ({sum(1 for m in mods if layer_of(m)[1] == p)})" for p in packages)
        print(f"  {rank}: {names}")
    if edges:
        for m in mods.values():
            targets = sorted({t for t, _, _ in m.imports})
            print(f"  {m.name} -> {', '.join(targets) or '-'}")
    sections = [
        ("circles", [" <-> ".join(c) for c in loops]),
        ("upward imports", ups),
        ("private names used outside their module", private),
        ("imports inside functions without a reason", uncommented),
    ]
    for title, items in sections:
        print(f"{len(items)} {title}")
        for item in items:
            print(f"  {item}")
    return 1 if any(items for _, items in sections) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="list every module's project imports")
    return report(parser.parse_args(argv).edges)


if __name__ == "__main__":
    sys.exit(main())
