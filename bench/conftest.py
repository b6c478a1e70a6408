"""pytest plugin for the benchmark suite: matrix options, parametrisation, the CSV at the end.

``pytest bench/ --benchmark-only [--runtimes ...] [--devices ...] [--targets ...] [--batch-sizes ...]
[--threads N] [--results-dir DIR] [--artifacts DIR]``; pytest-benchmark's own options still apply.
"""

from __future__ import annotations

import dataclasses

import pytest

from bench.core import BenchConfig, Context, cases, clock_for, config_dict, offline_rows, parse_list
from bench.environment import collect_environment
from bench.results import new_run_id, read_results, utc_timestamp, write_results

CONFIG = pytest.StashKey[BenchConfig]()
CONTEXT = pytest.StashKey[Context]()
WRITTEN = pytest.StashKey[str]()
SELECTED = pytest.StashKey[list]()
PLOTS = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("deepmnist", "deepmnist-bench matrix")
    group.addoption("--runtimes", help="comma-separated runtimes (default: all registered)")
    group.addoption("--devices", help="comma-separated devices: cpu,cuda (default: both)")
    group.addoption("--targets", help="comma-separated targets: model,conv1,pool1,conv2,pool2,fc1,fc2")
    group.addoption("--batch-sizes", help="comma-separated batch sizes (default: 1,64,256)")
    group.addoption("--threads", type=int, help="intra-op threads (default: all cores)")
    group.addoption("--warmup", type=int, help="untimed calls before timing (default 10)")
    group.addoption("--rounds", type=int, help="timed rounds per case (default: calibrated)")
    group.addoption("--iterations", type=int, help="calls per round (default: calibrated)")
    group.addoption("--max-time", type=float, help="seconds of timed calls per case (default 1.0)")
    group.addoption("--no-accuracy", action="store_true", help="skip the full-test-set accuracy runs")
    group.addoption("--no-end-to-end", action="store_true", help="skip CUDA timings with copies")
    group.addoption("--no-single-stream", action="store_true", help="skip the single-stream scenario")
    group.addoption("--single-stream-queries", type=int, help="queries per runtime (default 1000)")
    group.addoption("--no-profile", action="store_true", help="skip the per-layer profile of the model")
    group.addoption("--profile-batch", type=int, help="batch size profiled (default: the largest)")
    group.addoption("--no-interleave", action="store_true", help="time each case's rounds back to back")
    group.addoption("--no-roofline", action="store_true", help="skip measuring peak GFLOP/s and bandwidth")
    group.addoption("--results-dir", help="where the CSV goes (default: results/ in the checkout)")
    group.addoption("--artifacts", help="artifacts folder (default $DEEPMNIST_ARTIFACTS or ./artifacts)")
    group.addoption("--self-check", action="store_true", help="run the harness self-check, not the matrix")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "selfcheck: harness self-check (deepmnist bench --self-check)")
    opt = config.getoption
    overrides = {
        "runtimes": parse_list(opt("--runtimes")),
        "devices": parse_list(opt("--devices")),
        "targets": parse_list(opt("--targets")),
        "batch_sizes": parse_list(opt("--batch-sizes"), int),
        "threads": opt("--threads"),
        "warmup": opt("--warmup"),
        "rounds": opt("--rounds"),
        "iterations": opt("--iterations"),
        "max_time": opt("--max-time"),
        "results_dir": opt("--results-dir"),
        "single_stream_queries": opt("--single-stream-queries"),
        "profile_batch": opt("--profile-batch"),
    }
    for flag, name in (("--no-accuracy", "accuracy"), ("--no-end-to-end", "end_to_end"),
                       ("--no-single-stream", "single_stream"), ("--no-profile", "profile"),
                       ("--no-roofline", "roofline"), ("--no-interleave", "interleave")):  # fmt: skip
        if opt(flag):
            overrides[name] = False
    try:
        config.stash[CONFIG] = BenchConfig(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The self-check and the matrix are separate runs: ``--self-check`` selects one or the other."""
    want = config.getoption("--self-check")
    keep = [item for item in items if (item.get_closest_marker("selfcheck") is not None) == want]
    deselected = [item for item in items if item not in keep]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = keep


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    params = []
    for case in cases(metafunc.config.stash[CONFIG]):
        marks = [pytest.mark.benchmark(timer=clock_for(case.device))] if case.device == "cuda" else []
        params.append(pytest.param(case, id=case.id, marks=marks))
    metafunc.parametrize("case", params)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The cases that will run (after -k and --self-check selection): a group is made of these."""
    params = (getattr(getattr(item, "callspec", None), "params", {}) for item in session.items)
    session.config.stash[SELECTED] = [p["case"] for p in params if "case" in p]


@pytest.fixture(scope="session")
def bench_ctx(request: pytest.FixtureRequest) -> Context:
    """Artifacts (built first if missing, with progress shown), environment and the row list."""
    from bench.prepare import ensure_artifacts

    config = request.config
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        artifacts, mnist = ensure_artifacts(config.getoption("--artifacts"))
    bench_config = config.stash[CONFIG]
    ctx = Context(
        config=bench_config,
        artifacts=artifacts,
        mnist=mnist,
        environment=collect_environment(),
        run_id=new_run_id(),
        timestamp=utc_timestamp(),
        selected=config.stash.get(SELECTED, []),
    )
    if bench_config.roofline:
        with capture.global_and_fixture_disabled():
            ctx.rooflines = measure_rooflines(bench_config)
    config.stash[CONTEXT] = ctx
    return ctx


def measure_rooflines(config: BenchConfig) -> dict:
    """Each available device's float32 matmul peak and copy bandwidth, measured now (same run)."""
    import sys

    from bench.roofline import measure_roofline
    from bench.runtimes.base import check_device, set_threads

    set_threads(config.resolved_threads)
    rooflines = {}
    for device in config.devices:
        if check_device(device) is None:
            roof = rooflines[device] = measure_roofline(device)
            others = "".join(f", {p} {v:,.0f}" for p, v in roof.precision_peaks.items())
            print(
                f"roofline {device}: peak {roof.peak_gflops:,.0f} GFLOP/s (float32 matmul{others}), "
                f"bandwidth {roof.bandwidth_gbs:,.1f} GB/s (copy)",
                file=sys.stderr,
            )
    return rooflines


def pytest_sessionfinish(session: pytest.Session) -> None:
    ctx = session.config.stash.get(CONTEXT, None)
    if ctx is None or not ctx.rows:
        return
    settings = config_dict(ctx.config)
    settings["artifacts"] = {
        "checkpoint": ctx.artifacts.manifest.checkpoint,
        "checkpoint_sha256": ctx.artifacts.manifest.checkpoint_sha256,
        "test_accuracy": ctx.artifacts.manifest.test_accuracy,
        "export": str(ctx.artifacts.manifest.folder),
    }
    rows = [*ctx.rows, *offline_rows(ctx.rows)]
    extra = {
        "rooflines": {d: dataclasses.asdict(r) for d, r in ctx.rooflines.items()},
        "single_stream_samples_ms": ctx.single_stream_samples,
    }
    path = write_results(rows, ctx.config.results_dir, ctx.environment, settings, extra=extra)
    session.config.stash[WRITTEN] = str(path)
    from bench.plots import write_plots

    try:
        plots = write_plots(read_results(path), path.with_suffix(""), ctx.single_stream_samples)
    except Exception as e:  # the CSV is written; a chart that cannot be drawn must not lose it
        plots = []
        print(f"plots not written: {type(e).__name__}: {e}")
    session.config.stash[PLOTS] = [str(p) for p in plots]


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    path = config.stash.get(WRITTEN, None)
    if path:
        terminalreporter.write_sep("-", "deepmnist-bench results")
        terminalreporter.write_line(f"CSV:      {path}")
        terminalreporter.write_line(f"table:    {path[:-4]}.md")
        terminalreporter.write_line(f"metadata: {path[:-4]}.json")
        for plot in config.stash.get(PLOTS, []):
            terminalreporter.write_line(f"plot:     {plot}")
        terminalreporter.write_line(f"compare:  deepmnist compare {path}")
