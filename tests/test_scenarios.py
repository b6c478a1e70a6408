"""Scenarios beyond the fixed-batch rounds (docs/scenarios.md): the full loop, the server load.

Worker tests use the real torch-eager runtime on a seeded, untrained network and the real MNIST
test images, in this process (no exports needed)."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from bench.core import Case, cases
from bench.options import BenchConfig
from bench.runtimes import Artifacts
from models.data import to_input
from models.network import DeepMNIST


@pytest.fixture(scope="module")
def worker(mnist):
    from bench.worker import Worker

    torch.manual_seed(0)
    net = DeepMNIST().eval()
    with torch.no_grad():
        reference = net(to_input(mnist.test_images)).argmax(1).numpy()
    artifacts = Artifacts(net=net, manifest=types.SimpleNamespace(checkpoint="no-such-file"))
    config = BenchConfig(threads=1, warmup=1)
    return Worker("torch-eager", "cpu", config, artifacts, mnist, reference)


def test_full_loop_cases_only_when_asked():
    assert not any(c.timing == "full_loop" for c in cases(BenchConfig(runtimes=("torch-eager",))))
    for config in (BenchConfig(full_loop=True), BenchConfig(full=True)):
        full = [c for c in cases(config) if c.timing == "full_loop"]
        assert {c.target for c in full} == {"model"} and {c.scenario for c in full} == {"batch"}
        assert len(full) == len(config.batch_sizes) * len(config.devices) * len(config.runtimes)
    case = Case("model", "torch-eager", "cpu", 8, "full_loop")
    assert case.id == "model-b8-torch-eager-cpu-full_loop" and case.group == "model batch=8 cpu full_loop"


def test_full_loop_takes_a_new_uint8_batch_per_call_and_returns_classes(worker, mnist):
    case = Case("model", "torch-eager", "cpu", 4, "full_loop")
    reply = worker.prepare(case)
    assert "failed" not in reply and "error" not in reply and reply["per_call"] > 0
    from bench.worker import full_loop

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
    from bench.worker import full_loop

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
    from bench.results import ResultRow
    from bench.stats import Latency

    row = ResultRow(run_id="r", timestamp_utc="t", host="h", target="model", runtime=runtime, device="cpu",
                    batch_size=batch, threads=2, warmup=1, rounds=3, iterations=1, timing=timing, **kw)  # fmt: skip
    return row.with_latency(Latency.from_values([ms / 1e3] * 3), None)


def test_full_loop_table_sits_beside_the_preloaded_timing(tmp_path):
    from bench.compare import render
    from bench.results import frame_from_rows, read_results, write_results

    rows = [_row("a", "compute", 2.0), _row("a", "full_loop", 3.0), _row("b", "compute", 1.0)]
    path = write_results(rows, tmp_path, {"host": "h"}, {})
    frame = read_results(path)  # full_loop is a timing the CSV reader accepts
    assert sorted(frame.timing) == ["compute", "compute", "full_loop"]
    text = render(frame, markdown=True)
    assert "full loop vs preloaded tensor" in text
    (line,) = [ln for ln in text.splitlines() if ln.startswith("| a ") and "1.50x" in ln]
    assert "| 2 " in line and "| 3 " in line  # preloaded 2 ms, full loop 3 ms
    assert "full loop vs preloaded" not in render(frame_from_rows(rows[::2]), markdown=True)
