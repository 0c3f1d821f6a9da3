"""Ray engine: the same task function as ray remote tasks, bounded in flight with ``ray.wait``.

``ray_address`` joins an existing cluster (workers then get image bytes, not paths, so no shared
filesystem is needed); without it a local Ray is started with ``num_cpus=workers``.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator


class RayEngine:
    name = "ray"
    wants_bytes = True

    def __init__(self, workers: int, address: str | None = None):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        self.workers = workers
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            self._started = True

    def imap(self, fn: Callable, tasks: Iterable) -> Iterator:
        ray = self._ray
        remote = ray.remote(num_cpus=1, max_retries=2)(fn)
        limit = 2 * self.workers
        pending: list = []
        for t in tasks:
            pending.append(remote.remote(t))
            if len(pending) >= limit:
                done, pending = ray.wait(pending, num_returns=1)
                yield from ray.get(done)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield from ray.get(done)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False
