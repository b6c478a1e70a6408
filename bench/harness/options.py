"""Every benchmark option, declared once: a ``BenchConfig`` field with its default and help text.

``add_cli_options`` (``deepmnist bench``) and ``add_pytest_options`` (``pytest bench/``) generate
their flags from the fields, and ``config_from`` builds the ``BenchConfig`` back from either:

- a tuple field takes a comma-separated list (``--batch-sizes 1,64``);
- a bool field that defaults to True is switched off with ``--no-<name>``; one that defaults to
  False is switched on with ``--<name>``;
- every other field takes one value of its type.

A flag not given leaves the field's default (argparse and pytest defaults are None).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.results.store import check_writable_dir
from bench.runtimes import DEVICES, RUNTIMES
from models.errors import OptionError, UserError, check_number, max_threads, parse_int, parse_list
from models.layers import TARGETS
from models.paths import REPO_ROOT

LAUNCHERS = ("process", "inline")
FULL_PRESET = ("tails", "full_loop", "server")  # the BenchConfig switches that --full turns on


def option(default: Any, help: str, metavar: str | None = None, choices: tuple[str, ...] | None = None):
    """A BenchConfig field with the text of its flag (``help``) and, optionally, its choices."""
    return field(default=default, metadata={"help": help, "metavar": metavar, "choices": choices})


@dataclass(frozen=True)
class BenchConfig:
    runtimes: tuple[str, ...] = option(tuple(RUNTIMES), "comma-separated runtimes (default: all registered)")
    devices: tuple[str, ...] = option(
        DEVICES, "comma-separated devices: cpu,cuda (default: both; unusable ones are skipped with a reason)"
    )
    targets: tuple[str, ...] = option(TARGETS, f"comma-separated targets: {','.join(TARGETS)} (default: all)")
    batch_sizes: tuple[int, ...] = option((1, 64, 256), "comma-separated batch sizes (default: 1,64,256)")
    threads: tuple[int, ...] = option(
        (0,),
        "comma-separated intra-op thread counts per runtime, e.g. 1,2: each count gets its own worker "
        "process and rows (default 0: all cores)",
    )
    streams: tuple[int, ...] = option(
        (),
        "comma-separated numbers of concurrent batch-1 request streams per runtime, e.g. 1,2: adds "
        "scenario=streams rows, each stream with its own session (default: none; docs/scenarios.md)",
    )
    warmup: int = option(10, "untimed calls per case before calibration and timing (default 10)")
    rounds: int = option(0, "timed rounds per case (default 0: as many as fit in --max-time)")
    iterations: int = option(
        0, "calls per round (default 0: enough for a round to last as long as the group's slowest call)"
    )
    min_rounds: int = option(10, "at least this many timed rounds per case (default 10)")
    max_rounds: int = option(1000, "at most this many timed rounds per case (default 1000)")
    min_round_time: float = option(
        0.02, "seconds a round lasts at least, so its warm-up stays a small overhead (default 0.02)"
    )
    max_time: float = option(1.0, "seconds of timed calls per case, when --rounds is 0 (default 1.0)")
    interleave: bool = option(
        True, "time each case's rounds back to back instead of interleaving the runtimes of a group"
    )
    round_warmup: float = option(
        0.005, "seconds of untimed calls (at least one) at the start of every round (default 0.005)"
    )
    end_to_end: bool = option(True, "skip the CUDA timings that include host<->device copies")
    accuracy: bool = option(True, "skip the full-test-set accuracy run per runtime and device")
    single_stream: bool = option(True, "skip the single-stream scenario (whole model, batch 1)")
    single_stream_queries: int = option(
        1000,
        "single-stream queries per runtime, at least, unless --single-stream-max-time ends them first "
        "(default 1000: what p99 needs, see bench.results.stats.min_samples; --tails: 10000)",
    )
    single_stream_max_time: float = option(
        10.0, "seconds the single-stream queries of one runtime may take, at most (default 10)"
    )
    full_loop: bool = option(
        False,
        "add timing=full_loop rows of the whole model: each call takes the next batch of uint8 test "
        "images, converts it (/255, reshape), runs it and takes the argmax (docs/scenarios.md)",
    )
    server: bool = option(
        False,
        "add the server scenario (after MLPerf LoadGen): Poisson arrivals at rates up to each runtime's "
        "batch-1 throughput, latency from scheduled arrival to result (docs/scenarios.md)",
    )
    latency_bound: float = option(
        10.0, "server: the p99 latency a rate must stay under to count as sustained, ms (default 10)"
    )
    server_rates: tuple[float, ...] = option(
        (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
        "server: target rates as fractions of the runtime's batch-1 throughput (default 0.1,0.2,...,1.0)",
    )
    server_queries: int = option(
        1000,
        "server: queries per rate, at least (default 1000: what p99 needs, bench.results.stats.min_samples)",
    )
    server_min_time: float = option(1.0, "server: seconds of arrivals per rate, at least (default 1)")
    server_max_time: float = option(
        20.0, "server: seconds of arrivals per rate, at most; fewer queries then (default 20)"
    )
    server_seed: int = option(0, "server: seed of the arrival gaps (default 0)")
    tails: bool = option(
        False,
        "single-stream aims at the queries p99.9 needs (10000, bench.results.stats.min_samples) instead of "
        "--single-stream-queries, within --single-stream-max-time (docs/scenarios.md)",
    )
    full: bool = option(
        False, "the full matrix: the default one plus --tails, --full-loop and --server (docs/scenarios.md)"
    )
    profile: bool = option(True, "skip the per-layer profile of the whole model")
    profile_batch: int = option(0, "batch size of the per-layer profile (default 0: the largest)")
    profile_calls: int = option(20, "calls under the profiler (default 20)")
    roofline: bool = option(True, "skip measuring each device's peak GFLOP/s and copy bandwidth")
    launcher: str = option(
        "process",
        "process: every runtime x device in its own worker process, idle workers suspended while "
        "another is timed; inline: all in this process (debugging; numbers depend on neighbours)",
        choices=LAUNCHERS,
    )
    case_timeout: float = option(
        900.0,
        "seconds one step of a case (prepare and compile, one round, accuracy, profile) may take "
        "before its worker is killed and its cases get status timeout (default 900)",
    )
    results_dir: str = option(
        str(REPO_ROOT / "results"), "where the CSV goes (default: results/ in the checkout)"
    )
    artifacts: str | None = option(
        None, "artifacts folder (default $DEEPMNIST_ARTIFACTS or ./artifacts)", metavar="DIR"
    )
    self_check: bool = option(
        False,
        "check the harness instead of running the matrix: timing overhead, agreement with "
        "torch.utils.benchmark, IPC round trip, isolated vs alone for every CPU runtime",
    )

    def __post_init__(self) -> None:
        if self.full:  # the preset switches its scenarios on (and the sidecar's config shows them on)
            for name in FULL_PRESET:
                object.__setattr__(self, name, True)
        if self.tails:  # kept out of the default matrix: it adds up to --single-stream-max-time per runtime
            from bench.results.stats import min_samples

            queries = max(self.single_stream_queries, min_samples(99.9))
            object.__setattr__(self, "single_stream_queries", queries)
        for f in dataclasses.fields(self):  # a value twice would run twice and write rows sharing a key
            values = getattr(self, f.name)
            twice = [v for i, v in enumerate(values) if v in values[:i]] if isinstance(values, tuple) else []
            if twice:
                given = ",".join(map(str, values))
                raise OptionError(
                    f"--{f.name.replace('_', '-')} {given}: {twice[0]} is given twice; give each value "
                    "once (its rows would share a key)"
                )
        unknown = [r for r in self.runtimes if r not in RUNTIMES]
        if unknown:
            raise ValueError(f"unknown runtime(s) {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}")
        bad_devices = [d for d in self.devices if d not in DEVICES]
        if bad_devices:
            raise ValueError(f"unknown device(s) {', '.join(bad_devices)}; choose from {', '.join(DEVICES)}")
        bad_targets = [t for t in self.targets if t not in TARGETS]
        if bad_targets:
            raise ValueError(f"unknown target(s) {', '.join(bad_targets)}; choose from {', '.join(TARGETS)}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch sizes must be >= 1, got {self.batch_sizes}")
        counts = (
            "warmup",
            "rounds",
            "iterations",
            "round_warmup",
            "profile_batch",
            "min_round_time",
        )
        negative = [name for name in counts if getattr(self, name) < 0]
        if negative:
            raise ValueError(f"{', '.join(negative)} must not be negative")
        if self.single_stream_queries < 1 or self.profile_calls < 1:
            raise ValueError("single_stream_queries and profile_calls must be >= 1")
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"unknown launcher {self.launcher!r}; choose from {', '.join(LAUNCHERS)}")
        if not self.case_timeout > 0:
            raise ValueError(f"case_timeout must be > 0 seconds, got {self.case_timeout}")
        try:  # before the run, not after it
            check_writable_dir(self.results_dir)
        except UserError as e:
            raise OptionError(str(e)) from None
        # every number finite and in range, named as its option (NaN and inf pass < 0 tests)
        check_number("--max-time", self.max_time, above=0)
        check_number("--case-timeout", self.case_timeout, above=0)
        check_number("--single-stream-max-time", self.single_stream_max_time, above=0)
        check_number("--round-warmup", self.round_warmup, minimum=0)
        check_number("--min-round-time", self.min_round_time, minimum=0)
        if not self.threads:
            raise OptionError("--threads: give at least one thread count")
        for count in self.threads:
            check_number("--threads", count, minimum=0, maximum=max_threads())
        for count in self.streams:
            check_number("--streams", count, minimum=1, maximum=64)
        check_number("--latency-bound", self.latency_bound, above=0)
        check_number("--server-min-time", self.server_min_time, above=0)
        check_number("--server-max-time", self.server_max_time, minimum=self.server_min_time)
        check_number("--server-queries", self.server_queries, minimum=1, maximum=1 << 20)
        check_number("--server-seed", self.server_seed, minimum=0, maximum=2**32 - 1)
        if not self.server_rates:
            raise OptionError("--server-rates: give at least one fraction")
        for rate in self.server_rates:
            check_number("--server-rates", rate, above=0, maximum=10)
        big = 1 << 20  # more calls, rounds or images than anyone times; beyond it a typo
        # a case times at least one round: --min-rounds 0 or --max-rounds 0 would leave none
        for option_name, value, least in (("--warmup", self.warmup, 0), ("--rounds", self.rounds, 0),
                                          ("--iterations", self.iterations, 0),
                                          ("--min-rounds", self.min_rounds, 1), ("--max-rounds", self.max_rounds, 1),
                                          ("--single-stream-queries", self.single_stream_queries, 0),
                                          ("--profile-batch", self.profile_batch, 0),
                                          ("--profile-calls", self.profile_calls, 0),
                                          ("--batch-sizes", max(self.batch_sizes), 0)):  # fmt: skip
            check_number(option_name, value, minimum=least, maximum=big)

    @property
    def resolved_threads(self) -> int:
        """The first thread count, 0 resolved to every core: the count of a case that names none
        (one ``--threads`` value), and the self-check's."""
        return self.thread_counts[0]

    @property
    def thread_counts(self) -> tuple[int, ...]:
        """Each ``--threads`` count, 0 resolved to every core, without repeats."""
        return tuple(dict.fromkeys(count or os.cpu_count() or 1 for count in self.threads))

    @property
    def resolved_profile_batch(self) -> int:
        return self.profile_batch or max(self.batch_sizes)


