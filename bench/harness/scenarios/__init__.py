"""The scenarios of a run, one module each (docs/scenarios.md): the cases it adds, how the driver
measures a group of them and makes its rows, and what the worker does for it. Adding a scenario is
one module with its ``SCENARIO`` (``base.Scenario``) and one line here."""

from __future__ import annotations

from bench.harness.scenarios import batch, full_loop, profile, server, single_stream, streams
from bench.harness.scenarios.base import Scenario

# in the order of a run's cases: batch, full loop, single-stream, streams, server
SCENARIOS: tuple[Scenario, ...] = (
    batch.SCENARIO,
    full_loop.SCENARIO,
    single_stream.SCENARIO,
    streams.SCENARIO,
    server.SCENARIO,
    profile.SCENARIO,
)
# a case's scenario -> how its groups are measured (full loop: the batch scenario's rounds)
MEASURE = {s.name: s.measure for s in SCENARIOS if s.measure is not None}
# the commands the worker answers for the scenarios (besides prepare, round, finish, alone...)
WORKER_OPS = {op: fn for s in SCENARIOS for op, fn in s.worker_ops.items()}
