"""bench.results.store: the CSV schema, atomic never-overwriting writes, typed read-back."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bench.results.stats import Latency
from bench.results.store import (
    ADDED_COLUMNS,
    ResultRow,
    ResultsError,
    new_run_id,
    read_results,
    read_rows,
    utc_timestamp,
    write_results,
)
from models.errors import UserError

ENV = {"host": "bench host/1", "cpu_model": "Test CPU", "torch_version": "2.13.0", "cpu_count": "2"}
NOW = datetime(2026, 11, 28, 9, 30, 0, tzinfo=timezone.utc)
MODEL_FLOPS = 27_767_808


def _row(**values: object) -> ResultRow:
    base = dict(
        run_id="run-1",
        timestamp_utc="2026-11-28T09:30:00Z",
        target="model",
        runtime="torch-eager",
        device="cpu",
        batch_size=64,
        threads=2,
        warmup=5,
        rounds=10,
        iterations=20,
    )
    return ResultRow.create(ENV, **{**base, **values})


def _rows() -> list[ResultRow]:
    latency = Latency.from_values([0.0021, 0.0019, 0.002, 0.00234567890123])
    return [
        _row(accuracy=0.9921, agreement=1.0, max_abs_diff=0.0).with_latency(latency, MODEL_FLOPS),
        _row(
            runtime="onnxruntime",
            execution_provider="CPUExecutionProvider",
            accuracy=0.9921,
            agreement=0.9999,
        ).with_latency(latency, MODEL_FLOPS),
        _row(target="pool1", runtime="torchscript", reason="").with_latency(latency, 0),  # no GFLOP/s
        _row(device="cuda", reason="no CUDA device, 'quoted', with, commas", status="skipped"),
        _row(
            runtime="onnxruntime",
            device="cuda",
            timing="end_to_end",
            status="failed",
            reason="line 1\nline 2",
        ),
    ]


def test_fields_are_the_schema_in_order() -> None:
    assert ResultRow.fields() == (
        *("run_id", "timestamp_utc", "git_commit", "host", "cpu_model", "gpu_name", "os", "python"),
        *("torch_version", "onnxruntime_version", "onnx_version"),
        *("target", "runtime", "device", "execution_provider", "precision", "timing", "scenario"),
        *("batch_size", "threads", "streams", "launcher", "warmup", "rounds", "iterations", "start_s"),
        *("load_s", "compile_s", "first_inference_ms", "time_to_first_result_s", "harness_s"),
        "latency_ms_mean",
        *("latency_ms_median", "latency_ms_min", "latency_ms_max"),
        *("latency_ms_stddev", "latency_ms_p90", "latency_ms_p99", "latency_ms_p999"),
        *("latency_ms_median_ci_low", "latency_ms_median_ci_high", "latency_ms_p99_ci_low"),
        *("latency_ms_p99_ci_high", "latency_ms_p999_ci_low", "latency_ms_p999_ci_high"),
        *("cv", "noisy", "throughput_ips", "target_qps", "achieved_qps", "latency_bound_ms", "gflops"),
        *("pct_of_peak", "arithmetic_intensity", "peak_gflops", "bandwidth_gbs", "rss_after_load_mb"),
        *("runtime_rss_mb", "peak_rss_mb", "cuda_peak_allocated_mb", "cpu_ms_per_call", "model_bytes"),
        *("accuracy", "agreement", "max_abs_diff", "vs_alone", "alone_spread", "isolation_ok", "status"),
        *("reason", "note"),
    )


def test_with_latency_fills_the_measured_columns() -> None:
    row = _row().with_latency(Latency.from_values([0.001, 0.002, 0.003]), MODEL_FLOPS)
    assert row.latency_ms_median == pytest.approx(2.0)
    assert row.throughput_ips == pytest.approx(64 / 0.002)
    assert row.gflops == pytest.approx(MODEL_FLOPS * 64 / 0.002 / 1e9)
    assert row.host == "bench host/1" and row.gpu_name == ""
    assert row.latency_ms_median_ci_low == pytest.approx(1.0) and row.latency_ms_median_ci_high == 3.0
    assert row.cv == pytest.approx(0.5) and row.noisy == 1
    assert row.pct_of_peak is None
    # 3 samples: no tail percentile is reported; the note says why
    assert (row.latency_ms_p90, row.latency_ms_p99, row.latency_ms_p999, row.latency_ms_p99_ci_low) == (
        None,
    ) * 4
    assert row.note.startswith("p90/p99/p99.9 not reported: 3 samples")
    roofed = row.with_roofline(peak_gflops=2000.0, bandwidth_gbs=50.0, arithmetic_intensity=12.5)
    assert roofed.pct_of_peak == pytest.approx(row.gflops / 2000.0 * 100)
    assert (roofed.peak_gflops, roofed.bandwidth_gbs, roofed.arithmetic_intensity) == (2000.0, 50.0, 12.5)
    pool = _row(target="pool1").with_latency(Latency.from_values([0.001]), None)
    assert pool.with_roofline(2000.0, 50.0, 0.0).pct_of_peak is None  # no FLOP, no share of the peak


def test_skipped_and_failed_rows_need_a_reason_and_no_timings() -> None:
    with pytest.raises(ValueError, match="needs a reason"):
        _row(status="skipped")
    with pytest.raises(ValueError, match="latency_ms_median"):
        _row(status="failed", reason="x", latency_ms_median=1.0)
    with pytest.raises(ValueError, match="status"):
        _row(status="great")


def test_round_trip(tmp_path: Path) -> None:
    rows = _rows()
    path = write_results(
        rows, tmp_path, ENV, {"batch_sizes": [1, 64], "out": tmp_path}, now=NOW, markdown="TABLES"
    )
    assert path == tmp_path / "20261128T093000Z-bench-host-1.csv"

    df = read_results(path)
    assert list(df.columns) == list(ResultRow.fields())
    assert df["batch_size"].dtype == "int64" and df["latency_ms_median"].dtype == "float64"
    assert df["latency_ms_median"].isna().tolist() == [False, False, False, True, True]
    assert df["gflops"].isna().tolist() == [False, False, True, True, True]
    assert df["noisy"].tolist()[:3] == [0.0, 0.0, 0.0] and df["noisy"].isna().tolist()[3:] == [True, True]
    assert df["latency_ms_median_ci_low"].notna().tolist() == [True, True, True, False, False]
    assert path.read_text().splitlines()[1].count(",0,") >= 1  # noisy written as an int, not 0.0
    assert read_rows(path) == rows

    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["run_id"] == "run-1"
    assert sidecar["environment"] == ENV
    assert sidecar["config"] == {"batch_sizes": [1, 64], "out": str(tmp_path)}
    assert sidecar["columns"] == list(ResultRow.fields())
    md = path.with_suffix(".md").read_text()
    assert md.startswith("# Results of run run-1") and md.endswith("TABLES")  # tables: the caller's

    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.stem + ".json", path.stem + ".md"]


def test_never_overwrites(tmp_path: Path) -> None:
    first = write_results(_rows()[:1], tmp_path, ENV, {}, now=NOW)
    content = first.read_bytes()
    second = write_results(_rows(), tmp_path, ENV, {}, now=NOW)
    (tmp_path / "20261128T093000Z-bench-host-1-3.json").write_text("{}")  # a stray sidecar also blocks a name
    third = write_results(_rows(), tmp_path, ENV, {}, now=NOW)
    assert [first.stem, second.stem, third.stem] == [
        "20261128T093000Z-bench-host-1",
        "20261128T093000Z-bench-host-1-2",
        "20261128T093000Z-bench-host-1-4",
    ]
    assert first.read_bytes() == content
    assert len(read_results(second)) == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_nothing_written_when_rows_are_inconsistent(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="run ids"):
        write_results([_row(), _row(run_id="run-2")], tmp_path, ENV, {})
    assert list(tmp_path.iterdir()) == []


def test_wrong_header_is_refused(tmp_path: Path) -> None:
    good = write_results(_rows(), tmp_path, ENV, {}, now=NOW)
    bad = tmp_path / "bad.csv"
    bad.write_text(good.read_text().replace("latency_ms_p99", "latency_p99", 1))
    with pytest.raises(
        ResultsError,
        match=r"bad\.csv.*missing column\(s\) latency_ms_p99.*unexpected column\(s\) latency_p99",
    ):
        read_results(bad)
    assert issubclass(ResultsError, UserError)


def test_older_csv_without_the_added_columns_is_read_with_defaults(tmp_path: Path) -> None:
    good = read_results(write_results(_rows(), tmp_path, ENV, {}, now=NOW))
    old = tmp_path / "old.csv"
    first_schema = [c for c in ResultRow.fields() if c not in ADDED_COLUMNS]
    assert len(first_schema) == len(ResultRow.fields()) - len(ADDED_COLUMNS)
    # the first published schema, and the second one (which had the CI, CV and noisy columns)
    noise = ("latency_ms_median_ci_low", "latency_ms_median_ci_high", "cv", "noisy")
    second_schema = [c for c in ResultRow.fields() if c in first_schema or c in noise]
    for columns in (first_schema, second_schema):
        frame = good[columns]
        if "noisy" in columns:  # as the writer spells it: 0 or 1, not 0.0
            frame = frame.astype({"noisy": "Int64"})
        frame.to_csv(old, index=False)
        df = read_results(old)
        assert list(df.columns) == list(ResultRow.fields())
        for name in ADDED_COLUMNS:
            if name == "scenario":
                assert (df[name] == "batch").all()
            elif name in ("launcher", "note"):  # a string column: empty, not NaN
                assert (df[name] == "").all()
            elif name not in columns:
                assert df[name].isna().all(), name
        assert df["latency_ms_median"].tolist()[:3] == good["latency_ms_median"].tolist()[:3]
    # a file lacking other columns as well, or with extra ones, or out of order, is still refused
    good[first_schema[:-1]].to_csv(old, index=False)
    with pytest.raises(ResultsError, match=r"old\.csv: not a deepmnist.*missing column\(s\) .*reason"):
        read_results(old)
    good[first_schema].assign(extra=1).to_csv(old, index=False)
    with pytest.raises(ResultsError, match=r"unexpected column\(s\) extra"):
        read_results(old)
    good[[first_schema[1], first_schema[0], *first_schema[2:]]].to_csv(old, index=False)
    with pytest.raises(ResultsError, match=r"old\.csv: not a deepmnist results CSV"):
        read_results(old)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        (None, "no such file"),
        ("a,b\n1,2\n", "missing column"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "r.csv"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ResultsError, match=message):
        read_results(path)


def test_bad_cells_are_refused(tmp_path: Path) -> None:
    good = write_results(_rows(), tmp_path, ENV, {}, now=NOW)
    lines = good.read_text().splitlines(keepends=True)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        lines[0] + lines[1].replace(",64,2,,,5,10,20,", ",sixty-four,2,,,5,10,20,", 1)
    )  # streams empty
    with pytest.raises(
        ResultsError, match=r"bad\.csv, line 2, column batch_size: 'sixty-four' is not an integer"
    ):
        read_results(bad)


def test_crash_while_publishing_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("bench.results.store.os.link", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_results(_rows(), tmp_path, ENV, {}, now=NOW)
    assert list(tmp_path.iterdir()) == []


def test_a_signed_column_may_be_negative_and_others_may_not(tmp_path: Path) -> None:
    """The self-check writes vs_alone < 0 for a runtime faster in the matrix than alone."""
    latency = Latency.from_values([0.0021, 0.0019, 0.002])
    row = _row(vs_alone=-0.14, isolation_ok=0).with_latency(latency, MODEL_FLOPS)
    path = write_results([row], tmp_path, ENV, {}, now=NOW)
    assert read_rows(path)[0].vs_alone == pytest.approx(-0.14)
    bad = tmp_path / "bad"
    bad.mkdir()
    path = write_results([_row(accuracy=-0.5).with_latency(latency, MODEL_FLOPS)], bad, ENV, {}, now=NOW)
    with pytest.raises(ResultsError, match=r"column accuracy: -0\.5 must not be negative"):
        read_results(path)


def test_timestamps_and_run_ids() -> None:
    assert utc_timestamp(NOW) == "2026-11-28T09:30:00Z"
    assert utc_timestamp(NOW, compact=True) == "20261128T093000Z"
    assert new_run_id() != new_run_id()
