"""Pluggable distributors: run one picklable function over a stream of tasks.

An engine only maps ``fn`` over tasks and yields results as they finish, keeping at most
``inflight`` tasks outstanding so memory stays flat however long the stream is. The caller
(the parent process) does all catalog writes. Like img2dataset's distributors: ``local``
(process pool, default) and ``ray`` (a Ray cluster, or a local one). The Ray engine also takes ordered work
(``put`` once, ``submit`` tasks, ``result`` in the caller's order): ingest, the people/dedup neighbour
searches (:mod:`faceset.curate.knn_dist`) and export's payloads (:func:`faceset.export.core._payloads`).
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator, Protocol

from .errors import WorkerLost

ENGINES = ("local", "ray")
__all__ = ["ENGINES", "Engine", "WorkerLost", "check_options", "default_workers", "get_engine"]


class Engine(Protocol):
    name: str
    workers: int

    def imap(self, fn: Callable, tasks: Iterable) -> Iterator: ...

    def close(self) -> None: ...

    # tasks may carry a path (shared filesystem) or bytes (remote workers)
    wants_bytes: bool


def check_options(name: str, workers: int | None = None, ray_address: str | None = None, *,
                  error: type[Exception] = ValueError) -> None:
    """The one check of ``--engine/--workers/--ray-address`` every stage makes before any work; raises
    ``error`` (the stage's own user-error class) with a one-line reason."""
    if name not in ENGINES:
        raise error(f"unknown --engine {name!r}: choose one of {', '.join(ENGINES)}")
    if ray_address and name != "ray":
        raise error("--ray-address needs --engine ray")
    if workers is not None and workers < 1:
        raise error("--workers must be >= 1")


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def get_engine(name: str = "local", workers: int | None = None, ray_address: str | None = None) -> Engine:
    workers = workers or default_workers()
    if name == "local":
        from .local import LocalEngine

        return LocalEngine(workers)
    if name == "ray":
        from .ray_engine import RayEngine

        return RayEngine(workers, ray_address)
    raise ValueError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
