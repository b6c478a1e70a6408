"""bench.report.plots: the PNG charts written beside a results CSV, and ``python -m bench.report.plots``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.report import plots
from bench.report.plots import PlotError, main, read_samples, runtime_colours, write_plots
from bench.results.sidecar import SidecarError
from bench.results.store import ResultRow, ResultsError, frame_from_rows, read_results, write_results

CHARTS = ("throughput", "layers", "roofline", "single-stream")
MAX_PNG_BYTES = 300_000  # the brief's size budget per chart
# Per layer: (FLOP, input values, output values, parameters) per image, as models.network.LAYERS.
SHAPES = {
    "conv1": (1_254_400, 784, 25_088, 832),
    "pool1": (0, 25_088, 6_272, 0),
    "conv2": (20_070_400, 6_272, 12_544, 51_264),
    "pool2": (0, 12_544, 3_136, 0),
    "fc1": (6_422_528, 3_136, 1_024, 3_212_288),
    "fc2": (20_480, 1_024, 10, 10_250),
    "model": (27_767_808, 784, 10, 3_274_634),
}
SHARE = {"conv1": 0.08, "pool1": 0.04, "conv2": 0.55, "pool2": 0.02, "fc1": 0.28, "fc2": 0.01, "other": 0.02}
# device -> (measured peak GFLOP/s, copy bandwidth GB/s)
ROOF = {"cpu": (1500.0, 40.0), "cuda": (60_000.0, 3000.0)}
# (runtime, device, precision, execution provider, ms per image at large batch, ms overhead per call)
SERIES = [
    ("torch-eager", "cpu", "fp32", "", 0.080, 0.30),
    ("torchscript", "cpu", "fp32", "", 0.075, 0.25),
    ("torch-compile", "cpu", "fp32", "", 0.060, 0.20),
    ("onnxruntime", "cpu", "fp32", "CPUExecutionProvider", 0.050, 0.05),
    ("onnxruntime-int8", "cpu", "int8", "CPUExecutionProvider", 0.030, 0.06),
    ("openvino", "cpu", "fp32", "", 0.040, 0.08),
    ("torch-eager", "cuda", "fp32", "", 0.0020, 0.15),
    ("torch-eager", "cuda", "fp16", "", 0.0012, 0.16),
    ("torchscript", "cuda", "fp32", "", 0.0018, 0.10),
    ("onnxruntime", "cuda", "fp32", "CUDAExecutionProvider", 0.0016, 0.08),
]
BATCH_SIZES = (1, 64, 256)
PROFILE_BATCH = 64


def _row(runtime: str, device: str, precision: str, provider: str, **values: object) -> dict[str, object]:
    base = dict(
        run_id="r1",
        timestamp_utc="2026-11-28T09:30:00Z",
        host="bench-host",
        cpu_model="AMD EPYC 9654",
        gpu_name="NVIDIA H200" if device == "cuda" else "",
        runtime=runtime,
        device=device,
        precision=precision,
        execution_provider=provider,
        timing="compute",
        threads=8,
        warmup=10,
        rounds=30,
        iterations=10,
        status="ok",
        reason="",
        scenario="batch",
        peak_gflops=ROOF[device][0],
        bandwidth_gbs=ROOF[device][1],
    )
    return base | values


def _timed(target: str, batch: int, ms: float) -> dict[str, object]:
    flops, inputs, outputs, params = SHAPES[target]
    gflops = flops * batch / (ms * 1e6) if flops else math.nan  # FLOP / (ms * 1e6) = GFLOP/s
    return dict(
        target=target,
        batch_size=batch,
        latency_ms_median=ms,
        latency_ms_p90=ms * 1.1,
        latency_ms_p99=ms * 1.3,
        latency_ms_p999=ms * 1.6,
        throughput_ips=batch / ms * 1e3,
        gflops=gflops,
        # float32: 4 bytes per input, output and weight value
        arithmetic_intensity=(flops * batch / (4 * ((inputs + outputs) * batch + params)))
        if flops
        else math.nan,
        load_s=0.2,
        compile_s=math.nan,
        first_inference_ms=5.0,
    )


def results_frame() -> pd.DataFrame:
    """A run on one host with a CPU and a GPU: batch, layer, profile and single-stream rows."""
    rows = []
    for runtime, device, precision, provider, per_image, overhead in SERIES:
        for batch in BATCH_SIZES:
            model_ms = overhead + per_image * batch
            rows.append(_row(runtime, device, precision, provider, **_timed("model", batch, model_ms)))
            for layer in plots.LAYER_NAMES:
                # a layer timed alone pays the call overhead again: the layers add up to more than the model
                ms = overhead / 3 + per_image * batch * SHARE[layer]
                rows.append(_row(runtime, device, precision, provider, **_timed(layer, batch, ms)))
        # the profiler's split of one whole-model call, and its total (target "model", bench.harness.matrix)
        total = (overhead + per_image * PROFILE_BATCH) * sum(SHARE.values())
        for segment, ms in {**{s: total * share for s, share in SHARE.items()}, "model": total}.items():
            rows.append(
                _row(runtime, device, precision, provider, scenario="profile", target=segment)
                | dict(batch_size=PROFILE_BATCH, latency_ms_median=ms)
            )
        single = _timed("model", 1, overhead + per_image)
        rows.append(_row(runtime, device, precision, provider, **single, scenario="single-stream"))
    for device in ("cpu", "cuda"):
        best = max((r for r in rows if r["device"] == device), key=lambda r: r.get("throughput_ips") or 0)
        rows.append(best | {"scenario": "offline"})
    frame = frame_from_rows(ResultRow(**row) for row in rows)
    frame["pct_of_peak"] = frame["gflops"] / frame["peak_gflops"] * 100
    return frame


def single_stream_samples(frame: pd.DataFrame, n: int = 2000) -> dict[str, list[float]]:
    """Per-query ms, lognormal around each runtime's batch-1 latency, from a fixed RNG."""
    rng = np.random.default_rng(20261128)
    single = frame[(frame["scenario"] == "single-stream") & (frame["precision"] == "fp32")]
    samples = {
        f"{r.runtime}/{r.device}": (r.latency_ms_median * rng.lognormal(0.0, 0.25, n)).tolist()
        for r in single.itertuples()
    }
    if "torch-eager/cuda" in samples:  # with host<->device copies: bench.harness.matrix adds "/end_to_end"
        samples["torch-eager/cuda/end_to_end"] = [ms + 0.05 for ms in samples["torch-eager/cuda"]]
    return samples


