"""A case: one target x runtime x device x batch size (x timing, x scenario, x threads, x streams).

Its own small module: a worker process unpickles cases and imports nothing else of the planner.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    target: str
    runtime: str
    device: str
    batch_size: int
    # "compute": the input tensor preloaded on the device; "end_to_end": host input, copies to and
    # from the device included; "full_loop": a new batch of uint8 images per call, converted, run,
    # argmax taken (what an app does)
    timing: str = "compute"
    scenario: str = "batch"  # or "single-stream", "server", "streams"
    threads: int = 0  # intra-op threads; 0: the config's only count (--threads with one value)
    streams: int = 1  # concurrent request streams (scenario "streams")

    @property
    def id(self) -> str:
        suffix = {"compute": "", "end_to_end": "-e2e"}.get(self.timing, f"-{self.timing}")
        scenario = "" if self.scenario == "batch" else f"-{self.scenario}"
        threads = f"-t{self.threads}" if self.threads else ""
        streams = f"-s{self.streams}" if self.streams != 1 else ""
        return f"{self.target}-b{self.batch_size}-{self.runtime}-{self.device}{suffix}{scenario}{threads}{streams}"

    @property
    def group(self) -> str:
        """The comparison group: the runtimes timed together, in interleaved rounds."""
        scenario = "" if self.scenario == "batch" else f" {self.scenario}"
        timing = "" if self.timing == "compute" else f" {self.timing}"
        return f"{self.target} batch={self.batch_size} {self.device}{timing}{scenario}"
