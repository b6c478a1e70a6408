"""Worker processes: the parent/worker protocol, suspension of idle workers, a worker that crashes
or hangs, Ctrl-C, the isolation self-check on a tiny matrix, the generated options, memory."""

from __future__ import annotations

import argparse
import mmap
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bench.harness import memory
from bench.harness.launch import describe_exit
from bench.harness.matrix import Case
from bench.harness.options import BenchConfig, add_cli_options, config_from, flags
from bench.results.store import read_results
from models.paths import REPO_ROOT


@pytest.fixture
def broken_runtimes():
    """The deliberately broken runtimes in this process's registry, for one test only (other tests
    iterate over RUNTIMES)."""
    import tests.broken_runtime as broken

    broken.register()
    yield
    broken.unregister()


def _config(tmp_path, **values) -> BenchConfig:
    quick = dict(
        devices=("cpu",), targets=("model",), batch_sizes=(2,), max_time=0.1, min_rounds=5, warmup=2,
        single_stream=False, profile=False, roofline=False, accuracy=False, results_dir=str(tmp_path),
    )  # fmt: skip
    return BenchConfig(**{**quick, **values})


def _state(pid: int) -> str:
    """The process state letter of /proc/PID/stat (T: stopped), once it has settled."""
    for _ in range(100):
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return state
        time.sleep(0.01)
    return state


def test_worker_protocol_in_a_process(tmp_path, exported):
    from bench.harness.prepare import ensure_artifacts
    from bench.harness.run import make_launcher

    config = _config(tmp_path)
    artifacts, mnist = ensure_artifacts()
    case = Case("model", "onnxruntime", "cpu", 2)
    launcher = make_launcher(config, artifacts, mnist, [case])
    try:
        worker = launcher.worker("onnxruntime", "cpu")
        assert worker.start_s > 0 and worker.unsupported is None
        assert _state(worker.pid) == "T"  # suspended while idle
        assert launcher.call("onnxruntime", "cpu", {"op": "ping"}, 30) == {}
        assert _state(worker.pid) == "T"

        def call(op, **args):
            return launcher.call("onnxruntime", "cpu", {"op": op, **args}, 60)

        prepared = call("prepare", case=case)
        assert prepared["per_call"] > 0 and prepared["load_s"] > 0 and prepared["first_inference_ms"] > 0
        onnx = artifacts.manifest.verified_path("model", "onnx")
        assert prepared["model_bytes"] == onnx.stat().st_size and prepared["max_abs_diff"] <= 1e-4
        assert prepared["rss_after_load_mb"] > 50 and prepared["compile_s"] is None
        durations = call("round", case_id=case.id, iterations=3, block=2, warm=0.0)["durations"]
        assert len(durations) == 2 and min(durations) > 0
        finished = call("finish", case_id=case.id, accuracy=True)
        assert finished["accuracy"] >= 0.99 and finished["agreement"] >= 0.999
        assert finished["cpu_ms_per_call"] > 0 and finished["peak_rss_mb"] >= 50
        assert call("alone", case_id=case.id, seconds=0.05)["median"] > 0
        error = call("round", case_id="nope", iterations=1, block=1, warm=0.0)
        assert error["error"].startswith("KeyError")  # an error answer; the worker lives on
        assert call("release", case_id=case.id) == {} and call("ping") == {}
    finally:
        launcher.close()
    assert worker.proc.poll() == 0  # asked to exit, it exited


def test_crash_and_timeout_lose_nothing_else(tmp_path, exported, broken_runtimes):
    """A worker killed by SIGSEGV in the middle of its rounds and one that hangs: their cases get
    crashed and timeout rows, torch-eager in between is measured, the CSV is written, exit code 1."""
    from bench.harness.run import run
    from bench.report.write import write_run

    config = _config(
        tmp_path,
        runtimes=("torch-eager-segfault", "torch-eager", "torch-eager-hang"),
        batch_sizes=(2, 4),
        case_timeout=15,
    )
    result = write_run(run(config, out=None))
    assert result.exit_code == 1
    df = read_results(result.path)
    status = {(r.runtime, r.batch_size): r for r in df[df.scenario == "batch"].itertuples()}
    assert status[("torch-eager", 2)].status == "ok" and status[("torch-eager", 4)].status == "ok"
    for batch in (2, 4):  # the worker died in the first group; its later case gets the same row
        crashed = status[("torch-eager-segfault", batch)]
        assert crashed.status == "crashed"
        assert "killed by signal 11 (SIGSEGV)" in crashed.reason
        assert "Segmentation fault" in crashed.reason  # from the end of its stderr
        assert np.isnan(crashed.latency_ms_median)
    assert status[("torch-eager-hang", 2)].status == "ok"
    hung = status[("torch-eager-hang", 4)]
    assert hung.status == "timeout" and "within 15 s" in hung.reason


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    import os

    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError):
                pass
    return found


