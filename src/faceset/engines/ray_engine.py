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

    # -- ordered use (ingest): submit now, take results later in the caller's own order -------------------------
    def put(self, obj):
        """Ship ``obj`` to the object store once (e.g. blocklist templates every task reads)."""
        return self._ray.put(obj)

    def submit(self, fn: Callable, *args, retries: int = 2):
        """Start ``fn(*args)`` as one task; returns a handle for :meth:`result`. The caller bounds what is in
        flight (ingest keeps a window of chunks, like its local pool)."""
        remotes = self.__dict__.setdefault("_remotes", {})
        key = (fn, retries)
        if key not in remotes:
            remotes[key] = self._ray.remote(num_cpus=1, max_retries=retries)(fn)
        return remotes[key].remote(*args)

    def result(self, handle):
        """The task's return value; :class:`~faceset.engines.WorkerLost` when its worker or node died (after
        Ray's own retries), so the caller can retry items alone. Exceptions raised by ``fn`` propagate."""
        from ray import exceptions as rx

        from .errors import WorkerLost

        try:
            return self._ray.get(handle)
        except (rx.WorkerCrashedError, rx.OutOfMemoryError, rx.NodeDiedError, rx.ObjectLostError) as e:
            raise WorkerLost(str(e).splitlines()[0] if str(e) else type(e).__name__) from e

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False
