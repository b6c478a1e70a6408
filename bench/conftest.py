"""pytest plugin for the benchmark suite: a thin adapter over ``bench.harness.run.run``.

``pytest bench/ --benchmark-only [--runtimes ...] [--devices ...] [--targets ...] ...``: the options
are generated from ``BenchConfig`` (``bench.harness.options``), the same as ``deepmnist bench``'s flags.
The selected cases (after ``-k``) are measured by one ``run()`` when the first test needs them;
each test then hands pytest-benchmark the samples ``run()`` measured for its case, so its tables
and ``--benchmark-json`` show the numbers of the CSV. pytest-benchmark's own options still apply.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import pytest

from bench.harness.clock import clock_for
from bench.harness.matrix import Case, cases, skip_reason
from bench.harness.options import BenchConfig, add_pytest_options, config_from
from models.errors import UserError

CONFIG = pytest.StashKey[BenchConfig]()
RUN = pytest.StashKey[object]()
SELECTED = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser.getgroup("deepmnist", "deepmnist-bench matrix"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "selfcheck: harness self-check (deepmnist bench --self-check)")
    try:
        config.stash[CONFIG] = config_from(config.getoption)
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The self-check and the matrix are separate runs: ``--self-check`` selects one or the other."""
    want = config.stash[CONFIG].self_check
    keep = [item for item in items if (item.get_closest_marker("selfcheck") is not None) == want]
    deselected = [item for item in items if item not in keep]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = keep


@dataclass(frozen=True)
class Skipped:
    """The cases skipped for one reason (no CUDA device, a package not installed): one test item,
    so each reason shows once with its count. The run still writes each case's row with it."""

    reason: str
    cases: tuple[Case, ...]

    @property
    def id(self) -> str:
        return f"skipped-{len(self.cases)}-" + re.sub(r"[^A-Za-z0-9]+", "-", self.reason).strip("-")[:60]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per case that can run here, then one per reason for those that cannot."""
    if "case" not in metafunc.fixturenames:
        return
    params = []
    skipped: dict[str, list[Case]] = {}
    for case in cases(metafunc.config.stash[CONFIG]):
        reason = skip_reason(case)
        if reason:
            skipped.setdefault(reason, []).append(case)
            continue
        marks = [pytest.mark.benchmark(timer=clock_for(case.device))] if case.device == "cuda" else []
        params.append(pytest.param(case, id=case.id, marks=marks))
    for reason, group in skipped.items():
        item = Skipped(reason, tuple(group))
        params.append(pytest.param(item, id=item.id))
    metafunc.parametrize("case", params)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The cases that will run (after -k and --self-check selection): run() measures these, and
    writes the rows of the skipped ones."""
    params = (getattr(getattr(item, "callspec", None), "params", {}) for item in session.items)
    chosen = [p["case"] for p in params if "case" in p]
    session.config.stash[SELECTED] = [
        c for p in chosen for c in (p.cases if isinstance(p, Skipped) else (p,))
    ]


@pytest.fixture(scope="session")
def bench_run(request: pytest.FixtureRequest):
    """The whole run, measured once, with progress on the terminal."""
    # deliberate: collecting the matrix imports no runtime; the run loads them when it starts
    from bench.harness.run import run
    from bench.report.write import write_run

    config = request.config
    capture = config.pluginmanager.getplugin("capturemanager")
    try:
        with capture.global_and_fixture_disabled():
            # sys.stderr read here, with capture off: the terminal (run's default was bound at import,
            # when pytest's capture held sys.stderr, and its progress lines went nowhere)
            result = write_run(run(config.stash[CONFIG], config.stash.get(SELECTED, []), out=sys.stderr))
    except UserError as e:  # a tampered export, a bad checkpoint: one line and exit 2, no traceback
        pytest.exit(f"deepmnist bench: error: {e}", returncode=2)
    config.stash[RUN] = result
    if result.interrupted:  # written above: the rows so far are kept
        pytest.exit(
            f"deepmnist bench: interrupted; the rows measured so far are in {result.path}",
            returncode=result.exit_code,
        )
    return result


@pytest.fixture(scope="session")
def bench_config(request: pytest.FixtureRequest) -> BenchConfig:
    return request.config.stash[CONFIG]


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    result = config.stash.get(RUN, None)
    if result is not None and result.path:
        path = str(result.path)
        terminalreporter.write_sep("-", "deepmnist-bench results")
        terminalreporter.write_line(f"CSV:      {path}")
        terminalreporter.write_line(f"table:    {path[:-4]}.md")
        terminalreporter.write_line(f"metadata: {path[:-4]}.json")
        for plot in result.plots:
            terminalreporter.write_line(f"plot:     {plot}")
        terminalreporter.write_line(f"compare:  deepmnist compare {path}")
