"""README.md and docs/*.md: every relative link resolves, the README stays short, and every
generated block is exactly what its command prints from the committed results.

A generated block::

    <!-- generated: deepmnist compare results/RUN.csv --markdown --targets model -->
    ...the command's output...
    <!-- end generated -->

``<!-- generated: COMMAND | sections: TITLE; TITLE -->`` keeps only the ``### TITLE`` sections of
the output, in the output's order. ``UPDATE_DOCS=1 pytest tests/cli/test_docs.py -k generated``
writes every block again.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from bench.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
PAGES = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200

_GENERATED = re.compile(
    r"<!-- generated: (deepmnist [^\n]*?)(?: \| sections: ([^\n]*?))? -->\n(.*?)<!-- end generated -->",
    re.S,
)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")


def broken_links(page: Path) -> list[str]:
    """The relative link targets of ``page`` (Markdown links and images, outside code) that do not
    name an existing file or folder, resolved from the page's folder."""
    text = _INLINE_CODE.sub("", _FENCE.sub("", page.read_text()))
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_docs_relative_links_resolve(page: Path) -> None:
    assert broken_links(page) == [], f"{page.relative_to(REPO_ROOT)}: links to missing files"


def test_docs_link_check_finds_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("x\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [anchor](#x) [web](https://example.org/a.md) ![img](gone.png)\n"
        "`[code](not-a-link.md)`\n```\n[fenced](nor-this.md)\n```\n[bad](missing.md#part)\n"
    )
    assert broken_links(page) == ["gone.png", "missing.md#part"]


def test_readme_is_short_and_starts_with_the_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    assert blocks[0].splitlines() == [
        'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]"',
        "pytest",
    ]
    assert blocks[1].strip() == "pytest bench/ --benchmark-only"
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "python3 -m venv .venv" in ci and 'pip install -q -e ".[dev,' in ci
    assert ci.rstrip().endswith("pytest")


def _output(capsys: pytest.CaptureFixture[str], command: str, sections: str | None) -> str:
    """What ``command`` prints from the checkout (``sections``: only those ``###`` sections)."""
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        capsys.readouterr()
        code = main(shlex.split(command)[1:])
        captured = capsys.readouterr()
    finally:
        os.chdir(cwd)
    assert code in (0, None), f"`{command}` exited {code}: {captured.err}"
    text = captured.out.strip("\n") + "\n"
    if sections:
        chunks = re.split(r"(?m)^(?=### )", text)
        by_title = {
            chunk.split("\n", 1)[0][4:]: chunk.strip("\n") for chunk in chunks if chunk.startswith("### ")
        }
        wanted = [title.strip() for title in sections.split(";")]
        missing = [title for title in wanted if title not in by_title]
        assert not missing, f"`{command}` printed no section {missing}; it has {list(by_title)}"
        text = "\n\n".join(by_title[title] for title in wanted) + "\n"
    return text


def _block(match: re.Match[str], output: str) -> str:
    sections = f" | sections: {match[2]}" if match[2] else ""
    return f"<!-- generated: {match[1]}{sections} -->\n\n{output}\n<!-- end generated -->"


def test_generated_blocks_match_their_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """Every generated table in README.md and docs/ is its command's output over the committed
    results: a number typed by hand, or a stale table, fails here."""
    update = os.environ.get("UPDATE_DOCS") == "1"
    counts = {}
    for page in PAGES:
        text = page.read_text()
        matches = list(_GENERATED.finditer(text))
        counts[page.name] = len(matches)
        if update and matches:
            text = _GENERATED.sub(lambda m: _block(m, _output(capsys, m[1], m[2])), text)
            page.write_text(text)
            matches = list(_GENERATED.finditer(text))
        for match in matches:
            expected = _block(match, _output(capsys, match[1], match[2]))
            assert match[0] == expected, f"{page.relative_to(REPO_ROOT)}: block of `{match[1]}` is stale"
    assert counts["README.md"] >= 1 and counts["reference-results.md"] >= 1


def test_training_table_covers_every_committed_training_summary() -> None:
    """docs/data-and-training.md has one `deepmnist train-summary` block, over every committed
    results/training-*.json; each row's test accuracy and training time are its JSON's."""
    import json

    text = (REPO_ROOT / "docs" / "data-and-training.md").read_text()
    blocks = [m for m in _GENERATED.finditer(text) if m[1].startswith("deepmnist train-summary ")]
    assert len(blocks) == 1
    named = [arg for arg in shlex.split(blocks[0][1])[2:] if not arg.startswith("--")]
    committed = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "results").glob("training-*.json"))
    assert committed and sorted(named) == committed
    rows = [line for line in blocks[0][3].splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(named)
    for row, path in zip(rows, named, strict=True):
        summary = json.loads((REPO_ROOT / path).read_text())
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[0] == summary["recipe"]
        assert cells[2] == f"{summary['test_accuracy'] * 100:.2f}%"
        assert cells[3].startswith(f"{summary['train_seconds']:.1f} s (")