def skipped_and_failed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` plus skipped and failed rows (NaN timings), one of a runtime with no ok row at all."""
    template = frame.iloc[0].to_dict()
    measured = ["latency_ms_median", "latency_ms_p90", "latency_ms_p99", "latency_ms_p999", "throughput_ips"]
    measured += ["gflops", "arithmetic_intensity", "pct_of_peak", "peak_gflops", "bandwidth_gbs"]
    base = template | dict.fromkeys(measured, math.nan)
    extra = [
        dict(runtime="tensorrt", device="cuda", status="skipped", reason="no TensorRT"),
        dict(runtime="tensorrt", device="cuda", scenario="profile", status="skipped", reason="no TensorRT"),
        dict(runtime="torchscript", target="conv2", status="failed", reason="RuntimeError: boom"),
        dict(runtime="openvino", scenario="profile", status="failed", reason="no profiler"),
    ]
    return pd.concat([frame, pd.DataFrame([base | row for row in extra])], ignore_index=True)


def _check_png(path: Path, min_height: int = 660) -> None:
    assert path.is_file() and 0 < path.stat().st_size < MAX_PNG_BYTES, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width == 1100  # 10 in at 110 dpi
        assert min_height <= image.height <= 2000
        image.load()  # decodes every pixel: a truncated file fails here
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 8  # not a blank canvas


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return results_frame()


@pytest.fixture(scope="module")
def full_run(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    folder = tmp_path_factory.mktemp("full")
    return folder, write_plots(frame, folder / "run", single_stream_samples(frame))


def test_cpu_and_cuda_run_writes_all_four_charts(full_run: tuple[Path, list[Path]]) -> None:
    folder, paths = full_run
    assert paths == [folder / f"run-{chart}.png" for chart in CHARTS]
    for path in paths:
        _check_png(path)
    assert sorted(folder.iterdir()) == sorted(paths)  # nothing else, no temporary files left


def test_cpu_only_run(frame: pd.DataFrame, tmp_path: Path) -> None:
    cpu = frame[frame["device"] == "cpu"]
    samples = {k: v for k, v in single_stream_samples(frame).items() if k.endswith("/cpu")}
    paths = write_plots(cpu, tmp_path / "cpu", samples)
    assert [p.name for p in paths] == [f"cpu-{chart}.png" for chart in CHARTS]
    for path in paths:
        _check_png(path)


def test_skipped_and_failed_rows_change_nothing(
    frame: pd.DataFrame, full_run: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    _, clean = full_run
    mixed_frame = skipped_and_failed(frame)
    assert len(plots.ok_rows(mixed_frame)) == len(frame)
    paths = write_plots(mixed_frame, tmp_path / "run", single_stream_samples(frame))
    assert [p.name for p in paths] == [p.name for p in clean]
    for mixed, reference in zip(paths, clean, strict=True):
        assert mixed.read_bytes() == reference.read_bytes(), mixed.name


def test_charts_without_data_are_not_written(frame: pd.DataFrame, tmp_path: Path) -> None:
    no_profile = frame[frame["scenario"] != "profile"]
    assert [p.name for p in write_plots(no_profile, tmp_path / "a")] == ["a-throughput.png", "a-roofline.png"]
    # an older CSV: no scenario, roofline or extra latency columns (read_results fills them in); no samples
    frame[frame["scenario"] == "batch"].drop(
        columns=["scenario", "peak_gflops", "bandwidth_gbs", "arithmetic_intensity", "pct_of_peak", "load_s"]
    ).to_csv(tmp_path / "old.csv", index=False)
    old = read_results(tmp_path / "old.csv")
    tmp_path.joinpath("old.csv").unlink()
    assert [p.name for p in write_plots(old, tmp_path / "b", {})] == ["b-throughput.png"]
    # layer rows only: no whole-model throughput, no single stream; the roofline has the layers
    layers = frame[frame["target"].isin(["conv2", "fc1"]) & (frame["scenario"] == "batch")]
    assert [p.name for p in write_plots(layers, tmp_path / "c", {"x/cpu": [math.nan, -1.0]})] == [
        "c-roofline.png"
    ]
    every_row_skipped = frame.assign(status="skipped", reason="no device")
    assert write_plots(every_row_skipped, tmp_path / "d") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a-roofline.png",
        "a-throughput.png",
        "b-throughput.png",
        "c-roofline.png",
    ]


def test_ok_rows_with_missing_numbers_are_left_out(frame: pd.DataFrame, tmp_path: Path) -> None:
    broken = frame.copy()
    # an ok row may lack a number (a pool's GFLOP/s, an unmeasured peak): never a crash, never a point
    broken.loc[broken["runtime"] == "openvino", ["throughput_ips", "gflops", "peak_gflops"]] = math.nan
    broken.loc[broken["device"] == "cuda", ["bandwidth_gbs"]] = math.nan
    broken.loc[broken["target"] == "fc2", "arithmetic_intensity"] = math.inf
    paths = write_plots(broken, tmp_path / "run")
    assert [p.name for p in paths] == [f"run-{chart}.png" for chart in CHARTS[:3]]
    for path in paths:
        _check_png(path)


def test_writing_again_replaces_the_charts_atomically(frame: pd.DataFrame, tmp_path: Path) -> None:
    cpu = frame[(frame["device"] == "cpu") & (frame["scenario"] == "batch")]
    first = write_plots(cpu, tmp_path / "run")
    before = {p: p.read_bytes() for p in first}
    faster = cpu.assign(throughput_ips=cpu["throughput_ips"] * 2)
    assert write_plots(faster, tmp_path / "run") == first
    assert first[0].read_bytes() != before[first[0]]  # the throughput chart was redrawn
    assert first[1].read_bytes() == before[first[1]]  # the roofline does not use throughput
    assert _leftovers(tmp_path) == []


def test_a_failed_write_leaves_no_partial_file(frame: pd.DataFrame, tmp_path: Path) -> None:
    cpu = frame[(frame["device"] == "cpu") & (frame["scenario"] == "batch")]
    (tmp_path / "run-roofline.png").mkdir()  # a real failure: the chart cannot take this name
    with pytest.raises(PlotError, match=r"run-roofline\.png: cannot write the chart"):
        write_plots(cpu, tmp_path / "run")
    assert (tmp_path / "run-roofline.png").is_dir()
    assert _leftovers(tmp_path) == []
    _check_png(tmp_path / "run-throughput.png")  # the chart before it is complete


def test_threads_draw_the_same_charts(frame: pd.DataFrame, tmp_path: Path) -> None:
    cpu = frame[(frame["device"] == "cpu") & (frame["scenario"] == "batch") & (frame["target"] == "model")]
    reference = write_plots(cpu, tmp_path / "serial")
    results: dict[int, list[Path]] = {}
    errors: list[BaseException] = []

    def draw(i: int) -> None:
        try:
            results[i] = write_plots(cpu, tmp_path / f"thread{i}")
        except BaseException as e:  # re-raised in the main thread below
            errors.append(e)

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for paths in results.values():
        assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in reference]


def test_long_single_stream_runs_are_drawn_from_the_samples_alone(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    rng = np.random.default_rng(7)
    samples = {
        "onnxruntime/cpu": rng.lognormal(-1.0, 0.3, 50_000).tolist(),  # more than are drawn one by one
        "torch-eager/cuda": [0.2, 0.25, math.inf, 0.3],  # the infinite sample is left out
    }
    every_row_skipped = frame.assign(status="skipped", reason="no device")
    (path,) = write_plots(every_row_skipped, tmp_path / "run", samples)
    assert path.name == "run-single-stream.png"
    _check_png(path)


def test_percentiles_are_given_only_where_the_samples_resolve_them() -> None:
    # bench.results.stats.min_samples: 10 samples beyond a percentile, so p90 100, p99 1,000, p99.9 10,000
    ms = np.arange(1, 10_001, dtype=float)  # 1..10,000 ms
    assert plots.percentiles(ms)[99.9] == pytest.approx(9990.001)
    assert plots.percentiles(ms[:1000]) == pytest.approx({50.0: 500.5, 90.0: 900.1, 99.0: 990.01, 99.9: None})
    assert plots.percentiles(ms[:999])[99.0] is None  # 999 queries: 9.99 beyond p99, one short
    assert plots.percentiles(ms[:300])[90.0] == pytest.approx(270.1)  # rank 0.9 * 299
    assert list(plots.percentiles(ms[:99]).values())[1:] == [None, None, None]


def test_runtime_colours_are_stable_and_distinct() -> None:
    many = [f"runtime-{i:02d}" for i in range(9)] + ["torch-eager", "onnxruntime", "openvino"]
    colours = runtime_colours(many)
    assert len({colours[r] for r in many}) == len(many)  # 12 runtimes, 12 colours
    assert colours["torch-eager"] == runtime_colours(["torch-eager"])["torch-eager"]
    assert colours["onnxruntime"] == runtime_colours(["zzz", "onnxruntime"])["onnxruntime"]
    fifteen = [f"r{i}" for i in range(15)]
    assert len(set(runtime_colours(fifteen).values())) == 15
    twenty = [*plots.registered_runtimes(), "a", "b", "c", "d", "e"][:20]
    assert len(set(runtime_colours(twenty).values())) == 20


def test_missing_columns_are_reported(frame: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match=r"missing column.*runtime"):
        write_plots(frame.drop(columns=["runtime"]), tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- command line


def _results_csv(folder: Path, status: str = "ok") -> Path:
    """A results CSV of today's schema (ResultRow), written by the benchmark's own writer."""
    env = dict(host="vm", cpu_model="AMD EPYC")
    rows = []
    for runtime, ms_per_image in (("torch-eager", 0.08), ("onnxruntime", 0.05)):
        for batch in BATCH_SIZES:
            row = ResultRow.create(
                env,
                run_id="r1",
                timestamp_utc="2026-11-28T09:30:00Z",
                target="model",
                runtime=runtime,
                device="cpu",
                batch_size=batch,
                threads=2,
                warmup=1,
                rounds=3,
                iterations=5,
            )
            if status == "ok":
                ms = 0.2 + ms_per_image * batch
                row.latency_ms_median, row.throughput_ips = ms, batch / ms * 1e3
            else:
                row.status, row.reason = status, "not installed"
            rows.append(row)
    frame_from_rows(rows)  # the rows are valid
    return write_results(rows, folder, env, {})


def test_cli_writes_charts_beside_the_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = _results_csv(tmp_path)
    sidecar = csv_path.with_suffix(".json")
    data = json.loads(sidecar.read_text())
    data[plots.SAMPLES_KEY] = {"onnxruntime/cpu": [0.4, 0.41, 0.45, 0.5, 1.2], "torch-eager/cpu": [0.6, 0.7]}
    sidecar.write_text(json.dumps(data))
    assert main([str(csv_path)]) == 0
    stem = csv_path.with_suffix("")
    expected = [Path(f"{stem}-throughput.png"), Path(f"{stem}-single-stream.png")]
    assert capsys.readouterr().out.split() == [str(p) for p in expected]
    for path in expected:
        _check_png(path)
    assert main([str(csv_path), "--out", str(tmp_path / "elsewhere" / "x")]) == 0
    assert (tmp_path / "elsewhere" / "x-throughput.png").is_file()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "no such file"),
        ("all-skipped", "no ok rows"),
        ("bad-json", "cannot read the results sidecar"),
        ("bad-samples", "single_stream_samples_ms['a/cpu'][0] is 'slow'; expected a positive number"),
    ],
)
def test_cli_bad_input_exits_2_naming_the_file(
    setup: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if setup == "missing":
        csv_path, named = tmp_path / "nope.csv", tmp_path / "nope.csv"
    else:
        csv_path = _results_csv(tmp_path, status="skipped" if setup == "all-skipped" else "ok")
        named = csv_path
        if setup == "bad-json":
            named = csv_path.with_suffix(".json")
            named.write_text("{not json")
        elif setup == "bad-samples":
            named = csv_path.with_suffix(".json")
            named.write_text(json.dumps({plots.SAMPLES_KEY: {"a/cpu": ["slow"]}}))
    assert main([str(csv_path)]) == 2
    err = capsys.readouterr().err
    assert str(named) in err and message in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.png"))


def test_read_samples_absent_file_or_key(tmp_path: Path) -> None:
    assert read_samples(tmp_path / "none.json") is None
    (tmp_path / "a.json").write_text(json.dumps({"run_id": "r"}))
    assert read_samples(tmp_path / "a.json") is None
    (tmp_path / "b.json").write_text(json.dumps({plots.SAMPLES_KEY: {"x/cuda": [1, 2.5]}}))
    assert read_samples(tmp_path / "b.json") == {"x/cuda": [1, 2.5]}
    (tmp_path / "c.json").write_text(json.dumps({plots.SAMPLES_KEY: [1, 2]}))
    with pytest.raises(
        SidecarError, match=r"c\.json: single_stream_samples_ms is \[1, 2\]; expected an object"
    ):
        read_samples(tmp_path / "c.json")


def test_module_entry_point_reports_without_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.report.plots", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 2
    assert str(missing) in proc.stderr and "Traceback" not in proc.stderr
