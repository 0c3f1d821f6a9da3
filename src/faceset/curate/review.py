"""Assisted review: the yes/no "same person?" questions whose answers improve the clustering most.

Pure (numpy). Two kinds of question, both shown to the curator as a pair of faces:
- ``merge``: two graph-adjacent clusters A, B that did not merge (RMS linkage L above the threshold).
  P(same) = sigmoid((c - L) / s); a yes gains |A| * |B| correct pairs. Expected gain P(same) * |A||B|.
- ``split``: the face i of a cluster C farthest (RMS) from the rest of C. P(other person) =
  sigmoid((L - c) / s); a no removes |C| - 1 wrong pairs. Expected gain P(other) * (|C| - 1).
Each pair shows the cluster's medoid-like face (closest to its mean). Answers become constraints:
yes -> must-link (a, b), no -> cannot-link (a, b); :func:`apply` reclusters with all of them (cluster()
honours both), so a human decision is never undone by a later run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from .cluster import DEFAULT, Params, cluster
from .graph import knn

__all__ = ["ReviewParams", "Question", "Answers", "questions", "apply"]


@dataclass(frozen=True)
class ReviewParams:
    centre: float = 0.50   # linkage at which P(same) = 0.5 (the clustering threshold by default)
    scale: float = 0.03    # logistic width of P(same | linkage)
    band: float = 0.15     # merges above threshold + band and splits below threshold - band are settled


@dataclass(frozen=True)
class Question:
    a: int          # face row
    b: int          # face row
    kind: str       # 'merge' | 'split'
    gain: float     # expected pairs fixed by the answer
    linkage: float


@dataclass
class Answers:
    must_link: list = field(default_factory=list)
    cannot_link: list = field(default_factory=list)

    def add(self, q: Question, same: bool) -> None:
        (self.must_link if same else self.cannot_link).append((q.a, q.b))

    def pairs(self) -> set:
        return {tuple(sorted(p)) for p in self.must_link + self.cannot_link}


def _sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


def questions(
    vectors: np.ndarray,
    labels: np.ndarray,
    *,
    limit: int = 10,
    params: Params = DEFAULT,
    review: ReviewParams | None = None,
    answers: Answers | None = None,
) -> list[Question]:
    """Up to ``limit`` questions, best expected gain first, never one already answered (or settled by an
    answer: a pair of clusters with a constraint between them is not asked again)."""
    rp = review or ReviewParams(centre=params.threshold)
    x = np.asarray(vectors, np.float64)
    lab = np.asarray(labels)
    n = len(x)
    if n < 2:
        return []
    _, inv = np.unique(lab, return_inverse=True)
    m = int(inv.max()) + 1
    W = np.bincount(inv, minlength=m).astype(np.float64)
    S = np.zeros((m, x.shape[1]))
    np.add.at(S, inv, x)
    xx = (x * x).sum(1)
    Q = np.bincount(inv, weights=xx, minlength=m)
    mu = S / W[:, None]
    # representative face per cluster: closest to its mean
    dmu = ((x - mu[inv]) ** 2).sum(1)
    rep = np.full(m, -1)
    order = np.lexsort((dmu, inv))
    first = np.r_[True, inv[order][1:] != inv[order][:-1]]
    rep[inv[order][first]] = order[first]
    done = answers.pairs() if answers else set()
    linked = set()
    if answers:
        for a, b in answers.must_link + answers.cannot_link:
            linked.add((min(inv[a], inv[b]), max(inv[a], inv[b])))
    out: list[Question] = []
    # merge questions: adjacent clusters through the kNN graph
    i, d = knn(x.astype(np.float32), x.astype(np.float32), min(params.k, n - 1), exclude_self=True)
    ca = np.repeat(inv, i.shape[1])
    cb = inv[i.ravel()]
    keep = (ca != cb) & (d.ravel() < params.edge)
    if keep.any():
        pr = np.unique(np.stack([np.minimum(ca[keep], cb[keep]), np.maximum(ca[keep], cb[keep])], 1), axis=0)
        A, B = pr[:, 0], pr[:, 1]
        L = np.sqrt(np.maximum(Q[A] / W[A] + Q[B] / W[B] - 2 * np.einsum("ij,ij->i", mu[A], mu[B]), 0))
        near = L < params.threshold + rp.band  # farther pairs are settled: different people
        for a, b, l in zip(A[near].tolist(), B[near].tolist(), L[near].tolist()):
            if (a, b) in linked:
                continue
            g = _sig((rp.centre - l) / rp.scale) * W[a] * W[b]
            out.append(Question(int(rep[a]), int(rep[b]), "merge", float(g), float(l)))
    # split questions: per cluster of >= 3 faces, the face farthest from the rest
    big = np.flatnonzero(W >= 3)
    if len(big):
        # RMS distance of face j to the other faces of its cluster: (|x|^2 (W-1) + Q - |x|^2 - 2 x.(S - x)) / (W-1)
        Wi, Qi, Si = W[inv], Q[inv], S[inv]
        with np.errstate(invalid="ignore", divide="ignore"):
            v = (xx * (Wi - 1) + (Qi - xx) - 2 * np.einsum("ij,ij->i", x, Si - x)) / (Wi - 1)
        Lr = np.sqrt(np.maximum(np.nan_to_num(v, nan=0.0), 0))
        Lr[W[inv] < 3] = -1
        order = np.lexsort((-Lr, inv))
        first = np.r_[True, inv[order][1:] != inv[order][:-1]]
        for j in order[first].tolist():
            c = inv[j]
            if Lr[j] < 0 or Lr[j] <= params.threshold - rp.band:  # well inside: settled
                continue
            r = int(rep[c])
            if r == j:  # the farthest face is the representative (2 faces tie): ask against the other one
                mem = np.flatnonzero(inv == c)
                r = int(mem[mem != j][np.argmin(dmu[mem[mem != j]])])
            if tuple(sorted((j, r))) in done:
                continue
            g = _sig((Lr[j] - rp.centre) / rp.scale) * (W[c] - 1)
            out.append(Question(int(j), r, "split", float(g), float(Lr[j])))
    out = [q for q in out if tuple(sorted((q.a, q.b))) not in done]
    out.sort(key=lambda q: (-q.gain, q.a, q.b))
    return out[:limit]


def apply(
    vectors: np.ndarray,
    answers: Answers,
    *,
    quality: Iterable[float] | None = None,
    must_link: Iterable[tuple[int, int]] = (),
    cannot_link: Iterable[tuple[int, int]] = (),
    params: Params = DEFAULT,
) -> np.ndarray:
    """Recluster with every answer as a constraint (plus any standing ones); labels as :func:`cluster`."""
    return cluster(vectors, quality=None if quality is None else np.asarray(list(quality)),
                   must_link=list(must_link) + answers.must_link,
                   cannot_link=list(cannot_link) + answers.cannot_link, params=params)
