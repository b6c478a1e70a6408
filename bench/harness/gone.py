"""A worker that is gone: the launcher (``bench.harness.launch``) raises it, the driver and the
scenarios (``bench.harness.scenarios``) turn it into the case's row. Its own small module: the
scenarios load in every worker, which must not import the launcher's subprocess machinery."""

from __future__ import annotations


class WorkerGone(Exception):
    """The worker died or was killed; ``status`` is ``crashed`` or ``timeout``."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason
