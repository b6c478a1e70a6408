import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness.matrix import BenchConfig, Case, cases, offline_rows
from bench.harness.roofline import rows_above_own_roof
from bench.harness.rounds import Planned, calibrate, plan, schedule
from bench.harness.run import EXTRA_ROOF_PASSES
from bench.results.machine import collect_machine
from bench.results.store import read_results
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
        tmp_path, "--targets", "conv1", "--batch-sizes", "8", "--runtimes", "torch-eager,onnxruntime",
        "--benchmark-json", str(tmp_path / "benchmark.json"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # pytest-benchmark's JSON shows the samples of the CSV: same median, same number of rounds
    benchmarks = json.loads((tmp_path / "benchmark.json").read_text())["benchmarks"]
    by_runtime = {b["extra_info"]["runtime"]: b["stats"] for b in benchmarks}
    for _, row in read_results(csv).query("status == 'ok'").iterrows():
        assert by_runtime[row.runtime]["median"] * 1e3 == pytest.approx(row.latency_ms_median, rel=1e-9)
        assert by_runtime[row.runtime]["rounds"] == row.rounds
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


def test_scenarios_cold_start_roofline_profile_and_plots(tmp_path, exported):
    """One small real run of the whole model: every scenario, the cold-start and roofline columns,
    the per-layer profile beside the whole-model time, the sidecar's samples, and the plots."""
    proc, csv = _bench(
        tmp_path, "--targets", "model", "--batch-sizes", "2,8", "--runtimes", "torch-eager,onnxruntime",
        "--devices", "cpu", "--max-time", "0.1", "--single-stream-queries", "40",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    df = read_results(csv)
    ok = df[df.status == "ok"]
    assert set(ok.scenario) == {"batch", "single-stream", "offline", "profile"}
    batch = ok[ok.scenario == "batch"]
    assert len(batch) == 4 and (batch.load_s > 0).all() and (batch.first_inference_ms > 0).all()
    assert batch.compile_s.isna().all()  # neither runtime compiles per shape
    # cold start in a fresh worker process, memory, CPU time and file size, on every measured row
    assert (batch.launcher == "process").all() and (batch.start_s > 0).all()
    total = batch.start_s + batch.load_s + batch.first_inference_ms / 1e3
    assert batch.time_to_first_result_s.tolist() == pytest.approx(total.tolist())
    assert (batch.rss_after_load_mb > 50).all() and (batch.peak_rss_mb > 50).all()
    # the runtime's own footprint is within the worker's resident set; the harness's start apart
    assert (batch.runtime_rss_mb > 10).all() and (batch.runtime_rss_mb < batch.rss_after_load_mb).all()
    assert (batch.harness_s > 0).all()
    assert (batch.cpu_ms_per_call > 0).all() and batch.cuda_peak_allocated_mb.isna().all()
    onnx = batch[batch.runtime == "onnxruntime"]
    from exporters.manifest import load_manifest
    from models.paths import export_dir

    assert (
        onnx.model_bytes == load_manifest(export_dir()).verified_path("model", "onnx").stat().st_size
    ).all()
    assert (batch.peak_gflops > 1).all() and (batch.bandwidth_gbs > 0.1).all()
    assert batch.pct_of_peak.tolist() == pytest.approx((batch.gflops / batch.peak_gflops * 100).tolist())
    assert (
        batch[batch.batch_size == 8].arithmetic_intensity
        > batch[batch.batch_size == 2].arithmetic_intensity.max()
    ).all()
    single = ok[ok.scenario == "single-stream"]
    assert sorted(single.runtime) == ["onnxruntime", "torch-eager"]
    assert (single.batch_size == 1).all() and (single.rounds == 40).all() and (single.iterations == 1).all()
    # 40 queries: no tail percentile has 10 samples beyond it (bench.results.stats.min_samples); empty, and why
    tails = ["latency_ms_p90", "latency_ms_p99", "latency_ms_p999", "latency_ms_p99_ci_low"]
    assert single[tails].isna().all().all()
    assert all(note.startswith("p90/p99/p99.9 not reported: 40 samples") for note in single.note)
    offline = ok[ok.scenario == "offline"]
    for _, row in offline.iterrows():  # the batch size with the highest throughput, as measured
        same = batch[batch.runtime == row.runtime]
        assert row.throughput_ips == same.throughput_ips.max()
        assert row.batch_size == same.loc[same.throughput_ips.idxmax(), "batch_size"]
    profile = ok[ok.scenario == "profile"]
    for runtime in ("torch-eager", "onnxruntime"):
        layers = profile[(profile.runtime == runtime) & (profile.target != "model")]
        assert set(layers.target) >= {"conv1", "pool1", "conv2", "pool2", "fc1", "fc2"}
        assert (layers.batch_size == 8).all() and (layers.latency_ms_median >= 0).all()
        total = profile[(profile.runtime == runtime) & (profile.target == "model")].latency_ms_median.iloc[0]
        assert layers.latency_ms_median.sum() == pytest.approx(total)
    sidecar = json.loads(csv.with_suffix(".json").read_text())
    assert sidecar["rooflines"]["cpu"]["peak_gflops"] == batch.peak_gflops.iloc[0]
    # measured before and after the groups (and again while a row stood above its roof): each roof
    # is the highest of the passes, and no row stands more than ROOF_SLACK above its own
    passes = [p["cpu"] for p in sidecar["roofline_passes"]]
    assert 2 <= len(passes) <= 2 + EXTRA_ROOF_PASSES
    roof = sidecar["rooflines"]["cpu"]
    assert roof["peak_gflops"] == max(p["peak_gflops"] for p in passes)
    assert roof["bandwidth_gbs"] == max(p["bandwidth_gbs"] for p in passes)
    for precision, peak in roof["precision_peaks"].items():
        assert peak == max(p["precision_peaks"][precision] for p in passes)
    if len(passes) == 2:  # the loop stopped because nothing stood above its roof
        assert rows_above_own_roof(read_results(csv).to_dict("records"), sidecar["rooflines"]) == []
    assert sidecar["environment"]["machine"]["machine_id"] == collect_machine()["machine_id"]
    samples = sidecar["single_stream_samples_ms"]
    assert sorted(samples) == ["onnxruntime/cpu", "torch-eager/cpu"]
    assert all(len(v) == 40 and min(v) > 0 for v in samples.values())
    # how long each step took: one entry per comparison group, in run order, as the console said
    durations = sidecar["durations_s"]
    groups = [g["group"] for g in durations["groups"]]
    assert groups == ["model batch=2 cpu", "model batch=8 cpu", "model batch=1 cpu single-stream"]
    assert [g["cases"] for g in durations["groups"]] == [2, 2, 2]
    kinds = ["whole model, fixed batch"] * 2 + ["single-stream, 40 queries per runtime"]
    assert [g["kind"] for g in durations["groups"]] == kinds
    assert all(g["seconds"] > 0 for g in durations["groups"]) and durations["roofline"] > 0
    # the whole run's memory: this process and the live workers, summed, at its peak; in the log too
    memory = sidecar["run_memory"]
    assert memory["peak_mb"] > batch.rss_after_load_mb.max() and memory["processes"] >= 2
    # shared pages count once in the proportional sum, once per process in the resident sum
    assert memory["bound_mb"] >= memory["rss_peak_mb"] >= memory["peak_mb"] and memory["where"]
    assert f"whole-run peak memory: {memory['peak_mb']:,.0f} MiB" in proc.stderr
    assert durations["measured"] >= sum(g["seconds"] for g in durations["groups"]) - 0.2
    stem = str(csv)[:-4]
    for kind in ("throughput", "layers", "roofline", "single-stream", "memory"):
        png = Path(f"{stem}-{kind}.png")
        assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", kind
    tables = csv.with_suffix(".md").read_text()
    for heading in (
        "offline: best throughput",
        "model, batch 1, single-stream",
        "where the time goes",
        "cold start",
        "to first result s",
        "memory and CPU time",
        "peak RSS MiB",
        "run time: seconds per step",
        "model batch=1 cpu single-stream",
        "run time by scenario",
        "single-stream, 40 queries per runtime",
    ):
        assert heading in tables, heading
    # compare prints the run time again, from the sidecar
    shown = subprocess.run(
        [sys.executable, "-m", "bench", "compare", str(csv)], capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0 and "run time: seconds per step" in shown.stdout, shown.stderr
    assert f"{durations['groups'][0]['seconds']:,.1f}" in shown.stdout.split("run time: seconds per step")[1]


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
    # fc1 only for the runtimes whose registry entry allows it (targets None: every target)
    both = sum(1 for spec in RUNTIMES.values() if spec.targets is None or "fc1" in spec.targets)
    per_device = 2 * (len(RUNTIMES) + both)  # 2 batch sizes x (model + fc1)
    single_stream = 3 * len(RUNTIMES)  # cpu, cuda, cuda end_to_end
    assert len(all_cases) == per_device * 2 + per_device + single_stream
    assert all(
        c.target == "model" or RUNTIMES[c.runtime].targets is None for c in all_cases if c.target == "fc1"
    )
    assert len({c.id for c in all_cases}) == len(all_cases)
    assert Case("fc1", "onnxruntime", "cuda", 64, "end_to_end").id == "fc1-b64-onnxruntime-cuda-e2e"
    ss = [c for c in all_cases if c.scenario == "single-stream"]
    assert {(c.target, c.batch_size) for c in ss} == {("model", 1)}
    assert ss[0].id == f"model-b1-{ss[0].runtime}-cpu-single-stream"
    # a group's cases are adjacent, so it is measured when its first test runs
    groups = [c.group for c in all_cases]
    assert all(
        groups.index(g) + groups.count(g) - 1 == len(groups) - 1 - groups[::-1].index(g) for g in groups
    )
    assert RUNTIMES["onnxruntime-trt"].supports("cpu") == "onnxruntime-trt runs on cuda only"
    no_ss = BenchConfig(targets=("model",), single_stream=False)
    assert not [c for c in cases(no_ss) if c.scenario != "batch"]


class _Log:
    """A stand-in for a prepared runtime that only logs its calls (no device work)."""

    execution_provider = ""

    def sync(self) -> None:
        pass


def _entries(names: str, log: list[str], clock=lambda: 0.0) -> list:
    from bench.harness.worker import Entry

    return [Entry(Case("model", n, "cpu", 8), _Log(), lambda n=n: log.append(n), clock) for n in names]


def test_interleaved_rounds_rotate_and_warm_each_round():
    planned = [Planned(Case("model", n, "cpu", 8), t) for n, t in (("A", 0.001), ("B", 0.004), ("C", 0.002))]
    config = BenchConfig(max_time=0.04, min_rounds=3, min_round_time=0.002)  # 2 ms rounds
    rounds = plan(planned, config)
    # every round lasts about as long as the slowest call (4 ms): 10 rounds fill 40 ms
    assert rounds == 10
    assert [e.iterations for e in planned] == [4, 1, 2]
    order = schedule(3, 3)
    assert ["ABC"[i] for i in order] == list("ABCBCACAB")
    log: list[str] = []
    entries = _entries("ABC", log)
    for i in order:
        entries[i].run_round(planned[i].iterations, planned[i].block, warm=0.0)
    # each round: 1 untimed warm call (warm = 0 s: just one), then `iterations` timed calls
    assert "".join(log[:5]) == "AAAAA" and "".join(log[5:7]) == "BB" and "".join(log[7:10]) == "CCC"
    assert [len(e.durations) for e in entries] == [3, 3, 3]
    assert [e.calls for e in entries] == [12, 3, 6]
    # --no-interleave: all rounds of A, then B, then C
    assert ["ABC"[i] for i in schedule(3, 2, rotate=False)] == list("AABBCC")


def test_round_warmup_lasts_the_given_time():
    now = [0.0]
    log: list[str] = []
    (entry,) = _entries("A", log, clock=lambda: now[0])
    entry.fn = lambda: (log.append("A"), now.__setitem__(0, now[0] + 0.001))  # 1 ms per call
    assert entry.run_round(2, 1, warm=0.005) == [pytest.approx(0.002)]
    assert len(log) == 5 + 2  # 5 ms of untimed calls, then 2 timed


def test_single_stream_plan_caps_queries_by_time():
    entries = [Planned(Case("model", "A", "cpu", 1), 0.0001), Planned(Case("model", "B", "cpu", 1), 0.05)]
    config = BenchConfig(single_stream_queries=1000, single_stream_max_time=10.0)
    blocks = plan(entries, config, "single-stream")
    assert blocks == 10
    assert [(e.iterations, e.block) for e in entries] == [(1, 100), (1, 20)]  # B: 10 s / 50 ms = 200


def test_offline_rows_take_the_best_batch():
    from bench.results.store import ResultRow

    def row(runtime, batch, ips, **kw):
        return ResultRow(run_id="r", timestamp_utc="t", target="model", runtime=runtime, device="cpu",
                         batch_size=batch, threads=2, warmup=1, rounds=10, iterations=1,
                         throughput_ips=ips, **kw)  # fmt: skip

    rows = [row("a", 1, 100.0), row("a", 64, 900.0), row("a", 256, 800.0), row("b", 1, 50.0),
            row("b", 64, None, status="skipped", reason="x"),
            row("a", 1, 5000.0, scenario="single-stream")]  # fmt: skip
    best = offline_rows(rows)
    assert [(r.runtime, r.batch_size, r.throughput_ips, r.scenario) for r in best] == [
        ("a", 64, 900.0, "offline"),
        ("b", 1, 50.0, "offline"),
    ]


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
    assert "fc2, batch 2" in proc.stdout and f"CSV:      {csv}" in proc.stdout  # the tables, the files


def test_the_main_job_collects_only_cases_that_can_exist_and_one_skip_per_reason():
    """``pytest bench/ --benchmark-only`` with the default matrix: no case a runtime's registry entry
    rules out (its layer targets), and the cases that cannot run here as one item per reason."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/", "--benchmark-only", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ids = [line for line in proc.stdout.splitlines() if "::test_case[" in line]
    skipped = [i for i in ids if "test_case[skipped-" in i]
    assert ids and len(skipped) <= 30, skipped
    assert len({i.split("-", 2)[2] for i in skipped}) == len(skipped)  # one item per reason
    assert not [i for i in ids if "runs-model-only" in i]
    for runtime, spec in RUNTIMES.items():  # a runtime's layer targets come from the registry
        if spec.targets is not None:
            assert not [
                i
                for i in ids
                if i not in skipped
                and f"-{runtime}-" in i
                and i.split("[")[1].split("-")[0] not in spec.targets
            ]
