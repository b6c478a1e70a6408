"""Scenarios beyond the fixed-batch rounds (docs/scenarios.md): the full loop, the server load.

Worker tests use the real torch-eager runtime on a seeded, untrained network and the real MNIST
test images, in this process (no exports needed)."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.harness.matrix import Case, cases
from bench.harness.options import BenchConfig
from bench.runtimes import Artifacts
from models.data import to_input
from models.network import DeepMNIST


@pytest.fixture(scope="module")
def worker(mnist, tmp_path_factory):
    from bench.harness.prepare import write_shared_data
    from bench.harness.worker import Settings, Worker

    torch.manual_seed(0)
    net = DeepMNIST().eval()
    manifest = types.SimpleNamespace(checkpoint_path=lambda root: Path("no-such-file"))
    artifacts = Artifacts(manifest, net=net)  # type: ignore[arg-type]
    data = write_shared_data(
        tmp_path_factory.mktemp("shared"), artifacts, mnist, [("model", 4), ("model", 1)]
    )
    return Worker("torch-eager", "cpu", Settings(threads=1, warmup=1), artifacts, data)


def test_full_loop_cases_only_when_asked():
    assert not any(c.timing == "full_loop" for c in cases(BenchConfig(runtimes=("torch-eager",))))
    for config in (BenchConfig(full_loop=True), BenchConfig(full=True)):
        full = [c for c in cases(config) if c.timing == "full_loop"]
        assert {c.target for c in full} == {"model"} and {c.scenario for c in full} == {"batch"}
        assert len(full) == len(config.batch_sizes) * len(config.devices) * len(config.runtimes)
    case = Case("model", "torch-eager", "cpu", 8, "full_loop")
    assert case.id == "model-b8-torch-eager-cpu-full_loop" and case.group == "model batch=8 cpu full_loop"


def test_tails_only_when_asked():
    """The default single-stream aims at p99's count (keeps the default matrix short); --tails and
    --full at p99.9's, a larger --single-stream-queries wins."""
    from bench.results.stats import min_samples

    assert BenchConfig().single_stream_queries == min_samples(99)
    assert BenchConfig(tails=True).single_stream_queries == min_samples(99.9)
    assert BenchConfig(full=True).single_stream_queries == min_samples(99.9)
    assert BenchConfig(tails=True, single_stream_queries=20_000).single_stream_queries == 20_000
    assert not BenchConfig().server and not BenchConfig().full_loop and not BenchConfig().streams


def test_full_loop_takes_a_new_uint8_batch_per_call_and_returns_classes(worker, mnist):
    case = Case("model", "torch-eager", "cpu", 4, "full_loop")
    reply = worker.prepare(case)
    assert "failed" not in reply and "error" not in reply and reply["per_call"] > 0
    from bench.harness.scenarios.full_loop import full_loop

    entry = worker.entries[case.id]
    assert entry.fn().shape == (4,)  # the timed call is the full loop
    images, net = mnist.test_images, worker.artifacts.net
    fn = full_loop(entry.prepared, images, 4)  # a fresh one: its first call takes images 0..3
    first, second = fn(), fn()
    with torch.no_grad():
        expected = net(to_input(images[:8])).argmax(1).numpy()
    assert first.dtype.kind == "i"
    np.testing.assert_array_equal(np.concatenate([first, second]), expected)
    # the timed rounds run the same loop; the row's samples are per call
    assert len(entry.run_round(iterations=3, block=2, warm=0.0)) == 2
    worker.release(case.id)


def test_full_loop_wraps_at_the_end_of_the_test_set(mnist):
    from bench.harness.scenarios.full_loop import full_loop

    class Identity:  # a Prepared of the harness's protocol over a real tensor op
        def to_device(self, x):
            return torch.from_numpy(x)

        def run(self, x):
            return x.flatten(1)[:, :10]

        def to_host(self, y):
            return y.numpy()

    call = full_loop(Identity(), mnist.test_images[:10], 4)
    batches = [call() for _ in range(4)]  # 0-3, 4-7, then 8-11 does not fit: 0-3 again
    np.testing.assert_array_equal(batches[2], batches[0])
    np.testing.assert_array_equal(batches[3], batches[1])


def _row(runtime, timing, ms, batch=64, **kw):
    from bench.results.stats import Latency
    from bench.results.store import ResultRow

    row = ResultRow(run_id="r", timestamp_utc="t", host="h", target="model", runtime=runtime, device="cpu",
                    batch_size=batch, threads=2, warmup=1, rounds=3, iterations=1, timing=timing, **kw)  # fmt: skip
    return row.with_latency(Latency.from_values([ms / 1e3] * 3), None)


