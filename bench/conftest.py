"""pytest plugin for the benchmark suite: matrix options, parametrisation, the CSV at the end.

``pytest bench/ --benchmark-only [--runtimes ...] [--devices ...] [--targets ...] [--batch-sizes ...]
[--threads N] [--results-dir DIR] [--artifacts DIR]``; pytest-benchmark's own options still apply.
"""

from __future__ import annotations

import pytest

from bench.core import BenchConfig, Context, cases, clock_for, config_dict, parse_list
from bench.environment import collect_environment
from bench.results import new_run_id, utc_timestamp, write_results

CONFIG = pytest.StashKey[BenchConfig]()
CONTEXT = pytest.StashKey[Context]()
WRITTEN = pytest.StashKey[str]()


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
    }
    if opt("--no-accuracy"):
        overrides["accuracy"] = False
    if opt("--no-end-to-end"):
        overrides["end_to_end"] = False
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


@pytest.fixture(scope="session")
def bench_ctx(request: pytest.FixtureRequest) -> Context:
    """Artifacts (built first if missing, with progress shown), environment and the row list."""
    from bench.prepare import ensure_artifacts

    config = request.config
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        artifacts, mnist = ensure_artifacts(config.getoption("--artifacts"))
    ctx = Context(
        config=config.stash[CONFIG],
        artifacts=artifacts,
        mnist=mnist,
        environment=collect_environment(),
        run_id=new_run_id(),
        timestamp=utc_timestamp(),
    )
    config.stash[CONTEXT] = ctx
    return ctx


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
    path = write_results(ctx.rows, ctx.config.results_dir, ctx.environment, settings)
    session.config.stash[WRITTEN] = str(path)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    path = config.stash.get(WRITTEN, None)
    if path:
        terminalreporter.write_sep("-", "deepmnist-bench results")
        terminalreporter.write_line(f"CSV:      {path}")
        terminalreporter.write_line(f"table:    {path[:-4]}.md")
        terminalreporter.write_line(f"metadata: {path[:-4]}.json")
        terminalreporter.write_line(f"compare:  deepmnist compare {path}")
