"""``deepmnist report``: the static site, opened in real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium): tables and charts render, a header click sorts a table.
Each run's section shows the tables of its Markdown (committed runs and a tiny real streams run)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bench.cli import main

RESULTS = Path(__file__).resolve().parents[2] / "results"
REFERENCE = RESULTS / "20261128T124630Z-vm.csv"
OTHER = RESULTS / "20261128T152732Z-vm-other-machine.csv"
FULL = "20261202T040311Z-vm-full"  # --full: full loop, server, single-stream at 10,000 queries
DEFAULT = "20261202T012129Z-vm"  # the default matrix: none of those
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of the reference machine's two runs, the other machine's run and a portability table."""
    folder = tmp_path_factory.mktemp("results")
    for run in ("20261128T124047Z-vm", "20261128T124630Z-vm", "20261128T152732Z-vm-other-machine"):
        for suffix in (".csv", ".json"):
            shutil.copy(RESULTS / f"{run}{suffix}", folder / f"{run}{suffix}")
    (folder / "portability-test.csv").write_text("consumer,model,status\nnode,deep_mnist.onnx,ok\n")
    out = tmp_path_factory.mktemp("site") / "report"
    assert main(["report", str(folder), "-o", str(out)]) == 0
    return out


def test_site_is_self_contained(site: Path) -> None:
    page = (site / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # no CDN, nothing fetched
    for section in ("summary", "machines", "history", "portability", "cold-start"):
        assert f"id='{section}'" in page
    assert "node" in page and "deep_mnist.onnx" in page  # the portability table, as it is
    assert (site / "history" / "steps.md").exists()
    charts = sorted(p.name for p in (site / "charts").iterdir())
    assert "20261128T152732Z-vm-other-machine-throughput.png" in charts  # drawn: none beside its CSV


def test_report_replaces_an_earlier_one_and_refuses_other_folders(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(REFERENCE), str(OTHER), "-o", str(tmp_path / "r")]) == 0
    assert main(["report", str(REFERENCE), str(OTHER), "-o", str(tmp_path / "r")]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # no staging folder left over
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    capsys.readouterr()
    assert main(["report", str(REFERENCE), "-o", str(tmp_path / "mine")]) == 2
    err = capsys.readouterr().err
    assert "not an earlier report" in err and err.count("\n") == 1
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    bad = tmp_path / "20261128T000000Z-x.csv"
    bad.write_text("not,a,results,file\n")
    assert main(["report", str(bad), "-o", str(tmp_path / "bad")]) == 2
    assert "not a deepmnist results CSV" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
def test_report_renders_and_sorts_in_headless_chromium(site: Path, tmp_path: Path) -> None:
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="needs selenium (pip install -e '.[report]')"
    )
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get((site / "index.html").as_uri())
        tables = driver.find_elements(By.CSS_SELECTOR, "table.sortable")
        assert len(tables) > 20
        summary = driver.find_element(By.CSS_SELECTOR, "#summary table")
        rows = summary.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert len(rows) > 30 and rows[0].find_element(By.TAG_NAME, "td").text.endswith(".csv")
        # every chart is a decoded image with pixels
        images = driver.find_elements(By.CSS_SELECTOR, "img.chart")
        assert len(images) >= 10
        for image in images:
            assert (
                driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
                > 100
            )
        # click "images/s": ascending, then again: descending
        headers = summary.find_elements(By.TAG_NAME, "th")
        names = [h.text for h in headers]
        column = names.index("images/s")

        def values() -> list[float]:
            cells = summary.find_elements(By.CSS_SELECTOR, f"tbody tr td:nth-child({column + 1})")
            return [float(c.text.replace(",", "")) for c in cells]

        before = values()
        assert before == sorted(before, reverse=True)  # as written: fastest first
        headers[column].click()
        assert headers[column].get_attribute("aria-sort") == "ascending"
        assert values() == sorted(before)
        headers[column].click()
        assert values() == sorted(before, reverse=True)
        runtime = names.index("runtime")
        headers[runtime].click()
        cells = summary.find_elements(By.CSS_SELECTOR, f"tbody tr td:nth-child({runtime + 1})")
        texts = [c.text for c in cells]
        assert texts == sorted(texts, key=str.lower)
        assert driver.save_screenshot(str(tmp_path / "report.png"))
        assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        driver.quit()


# ----------------------------------------------------------------------------- the run sections


