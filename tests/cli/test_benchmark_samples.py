"""``bench.benchmark_samples``: samples timed elsewhere reach pytest-benchmark's statistics, table
and JSON exactly, in a real inner pytest session with the installed pytest-benchmark (this is the
test that fails when its internals change)."""

from __future__ import annotations

import json
import statistics

pytest_plugins = ["pytester"]

DURATIONS = [0.004, 0.002, 0.003, 0.005, 0.001]  # s per sample
ITERATIONS = 7  # calls per sample


def test_samples_reach_pytest_benchmark(pytester) -> None:
    pytester.makepyfile(
        f"""
        from bench.benchmark_samples import MODE, record_samples

        def test_handed_over(benchmark):
            benchmark.group = "a group"
            record_samples(benchmark, {ITERATIONS}, {DURATIONS!r})
            stats = benchmark.stats.stats
            assert stats.rounds == {len(DURATIONS)}
            assert benchmark.stats.iterations == {ITERATIONS}

        def test_used_again_fails(benchmark):
            record_samples(benchmark, 1, [0.001])
            try:
                benchmark(lambda: None)
            except Exception as e:
                assert MODE in str(e)
            else:
                raise AssertionError("pytest-benchmark let a used fixture time again")
        """
    )
    out = pytester.path / "bench.json"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-W", "error::pytest_benchmark.logger.PytestBenchmarkWarning",
        f"--benchmark-json={out}", "--benchmark-columns=min,max,mean,rounds,iterations",
    )  # fmt: skip
    result.assert_outcomes(
        passed=2
    )  # and no PytestBenchmarkWarning (an error here): the fixture counts as used
    benchmarks = {b["name"]: b for b in json.loads(out.read_text())["benchmarks"]}
    stats = benchmarks["test_handed_over"]["stats"]
    assert benchmarks["test_handed_over"]["group"] == "a group"
    assert stats["rounds"] == len(DURATIONS) and stats["iterations"] == ITERATIONS
    # pytest-benchmark reports per call: each sample divided by its iterations
    per_call = [d / ITERATIONS for d in DURATIONS]
    assert stats["data"] == per_call
    assert stats["min"] == min(per_call) and stats["max"] == max(per_call)
    assert abs(stats["median"] - statistics.median(per_call)) < 1e-15
