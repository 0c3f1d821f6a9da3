"""The forget decision: which faces of a workspace belong to the person in 1..3 selfies.

Pure (numpy only). Evidence per face:
- ``distance``: the smallest distance from the face to any selfie (what a human would look at);
- ``rms``: root-mean-square distance from the face to all selfies (one bad selfie cannot carry a match);
- ``person``: RMS distance from the selfies to every face of the face's cluster (cluster-level evidence:
  a profile shot far from the selfie is still taken when its whole person sits on the selfie), exact from
  the cluster's running sums, as in :mod:`cluster`.

Classes: ``certain`` (erase on ``--yes``) when ``rms <= certain_face`` or (``person <= certain_person`` and
``rms <= certain_face_in_person``); else ``review`` (listed, erased only when confirmed) when
``distance <= review_face`` or (``person <= review_person`` and ``distance <= review_face_in_person``), at most
``review_max`` of them per request (the ones with the most evidence, smallest min(distance, person)); else none.

The shipped operating points (bench/forget.py, person-disjoint halves of identities_wild with all 9,767
utkface faces as distractors, chosen on one half, scored on the other, pooled): the certain rule is face-only
(RMS distance to the selfies) because every rule that let cluster evidence make a face certain took strangers
on the unseen half (certain precision 0.92-0.96); it is certain of only ~10% of a person's faces, so most of
an erasure is the review list, capped per request because a list of 500 faces (what recall 0.99 costs with a
distance bound alone) is no defence. Numbers per selfie count in
bench/results/forget.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = ["MatchParams", "OPERATING_POINTS", "params_for", "Matches", "match", "CERTAIN", "REVIEW", "NONE"]

CERTAIN, REVIEW, NONE = "certain", "review", ""


@dataclass(frozen=True)
class MatchParams:
    certain_face: float = 0.36
    certain_person: float = 0.40
    certain_face_in_person: float = 0.45
    review_face: float = 0.55
    review_person: float = 0.50
    review_face_in_person: float = 0.62
    review_max: int = 0  # > 0: at most this many review faces per request, the best evidence min(distance, person)

    def with_(self, **kw) -> "MatchParams":
        return replace(self, **kw)


# chosen by bench/forget.py (choose_forget on each half; the certain distance is the smaller of the two halves
# (each backed off by 0.02 from the largest safe one: see CERTAIN_BACKOFF there), the review bound the larger,
# review_max 100: see bench/results/forget.md for what 10 / 25 / 50 / 200 cost);
# keyed by number of selfies (3 stands for 3 or more). Held out, pooled, 1 / 2 / 3 selfies: certain precision
# and certain + review recall in bench/results/forget.md.
OPERATING_POINTS: dict[int, MatchParams] = {
    1: MatchParams(0.34, 0.0, 0.0, 0.64, 0.64, 0.80, 100),
    2: MatchParams(0.345, 0.0, 0.0, 0.66, 0.66, 0.80, 100),
    3: MatchParams(0.35, 0.0, 0.0, 0.66, 0.66, 0.80, 100),
}


def params_for(n_selfies: int) -> MatchParams:
    if n_selfies < 1:
        raise ValueError("at least one selfie embedding is needed")
    return OPERATING_POINTS[min(n_selfies, max(OPERATING_POINTS))]


@dataclass
class Matches:
    distance: np.ndarray   # float[n]: min distance to a selfie
    rms: np.ndarray        # float[n]: RMS distance to the selfies
    person: np.ndarray     # float[n]: RMS distance from the selfies to the face's whole cluster
    cls: np.ndarray        # str[n]: 'certain' | 'review' | ''

    @property
    def certain(self) -> np.ndarray:
        return np.flatnonzero(self.cls == CERTAIN)

    @property
    def review(self) -> np.ndarray:
        return np.flatnonzero(self.cls == REVIEW)


def evidence(selfies: np.ndarray, vectors: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """(distance, rms, person) per row of ``vectors``; O(n * selfies) time, O(n) memory beyond the inputs."""
    s = np.atleast_2d(np.asarray(selfies, np.float64))
    x = np.asarray(vectors, np.float32)
    n = len(x)
    if n == 0:
        z = np.zeros(0)
        return z, z, z
    xs = x.astype(np.float64)
    xx = (xs * xs).sum(1)
    ss = (s * s).sum(1)
    d2 = np.maximum(xx[:, None] + ss[None, :] - 2.0 * xs @ s.T, 0.0)
    dist = np.sqrt(d2.min(1))
    rms = np.sqrt(d2.mean(1))
    if labels is None:
        return dist, rms, rms.copy()
    lab = np.asarray(labels)
    _, inv = np.unique(lab, return_inverse=True)
    m = int(inv.max()) + 1
    W = np.bincount(inv, minlength=m).astype(np.float64)
    S = np.zeros((m, x.shape[1]))
    np.add.at(S, inv, xs)
    Q = np.bincount(inv, weights=xx, minlength=m)
    # mean over cluster faces and selfies of |x - s|^2 = Q/W + mean|s|^2 - 2 mu . mean(s)
    per = Q / W + ss.mean() - 2.0 * (S / W[:, None]) @ s.mean(0)
    person = np.sqrt(np.maximum(per, 0.0))[inv]
    return dist, rms, person


def classify(dist: np.ndarray, rms: np.ndarray, person: np.ndarray, p: MatchParams) -> np.ndarray:
    cert = (rms <= p.certain_face) | ((person <= p.certain_person) & (rms <= p.certain_face_in_person))
    rev = ~cert & ((dist <= p.review_face) | ((person <= p.review_person) & (dist <= p.review_face_in_person)))
    if p.review_max > 0 and rev.sum() > p.review_max:  # the list a curator can check: most evidence first
        idx = np.flatnonzero(rev)
        score = np.minimum(dist[idx], person[idx])
        rev[idx[np.argsort(score, kind="stable")[p.review_max:]]] = False
    out = np.full(len(dist), NONE, dtype=object)
    out[cert] = CERTAIN
    out[rev] = REVIEW
    return out.astype(str) if len(out) else np.zeros(0, "<U7")


def match(
    selfies: np.ndarray,
    vectors: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    params: MatchParams | None = None,
) -> Matches:
    """Classify every workspace face (rows of ``vectors``, cluster ``labels`` per row) against 1..3 selfies.

    ``labels=None`` means no cluster evidence (every face judged alone). ``params`` defaults to the operating
    point for ``len(selfies)``.
    """
    s = np.atleast_2d(np.asarray(selfies, np.float32))
    if s.shape[0] < 1 or s.ndim != 2:
        raise ValueError("at least one selfie embedding is needed")
    x = np.asarray(vectors, np.float32).reshape(-1, s.shape[1])
    if labels is not None and len(labels) != len(x):
        raise ValueError(f"{len(labels)} labels for {len(x)} faces")
    p = params or params_for(len(s))
    dist, rms, person = evidence(s, x, labels)
    return Matches(dist, rms, person, classify(dist, rms, person, p))
