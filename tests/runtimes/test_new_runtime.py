"""Adding a runtime is one adapter file plus one registry line: ``tests/numpy_runtime.py`` (a real
NumPy implementation of the network, registered for this test only) goes through a real run and
shows up in the CSV, the Markdown tables and the plot legend, with no other list to edit."""

from __future__ import annotations

import pytest

from bench.harness.options import BenchConfig
from bench.report import plots
from bench.results.store import read_results
from bench.runtimes import RUNTIMES


@pytest.fixture
def numpy_runtime():
    import tests.numpy_runtime as module

    RUNTIMES[module.NAME] = module.NumpyReference()  # again, if an earlier test unregistered it
    yield module.NAME
    module.unregister()


def test_a_registered_runtime_reaches_csv_tables_and_plots(tmp_path, exported, numpy_runtime):
    from bench.harness.run import run
    from bench.report.write import write_run

    config = BenchConfig(
        devices=("cpu", "cuda"), targets=("model",), batch_sizes=(2, 8), max_time=0.1, min_rounds=5,
        warmup=2, single_stream=False, profile=False, roofline=False, accuracy=False,
        runtimes=("torch-eager", numpy_runtime), results_dir=str(tmp_path),
    )  # fmt: skip
    result = write_run(run(config, out=None))
    assert result.exit_code == 0
    df = read_results(result.path)
    mine = df[(df.runtime == numpy_runtime) & (df.scenario == "batch")]
    on_cpu = mine[mine.device == "cpu"]
    assert list(on_cpu.status) == ["ok", "ok"] and sorted(on_cpu.batch_size) == [2, 8]
    assert (on_cpu.max_abs_diff <= 1e-4).all() and (on_cpu.latency_ms_median > 0).all()  # parity gate passed
    assert set(mine[mine.device == "cuda"].reason) == {f"{numpy_runtime} runs on the CPU only"}

    markdown = result.path.with_suffix(".md").read_text(encoding="utf-8")
    assert f"| {numpy_runtime} " in markdown  # a line of the model's tables

    assert result.path.with_name(f"{result.path.stem}-throughput.png") in result.plots
    colours = plots.runtime_colours(df["runtime"])
    fig = plots.throughput_figure(plots.ok_rows(df), colours)
    legend = [text.get_text() for text in fig.axes[-1].get_legend().get_texts()]
    assert legend == ["torch-eager", numpy_runtime]  # registry order
    assert colours[numpy_runtime] == plots.PALETTE[list(RUNTIMES).index(numpy_runtime)]
    assert colours[numpy_runtime] != colours["torch-eager"]
