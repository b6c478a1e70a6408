"""bench.compare: speedups, skipped rows, rendering and the ``compare`` subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.compare import add_parser, comparison_tables, render
from bench.results import ResultRow, ResultsError, frame_from_rows, write_results
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
    assert model["accuracy_pct"].iloc[0] == pytest.approx(99.2)
    assert model["agreement_pct"].min() == pytest.approx(99.95)


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
    assert "skipped: no TensorRT" in text and "failed: RuntimeError: boom" in text
    assert "2.50x" in text and "99.95" in text and "Tensorrt" in text
    assert "|" not in text
    # fastest first within a group
    assert text.index("torchscript  cuda") < text.index("torch-eager  cuda")


def test_render_markdown() -> None:
    text = render(frame_from_rows(ROWS), markdown=True)  # a raw results frame is accepted too
    assert "### model, batch 10" in text and "### conv2, batch 10" in text
    assert "| runtime" in text and "|:--" in text and "--:|" in text
    assert "end_to_end" in text and "skipped: no TensorRT" in text


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="deepmnist")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_compare_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_results(ROWS, tmp_path, {"host": "h"}, {})
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
