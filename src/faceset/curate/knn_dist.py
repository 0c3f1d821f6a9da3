"""The neighbour-graph build on an engine (Ray): workers search chunks of query rows, the driver keeps the rest.

    with distributed(get_engine("ray", 4, address)):
        cluster_people(ws)          # or find_duplicates(ws): every bulk kNN inside runs on the cluster

What travels: the base vectors (exact search) or the index bytes (:meth:`VectorIndex.dumps`: ids, vectors and
a current HNSW graph) go to the object store ONCE per search; each task then names a range of query rows and
returns their neighbours. Nothing else leaves the driver (no catalog, no store); the driver assembles the
answers in row order and the clustering itself runs where it always did.

Answers equal the local ones. Exact search (below ``index.EXACT_BELOW``): chunks start on the row blocks
:func:`faceset.curate.graph.knn` uses locally (``graph.BLOCK_BYTES``), so each worker multiplies the same
blocks of the same arrays as the local run: bit-identical (on nodes with the same BLAS; another CPU's BLAS
may round a distance differently in the last bit). HNSW: the workers load the same index bytes, and faiss
answers each query on its own, so the same rows and distances come back. A stale HNSW (after a removal) is
rebuilt by the driver first when the local search would have rebuilt it (``index.REBUILD_AT_QUERIES``).

How: :func:`distributed` sets ``graph.ROUTE`` (a context variable) for the ``with`` block; the two entry points
the clustering calls, ``graph.knn`` and ``index.search_rows`` (through which ``index.knn_graph`` goes), hand
their work to it, and only in this thread. Searches smaller than ``min_pairs`` query x base rows stay in the
driver (shipping would cost more than it saves). Workers and small searches run ``graph.knn_local`` /
``index.search_rows_local``, which never route. A task whose worker dies is computed in the driver.
"""

from __future__ import annotations

import secrets
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

from .. import index as _index
from . import graph as _graph

__all__ = ["MIN_PAIRS", "distributed", "knn", "on_engine", "search_rows"]

MIN_PAIRS = 20_000_000   # query rows x base rows from which a search goes to the engine (~0.3 s of one core)
CHUNKS_PER_WORKER = 4    # tasks per worker and search: small enough to balance, big enough to amortise a call

_local_knn = _graph.knn_local                 # what the workers (and small searches) run: never routed
_local_search_rows = _index.search_rows_local


