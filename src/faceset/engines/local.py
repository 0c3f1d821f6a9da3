"""Process-pool engine (the default): one model set per worker process, bounded in-flight queue."""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable, Iterable, Iterator


class LocalEngine:
    name = "local"
    wants_bytes = False

    def __init__(self, workers: int, preload: tuple[str, ...] = ("faceset.scan.pipeline", "torch")):
        self.workers = workers
        self.preload = preload
        self._pool: ProcessPoolExecutor | None = None

    def imap(self, fn: Callable, tasks: Iterable) -> Iterator:
        if self.workers == 1:  # no pool: cheaper start, same results
            for t in tasks:
                yield fn(t)
            return
        if self._pool is None:
            # forkserver: a clean server (imports done once, no threads/OpenMP state) forks each worker,
            # so a parent that already ran torch cannot deadlock its children; spawn where it is missing.
            methods = mp.get_all_start_methods()
            ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
            if ctx.get_start_method() == "forkserver":
                ctx.set_forkserver_preload(list(self.preload))
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx)
        limit = 2 * self.workers
        pending: set = set()
        it = iter(tasks)
        exhausted = False
        while True:
            while not exhausted and len(pending) < limit:
                try:
                    t = next(it)
                except StopIteration:
                    exhausted = True
                    break
                f = self._pool.submit(fn, t)
                pending.add(f)
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield f.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