def shown_cells(line: str) -> list[str]:
    """The cells of one Markdown table line, stripped."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_full_loop_table_sits_beside_the_preloaded_timing(tmp_path):
    from bench.report.tables import render
    from bench.results.store import frame_from_rows, read_results, write_results

    rows = [_row("a", "compute", 2.0), _row("a", "full_loop", 3.0), _row("b", "compute", 1.0)]
    path = write_results(rows, tmp_path, {"host": "h"}, {})
    frame = read_results(path)  # full_loop is a timing the CSV reader accepts
    assert sorted(frame.timing) == ["compute", "compute", "full_loop"]
    text = render(frame, markdown=True)
    assert "full loop vs preloaded tensor" in text
    (line,) = [ln for ln in text.splitlines() if ln.startswith("| a ") and "1.50x" in ln]
    assert shown_cells(line)[4:7] == ["2.000", "3.000", "1.50x"]  # preloaded 2 ms, full loop 3 ms
    assert "full loop vs preloaded" not in render(frame_from_rows(rows[::2]), markdown=True)


# ----------------------------------------------------------------------------- server


def test_server_schedule_is_seeded_poisson_and_query_counts_are_bounded():
    from bench.harness import server
    from bench.report import analysis

    a, b = server.schedule(500.0, 20_000, seed=3), server.schedule(500.0, 20_000, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, server.schedule(500.0, 20_000, seed=4))
    gaps = np.diff(a)
    assert (gaps > 0).all() and np.mean(gaps) == pytest.approx(1 / 500, rel=0.03)
    assert np.std(gaps) == pytest.approx(np.mean(gaps), rel=0.05)  # exponential: sd = mean
    assert server.queries_for(2000.0, 1000, 1.0, 20.0) == 2000  # 1 s of arrivals > 1000 queries
    assert server.queries_for(100.0, 1000, 1.0, 20.0) == 1000  # 10 s for the p99 minimum
    assert server.queries_for(10.0, 1000, 1.0, 20.0) == 200  # capped at 20 s: too few for p99
    assert analysis.highest_under_bound([(10, 1.0), (20, 9.9), (30, 12.0), (40, None)], 10.0) == 20
    assert analysis.highest_under_bound([(10, 11.0)], 10.0) is None


def test_server_cases_and_options():
    from models.errors import OptionError

    assert not any(c.scenario == "server" for c in cases(BenchConfig()))
    for config in (BenchConfig(server=True), BenchConfig(full=True)):
        serve = [c for c in cases(config) if c.scenario == "server"]
        assert {(c.target, c.batch_size, c.timing) for c in serve} == {("model", 1, "end_to_end")}
        assert len(serve) == len(config.devices) * len(config.runtimes)
    assert BenchConfig(full=True).full_loop and BenchConfig(full=True).server
    for bad in ({"server_rates": (0.5, 0.0)}, {"latency_bound": 0.0}, {"server_max_time": 0.5}):
        with pytest.raises((OptionError, ValueError)):
            BenchConfig(**bad)


def _serve(worker, case, arrivals):
    """The worker side of serve (``scenarios.server.answer_queries``) in a thread at the other end
    of a real pipe; the load generator here."""
    import multiprocessing
    import threading

    from bench.harness import server
    from bench.harness.scenarios.server import answer_queries

    ours, theirs = multiprocessing.Pipe()
    thread = threading.Thread(target=answer_queries, args=(worker, theirs, case.id, len(arrivals)))
    thread.start()
    assert ours.recv() == {"ready": True}
    latencies, lag = server.drive(ours, arrivals, timeout=60.0)
    closing = ours.recv()
    thread.join()
    return latencies, lag, closing


def test_server_latency_counts_from_scheduled_arrival_so_queueing_shows(worker):
    from bench.harness import server

    case = Case("model", "torch-eager", "cpu", 1, "end_to_end", "server")
    reply = worker.prepare(case)
    assert "failed" not in reply and reply["per_call"] > 0
    per_call = worker.alone(case.id, 0.2)["median"]
    # a light load: every query answered, none waits long, the rate is about what was asked
    light = server.schedule(0.2 / per_call, 200, seed=0)
    latencies, lag, closing = _serve(worker, case, light)
    assert latencies.shape == (200,) and (latencies > 0).all() and closing["cpu_ms_per_call"] > 0
    assert (lag >= 0).all()
    # overload, 20x what it can answer: the queue grows, so later queries wait longer
    heavy = server.schedule(20 / per_call, 200, seed=1)
    latencies, _, _ = _serve(worker, case, heavy)
    # the 200 arrive within ~10 calls' time and take ~200 calls to answer: the last waits ~190
    assert latencies[-1] > 50 * per_call and np.median(latencies[-40:]) > 2 * np.median(latencies[:40])
    assert server.achieved_qps(heavy, latencies) < 20 / per_call / 2
    worker.release(case.id)


def _server_row(runtime, qps, p99_ms, n=1000):
    """A server row from real samples: n latencies, the slowest 1% at ``p99_ms``."""
    from bench.results.stats import Latency
    from bench.results.store import ResultRow

    samples = np.full(n, 0.5e-3)
    samples[-n // 100 - 1 :] = p99_ms / 1e3
    row = ResultRow(run_id="r", timestamp_utc="t", host="h", target="model", runtime=runtime, device="cpu",
                    batch_size=1, threads=1, warmup=1, rounds=n, iterations=1, timing="end_to_end",
                    scenario="server", target_qps=qps, achieved_qps=qps * 0.98, latency_bound_ms=10.0)  # fmt: skip
    return row.with_latency(Latency.from_values(samples), None)


def test_server_table_answers_the_highest_rate_under_the_bound_and_the_chart_is_drawn(tmp_path):
    from bench.report.analysis import server_best
    from bench.report.plots import write_plots
    from bench.report.tables import render
    from bench.results.store import read_results, write_results

    rows = [_server_row("a", 100, 2.0), _server_row("a", 200, 4.0), _server_row("a", 300, 30.0),
            _server_row("b", 50, 12.0), _server_row("b", 100, 40.0)]  # fmt: skip
    frame = read_results(write_results(rows, tmp_path, {"host": "h"}, {}))
    best = server_best(frame).set_index("runtime")
    assert best.loc["a", "best_qps"] == 200 and best.loc["a", "p99_ms"] == pytest.approx(4.0)
    assert np.isnan(best.loc["b", "best_qps"])  # never under 10 ms
    text = render(frame, markdown=True)
    assert "highest arrival rate whose p99 stays under 10 ms" in text
    assert any(ln.startswith("| a ") and shown_cells(ln)[3] == "200" for ln in text.splitlines())
    assert any(ln.startswith("| b ") and shown_cells(ln)[3] == "none" for ln in text.splitlines())
    paths = write_plots(frame, tmp_path / "run")
    assert [p.name for p in paths] == ["run-server.png"] and paths[0].stat().st_size > 10_000


@pytest.fixture(scope="module")
def small_artifacts(tmp_path_factory, mnist):
    """An artifacts folder for worker processes running torch-eager: the real MNIST (linked), a
    seeded untrained checkpoint marked complete, an export manifest with no files (torch-eager
    reads none). Built here so nothing of the shared artifacts folder is needed or touched."""
    from exporters.manifest import Manifest
    from models.checkpoint import Checkpoint, save_checkpoint
    from models.data import mnist_cache_dir
    from models.paths import export_dir
    from models.train import default_checkpoint_path

    root = tmp_path_factory.mktemp("artifacts")
    cache = mnist_cache_dir(root)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.symlink_to(mnist_cache_dir())
    torch.manual_seed(0)
    path = default_checkpoint_path(artifacts=root)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(Checkpoint(DeepMNIST().state_dict(), complete=True, data_checksum=mnist.checksum), path)
    folder = export_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    Manifest(checkpoint=str(path), checkpoint_sha256="", test_accuracy=None, recipe={}, producer={}).save(
        folder
    )
    return root


def _measure(config, selected):
    """Cases measured in worker processes, as ``bench.harness.run.run`` does (without building exports)."""
    from bench.harness.run import _Driver, groups_of, make_launcher
    from exporters.manifest import load_manifest
    from models.checkpoint import load_checkpoint
    from models.data import load_mnist
    from models.paths import export_dir
    from models.train import default_checkpoint_path

    root = config.artifacts
    mnist = load_mnist(artifacts=root)
    net = load_checkpoint(default_checkpoint_path(artifacts=root)).model()
    artifacts = Artifacts(load_manifest(export_dir(root)), root=root, net=net)
    driver = _Driver(config, None, {"host": "test"}, "run", "t", {})
    launcher = make_launcher(config, artifacts, mnist, selected)
    try:
        for group in groups_of(selected):
            driver.measure_group(launcher, group)
    finally:
        launcher.close()
    return driver.result.rows


def test_server_scenario_in_worker_processes(tmp_path, small_artifacts):
    """torch-eager in its worker process, pinned, at 20% and 150% of its batch-1 rate."""
    import os

    from bench.harness import server

    before = os.sched_getaffinity(0)
    config = BenchConfig(
        runtimes=("torch-eager",), devices=("cpu",), targets=("model",), batch_sizes=(1,), warmup=2,
        single_stream=False, roofline=False, accuracy=False, results_dir=str(tmp_path),
        artifacts=str(small_artifacts), server=True, server_rates=(0.2, 1.5), server_queries=1000,
        server_min_time=0.2, server_max_time=5.0,
    )  # fmt: skip
    rows = _measure(config, [c for c in cases(config) if c.scenario == "server"])
    assert [r.status for r in rows] == ["ok", "ok"], [r.reason for r in rows]
    slow, fast = rows
    assert fast.target_qps == pytest.approx(slow.target_qps * 1.5 / 0.2)
    for row in rows:
        assert row.threads == 1 and row.batch_size == 1 and row.achieved_qps > 0
        # 1,000 queries unless 5 s of arrivals hold fewer (a slow or busy machine); p99 only from 1,000
        assert row.rounds == server.queries_for(row.target_qps, 1000, 0.2, 5.0)
        assert (row.latency_ms_p99 is not None) == (row.rounds >= 1000) and row.latency_bound_ms == 10.0
        assert row.throughput_ips == row.achieved_qps and row.gflops is None
        assert "load generator late by" in row.note
        if len(before) >= 2:
            assert "pinned vs" in row.note
    assert os.sched_getaffinity(0) == before  # the parent's pinning is undone


def test_streams_and_thread_counts_in_worker_processes(tmp_path, small_artifacts):
    config = BenchConfig(
        runtimes=("torch-eager",), devices=("cpu",), targets=("model",), batch_sizes=(1,), warmup=2,
        single_stream=False, roofline=False, accuracy=False, profile=False, results_dir=str(tmp_path),
        artifacts=str(small_artifacts), threads=(1, 2), streams=(1, 2), max_time=0.2, full_loop=True,
    )  # fmt: skip
    rows = _measure(config, list(cases(config)))
    assert all(r.status == "ok" for r in rows), [r.reason for r in rows]
    batch = sorted((r.timing, r.threads, r.streams) for r in rows if r.scenario == "batch")
    assert batch == [("compute", 1, 1), ("compute", 2, 1), ("full_loop", 1, 1), ("full_loop", 2, 1)]
    streams = [r for r in rows if r.scenario == "streams"]
    assert sorted((r.threads, r.streams) for r in streams) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for r in streams:
        assert r.throughput_ips > 0 and r.cpu_ms_per_call > 0 and r.rounds >= r.streams


# ----------------------------------------------------------------------------- threads x streams


def test_thread_list_and_streams_make_their_own_cases():
    one = list(cases(BenchConfig(runtimes=("torch-eager",), devices=("cpu",), batch_sizes=(1,))))
    assert {c.threads for c in one} == {0} and {c.streams for c in one} == {1}  # ids as before
    assert "model-b1-torch-eager-cpu" in {c.id for c in one}
    config = BenchConfig(runtimes=("torch-eager", "onnxruntime"), devices=("cpu",), batch_sizes=(1,),
                         targets=("model",), threads=(1, 2), streams=(1, 2), single_stream=False)  # fmt: skip
    all_cases = list(cases(config))
    batch = [c for c in all_cases if c.scenario == "batch"]
    assert sorted((c.runtime, c.threads) for c in batch) == [
        ("onnxruntime", 1), ("onnxruntime", 2), ("torch-eager", 1), ("torch-eager", 2)
    ]  # fmt: skip
    assert len({c.group for c in batch}) == 1  # every runtime x thread count timed together
    streams = [c for c in all_cases if c.scenario == "streams"]
    assert sorted((c.runtime, c.threads, c.streams) for c in streams) == sorted(
        (r, t, s) for r in ("torch-eager", "onnxruntime") for t in (1, 2) for s in (1, 2)
    )
    assert len({c.id for c in all_cases}) == len(all_cases)
    # 0 resolved, no repeats (on one core 0 is 1); a count given twice is refused
    assert BenchConfig(threads=(0, 1)).thread_counts[1:] in ((1,), ())
    with pytest.raises(ValueError, match="--threads 0,1,0: 0 is given twice"):
        BenchConfig(threads=(0, 1, 0))


def test_streams_run_concurrently_each_with_its_own_session(worker):
    case = Case("model", "torch-eager", "cpu", 1, "end_to_end", "streams", threads=1, streams=2)
    reply = worker.prepare(case)
    assert "failed" not in reply and "error" not in reply
    entry = worker.entries[case.id]
    assert len(entry.streams) == 2
    out = worker.handle({"op": "streams", "case_id": case.id, "seconds": 0.3})  # the scenario's command
    assert len(out["per_stream"]) == 2 and all(n >= 1 for n in out["per_stream"])
    assert len(out["latencies"]) == sum(out["per_stream"]) and all(t > 0 for t in out["latencies"])
    assert out["wall"] >= 0.3 and out["cpu_s"] > 0
    worker.release(case.id)


def test_every_stream_session_is_compiled_before_the_streams_start(worker):
    """torch-compile compiles per session: a second session compiled on its first call inside the
    timed window answered one query while the first answered hundreds (a reference run's 2-stream
    rows). Prepare compiles and warms every session."""
    case = Case("model", "torch-compile", "cpu", 1, "end_to_end", "streams", threads=1, streams=2)
    reply = worker.prepare(case)
    assert "failed" not in reply and "error" not in reply, reply
    out = worker.handle({"op": "streams", "case_id": case.id, "seconds": 0.5})
    assert min(out["per_stream"]) >= 5, out["per_stream"]  # a batch-1 call takes milliseconds
    worker.release(case.id)


def test_settings_table_answers_fastest_latency_and_throughput(tmp_path):
    import dataclasses

    from bench.report.tables import render
    from bench.results.stats import Latency
    from bench.results.store import ResultRow, read_results, write_results

    def row(threads, streams, ms, qps):
        base = ResultRow(run_id="r", timestamp_utc="t", host="h", target="model", runtime="a", device="cpu",
                         batch_size=1, threads=threads, streams=streams, warmup=1, rounds=200, iterations=1,
                         timing="end_to_end", scenario="streams")  # fmt: skip
        return dataclasses.replace(
            base.with_latency(Latency.from_values([ms / 1e3] * 200), None), throughput_ips=qps
        )

    rows = [row(1, 1, 0.5, 2000.0), row(2, 1, 0.4, 2500.0), row(1, 2, 0.7, 2800.0), row(2, 2, 1.1, 1800.0)]
    frame = read_results(write_results(rows, tmp_path, {"host": "h"}, {}))
    text = render(frame, markdown=True)
    assert "threads x streams: the fastest setting per runtime" in text
    (line,) = [ln for ln in text.splitlines() if ln.startswith("| a ") and shown_cells(ln)[3] == "4"]
    assert shown_cells(line)[4:] == ["2 x 1", "0.4000", "1 x 2", "2,800"]


def test_two_runs_with_server_rows_still_compare(tmp_path, capsys):
    """Server rows repeat the change key (one per rate): the change table leaves them out."""
    import argparse

    from bench.report.compare import add_parser
    from bench.results.store import write_results

    parser = argparse.ArgumentParser(prog="deepmnist")
    add_parser(parser.add_subparsers(dest="command", required=True))
    plain = _row("a", "compute", 2.0, batch=1)
    paths = []
    for k, ms in enumerate((2.0, 2.2)):
        rows = [dataclasses_replace(_row("a", "compute", ms, batch=1), run_id=f"r{k}")]
        rows += [dataclasses_replace(_server_row("a", q, 2.0), run_id=f"r{k}") for q in (100, 200)]
        paths.append(write_results(rows, tmp_path / str(k), {"host": "h"}, {}))
    args = parser.parse_args(["compare", *map(str, paths)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "+10%" in out and plain.runtime in out


def dataclasses_replace(row, **changes):
    import dataclasses

    return dataclasses.replace(row, **changes)


def test_run_row_tells_thread_counts_and_stream_counts_apart():
    import dataclasses

    from bench.harness.run import Run

    config = BenchConfig(threads=(1, 2))
    rows = [dataclasses.replace(_row("a", "compute", 1.0, batch=1), threads=t, streams=1) for t in (1, 2)]
    rows += [
        dataclasses.replace(_row("a", "end_to_end", 1.0, batch=1), scenario="streams", threads=1, streams=s)
        for s in (1, 2)
    ]
    run = Run(config, rows=rows)
    assert run.row(Case("model", "a", "cpu", 1, threads=2)) is rows[1]
    assert run.row(Case("model", "a", "cpu", 1, threads=1)) is rows[0]
    assert run.row(Case("model", "a", "cpu", 1, "end_to_end", "streams", threads=1, streams=2)) is rows[3]