# Modules no worker may import: the tables, charts and HTML of the parent (and pandas, matplotlib)
RENDERING = ("pandas", "matplotlib", "tabulate", "bench.results.store", "bench.report.tables", "bench.report.plots",
             "bench.report.analysis", "bench.report.scenario_tables", "bench.report.html", "bench.report.compare", "bench.report.history")  # fmt: skip


def test_each_worker_carries_only_its_runtime(tmp_path, exported):
    """Every registered runtime that runs here, in its worker process, after prepare: no rendering
    module, and no torch unless it is a torch runtime (a torch import added to the ONNX Runtime
    adapter, or anything it imports, fails this)."""
    from bench.harness.matrix import skip_reason
    from bench.harness.prepare import ensure_artifacts
    from bench.harness.run import make_launcher
    from bench.runtimes import RUNTIMES
    from bench.runtimes.torch_base import TorchRuntime

    artifacts, mnist = ensure_artifacts()
    selected = [Case("model", name, "cpu", 1) for name in RUNTIMES]
    selected = [case for case in selected if skip_reason(case) is None]
    assert {"onnxruntime", "onnxruntime-int8", "torch-eager"} <= {case.runtime for case in selected}
    launcher = make_launcher(_config(tmp_path), artifacts, mnist, selected)
    try:
        for case in selected:
            reply = launcher.call(case.runtime, "cpu", {"op": "prepare", "case": case}, 300)
            assert "per_call" in reply, (case.runtime, reply)
            modules = set(launcher.call(case.runtime, "cpu", {"op": "modules"}, 60)["modules"])
            assert not {m for m in modules if m.split(".")[0] in RENDERING or m in RENDERING}, case.runtime
            if not isinstance(RUNTIMES[case.runtime], TorchRuntime):
                assert "torch" not in modules, f"{case.runtime}'s worker imported torch"
            launcher.end(case.runtime, "cpu")
    finally:
        launcher.close()


def test_every_bare_program_runs(tmp_path, exported):
    """The self-check's reference: each runtime's bare program (bench.runtimes.bare) imports its library,
    loads the same file, makes one call and reports its time and memory."""
    from bench.harness.prepare import ensure_artifacts
    from bench.runtimes import RUNTIMES
    from bench.runtimes.bare import run_bare
    from bench.runtimes.base import HasBare

    artifacts, mnist = ensure_artifacts()
    x = tmp_path / "x.npy"
    np.save(x, mnist.test_images[:2, None].astype(np.float32) / 255)
    ran = []
    for name in RUNTIMES:
        adapter = RUNTIMES[name]
        if isinstance(adapter, HasBare) and adapter.supports("cpu") is None:
            result = run_bare(adapter.bare("model", artifacts, 1, x))
            assert result.time_to_first_result_s > 0 and result.peak_rss_mb >= result.runtime_rss_mb > 10, (
                name
            )
            ran.append(name)
    assert {"onnxruntime", "openvino", "torchscript", "torch-eager"} <= set(ran)
    bad = RUNTIMES["onnxruntime"].bare("model", artifacts, 1, tmp_path / "missing.npy")
    with pytest.raises(RuntimeError, match="the bare program failed"):
        run_bare(bad)


def test_cold_start_check(tmp_path, exported):
    """The self-check's cold-start lines: harness and bare figures for a runtime that has a bare
    program, a stated reason for one that has none."""
    from bench.checks.selfcheck import cold_start_lines
    from bench.runtimes import RUNTIMES

    web = ("onnxruntime-web",) if RUNTIMES["onnxruntime-web"].supports("cpu") is None else ()
    lines = cold_start_lines(_config(tmp_path, runtimes=("onnxruntime", *web)), out=None)
    line = lines[0]
    assert line.runtime == "onnxruntime" and line.verdict in ("ok", "FAIL")
    assert line.harness_s > 0 and line.bare_s > 0 and line.harness_extra_s > 0
    assert line.harness_peak_mb > 0 and line.bare_peak_mb > 0 and line.bare_runtime_mb > 10
    if web:
        assert lines[1].verdict.startswith("none: onnxruntime-web has no bare program") and lines[1].ok