def _chunks(nq: int, nb: int, workers: int, outer: int | None = None) -> list[tuple[int, int]]:
    """Query-row ranges, each starting on a block boundary of the local blockwise search over ``nb`` rows.
    ``outer``: the local search first cuts the queries into segments of this many rows (``index.search_rows``:
    ``SEARCH_BLOCK``) and blocks each from its own start: ranges then stay inside one segment."""
    block = max(1, _graph.BLOCK_BYTES // (4 * max(nb, 1)))
    blocks = -(-nq // block)
    per = max(1, -(-blocks // max(1, workers * CHUNKS_PER_WORKER)))
    step = per * block
    outer = outer or nq
    out = []
    for seg in range(0, nq, outer):
        end = min(nq, seg + outer)
        out += [(s, min(end, s + step)) for s in range(seg, end, step)]
    return out


def _run(engine, fn: Callable, shared: tuple, ranges: list[tuple[int, int]], on_rows=None) -> list:
    """``fn(*shared, start, stop)`` for every range on the engine, at most 2 tasks per worker in flight; the
    results in range order. ``shared`` objects go to the object store once."""
    from ..engines import WorkerLost

    refs = tuple(engine.put(x) for x in shared)
    out: list = [None] * len(ranges)
    limit = 2 * max(1, engine.workers)
    pending: list[tuple[int, object]] = []

    def take(j, handle):
        try:
            out[j] = engine.result(handle)
        except WorkerLost:  # the worker (or its node) died twice: same function, same answer, here
            out[j] = fn(*shared, *ranges[j])
        if on_rows:
            on_rows(ranges[j][1] - ranges[j][0])

    for j, (s, e) in enumerate(ranges):
        pending.append((j, engine.submit(fn, *refs, s, e)))
        if len(pending) >= limit:
            take(*pending.pop(0))
    while pending:
        take(*pending.pop(0))
    return out


# -- exact ---------------------------------------------------------------------------------------------------
def _knn_task(query, base, k: int, exclude_self: bool, start: int, stop: int):
    q = base if query is None else query
    return _local_knn(q[start:stop], base, k, exclude_self=exclude_self, row_offset=start)


def knn(query: np.ndarray, base: np.ndarray, k: int, *, exclude_self: bool = False, on_rows=None,
        engine, min_pairs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`faceset.curate.graph.knn` with the query rows split over ``engine`` (same answer, bit for bit).
    ``min_pairs``: default :data:`MIN_PAIRS` (read at each call)."""
    xq = np.ascontiguousarray(query, np.float32)
    xb = np.ascontiguousarray(base, np.float32)
    nq, nb = len(xq), len(xb)
    kk = min(k, nb - (1 if exclude_self else 0))
    if nq == 0 or kk <= 0 or nq * nb < (MIN_PAIRS if min_pairs is None else min_pairs):
        return _local_knn(xq, xb, k, exclude_self=exclude_self, on_rows=on_rows)
    shared = (None, xb) if query is base else (xq, xb)  # a graph over its own rows ships them once
    parts = _run(engine, _knn_task, (*shared, k, exclude_self), _chunks(nq, nb, engine.workers), on_rows)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# -- through a VectorIndex -------------------------------------------------------------------------------------
_cache: dict[str, _index.VectorIndex] = {}  # per worker process: the index of the current search, loaded once


def _search_task(token: str, blob: bytes, q, k: int, row_ids, exclude_ids, start: int, stop: int):
    ix = _cache.get(token)
    if ix is None:
        _cache.clear()
        ix = _cache[token] = _index.VectorIndex.loads(blob)
    ex = None if exclude_ids is None else exclude_ids[start:stop]
    return _local_search_rows(ix, q[start:stop], k, row_ids, exclude_ids=ex)


def search_rows(index: _index.VectorIndex, q: np.ndarray, k: int, row_ids: np.ndarray, *, exclude_ids=None,
                engine, min_pairs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`faceset.index.search_rows` with the query rows split over ``engine``: the index travels once,
    as :meth:`~faceset.index.VectorIndex.dumps` bytes (same rows, same HNSW graph, same answers)."""
    q = np.ascontiguousarray(q, np.float32).reshape(-1, index.dim)
    nq = len(q)
    if nq == 0 or len(index) == 0 or k <= 0 or nq * len(index) < (MIN_PAIRS if min_pairs is None else min_pairs):
        return _local_search_rows(index, q, k, row_ids, exclude_ids=exclude_ids)
    if not index.uses_ann and index._wants_ann() and nq >= _index.REBUILD_AT_QUERIES:
        index.rebuild()  # what index.search would do first, here, so every worker gets the same graph
    ex = None if exclude_ids is None else np.asarray(exclude_ids, np.int64).reshape(nq)
    rid = np.asarray(row_ids, np.int64)
    shared = (secrets.token_hex(8), index.dumps(), q, k, rid, ex)
    outer = getattr(_index, "SEARCH_BLOCK", None)
    parts = _run(engine, _search_task, shared, _chunks(nq, len(index), engine.workers, outer))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# -- routing ---------------------------------------------------------------------------------------------------
class _Route:
    """What ``graph.ROUTE`` holds inside :func:`distributed`: the engine and the size from which to use it."""

    def __init__(self, engine, min_pairs: int | None):
        self.engine, self.min_pairs = engine, min_pairs

    def knn(self, query, base, k, *, exclude_self=False, on_rows=None):
        return knn(query, base, k, exclude_self=exclude_self, on_rows=on_rows, engine=self.engine,
                   min_pairs=self.min_pairs)

    def search_rows(self, index, q, k, row_ids, *, exclude_ids=None):
        return search_rows(index, q, k, row_ids, exclude_ids=exclude_ids, engine=self.engine,
                           min_pairs=self.min_pairs)


@contextmanager
def distributed(engine, *, min_pairs: int | None = None) -> Iterator[None]:
    """Route the bulk neighbour searches of the code run inside to ``engine`` (an engine with ``put``,
    ``submit``, ``result``: :class:`faceset.engines.ray_engine.RayEngine`), in this thread only.
    ``engine`` None: nothing changes. Not re-entrant (a second route inside one is refused)."""
    if engine is None:
        yield
        return
    if _graph.ROUTE.get() is not None:
        raise RuntimeError("neighbour searches are already routed to an engine")
    token = _graph.ROUTE.set(_Route(engine, min_pairs))
    try:
        yield
    finally:
        _graph.ROUTE.reset(token)


@contextmanager
def on_engine(name: str = "local", workers: int | None = None, ray_address: str | None = None) -> Iterator[None]:
    """What ``--engine/--workers/--ray-address`` mean for curate commands: ``local`` searches in this process
    (as always), ``ray`` starts (or, with an address, joins) a Ray cluster for the ``with`` block and routes the
    neighbour searches to it (:func:`distributed`). UsageError on an unknown engine or a lone address."""
    from ..engines import check_options, get_engine
    from ..errors import UsageError

    check_options(name, workers, ray_address, error=UsageError)
    if name == "local":
        yield
        return
    engine = get_engine(name, workers, ray_address)
    try:
        with distributed(engine):
            yield
    finally:
        engine.close()