class _Tables(HTMLParser):
    """A page's sections (by id) -> [(h3 text, {heading: [cell texts]})]."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, list[tuple[str, dict[str, list[str]]]]] = {}
        self._section, self._title, self._text, self._row = "", "", None, None
        self._headings: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self._section = dict(attrs)["id"] or ""
            self.sections[self._section] = []
        elif tag in ("h3", "th", "td"):
            self._text = ""
        elif tag == "table":
            self._headings = []
            self.sections[self._section].append((self._title, {}))
        elif tag == "tr":
            self._row = []

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "h3":
            self._title, self._text = self._text or "", None
        elif tag == "th":
            self._headings.append(self._text or "")
            self.sections[self._section][-1][1][self._text or ""] = []
            self._text = None
        elif tag == "td":
            self._row.append(self._text or "")
            self._text = None
        elif tag == "tr" and self._row:
            for heading, cell in zip(self._headings, self._row, strict=True):
                self.sections[self._section][-1][1][heading].append(cell)
            self._row = None


def _tables_of(page: str) -> dict[str, list[tuple[str, dict[str, list[str]]]]]:
    parser = _Tables()
    parser.feed(page)
    return parser.sections


@pytest.fixture(scope="module")
def streams_run(tmp_path_factory: pytest.TempPathFactory, exported) -> Path:
    """A tiny real run with threads x streams rows and a sidecar with its run time."""
    results = tmp_path_factory.mktemp("streams")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "bench", "--targets", "model", "--batch-sizes", "1",
         "--runtimes", "torch-eager", "--devices", "cpu", "--threads", "1", "--streams", "1,2",
         "--max-time", "0.1", "--no-single-stream", "--no-profile", "--no-roofline", "--no-accuracy",
         "--results-dir", str(results)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    (csv,) = results.glob("*.csv")
    return csv


@pytest.fixture(scope="module")
def scenario_site(tmp_path_factory: pytest.TempPathFactory, streams_run: Path) -> Path:
    """A report of the committed full and default runs (with the PNGs beside them) and the streams run."""
    folder = tmp_path_factory.mktemp("scenario-results")
    for run in (FULL, DEFAULT):
        for path in RESULTS.glob(f"{run}*"):
            if path.suffix in (".csv", ".json", ".png"):
                shutil.copy(path, folder / path.name)
    out = tmp_path_factory.mktemp("scenario-site") / "report"
    assert main(["report", str(folder / f"{FULL}.csv"), str(folder / f"{DEFAULT}.csv"), str(streams_run),
                 "-o", str(out)]) == 0  # fmt: skip
    return out


def _run_section(site: Path, name: str) -> list[tuple[str, dict[str, list[str]]]]:
    page = (site / "index.html").read_text()
    (anchor,) = re.findall(rf"<section id='(run-\d+)'><h2>Run {re.escape(name)}.csv</h2>", page)
    return _tables_of(page)[anchor]


# Shown in sections of their own (cold start, memory) or not at all in the HTML (not run, isolation)
_ELSEWHERE = ("cold start", "memory and CPU time", "not run", "isolation")


@pytest.mark.parametrize("name", [FULL, DEFAULT, "streams"])
def test_every_markdown_table_of_a_run_is_in_its_section(
    scenario_site: Path, streams_run: Path, name: str
) -> None:
    """The run's Markdown headings (its .md's tables and the run time) are its section's, in the
    same order, the layers alone last (folded)."""
    from bench.report.durations import read_durations, render_durations
    from bench.report.tables import render
    from bench.results.store import read_results
    from models.layers import LAYER_NAMES

    csv = streams_run if name == "streams" else RESULTS / f"{name}.csv"
    text = render(read_results(csv), markdown=True)
    durations = read_durations(csv)
    if durations is not None:
        text += render_durations(durations, markdown=True)
    wanted = [line[4:] for line in text.splitlines() if line.startswith("### ")]
    wanted = [title for title in wanted if not title.startswith(_ELSEWHERE)]
    shown = [title for title, _ in _run_section(scenario_site, csv.stem)]

    def layers_last(titles: list[str]) -> list[str]:
        return sorted(titles, key=lambda title: title.split(",")[0] in LAYER_NAMES)

    assert shown == layers_last(wanted)
    # server and streams rows only in their own tables, not with the batch table's cells
    assert not any(title.endswith((", server", ", streams")) for title in shown)


def _table(section: list[tuple[str, dict[str, list[str]]]], start: str) -> dict[str, list[str]]:
    """The one table titled ``start``, else the one whose title begins with it."""
    exact = [cells for title, cells in section if title == start]
    (cells,) = exact or [cells for title, cells in section if title.startswith(start)]
    return cells


def _line(cells: dict[str, list[str]], **where: str) -> dict[str, str]:
    """The one line of a table whose cells are ``where``."""
    (i,) = [i for i in range(len(cells["runtime"])) if all(cells[h][i] == v for h, v in where.items())]
    return {heading: column[i] for heading, column in cells.items()}


def test_full_run_shows_full_loop_server_and_its_chart(scenario_site: Path) -> None:
    """Cells of the committed --full run, as its .md has them."""
    from bench.report.analysis import comparison_tables
    from bench.results.store import read_results

    section = _run_section(scenario_site, FULL)
    full = _table(section, "full loop vs preloaded tensor")
    line = _line(full, runtime="onnxruntime-int8", batch="1")
    assert (line["preloaded ms"], line["full loop ms"], line["full / preloaded"]) == (
        "0.1433",
        "0.1917",
        "1.34x",
    )
    answer = _table(section, "server: highest arrival rate whose p99 stays under 10 ms")
    assert list(answer)[3] == "highest queries/s with p99 < 10 ms"
    assert _line(answer, runtime="onnxruntime-int8")["highest queries/s with p99 < 10 ms"] == "2,208"
    assert _line(answer, runtime="torch-eager-bf16")["highest queries/s with p99 < 10 ms"] == "none"
    every = _table(section, "server: every rate")
    line = _line(every, runtime="onnxruntime", **{"target q/s": "271"})
    assert (line["p99 ms [95% CI]"], line["p99 < 10 ms"]) == ("5.718 [5.070, 6.403]", "yes")
    # the batch rounds only at batch 1: the server and single-stream rows have tables of their own
    frame = comparison_tables(read_results(RESULTS / f"{FULL}.csv"))
    rounds = frame[(frame.scenario == "batch") & (frame.batch_size == 1) & (frame.target == "model")]
    assert len(_table(section, "model, batch 1")["runtime"]) == (rounds.status != "skipped").sum()
    # the server chart beside the CSV is the one shown, beside the other charts (drawn: none beside)
    page = (scenario_site / "index.html").read_text()
    chart = scenario_site / "charts" / f"{FULL}-server.png"
    assert chart.read_bytes() == (RESULTS / f"{FULL}-server.png").read_bytes()
    assert f"src='charts/{FULL}-server.png'" in page and f"src='charts/{FULL}-throughput.png'" in page
    default = [title for title, _ in _run_section(scenario_site, DEFAULT)]
    assert not any(t.startswith(("full loop", "server", "threads x streams", "run time")) for t in default)
    assert f"charts/{DEFAULT}-server.png" not in page  # no server rows: no chart


def test_streams_run_shows_its_settings_and_run_time(scenario_site: Path, streams_run: Path) -> None:
    from bench.results.store import read_results

    section = _run_section(scenario_site, streams_run.stem)
    answer = _table(section, "threads x streams: the fastest setting per runtime")
    line = _line(answer, runtime="torch-eager")
    assert line["settings tried"] == "2" and line["lowest batch-1 latency: threads x streams"] in (
        "1 x 1",
        "1 x 2",
    )
    every = _table(section, "threads x streams: every setting")
    assert sorted(zip(every["threads"], every["streams"], strict=True)) == [("1", "1"), ("1", "2")]
    rows = read_results(streams_run)
    qps = rows[rows["scenario"] == "streams"].sort_values("streams")["throughput_ips"]
    assert every["queries/s"] == [f"{v:,.0f}" for v in qps]
    durations = json.loads(streams_run.with_suffix(".json").read_text())["durations_s"]
    run_time = _table(section, "run time: seconds per step")
    groups = durations["groups"]
    assert run_time["step (comparison group)"][2:-1] == [g["group"] for g in groups]
    assert run_time["seconds"][2:-1] == [f"{g['seconds']:,.1f}" for g in groups]
    assert run_time["step (comparison group)"][-1] == "total"


def test_memory_section_is_the_markdown_memory_table() -> None:
    """The HTML memory table is the Markdown's (the same records), with cells for the default run's
    workers; a run made before workers has none."""
    from bench.report.history import load_run
    from bench.report.html import memory_table

    html = memory_table(load_run(RESULTS / f"{DEFAULT}.csv"))
    for heading in ("RSS after load MiB", "peak RSS MiB", "CPU ms / call", "cores busy", "model MB"):
        assert f">{heading}<" in html
    assert memory_table(load_run(REFERENCE)) == ""
