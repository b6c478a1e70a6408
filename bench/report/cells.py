"""Table cells: how a value read from a results frame becomes text, and a titled table of them.

A table is headings -> cells: each ``Cell`` makes a line's text. Which CSV columns a table shows,
under which heading, is said by their records (``bench.results.columns.Column.shown``), which also
give each cell its format, its alignment and whether an empty one is dropped; ``layout`` builds a
table's cells from them, in CSV order, and places the cells computed by the caller (CIs, ranks,
ratios). A ``Table`` is one titled table's cells, drawn as text here and as HTML by
``bench.report.html``. ``bench.report.tables`` (a run's tables) and ``bench.report.scenario_tables``
build theirs from these.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from tabulate import tabulate

from bench.results.columns import COLUMNS, Column


def number_format(fmt: str, suffix: str = "") -> Callable[[float], str]:
    return lambda value: "" if math.isnan(value) else format(value, fmt) + suffix


def ms_text(value: float) -> str:
    # 4 significant digits (0.01234, 2.500, 123.4); no exponent for the (unlikely) calls over a second
    return number_format("#.4g" if value < 1000 else ",.0f")(value)


def ms_ci(median: float, low: float, high: float) -> str:
    """``1.234 [1.200, 1.270]``: the median and its 95% CI in ms (just the median if no CI)."""
    if math.isnan(median) or math.isnan(low) or math.isnan(high):
        return ms_text(median)
    return f"{ms_text(median)} [{ms_text(low)}, {ms_text(high)}]"


def percent_change(ratio_minus_one: float) -> str:
    """``+23%``, ``+4.5%``, ``-12%``: a relative change, given as new / old - 1."""
    pct = ratio_minus_one * 100
    return format(pct, "+.0f" if abs(pct) >= 9.95 else "+.1f") + "%"


class Cell:
    """A table column: its cell text from one line, whether it is a number (right-aligned), whether
    a table drops it when no line has a value, and ``key``: the CSV column it shows ("" for a cell
    computed here)."""

    def __init__(
        self,
        text: Callable[[Mapping[str, Any]], str],
        numeric: bool = True,
        optional: bool = False,
        key: str = "",
    ) -> None:
        self.text, self.numeric, self.optional, self.key = text, numeric, optional, key

    def __call__(self, line: Mapping[str, Any]) -> str:
        return self.text(line)


def column_format(spec: str) -> Callable[[Any], str]:
    """A column record's display format (bench.results.columns.Column.fmt) as a function: a format spec
    (",.0f"), or one of "" (str), "ms" (``ms_text``), "%" (a fraction as a percentage), "+%" (a signed
    change, ``percent_change``), "MB" (bytes as MB), "provider" (ONNX Runtime's execution provider
    less its "ExecutionProvider" suffix), "yes/no" (a 1/0 flag)."""
    named: dict[str, Callable[[Any], str]] = {
        "": str,
        "ms": ms_text,
        "%": lambda v: number_format(".2f")(v * 100),
        "+%": lambda v: "" if math.isnan(v) else percent_change(v),
        "MB": lambda v: number_format(".1f")(v / 1e6),
        "provider": lambda v: v.removesuffix("ExecutionProvider"),
        "yes/no": lambda v: {1: "yes", 0: "no"}.get(v, ""),
    }
    return named.get(spec) or number_format(spec)


def record_cell(record: Column) -> Cell:
    """A CSV column's cell: format, alignment and whether it is optional from its record."""
    fmt = column_format(record.fmt)
    return Cell(lambda line: fmt(line[record.name]), record.numeric, record.optional, record.name)


def layout(
    table: str, *computed: tuple[str, str, Cell], columns: Sequence[Column] = COLUMNS
) -> dict[str, Cell]:
    """Heading -> cell of ``table`` (a name of ``bench.results.columns.TABLES``), in order: the CSV columns
    whose records show them there (``Column.shown``), in CSV order, and each computed cell
    ``(after, heading, cell)`` right after the column name or computed heading ``after``.
    ``columns``: the records (a test adds one)."""
    items = [(c.name, c.shown[table], record_cell(c)) for c in columns if table in c.shown]
    for after, heading, cell in computed:
        keys = [key for key, _, _ in items]
        if after not in keys:
            raise ValueError(
                f"table {table!r}: {heading!r} is placed after {after!r}, which it does not show"
            )
        items.insert(keys.index(after) + 1, (heading, heading, cell))
    return {heading: cell for _, heading, cell in items}


def ci_cell(column: str) -> Cell:
    """``p99 ms [95% CI]``-style cell of a latency column with its ``_ci_low``/``_ci_high``."""
    return Cell(lambda line: ms_ci(line[column], line[f"{column}_ci_low"], line[f"{column}_ci_high"]))


_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")  # what opens an HTML tag, comment or declaration


def markdown_text(value: object) -> str:
    """A value read from data, as Markdown text: a ``<`` that could open HTML (``<script>``,
    ``</b>``, ``<!--``) becomes ``&lt;``, so a Markdown viewer shows the text and runs nothing;
    other text is unchanged (``p99 < 10 ms`` stays as it is)."""
    return _TAG_START.sub("&lt;", str(value))


def markdown_code(value: object) -> str:
    """A value as a Markdown code span (shown literally: no HTML in it); a backtick in it becomes a
    quote, so the value cannot end the span and continue as Markdown."""
    return "`" + str(value).replace("`", "'") + "`"


def tabulate_cells(cells: dict[str, list[str]], markdown: bool, numeric: Collection[str]) -> str:
    """``numeric``: the headings shown right-aligned.
    Markdown cells are ``markdown_text`` with ``|`` escaped."""
    if markdown:
        cells = {
            h: [markdown_text(cell).replace("|", "\\|") for cell in column] for h, column in cells.items()
        }
    align = ["right" if h in numeric else "left" for h in cells]
    return tabulate(
        cells,
        headers="keys",
        tablefmt="pipe" if markdown else "simple",  # pipe: what DataFrame.to_markdown writes
        disable_numparse=True,
        colalign=align,
    )


def title_text(text: str, markdown: bool) -> str:
    return f"### {markdown_text(text)}" if markdown else f"{text}\n{'=' * len(text)}"


@dataclass(frozen=True)
class Table:
    """One titled table as cells (heading -> column of cell texts) and the headings that are
    numbers: what the text (``text``) and the HTML report (``bench.report.html``) both draw."""

    title: str
    cells: dict[str, list[str]]
    numeric: frozenset[str]

    @classmethod
    def of(cls, title: str, lines: pd.DataFrame, shown: Mapping[str, Cell]) -> Table:
        """Each line of ``lines`` through the cells of ``shown``."""
        records = lines.to_dict("records")
        cells = {heading: [cell(line) for line in records] for heading, cell in shown.items()}
        return cls(title, cells, frozenset(heading for heading, cell in shown.items() if cell.numeric))

    def text(self, markdown: bool) -> str:
        return f"{title_text(self.title, markdown)}\n\n{tabulate_cells(self.cells, markdown, self.numeric)}"