@pytest.mark.skipif(not (REPO_ROOT / "node_modules" / "onnxruntime-node").is_dir(), reason="npm ci not run")
def test_a_suspended_worker_stops_the_processes_it_started(tmp_path, exported):
    """onnxruntime-node computes in a Node child process of its worker: while the worker is
    suspended, so is Node (the whole process group), and closing the worker ends Node too."""
    from bench.harness.prepare import ensure_artifacts
    from bench.harness.run import make_launcher

    config = _config(tmp_path, runtimes=("onnxruntime-node",))
    artifacts, mnist = ensure_artifacts()
    case = Case("model", "onnxruntime-node", "cpu", 2)
    launcher = make_launcher(config, artifacts, mnist, [case])
    try:
        reply = launcher.call(case.runtime, "cpu", {"op": "prepare", "case": case}, 120)
        assert "per_call" in reply
        # the runtime's start is Node's own (its process start to onnxruntime-node required), its
        # memory Node's: the Python worker around it is the harness's
        assert 0 < reply["start_s"] < 5 and reply["runtime_rss_mb"] > 20
        worker = launcher.worker(case.runtime, "cpu")
        children = _children(worker.pid)
        assert children, "the Node host is a child of the worker"
        assert [_state(pid) for pid in [worker.pid, *children]] == ["T"] * (1 + len(children))
    finally:
        launcher.close()
    time.sleep(0.5)
    for pid in children:
        try:
            with open(f"/proc/{pid}/stat") as f:
                assert f.read().rsplit(")", 1)[1].split()[0] == "Z"  # ended (not yet reaped)
        except FileNotFoundError:
            pass


def test_inline_launcher_keeps_one_process(tmp_path, exported):
    """``--launcher inline``: the same worker code in this process (no fresh-process cold start)."""
    from bench.harness.run import run
    from bench.report.write import write_run

    result = write_run(
        run(_config(tmp_path, runtimes=("onnxruntime", "torch-eager"), launcher="inline"), out=None)
    )
    assert result.exit_code == 0
    rows = [r for r in result.rows if r.scenario == "batch"]
    assert [r.status for r in rows] == ["ok", "ok"] and {r.launcher for r in rows} == {"inline"}
    assert all(r.start_s is None and r.time_to_first_result_s is None and r.load_s > 0 for r in rows)
    assert all(r.cpu_ms_per_call > 0 and r.rss_after_load_mb > 50 for r in rows)


def test_ctrl_c_ends_the_workers_and_writes_the_rows_so_far(tmp_path, exported):
    results = tmp_path / "results"
    # Ctrl-C as in a terminal: a shell's background job (CI started with `&`) passes SIGINT on
    # ignored, and Python then keeps it ignored; SIGUSR1 dumps every thread's stack if the run hangs
    script = (
        "import faulthandler, signal, sys, tests.broken_runtime; from bench.cli import main; "
        "signal.signal(signal.SIGINT, signal.default_int_handler); "
        "faulthandler.register(signal.SIGUSR1, all_threads=True); sys.exit(main(sys.argv[1:]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "bench", "--runtimes", "torch-eager,torch-eager-hang",
         "--devices", "cpu", "--targets", "model", "--batch-sizes", "2,4", "--max-time", "0.1",
         "--warmup", "2", "--no-accuracy", "--no-single-stream", "--no-profile", "--no-roofline",
         "--results-dir", str(results)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in proc.stderr:  # progress lines; group 2 hangs in torch-eager-hang's prepare
            if line.startswith("[2/2]"):
                break
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"still running 120 s after Ctrl-C; its stacks:\n{err[-6000:]}")
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    (csv,) = results.glob("*.csv")
    df = read_results(csv)
    batch = df[df.scenario == "batch"]
    assert sorted(batch.runtime) == ["torch-eager", "torch-eager-hang"] and set(batch.batch_size) == {2}
    assert set(batch.status) == {"ok"}


@pytest.mark.parametrize(
    ("isolated", "before", "after", "expected"),
    [(10.0, 9.0, 11.0, 0.0), (10.0, 11.0, 9.0, 0.0), (12.1, 10.0, 11.0, 0.1), (9.0, 10.0, 11.0, -0.1)],
)
def test_alone_range_is_the_distance_from_the_nearer_end(isolated, before, after, expected):
    """Inside the range of the two alone passes the isolated median agrees; outside, the distance
    is taken from the nearer end (drift in either direction between the passes)."""
    from bench.checks.selfcheck import alone_range

    assert alone_range(isolated, before, after) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("vs_alone", "spread", "verdict", "passes"),
    [
        (0.0, 0.05, "ok", 1),
        (0.0, 0.30, "undecided", None),
        (-0.2, 0.30, "FAIL", 0),
        (0.05, float("nan"), "ok", 1),
    ],
)
def test_isolation_verdict_tells_a_failure_from_a_machine_that_does_not_repeat(
    vs_alone, spread, verdict, passes
):
    """Within the tolerance of the alone range but with alone passes that spread wider than the
    tolerance the line is undecided, not ok; beyond it, a failure whatever the spread."""
    from bench.checks.selfcheck import runtime_passes
    from bench.results.columns import isolation_verdict

    assert isolation_verdict(vs_alone, spread) == verdict
    assert runtime_passes(["ok", verdict]) == passes


