"""What every scenario module gives the registry (``bench.harness.scenarios``), and what they share.

A scenario is one module: the cases it adds to a run (``cases``), how the driver measures a group
of its prepared cases and turns the answers into rows (``measure``), and the worker's side
(``worker_ops``: commands the worker answers, each ``op(worker, **args) -> dict``). The driver
(``bench.harness.run``) prepares every case of a group, then hands the group to its scenario; it
keeps only the scheduling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.harness.case import Case

if TYPE_CHECKING:
    from bench.harness.options import BenchConfig

# (config, [(runtime, threads)], timings) -> the scenario's cases, in a group-adjacent order
CaseMaker = Callable[["BenchConfig", list[tuple[str, int]], tuple[str, ...]], Iterator[Case]]
# (driver, launcher, entries (rounds.Planned), cold figures by case id) -> None: rows via the driver
Measure = Callable[[Any, Any, list[Any], dict[str, dict[str, Any]]], None]


@dataclass(frozen=True)
class Scenario:
    name: str  # the CSV's scenario (profile: its rows'; full loop: a timing of batch)
    cases: CaseMaker | None = None  # None: its rows come from another scenario's groups (profile)
    measure: Measure | None = None  # None: measured as the batch scenario's rounds (full loop)
    worker_ops: Mapping[str, Callable[..., Any]] = field(default_factory=dict)


@dataclass
class Measured:
    """The timed samples of one case, for pytest-benchmark: ``iterations`` calls per duration."""

    case: Case
    durations: list[float]  # s, one per sample
    iterations: int


def cold_columns(cold: dict[str, Any]) -> dict[str, Any]:
    """The cold-start figures of prepare that every row of the case carries."""
    keep = ("execution_provider", "load_s", "compile_s", "first_inference_ms", "model_bytes", "max_abs_diff")
    return {k: cold[k] for k in keep if k in cold}
