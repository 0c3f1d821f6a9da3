"""Neighbour graphs and graph clustering that stay O(n*k) in memory.

A dense n x n distance matrix is 40 GB at 100k faces; exact kNN in row blocks
(numpy matmul, a block of distances is capped at 16 MB) keeps peak memory linear in n.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Callable

import numpy as np

BLOCK_BYTES = 16 << 20

#: Where bulk neighbour searches go: None = this process; set only by :func:`faceset.curate.knn_dist.distributed`
#: for its ``with`` block. A context variable, so another thread (the web app's) never sees a CLI run's route;
#: :func:`knn` and :func:`faceset.index.search_rows` consult it, their ``*_local`` twins never do.
ROUTE: ContextVar = ContextVar("faceset_neighbour_route", default=None)


def knn(
    query: np.ndarray,
    base: np.ndarray,
    k: int,
    *,
    exclude_self: bool = False,
    on_rows: Callable[[int], None] | None = None,
    row_offset: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`knn_local`, or on the engine :data:`ROUTE` names (same answer: curate/knn_dist.py)."""
    route = ROUTE.get()
    if route is not None and not row_offset:
        return route.knn(query, base, k, exclude_self=exclude_self, on_rows=on_rows)
    return knn_local(query, base, k, exclude_self=exclude_self, on_rows=on_rows, row_offset=row_offset)


def knn_local(
    query: np.ndarray,
    base: np.ndarray,
    k: int,
    *,
    exclude_self: bool = False,
    on_rows: Callable[[int], None] | None = None,
    row_offset: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (Euclidean) of each query row in ``base``: (indices, distances), [nq, k].

    ``exclude_self`` drops the i-th base row from the i-th query's answer (query is base);
    ``on_rows(n)`` is called after each block of n query rows (progress).
    ``row_offset``: with ``exclude_self``, query row i is base row ``row_offset + i`` (a chunk of the rows,
    searched by an engine's worker: :mod:`faceset.curate.knn_dist`).
    """
    xq = np.ascontiguousarray(query, dtype=np.float32)
    xb = np.ascontiguousarray(base, dtype=np.float32)
    nq, nb = len(xq), len(xb)
    k = min(k, nb - (1 if exclude_self else 0))
    if nq == 0 or k <= 0:
        return np.zeros((nq, 0), np.int64), np.zeros((nq, 0), np.float32)
    bn = (xb * xb).sum(1)
    rows = max(1, BLOCK_BYTES // (4 * nb))
    idx = np.empty((nq, k), np.int64)
    dist = np.empty((nq, k), np.float32)
    for s in range(0, nq, rows):
        qb = xq[s : s + rows]
        d2 = (qb * qb).sum(1)[:, None] + bn[None, :] - 2.0 * (qb @ xb.T)
        if exclude_self:
            r = np.arange(len(qb))
            d2[r, row_offset + s + r] = np.inf
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < nb else np.tile(np.arange(nb), (len(qb), 1))
        pd = np.take_along_axis(d2, part, 1)
        order = np.argsort(pd, axis=1, kind="stable")
        idx[s : s + rows] = np.take_along_axis(part, order, 1)
        dist[s : s + rows] = np.sqrt(np.maximum(np.take_along_axis(pd, order, 1), 0.0))
        if on_rows:
            on_rows(len(qb))
    return idx, dist


def chinese_whispers(
    n: int,
    src: np.ndarray,
    dst: np.ndarray,
    weight: np.ndarray,
    *,
    seed: int = 0,
    iterations: int = 30,
    batches: int = 8,
) -> np.ndarray:
    """Chinese whispers (Biemann 2006) on an undirected weighted edge list; returns a label per node.

    Nodes start with their own label. Updates run vectorised over random node batches, so each pass costs a few
    sorts of the edge list instead of a Python loop per node.
    """
    labels = np.arange(n, dtype=np.int64)
    if len(src) == 0:
        return labels
    s = np.concatenate([src, dst]).astype(np.int64)
    d = np.concatenate([dst, src]).astype(np.int64)
    w = np.concatenate([weight, weight]).astype(np.float64)
    order = np.argsort(s, kind="stable")
    s, d, w = s[order], d[order], w[order]
    rng = np.random.default_rng(seed)
    free = np.unique(s)
    for _ in range(iterations):
        changed = 0
        perm = rng.permutation(free)
        for part in np.array_split(perm, min(batches, max(1, len(perm)))):
            if len(part) == 0:
                continue
            mask = np.zeros(n, bool)
            mask[part] = True
            e = mask[s]
            es, el, ew = s[e], labels[d[e]], w[e]
            # sum weights per (node, neighbour label), pick the heaviest label per node
            key = np.stack([es, el], 1)
            uk, inv = np.unique(key, axis=0, return_inverse=True)
            tot = np.bincount(inv.ravel(), weights=ew)
            # order by node, then weight desc, then label asc (deterministic ties)
            o = np.lexsort((uk[:, 1], -tot, uk[:, 0]))
            uk = uk[o]
            first = np.ones(len(uk), bool)
            first[1:] = uk[1:, 0] != uk[:-1, 0]
            nodes, best = uk[first, 0], uk[first, 1]
            changed += int((labels[nodes] != best).sum())
            labels[nodes] = best
        if changed == 0:
            break
    return labels


class UnionFind:
    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        root = self.parent.setdefault(a, a)
        while self.parent[root] != root:
            root = self.parent[root]
        while a != root:  # path compression, iterative: groups can be long chains
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for a in list(self.parent):
            out.setdefault(self.find(a), []).append(a)
        return [sorted(g) for g in out.values()]
