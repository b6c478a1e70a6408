import subprocess
import sys
from pathlib import Path

import pytest

from bench.core import BenchConfig, Case, calibrate, cases
from bench.results import read_results
from bench.runtimes import RUNTIMES, tolerance
from models.paths import REPO_ROOT


def _bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path | None]:
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/", "--benchmark-only", "-q", "-p", "no:cacheprovider",
         "--results-dir", str(results), "--max-time", "0.2", *args],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=900,
    )  # fmt: skip
    written = sorted(results.glob("*.csv"))
    return proc, written[0] if written else None


def test_tiny_matrix_end_to_end(tmp_path, exported):
    proc, csv = _bench(
        tmp_path, "--targets", "conv1", "--batch-sizes", "8", "--runtimes", "torch-eager,onnxruntime"
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert csv is not None and "deepmnist-bench results" in proc.stdout and str(csv) in proc.stdout
    assert csv.with_suffix(".md").stat().st_size > 0 and csv.with_suffix(".json").is_file()
    df = read_results(csv)
    ok = df[df.status == "ok"]
    assert sorted(ok.runtime) == ["onnxruntime", "torch-eager"]
    assert set(ok.device) == {"cpu"} and set(ok.target) == {"conv1"} and set(ok.batch_size) == {8}
    for _, row in ok.iterrows():
        assert 0 < row.latency_ms_min <= row.latency_ms_median <= row.latency_ms_max
        assert row.rounds >= 10 and row.iterations >= 1 and row.threads >= 1
        assert row.throughput_ips == pytest.approx(8 / (row.latency_ms_median / 1e3))
        assert row.gflops > 0 and row.max_abs_diff <= tolerance(row.runtime, "cpu")
        assert row.git_commit and row.torch_version and row.onnxruntime_version
    # Every (runtime, device) pair of the matrix appears: CUDA ones skipped here, with the reason.
    cuda = df[df.device == "cuda"]
    assert len(cuda) == 4  # 2 runtimes x (compute, end_to_end)
    assert set(cuda.status) == {"skipped"}
    assert all("no CUDA device" in reason for reason in cuda.reason)


def test_wrong_runtime_fails_and_reports_no_timing(tmp_path, exported):
    proc, csv = _bench(
        tmp_path,
        "-p", "tests.broken_runtime",
        "--targets", "model", "--batch-sizes", "16", "--devices", "cpu",
        "--runtimes", "torch-eager,torch-eager-broken",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "output differs from eager PyTorch on CPU" in proc.stdout
    df = read_results(csv)
    broken = df[df.runtime == "torch-eager-broken"].iloc[0]
    assert broken.status == "failed" and "max |diff|" in broken.reason
    assert broken.max_abs_diff > 0.4
    for column in ("latency_ms_median", "throughput_ips", "accuracy"):
        assert broken[column] != broken[column]  # NaN: no timing, no accuracy
    eager = df[df.runtime == "torch-eager"].iloc[0]
    assert eager.status == "ok" and eager.accuracy >= 0.99 and eager.agreement == 1.0


def test_matrix_generation():
    config = BenchConfig(targets=("model", "fc1"), batch_sizes=(1, 64))
    all_cases = list(cases(config))
    per_device = 2 * 2 * len(RUNTIMES)
    assert len(all_cases) == per_device * 2 + per_device  # cpu, cuda, cuda end_to_end
    assert len({c.id for c in all_cases}) == len(all_cases)
    assert Case("fc1", "onnxruntime", "cuda", 64, "end_to_end").id == "fc1-b64-onnxruntime-cuda-e2e"
    assert RUNTIMES["onnxruntime-trt"].supports("cpu") == "onnxruntime-trt runs on cuda only"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("runtimes", ("tvm",), "unknown runtime"),
        ("devices", ("tpu",), "unknown device"),
        ("targets", ("conv9",), "unknown target"),
        ("batch_sizes", (0,), "batch sizes must be >= 1"),
    ],
)
def test_bad_bench_config(field, value, message):
    with pytest.raises(ValueError, match=message):
        BenchConfig(**{field: value})


def test_calibration_on_a_fixed_clock():
    now = [0.0]

    def clock() -> float:
        return now[0]

    def call() -> None:
        now[0] += 0.0005  # every call takes 0.5 ms on this clock

    rounds, iterations = calibrate(call, clock, BenchConfig(min_round_time=0.002, max_time=1.0))
    assert iterations == 4  # 4 x 0.5 ms reaches the 2 ms round
    assert rounds == 500  # 1 s / 2 ms
    assert calibrate(call, clock, BenchConfig(rounds=7, iterations=3)) == (7, 3)


def test_deepmnist_bench_command_runs_the_suite(tmp_path, exported):
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "bench", "--targets", "fc2", "--batch-sizes", "2",
         "--runtimes", "onnxruntime", "--devices", "cpu", "--max-time", "0.1", "--no-accuracy",
         "--results-dir", str(results)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    (csv,) = results.glob("*.csv")
    df = read_results(csv)
    assert list(df.status) == ["ok"] and df.runtime[0] == "onnxruntime" and df.target[0] == "fc2"
    assert "benchmark 'fc2 batch=2'" in proc.stdout  # pytest-benchmark's own table, grouped
