"""Scenario full loop (``--full-loop``): the whole model as an app calls it, timed in the batch
scenario's rounds with timing ``full_loop``: each call takes the next batch of uint8 test images,
converts it (/255, reshape), copies it to the device, runs it, copies back and takes the argmax."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from bench.harness.case import Case
from bench.harness.scenarios.base import Scenario
from bench.harness.shared_data import to_input

if TYPE_CHECKING:
    from bench.harness.options import BenchConfig
    from bench.runtimes import Prepared


def cases(
    config: BenchConfig, per_runtime: list[tuple[str, int]], timings: tuple[str, ...]
) -> Iterator[Case]:
    if config.full_loop and "model" in config.targets:
        for batch in config.batch_sizes:
            for device in config.devices:
                for runtime, threads in per_runtime:
                    yield Case("model", runtime, device, batch, "full_loop", threads=threads)


def full_loop(prepared: Prepared, images: np.ndarray, batch: int) -> Callable[[], np.ndarray]:
    """The worker's call: the next ``batch`` uint8 test images (N, 28, 28) (wrapping at the end of
    the set), converted to float32 (N, 1, 28, 28) in [0, 1], copied to the device, run, copied
    back, argmax taken: the (N,) predicted classes."""
    start = [0]

    def call() -> np.ndarray:
        first = start[0] if start[0] + batch <= len(images) else 0
        start[0] = first + batch
        x = to_input(images[first : first + batch])
        return prepared.to_host(prepared.run(prepared.to_device(x))).argmax(1)

    return call


SCENARIO = Scenario("full-loop", cases)  # measured by the batch scenario's rounds
