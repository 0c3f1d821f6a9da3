"""People in doubt first: the least cohesive clusters, people with few photos, conflicting labels.

Computed once from every assigned 'ok' embedding (numpy, O(faces)) and cached until who-is-who
changes (``Review.people_signature``); pages walk the order by position of the last person shown
(keyset, never OFFSET). The same unit centroids give merge suggestions ("people who look alike").
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Order:
    signature: tuple
    ids: np.ndarray  # person ids, most doubtful first
    score: dict[int, float]
    cohesion: dict[int, float]  # mean distance of a person's faces to their unit centroid
    position: dict[int, int]
    centroid_ids: np.ndarray
    centroids: np.ndarray  # unit float32[p, 128]


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


class Doubt:
    def __init__(self, review):
        self.review = review
        self._lock = threading.Lock()
        self._order: Order | None = None
        self._checked = 0.0

    RECHECK_S = 5.0  # changes made outside the app (CLI) show within this; the app's own ones at once

    def invalidate(self) -> None:
        self._checked = 0.0

    def order(self) -> Order:
        o = self._order
        if o is not None and time.monotonic() - self._checked < self.RECHECK_S:
            return o
        sig = self.review.people_signature()
        self._checked = time.monotonic()
        if o is not None and o.signature == sig:
            return o
        with self._lock:
            if self._order is not None and self._order.signature == sig:
                return self._order
            self._order = self._compute(sig)
            return self._order

    def _compute(self, sig: tuple) -> Order:
        _, pids, emb = self.review.person_vectors()
        sizes = self.review.people_sizes()
        conflicted = self.review.people_with_conflicting_labels()
        cohesion: dict[int, float] = {}
        cids, cents = np.zeros(0, np.int64), np.zeros((0, 128), np.float32)
        if len(pids):
            u = _unit(emb)
            starts = np.flatnonzero(np.r_[True, pids[1:] != pids[:-1]])
            cids = pids[starts]
            sums = np.add.reduceat(u, starts, axis=0)
            cents = _unit(sums).astype(np.float32)
            idx = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(pids)]))
            d = np.linalg.norm(u - cents[idx], axis=1)
            mean_d = np.bincount(idx, weights=d) / np.bincount(idx)
            cohesion = {int(p): float(v) for p, v in zip(cids, mean_d)}
        score = {}
        for p, n in sizes.items():
            s = cohesion.get(p, 0.0)
            if n <= 2:
                s += 0.15  # few photos: the cluster may be a fragment of someone else
            if p in conflicted:
                s += 0.25
            score[int(p)] = s
        ids = np.array(sorted(score, key=lambda p: (-score[p], p)), np.int64)
        return Order(sig, ids, score, cohesion, {int(p): k for k, p in enumerate(ids)}, cids, cents)

    def page(self, *, after: int | None, limit: int) -> list[int]:
        o = self.order()
        start = 0 if after is None else o.position.get(int(after), -1) + 1
        return [int(p) for p in o.ids[start:start + limit]]

    def look_alikes(self, person_id: int, k: int = 6) -> list[tuple[int, float]]:
        """The ``k`` people whose centroid is nearest this one's (merge candidates), with distances."""
        o = self.order()
        hit = np.flatnonzero(o.centroid_ids == int(person_id))
        if not len(hit) or len(o.centroid_ids) < 2:
            return []
        d = np.linalg.norm(o.centroids - o.centroids[hit[0]], axis=1)
        d[hit[0]] = np.inf
        k = min(k, len(d) - 1)
        near = np.argpartition(d, k - 1)[:k] if k > 0 else []
        return sorted(((int(o.centroid_ids[j]), float(d[j])) for j in near), key=lambda t: t[1])
