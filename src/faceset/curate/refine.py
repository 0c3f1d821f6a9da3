"""Post-steps on a finished clustering: break up "crowds" of look-alikes that average linkage keeps whole.

Why: on 9.7k one-photo-each people (utkface) average linkage at the shipped threshold still makes clusters of
~600 faces out of young children. Measured (bench/people.py --cv), such a cluster is *more* cohesive than a
real adult with hundreds of photos (a synthetic person drawn from the within-person covariance of LFW people):
its RMS spread is 0.28-0.32 against 0.32, so no rule on a cluster's spread, radius or size-scaled threshold
can split it without shattering real people with many photos. What differs is its border: a crowd is a piece
cut out of a continuum of look-alikes, so many of its members have a face of ANOTHER cluster as close as
their own (within ``crowd_radius``), while a person -- however many photos -- is an island (synthetic large
people: 0-0.3% of members; baby crowds: 50-100%).

:func:`split_crowds`: a cluster with more than ``crowd_size`` faces where more than ``crowd_frac`` of the
members have another cluster's face within ``crowd_radius`` is re-clustered at ``threshold - crowd_step``;
each piece is checked again, down to ``crowd_floor``; a piece still a crowd at the floor becomes single faces
(faceset cannot tell these people apart; a curator can). Must-links hold inside every re-clustering and a
split never joins anything, so cannot-links hold. ``movable`` restricts the step to some labels (the
incremental run passes only its new clusters: existing people never change). Deterministic; cost O(m k d) for
the m faces of large clusters (a kNN query of those faces only) plus the re-clusterings.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Iterable

import numpy as np

from .graph import knn

__all__ = ["split_crowds", "crowd_share"]


def crowd_share(labels: np.ndarray, members: np.ndarray, nbr: np.ndarray, dist: np.ndarray, radius: float) -> float:
    """Share of ``members`` (rows of one cluster) with a face of another cluster closer than ``radius``;
    ``nbr`` / ``dist``: each member's nearest faces (rows of the whole set) and their distances."""
    if len(members) == 0:
        return 0.0
    other = (labels[nbr] != labels[members[0]]) & (dist < radius)
    return float(other.any(1).mean())


def split_crowds(
    x: np.ndarray,
    labels: np.ndarray,
    params,
    recluster: Callable[..., np.ndarray],
    *,
    quality: np.ndarray | None = None,
    must_link: Iterable[tuple[int, int]] = (),
    movable: Iterable[int] | None = None,
    k: int = 10,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Labels with crowds split (see the module doc); unchanged when ``params.crowd_size`` is 0.

    ``recluster(x_sub, quality=, must_link=, params=)`` is :func:`cluster.cluster` (passed in: no import cycle).
    ``movable``: only clusters with these labels may be split (default: all). New clusters get labels above the
    current maximum; callers renumber. ``neighbours``: (rows, distances) [n, >= k] of every row's nearest
    OTHER rows (the clustering's kNN graph; -1 / inf pads), used instead of a fresh exact search (which costs
    O(m n): 1M faces with 30% in large clusters is most of the people stage otherwise).
    """
    labels = np.asarray(labels, np.int64).copy()
    if not params.crowd_size or len(labels) == 0:
        return labels
    x = np.ascontiguousarray(x, np.float32)
    uniq, sizes = np.unique(labels, return_counts=True)
    big = uniq[sizes > params.crowd_size]
    if movable is not None:
        big = big[np.isin(big, np.asarray(list(movable), np.int64))]
    if len(big) == 0:
        return labels
    rows = np.flatnonzero(np.isin(labels, big))
    if neighbours is not None:  # the graph's k nearest others (the exact search's k + 1 includes the row itself)
        nb, dd = (np.asarray(a[rows, :k]) for a in neighbours)
        nb, dd = np.where(nb >= 0, nb, rows[:, None]), np.where(nb >= 0, dd, np.inf)
    else:
        nb, dd = knn(x[rows], x, min(k + 1, len(x)))  # once: a face's neighbours do not change, labels do
    at = np.full(len(x), -1, np.int64)
    at[rows] = np.arange(len(rows))
    ml = [(int(a), int(b)) for a, b in must_link]
    base = params.with_(crowd_size=0, density=0.0)
    nxt = int(labels.max()) + 1
    order = rows[np.argsort(labels[rows], kind="stable")]
    cuts = np.flatnonzero(np.diff(labels[order])) + 1
    todo = deque((m, float(params.threshold)) for m in np.split(order, cuts))  # (member rows, threshold)
    while todo:
        m, t = todo.popleft()
        if len(m) <= params.crowd_size:
            continue
        if crowd_share(labels, m, nb[at[m]], dd[at[m]], params.crowd_radius) <= params.crowd_frac:
            continue
        t2 = round(t - params.crowd_step, 6)
        pos = {int(r): j for j, r in enumerate(m)}
        sub_ml = [(pos[a], pos[b]) for a, b in ml if a in pos and b in pos]
        if t2 < params.crowd_floor:  # still a crowd at the floor: single faces, must-link groups kept whole
            sub = _groups(len(m), sub_ml)
        else:
            sub = recluster(x[m], quality=None if quality is None else np.asarray(quality)[m], must_link=sub_ml,
                            params=base.with_(threshold=t2))
        for s in range(int(sub.max()) + 1):
            piece = m[sub == s]
            if s:
                labels[piece] = nxt
                nxt += 1
            if t2 >= params.crowd_floor:
                todo.append((piece, t2))
    return labels


def _groups(n: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Labels 0.. for n rows where only the must-link pairs share a label (numbered by first row)."""
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in pairs:
        parent[find(a)] = find(b)
    roots = np.array([find(i) for i in range(n)])
    _, first, inv = np.unique(roots, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inv]


def split_new_crowds(new: np.ndarray, old: np.ndarray, old_labels: np.ndarray, labels: np.ndarray, params,
                     recluster: Callable[..., np.ndarray], *, quality=None, must_link=()) -> np.ndarray:
    """The incremental form: only NEW clusters (labels < 0) may be split, existing people never change; the
    crowd check sees old faces too (rows ``[new; old]``, as constraint pairs index them). New clusters are
    numbered -1, -2, ... again in order of first arrival."""
    labels = np.asarray(labels, np.int64)
    if not params.crowd_size or not (labels < 0).any():
        return labels
    n = len(labels)
    x = np.concatenate([np.asarray(new, np.float32), np.asarray(old, np.float32)])
    lab = np.r_[labels, np.asarray(old_labels, np.int64)]
    q = None if quality is None else np.r_[np.asarray(quality, np.float64), np.ones(len(old))]
    out = split_crowds(x, lab, params, recluster, quality=q, must_link=must_link,
                       movable=np.unique(labels[labels < 0]))[:n]
    fresh = (out < 0) | (out > lab.max())  # unsplit new clusters and the pieces of split ones
    res = labels.copy()
    ids: dict[int, int] = {}
    for i in np.flatnonzero(fresh):
        res[i] = ids.setdefault(int(out[i]), -(len(ids) + 1))
    return res
