"""bench.report.analysis, bench.report.tables and bench.report.compare: speedups, skipped rows, rendering and the
``compare`` subcommand."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from bench.report.analysis import comparison_tables
from bench.report.compare import CompareError, add_parser
from bench.report.tables import render
from bench.results.machine import collect_machine
from bench.results.store import ResultRow, ResultsError, frame_from_rows, read_results, write_results
from models.errors import UserError


def _row(runtime: str, device: str, ips: float | None, **values: object) -> ResultRow:
    """A row whose median latency gives ``ips`` images/s at batch 10 (None: not measured)."""
    base = dict(
        run_id="r", timestamp_utc="2026-11-28T09:30:00Z", target="model", runtime=runtime, device=device
    )
    base |= dict(batch_size=10, threads=2, warmup=1, rounds=3, iterations=5)
    if ips is not None:
        base |= dict(latency_ms_median=10 / ips * 1e3, throughput_ips=ips, gflops=ips * 27.767808e-3)
    return ResultRow(**{**base, **values})


ROWS = [
    _row("torch-eager", "cpu", 1000.0, accuracy=0.992, agreement=1.0),
    _row("onnxruntime", "cpu", 2500.0, accuracy=0.992, agreement=0.9995),
    _row("torchscript", "cpu", 1250.0, accuracy=0.992, agreement=1.0),
    _row("torch-eager", "cuda", 20000.0, accuracy=0.992, agreement=1.0),
    _row("torchscript", "cuda", 30000.0, accuracy=0.992, agreement=1.0),
    _row("torch-eager", "cuda", 5000.0, timing="end_to_end"),
    _row("onnxruntime", "cuda", 4000.0, timing="end_to_end", execution_provider="CUDAExecutionProvider"),
    _row(
        "onnxruntime",
        "cuda",
        None,
        execution_provider="TensorrtExecutionProvider",
        status="skipped",
        reason="no TensorRT",
    ),
    _row("torch-eager", "cpu", 400.0, target="conv2"),
    _row("onnxruntime", "cpu", 600.0, target="conv2"),
    _row("torchscript", "cpu", None, target="conv2", status="failed", reason="RuntimeError: boom"),
]


def test_speedup_vs_torch_eager_on_the_same_device_and_timing() -> None:
    table = comparison_tables(frame_from_rows(ROWS))
    speedup = {
        (t, r, d, tm): s
        for t, r, d, tm, s in table[["target", "runtime", "device", "timing", "speedup"]].itertuples(
            index=False
        )
    }
    assert speedup[("model", "onnxruntime", "cpu", "compute")] == pytest.approx(2.5)
    assert speedup[("model", "torchscript", "cpu", "compute")] == pytest.approx(1.25)
    assert speedup[("model", "torch-eager", "cpu", "compute")] == pytest.approx(1.0)
    assert speedup[("model", "torchscript", "cuda", "compute")] == pytest.approx(1.5)
    assert speedup[("model", "onnxruntime", "cuda", "end_to_end")] == pytest.approx(0.8)
    assert speedup[("conv2", "onnxruntime", "cpu", "compute")] == pytest.approx(1.5)
    model = table[table["target"] == "model"]
    assert model["accuracy"].iloc[0] == pytest.approx(0.992)
    assert model["agreement"].min() == pytest.approx(0.9995)


def test_rows_are_grouped_and_sorted_fastest_first_never_dropped() -> None:
    table = comparison_tables(frame_from_rows(ROWS))
    assert len(table) == len(ROWS)
    assert table["target"].tolist() == ["model"] * 8 + ["conv2"] * 3
    assert table["runtime"].tolist()[:3] == [
        "torchscript",
        "torch-eager",
        "torch-eager",
    ]  # 30k, 20k, 5k images/s
    assert table["status"].tolist()[7:] == ["skipped", "ok", "ok", "failed"]


def test_render_plain_text() -> None:
    text = render(comparison_tables(frame_from_rows(ROWS)), markdown=False)
    assert "model, batch 10\n===============" in text and "conv2, batch 10" in text
    assert "failed: RuntimeError: boom" in text and "skipped:" not in text
    assert text.endswith(
        "not run, and why\n================\n\n- onnxruntime (Tensorrt) on cuda: no TensorRT (1 case)\n"
    )
    assert "2.50x" in text and "99.95" in text and "Tensorrt" in text
    assert "|" not in text
    # fastest first within a group
    assert text.index("torchscript  cuda") < text.index("torch-eager  cuda")


def test_render_markdown() -> None:
    text = render(frame_from_rows(ROWS), markdown=True)  # a raw results frame is accepted too
    assert "### model, batch 10" in text and "### conv2, batch 10" in text
    assert "| runtime" in text and "|:--" in text and "--:|" in text
    assert (
        "end_to_end" in text
        and "### not run, and why\n\n- onnxruntime (Tensorrt) on cuda: no TensorRT" in text
    )


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="deepmnist")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_compare_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = render(frame_from_rows(ROWS), markdown=True)
    path = write_results(ROWS, tmp_path, {"host": "h"}, {}, markdown=tables)
    args = _parse(["compare", str(path), "--markdown"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert path.with_suffix(".md").read_text().endswith(out)  # the .md is the same tables under a heading
    args = _parse(["compare", str(path)])
    assert args.func(args) == 0
    assert "model, batch 10" in capsys.readouterr().out


def test_compare_command_refuses_bad_files(tmp_path: Path) -> None:
    args = _parse(["compare", str(tmp_path / "missing.csv")])
    with pytest.raises(UserError, match=r"missing\.csv: no such file"):
        args.func(args)
    (tmp_path / "other.csv").write_text("x,y\n1,2\n")
    args = _parse(["compare", str(tmp_path / "other.csv")])
    with pytest.raises(ResultsError, match=r"other\.csv: not a deepmnist results CSV"):
        args.func(args)
    args = _parse(["compare", str(tmp_path)])
    with pytest.raises(UserError, match="cannot read"):
        args.func(args)


REFERENCE_RUN = Path(__file__).resolve().parents[2] / "results" / "20261202T012129Z-vm.csv"


def test_parity_section_lists_each_runtimes_worst_difference() -> None:
    """The parity table of the committed reference run, after the per-batch tables: one line per
    runtime (one host, device and precision each here) with the largest max |diff| of its ok
    whole-model rows, the lowest agreement and accuracy, computed here from the CSV itself."""
    text = render(read_results(REFERENCE_RUN), markdown=True)
    title = "### parity: whole model vs eager PyTorch on the CPU (worst over the batch sizes)"
    assert text.index("### model, batch 256") < text.index(title) < text.index("### where the time goes")
    section = text.split(title)[1].split("\n### ")[0]
    header, _, *lines = [line.strip("|").split("|") for line in section.strip().splitlines()]
    header = [h.strip() for h in header]
    table = {cells[0].strip(): dict(zip(header, (c.strip() for c in cells), strict=True)) for cells in lines}
    csv = pd.read_csv(REFERENCE_RUN, keep_default_na=False, na_values=[""])
    ok = csv[(csv["target"] == "model") & (csv["status"] == "ok") & csv["max_abs_diff"].notna()]
    assert set(table) == set(ok["runtime"]) and len(table) == len(lines)
    int8 = ok[ok["runtime"] == "onnxruntime-int8"]
    assert int8["max_abs_diff"].nunique() > 1  # differs by batch size: the table shows the largest
    for runtime, rows in ok.groupby("runtime"):
        line = table[runtime]
        assert line["max abs diff"] == f"{rows['max_abs_diff'].max():.2e}", runtime
        assert line["agreement %"] == f"{rows['agreement'].min() * 100:.2f}", runtime
        assert line["accuracy %"] == f"{rows['accuracy'].min() * 100:.2f}", runtime
    assert table["onnxruntime-int8"]["precision"] == "int8"
    assert (
        float(table["onnxruntime-int8"]["max abs diff"]) > 1e-3 > float(table["onnxruntime"]["max abs diff"])
    )
    # no section where no ok whole-model row has a figure (failed and layer rows do not count)
    failed = _row(
        "onnxruntime", "cpu", None, status="failed", reason="differs", max_abs_diff=1.0, agreement=0.5
    )
    rows = [failed, *(r for r in ROWS if r.target != "model")]
    assert "parity:" not in render(frame_from_rows(rows))


def _timed(runtime: str, median_ms: float, half_ci_ms: float, **values: object) -> ResultRow:
    """An ok row with a median and a realistic CI (median +- ``half_ci_ms``), batch 10, host h1."""
    base = dict(run_id="r", timestamp_utc="2026-11-28T09:30:00Z", target="model", runtime=runtime)
    base |= dict(device="cpu", host="h1", batch_size=10, threads=2, warmup=1, rounds=100, iterations=5)
    base |= dict(
        latency_ms_median=median_ms,
        latency_ms_median_ci_low=median_ms - half_ci_ms,
        latency_ms_median_ci_high=median_ms + half_ci_ms,
        cv=0.03,
        noisy=0,
        throughput_ips=10 / median_ms * 1e3,
    )
    return ResultRow(**{**base, **values})


TIMED = [
    _timed("torch-eager", 2.00, 0.05),
    _timed("torchscript", 2.04, 0.05),  # CI [1.99, 2.09] overlaps [1.95, 2.05]: within noise
    _timed("onnxruntime", 1.00, 0.02, cv=0.15, noisy=1),
    _timed("torch-eager", 5.00, 0.10, target="conv1"),
]


def test_within_noise_marks_and_ci_in_single_file_tables() -> None:
    table = comparison_tables(frame_from_rows(TIMED))
    by_runtime = {r: line for r, line in zip(table["runtime"], table.to_dict("records"), strict=True)}
    assert table["runtime"].tolist()[:3] == ["onnxruntime", "torch-eager", "torchscript"]
    assert by_runtime["onnxruntime"]["fastest"]
    text = render(table).split("conv1, batch 10")[0]  # the model table
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith(("onnx", "torch"))}
    assert "fastest" in lines["onnxruntime"] and "1.000 [0.9800, 1.020]" in lines["onnxruntime"]
    assert "15.0 noisy" in lines["onnxruntime"] and "noisy" not in lines["torch-eager"]
    assert "+100%" in lines["torch-eager"] and "+104%" in lines["torchscript"]
    # without onnxruntime, torchscript is within noise of the fastest, torch-eager
    text = render(frame_from_rows(TIMED[:2]))
    assert "fastest" in text and "within noise" in text and "+2.0%" not in text


def test_old_files_without_cis_get_no_noise_marks(tmp_path: Path) -> None:
    # a CSV of the first schema: no CI, CV or noisy columns; read_results leaves them empty
    noise = ["latency_ms_median_ci_low", "latency_ms_median_ci_high", "cv", "noisy"]
    frame_from_rows(TIMED[:2]).drop(columns=noise).to_csv(tmp_path / "old.csv", index=False)
    text = render(read_results(tmp_path / "old.csv"))
    assert "within noise" not in text and "+2.0%" in text and "2.000 [" not in text and "CV %" not in text


MACHINE = collect_machine()


def _write(rows: list[ResultRow], directory: Path, host: str = "h1") -> Path:
    return write_results(rows, directory, {"host": host, "machine": MACHINE}, {})


def _gate(tmp_path: Path, new_rows: list[ResultRow], *flags: str) -> tuple[int, str]:
    old = _write(TIMED, tmp_path / "old")
    new = _write([dataclasses.replace(r, run_id="r-new") for r in new_rows], tmp_path / "new")  # another run
    args = _parse(["compare", str(old), str(new), *flags])
    return args.func(args), str(new)


def _slower(row: ResultRow, factor: float) -> ResultRow:
    fields = ("latency_ms_median", "latency_ms_median_ci_low", "latency_ms_median_ci_high")
    return dataclasses.replace(row, **{f: getattr(row, f) * factor for f in fields})


def test_regression_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _gate(tmp_path / "same", list(TIMED), "--fail-slower", "10%")[0] == 0
    assert "no line slower by more than 10% beyond noise" in capsys.readouterr().out
    doctored = [TIMED[0], TIMED[1], _slower(TIMED[2], 1.5), TIMED[3]]
    assert _gate(tmp_path / "slower", doctored, "--fail-slower", "10")[0] == 1
    out = capsys.readouterr().out
    assert "slower by more than 10% beyond noise (1):" in out
    assert (
        "- h1, model, batch 10, onnxruntime, cpu, compute, 2 threads, fp32: 1.000 -> 1.500 ms (+50%)" in out
    )
    assert "beyond noise" in out and "within noise" in out  # the table marks each line
    # 2.5% slower but inside the CIs: not a regression, even with a 1% threshold
    within = [_slower(TIMED[0], 1.025), *TIMED[1:]]
    assert _gate(tmp_path / "within", within, "--fail-slower", "1%")[0] == 0
    # without a gate: the change table, added and removed lines
    code, _ = _gate(tmp_path / "plain", [*TIMED[:3], _timed("torchscript", 5.0, 0.1, target="conv1")])
    out = capsys.readouterr().out
    assert code == 0 and "added" in out and "removed" in out and "old ms [95% CI]" in out


def test_merge_shows_both_hosts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write(TIMED, tmp_path / "a", "h1")
    b = _write([dataclasses.replace(r, host="h2", run_id="r2") for r in TIMED], tmp_path / "b", "h2")
    args = _parse(["compare", str(a), str(b), "--merge"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "host" in out and out.count("h1 ") == 4 and out.count("h2 ") == 4
    assert (
        out.count("fastest") - out.count("vs fastest") == 4
    )  # ranked per host: each host's onnxruntime, each host's conv1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ONE", "--fail-slower", "10%"], "needs two results CSVs"),
        (["ONE", "ONE", "--fail-slower", "ten"], "expected a percentage"),
        (["ONE", "ONE", "--fail-slower", "-5"], "expected a percentage"),
        (["ONE", "ONE", "--merge", "--fail-slower", "5"], "does not go with --merge"),
        (["ONE", "ONE", "ONE"], "--merge to show several"),
    ],
)
def test_compare_refuses_bad_arguments(tmp_path: Path, argv: list[str], message: str) -> None:
    path = str(_write(TIMED, tmp_path))
    args = _parse(["compare", *(path if a == "ONE" else a for a in argv)])
    with pytest.raises(CompareError, match=message):
        args.func(args)
    assert issubclass(CompareError, UserError)
