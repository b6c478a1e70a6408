"""``deepmnist report``: the static site, opened in real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium): tables and charts render, a header click sorts a table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.cli import main

RESULTS = Path(__file__).resolve().parent.parent / "results"
REFERENCE = RESULTS / "20261128T124630Z-vm.csv"
OTHER = RESULTS / "20261128T152732Z-vm-other-machine.csv"
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