def test_isolation_self_check_on_a_tiny_matrix(tmp_path, exported):
    """``deepmnist bench --self-check`` on one runtime: the IPC round trip, then isolated vs alone at
    batch 1 and 64, printed and written (``vs_alone``, ``alone_spread``, ``isolation_ok``). Whether it passes depends
    on the machine's load: the test checks the figures, not a speed."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "bench", "--self-check", "--runtimes", "onnxruntime",
         "--max-time", "0.2", "--warmup", "2", "--results-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "IPC round trip (empty command: resume, send, answer, suspend), 200 calls: median" in out
    assert "of a 20 ms round (budget 1%)" in out
    assert "isolated interleaved median vs timed alone" in out
    (csv,) = tmp_path.glob("*.csv")
    df = read_results(csv)
    measured = df[(df.scenario == "batch") & (df.status == "ok")]
    assert sorted(measured.batch_size) == [1, 64] and (measured.launcher == "process").all()
    assert measured.vs_alone.notna().all() and measured.alone_spread.notna().all()
    from bench.checks.selfcheck import runtime_passes
    from bench.results.columns import isolation_verdict

    verdicts = [
        isolation_verdict(v, s) for v, s in zip(measured.vs_alone, measured.alone_spread, strict=True)
    ]
    expected = runtime_passes(verdicts)
    if expected is None:  # undecided: the alone passes spread wider than the tolerance
        assert df.isolation_ok.isna().all()
    else:
        assert set(df.isolation_ok) == {expected}
    printed = out.split("isolated interleaved")[1]
    assert all(f"  {verdict}\n" in printed for verdict in verdicts)
    checks_ok = all(f"{budget}): ok" in out for budget in ("budget 5 us", "within 10%", "budget 1%"))
    assert (proc.returncode == 0) == (expected == 1 and checks_ok)


# ----------------------------------------------------------------------------- options, exits, memory


def test_options_are_declared_once():
    """The CLI and pytest get the same flags, each with the help text of its BenchConfig field."""
    parser = argparse.ArgumentParser()
    add_cli_options(parser)
    cli = {a.option_strings[0]: a.help for a in parser._actions if a.option_strings and a.dest != "help"}
    assert cli == {f.name: f.kwargs["help"] for f in flags()}
    assert {"--runtimes", "--no-profile", "--launcher", "--case-timeout", "--self-check"} <= set(cli)
    args = parser.parse_args(["--batch-sizes", "1,64", "--no-profile", "--launcher", "inline"])
    config = config_from(lambda name: getattr(args, name))
    assert config.batch_sizes == (1, 64) and config.profile is False and config.launcher == "inline"
    assert config.max_time == BenchConfig().max_time  # not given: the default
    from bench.conftest import pytest_addoption

    class Group:
        def __init__(self):
            self.names = []

        def addoption(self, name, **kwargs):
            self.names.append(name)

        def getgroup(self, *args):
            return self

    group = Group()
    pytest_addoption(group)
    assert group.names == list(cli)


def test_results_does_not_import_compare():
    code = "import sys, bench.results.store; assert not {'bench.report.compare', 'bench.report.tables', 'bench.report.analysis'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


@pytest.mark.parametrize(
    ("code", "text"),
    [(-11, "killed by signal 11 (SIGSEGV)"), (-9, "killed by signal 9 (SIGKILL)"), (3, "exit code 3")],
)
def test_describe_exit(code, text):
    assert describe_exit(code) == text


def test_peak_rss_is_the_process_peak():
    status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"
    assert memory.peak_rss_mb(status) == 2.0 and memory.rss_mb(status) == 1.0
    base = memory.rss_mb()
    # New anonymous pages (a numpy array may reuse pages that a long test process already holds
    # resident), touched, then unmapped: the resident set shrinks, its peak stays.
    with mmap.mmap(-1, 64 * memory.MIB) as block:  # 64 MiB
        block.write(b"\x01" * (64 * memory.MIB))
    assert memory.peak_rss_mb() >= base + 60 and memory.rss_mb() < memory.peak_rss_mb() - 32


def test_cuda_peak_memory():
    assert memory.cuda_peak_allocated_mb("cpu") is None
    assert memory.cuda_peak_allocated_mb("cuda", peak_bytes=3 * memory.MIB) == 3.0
    assert memory.cuda_peak_allocated_mb("cuda", peak_bytes=0) is None  # nothing through torch
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: the conversion is tested, the allocator is not")
    memory.reset_cuda_peak("cuda")
    x = torch.empty(16 * memory.MIB, dtype=torch.uint8, device="cuda")
    assert memory.cuda_peak_allocated_mb("cuda") >= 16
    del x