def config_dict(config: BenchConfig) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d["threads_resolved"] = config.resolved_threads
    return d


# ----------------------------------------------------------------------------- flags from the fields

_HINTS = typing.get_type_hints(BenchConfig)


@dataclass(frozen=True)
class Flag:
    """One generated flag: its name, the BenchConfig field it sets and argparse's keyword arguments."""

    name: str
    dest: str
    kwargs: dict[str, Any]


def _converter(hint: Any) -> Callable[[str], Any]:
    if typing.get_origin(hint) is tuple:
        kind = typing.get_args(hint)[0]

        def convert(text: str) -> tuple | None:
            return parse_list(text, kind)

        convert.__name__ = f"comma-separated {kind.__name__}"  # argparse: "invalid <name> value: 'x'"
        return convert
    if hint is int:
        return parse_int
    if hint in (float, str):
        return hint
    return str  # str | None


def flags() -> list[Flag]:
    out = []
    for f in dataclasses.fields(BenchConfig):
        hint, meta = _HINTS[f.name], f.metadata
        dash = f.name.replace("_", "-")
        if hint is bool:
            name = f"--no-{dash}" if f.default else f"--{dash}"
            kwargs = {"action": "store_const", "const": not f.default, "default": None, "help": meta["help"]}
        else:
            kwargs = {"type": _converter(hint), "default": None, "help": meta["help"]}
            if meta["metavar"]:
                kwargs["metavar"] = meta["metavar"]
            elif typing.get_origin(hint) is tuple:
                kwargs["metavar"] = "LIST"
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
            name = f"--{dash}"
        out.append(Flag(name, f.name, kwargs))
    return out


def add_cli_options(parser: Any) -> None:
    """Add every BenchConfig flag to an argparse parser (``deepmnist bench``)."""
    for flag in flags():
        parser.add_argument(flag.name, dest=flag.dest, **flag.kwargs)


def add_pytest_options(group: Any) -> None:
    """Add every BenchConfig flag to a pytest option group (``pytest bench/``)."""
    for flag in flags():
        group.addoption(flag.name, dest=flag.dest, **flag.kwargs)


def config_from(get: Callable[[str], Any], **fixed: Any) -> BenchConfig:
    """BenchConfig from ``get(field name)`` (None: not given, keep the default); ValueError if bad."""
    values = {f.dest: get(f.dest) for f in flags()}
    return BenchConfig(**{k: v for k, v in values.items() if v is not None}, **fixed)
