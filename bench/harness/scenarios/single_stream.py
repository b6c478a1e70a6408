"""Scenario single-stream (after MLPerf's): the whole model, batch 1, one query after another, in
``rounds.SINGLE_STREAM_BLOCKS`` interleaved blocks per runtime; at least --single-stream-queries
queries unless --single-stream-max-time ends them first. Its samples (ms per query) go to the
sidecar for the latency charts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from bench.harness.case import Case
from bench.harness.rounds import Planned
from bench.harness.scenarios.base import Scenario
from bench.harness.scenarios.batch import measure_rounds

if TYPE_CHECKING:
    from bench.harness.options import BenchConfig


def cases(
    config: BenchConfig, per_runtime: list[tuple[str, int]], timings: tuple[str, ...]
) -> Iterator[Case]:
    if config.single_stream and "model" in config.targets:
        for device in config.devices:
            for timing in timings if device == "cuda" else ("compute",):
                for runtime, threads in per_runtime:
                    yield Case("model", runtime, device, 1, timing, "single-stream", threads=threads)


def measure(driver: Any, launcher: Any, entries: list[Planned], cold: dict[str, dict[str, Any]]) -> None:
    measure_rounds(driver, launcher, entries, cold, on_samples=_samples)


def _samples(driver: Any, case: Case, samples: list[float]) -> str:
    """Keep the samples (ms) for the charts; the row's note when fewer queries ran than asked."""
    config = driver.config
    key = f"{case.runtime}/{case.device}" + ("" if case.timing == "compute" else "/end_to_end")
    driver.result.single_stream_samples[key] = [s * 1e3 for s in samples]
    if len(samples) >= config.single_stream_queries:
        return ""
    return (
        f"{len(samples):,} of {config.single_stream_queries:,} queries: the rest would "
        f"take over --single-stream-max-time {config.single_stream_max_time:g} s"
    )


SCENARIO = Scenario("single-stream", cases, measure)
