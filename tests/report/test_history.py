"""``deepmnist history``: runs per machine over time, steps found in real samples with a known shift."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.report.history import build_history
from bench.results.machine import collect_machine
from bench.results.stats import Latency
from bench.results.store import ResultRow, write_results

RESULTS = Path(__file__).resolve().parents[2] / "results"
REFERENCE = RESULTS / "20261128T124630Z-vm.csv"
RUNS = 8
SHIFT_AT = 5  # the first run of the new level


def _samples(runtime: str) -> np.ndarray:
    """Real per-query latencies (ms, in measured order) of the reference run's single-stream scenario."""
    sidecar = json.loads(REFERENCE.with_suffix(".json").read_text())
    return np.asarray(sidecar["single_stream_samples_ms"][f"{runtime}/cpu"], dtype=float)


def _history_of_runs(folder: Path, shift: float) -> list[Path]:
    """RUNS runs of one machine, each a consecutive slice of the real samples of two runtimes summarised
    as the harness does (median, bootstrap CI); from run SHIFT_AT on, every sample is ``shift`` x."""
    environment = {"host": "h", "cpu_model": "test CPU", "machine": collect_machine()}
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    chunks = {runtime: np.array_split(_samples(runtime), RUNS) for runtime in ("onnxruntime", "torch-eager")}
    paths = []
    for i in range(RUNS):
        now = start + timedelta(days=i)
        env = {**environment, "git_commit": f"{i:02d}" * 20}
        rows = []
        for runtime, parts in chunks.items():
            ms = parts[i] * (shift if i >= SHIFT_AT else 1.0)
            row = ResultRow.create(
                env,
                run_id=f"run{i}",
                timestamp_utc=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                target="model",
                runtime=runtime,
                device="cpu",
                batch_size=1,
                threads=2,
                warmup=0,
                rounds=len(ms),
                iterations=1,
            )
            rows.append(row.with_latency(Latency.from_values(ms / 1e3), 27.77e6))
        paths.append(write_results(rows, folder, env, {}, now=now))
    return paths


def test_a_known_shift_in_real_samples_is_found_with_its_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _history_of_runs(tmp_path / "runs", 1.3)
    (history,) = build_history([str(tmp_path / "runs")], batches=["1"])
    assert len(history.runs) == RUNS
    assert {(s.series.split(",")[0], s.index) for s in history.steps} == {
        ("onnxruntime", SHIFT_AT),
        ("torch-eager", SHIFT_AT),
    }
    for step in history.steps:
        assert 0.2 < step.change < 0.4  # the known shift is +30%
    code = main(["history", str(tmp_path / "runs"), "-o", str(tmp_path / "out"), "--batch-sizes", "1"])
    out = capsys.readouterr().out
    assert code == 0
    summary = (tmp_path / "out" / "steps.md").read_text()
    assert summary in out
    assert f"`{f'{SHIFT_AT:02d}' * 6}` | `{f'{SHIFT_AT - 1:02d}' * 6}` |" in summary  # the commits around it
    png = tmp_path / "out" / f"{history.machine.machine_id}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_samples_without_a_shift_have_no_step(tmp_path: Path) -> None:
    _history_of_runs(tmp_path / "runs", 1.0)
    (history,) = build_history([str(tmp_path / "runs")], batches=["1"])
    assert history.steps == [] and len(history.series) == 2


def test_committed_runs_are_grouped_per_machine(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    histories = build_history([str(RESULTS)])
    groups = {frozenset(run.path.name for run in h.runs) for h in histories}
    # the reference machine's two runs together; the other machine's run alone
    assert frozenset({"20261128T124047Z-vm.csv", "20261128T124630Z-vm.csv"}) in groups
    assert frozenset({"20261128T152732Z-vm-other-machine.csv"}) in groups
    assert all(len({r.machine.machine_id for r in h.runs}) == 1 for h in histories)


def _csv(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("one-run", "history needs at least two runs of one machine"),
        ("other-schema", "not a deepmnist results CSV"),
        ("nan", "column latency_ms_median: nan is not a finite number"),
        ("missing", "no such file or folder"),
        ("empty-folder", "no results CSVs"),
    ],
)
def test_bad_input_to_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str, message: str
) -> None:
    lines = REFERENCE.read_text().splitlines()
    if make == "one-run":
        args = [str(REFERENCE)]
    elif make == "other-schema":
        args = [
            str(REFERENCE),
            str(_csv(tmp_path, "portability-x.csv", "runtime,platform,ok\nort,linux,1\n")),
        ]
    elif make == "nan":
        header = lines[0].split(",")
        ok = next(i for i, line in enumerate(lines) if line.endswith(",ok,"))
        cells = lines[ok].split(",")
        cells[header.index("latency_ms_median")] = "nan"
        args = [
            str(REFERENCE),
            str(_csv(tmp_path, "20261128T000000Z-vm.csv", "\n".join([lines[0], ",".join(cells)]))),
        ]
    elif make == "missing":
        args = [str(tmp_path / "nothing")]
    else:
        (tmp_path / "empty").mkdir()
        args = [str(tmp_path / "empty")]
    code = main(["history", *args, "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_committed_history_of_one_machine_is_what_the_command_writes() -> None:
    """results/history-demo: three runs of one machine (with fingerprints), at three commits; its
    history/steps.md is the command's output (``deepmnist history results/history-demo``)."""
    from bench.report.history import steps_markdown

    demo = RESULTS / "history-demo"
    (history,) = build_history([str(demo)])
    assert len(history.runs) == 3 and not history.machine.derived
    assert len({run.commit for run in history.runs}) == 3
    assert (demo / "history" / "steps.md").read_text() == steps_markdown([history])
    assert (demo / "history" / f"{history.machine.machine_id}.png").exists()
