"""Assisted review: the yes/no "same person?" questions whose answers improve the clustering most.

Pure (numpy). Three kinds of question, each shown to the curator as a pair of faces (a, b):
- ``move``: face a (in cluster C, or alone) may belong to the graph-adjacent cluster A of face b (A's face
  closest to its mean). Evidence: L_a = RMS distance from a to A's faces, L_own = RMS distance from a to the
  rest of C (1.0 when a is alone). A yes moves a into A: |A| correct pairs gained, |C| - 1 wrong pairs gone.
- ``merge``: two graph-adjacent clusters A, B of >= 2 faces each with RMS linkage L: a yes gains |A| |B| pairs.
- ``split``: the face a of a cluster C farthest (RMS) from the rest of C, against C's representative b: a no
  removes |C| - 1 wrong pairs.
P(the answer is the one that changes something) is a small logistic model per kind on those distances
(:class:`ReviewParams`, fitted by bench/review.py on one person-disjoint half of identities_wild + utkface
distractors, with the simulated curator's answers as labels); the expected gain is P x the pairs fixed, and
questions are asked best expected gain first.

Why moves: on unseen people at the shipped threshold most of the lost pairs are one face of a person sitting
in a small cluster of strangers (or alone), not two big halves of a person; a merge question between
clusters would ask about the strangers' representative and get a no.

Answers become constraints: yes -> must-link (a, b), no -> cannot-link (a, b); :func:`apply` reclusters with
all of them (cluster() honours both), :func:`apply_answer` edits labels the way ``people.answer`` edits people
(move the face / merge the people / split the face off), so a human decision is never undone by a later run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from .cluster import DEFAULT, Params, cluster
from .graph import knn

__all__ = ["ReviewParams", "REVIEW_DEFAULT", "Question", "Answers", "questions", "candidates", "neighbours", "apply",
           "apply_answer", "KINDS"]

KINDS = ("move", "merge", "split")


@dataclass(frozen=True)
class ReviewParams:
    """Logistic P(answer changes the clustering) per kind, on distances relative to the threshold t:
    move: sigmoid(m0 + m1 (L_a - t) + m2 (L_a - L_own) + m3 nn_a + m4 nn_own + m5 (d_a - t)) with nn_a / nn_own the
    share of a's k nearest faces in A / in its own cluster and d_a the distance to A's nearest face;
    merge: sigmoid(g0 + g1 (L - t)); split: sigmoid(s0 + s1 (L_own - t)). ``band``: candidates farther than
    t + band are not asked. ``pair_cap``: pairs counted per answer at most (a person has tens of photos, not
    hundreds: without the cap the loose look-alike clusters of strangers, hundreds of faces, win every
    ranking with a tiny P)."""

    m0: float = -10.452
    m1: float = -2.322
    m2: float = -1.398
    m3: float = 3.139
    m4: float = 3.433
    m5: float = -7.22
    g0: float = -8.335
    g1: float = -0.883
    s0: float = 3.43
    s1: float = 20.752
    band: float = 0.20
    pair_cap: float = 5.0
    split_share: float = 0.25  # share of the questions taken from the split queue (the rest: moves / merges)


# fitted by bench/review.py (logistic regression on fold 0's training half of identities_wild + all utkface at
# cluster.DEFAULT; pair_cap and split_share set by hand). Held out (the other half), LFW pairwise F after 0 / 10 /
# 50 / 100 answers per 1,000 faces: 0.949 / 0.957 / 0.963 / 0.964 (closest-first: 0.949 / 0.949 / 0.956 / 0.964);
# bench/results/review.md.
REVIEW_DEFAULT = ReviewParams()


@dataclass(frozen=True)
class Question:
    a: int          # face row
    b: int          # face row
    kind: str       # 'move' | 'merge' | 'split'
    gain: float     # expected pairs fixed by the answer
    linkage: float  # RMS distance between the two sides


@dataclass
class Answers:
    must_link: list = field(default_factory=list)
    cannot_link: list = field(default_factory=list)

    def add(self, q: Question, same: bool) -> None:
        (self.must_link if same else self.cannot_link).append((q.a, q.b))

    def pairs(self) -> set:
        return {tuple(sorted(p)) for p in self.must_link + self.cannot_link}


def _sig(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


@dataclass
class Candidates:
    """Every question one could ask now, with its evidence (rows per kind), before ranking."""

    kind: np.ndarray     # str
    a: np.ndarray        # face row
    b: np.ndarray        # face row
    L: np.ndarray        # move: L_a; merge: L; split: L_own
    L_own: np.ndarray    # move: L_own (1.0 alone); else = L
    pairs: np.ndarray    # pairs the change fixes when the answer is the changing one
    ca: np.ndarray       # cluster index of a
    cb: np.ndarray       # cluster index of b
    nn_a: np.ndarray     # move: share of a's k nearest faces in b's cluster (else 0)
    nn_own: np.ndarray   # move: share of a's k nearest faces in its own cluster (else 0)
    d_a: np.ndarray      # move: distance from a to the nearest face of b's cluster (else L)


def _stats(x: np.ndarray, lab: np.ndarray):
    _, inv = np.unique(lab, return_inverse=True)
    m = int(inv.max()) + 1
    W = np.bincount(inv, minlength=m).astype(np.float64)
    S = np.zeros((m, x.shape[1]))
    np.add.at(S, inv, x)
    xx = (x * x).sum(1)
    Q = np.bincount(inv, weights=xx, minlength=m)
    return inv, m, W, S, Q, xx


def neighbours(vectors: np.ndarray, params: Params = DEFAULT) -> tuple[np.ndarray, np.ndarray]:
    """The kNN graph the candidates come from (faces do not move between rounds of answers: compute once)."""
    x = np.asarray(vectors, np.float32)
    return knn(x, x, min(params.k, len(x) - 1), exclude_self=True)


def candidates(vectors: np.ndarray, labels: np.ndarray, params: Params = DEFAULT,
               review: ReviewParams = REVIEW_DEFAULT, graph: tuple | None = None) -> Candidates:
    """Move, merge and split candidates of a clustering (O(n k d) time, O(n k) memory); ``graph``: the
    :func:`neighbours` of ``vectors``, if already known."""
    x = np.asarray(vectors, np.float64)
    lab = np.asarray(labels)
    n = len(x)
    inv, m, W, S, Q, xx = _stats(x, lab)
    mu = S / W[:, None]
    dmu = ((x - mu[inv]) ** 2).sum(1)
    rep = np.full(m, -1)
    order = np.lexsort((dmu, inv))
    first = np.r_[True, inv[order][1:] != inv[order][:-1]]
    rep[inv[order][first]] = order[first]
    t = params.threshold
    # RMS distance of face j to the other faces of its cluster
    Wi, Qi, Si = W[inv], Q[inv], S[inv]
    with np.errstate(invalid="ignore", divide="ignore"):
        v = (xx * (Wi - 1) + (Qi - xx) - 2 * np.einsum("ij,ij->i", x, Si - x)) / (Wi - 1)
    own = np.where(Wi > 1, np.sqrt(np.maximum(np.nan_to_num(v, nan=1.0), 0)), 1.0)
    K, A_, B_, L_, O_, P_, CA, CB, NA, NO, DA = [], [], [], [], [], [], [], [], [], [], []
    i, d = graph if graph is not None else neighbours(x, params)
    fa = np.repeat(np.arange(n), i.shape[1])
    ca, cb = inv[fa], inv[i.ravel()]
    keep = (ca != cb) & (d.ravel() < params.edge + review.band)
    if keep.any():
        # moves: face -> each adjacent cluster, best (smallest L_a) per face
        key = np.unique(fa[keep] * m + cb[keep])
        f, c = key // m, key % m
        La = np.sqrt(np.maximum(xx[f] + Q[c] / W[c] - 2 * np.einsum("ij,ij->i", x[f], mu[c]), 0))
        o = np.lexsort((La, f))
        best = o[np.r_[True, f[o][1:] != f[o][:-1]]]
        f, c, La = f[best], c[best], La[best]
        ok = La < t + review.band
        f, c, La = f[ok], c[ok], La[ok]
        K.append(np.full(len(f), "move")), A_.append(f), B_.append(rep[c]), L_.append(La), O_.append(own[f])
        P_.append(W[c] + W[inv[f]] - 1), CA.append(inv[f]), CB.append(c)
        nbc, nbd = inv[i[f]], d[f]
        kk = i.shape[1]
        NA.append((nbc == c[:, None]).sum(1) / np.minimum(W[c], kk))
        NO.append((nbc == inv[f][:, None]).sum(1) / np.maximum(1, np.minimum(W[inv[f]] - 1, kk)))
        DA.append(np.where(nbc == c[:, None], nbd, 9.0).min(1))
        # merges: adjacent clusters of >= 2 faces each
        pr = np.unique(np.stack([np.minimum(ca[keep], cb[keep]), np.maximum(ca[keep], cb[keep])], 1), axis=0)
        A, B = pr[:, 0], pr[:, 1]
        big = (W[A] >= 2) & (W[B] >= 2)
        A, B = A[big], B[big]
        L = np.sqrt(np.maximum(Q[A] / W[A] + Q[B] / W[B] - 2 * np.einsum("ij,ij->i", mu[A], mu[B]), 0))
        ok = L < t + review.band
        A, B, L = A[ok], B[ok], L[ok]
        K.append(np.full(len(A), "merge")), A_.append(rep[A]), B_.append(rep[B]), L_.append(L), O_.append(L)
        P_.append(W[A] * W[B]), CA.append(A), CB.append(B)
        NA.append(np.zeros(len(A))), NO.append(np.zeros(len(A))), DA.append(L)
    # splits: per cluster of >= 3 faces, the face farthest from the rest
    Lr = np.where(W[inv] >= 3, own, -1.0)
    o = np.lexsort((-Lr, inv))
    j = o[np.r_[True, inv[o][1:] != inv[o][:-1]]]
    j = j[(Lr[j] > t - review.band)]
    r = rep[inv[j]]
    if (r == j).any():  # the farthest face is the representative: ask against the nearest other member
        for k in np.flatnonzero(r == j):
            mem = np.flatnonzero(inv == inv[j[k]])
            mem = mem[mem != j[k]]
            r[k] = mem[np.argmin(dmu[mem])]
    K.append(np.full(len(j), "split")), A_.append(j), B_.append(r), L_.append(Lr[j]), O_.append(Lr[j])
    P_.append(W[inv[j]] - 1), CA.append(inv[j]), CB.append(inv[j])
    NA.append(np.zeros(len(j))), NO.append(np.zeros(len(j))), DA.append(Lr[j])
    cat = [np.concatenate(z) for z in (K, A_, B_, L_, O_, P_, CA, CB, NA, NO, DA)]
    return Candidates(cat[0].astype(str), cat[1].astype(np.int64), cat[2].astype(np.int64), cat[3], cat[4],
                      cat[5], cat[6].astype(np.int64), cat[7].astype(np.int64), cat[8], cat[9], cat[10])


def probability(c: Candidates, threshold: float, rp: ReviewParams = REVIEW_DEFAULT) -> np.ndarray:
    """P(the answer is the one that changes the clustering): yes for move/merge, no for split."""
    t = threshold
    zm = (rp.m0 + rp.m1 * (c.L - t) + rp.m2 * (c.L - c.L_own) + rp.m3 * c.nn_a + rp.m4 * c.nn_own
          + rp.m5 * (c.d_a - t))
    z = np.where(c.kind == "move", zm,
                 np.where(c.kind == "merge", rp.g0 + rp.g1 * (c.L - threshold), rp.s0 + rp.s1 * (c.L - threshold)))
    return _sig(z)


def questions(
    vectors: np.ndarray,
    labels: np.ndarray,
    *,
    limit: int = 10,
    params: Params = DEFAULT,
    review: ReviewParams | None = None,
    answers: Answers | None = None,
    graph: tuple | None = None,
) -> list[Question]:
    """Up to ``limit`` questions, best expected gain first, never one already answered (or settled by an
    answer: clusters with a constraint between them are not asked about again; each face and each pair of
    clusters is asked about once per call)."""
    rp = review or REVIEW_DEFAULT
    x = np.asarray(vectors, np.float64)
    lab = np.asarray(labels)
    if len(x) < 2:
        return []
    c = candidates(x, lab, params, rp, graph)
    if not len(c.kind):
        return []
    gain = probability(c, params.threshold, rp) * np.minimum(c.pairs, rp.pair_cap)
    inv = np.unique(lab, return_inverse=True)[1]
    done = answers.pairs() if answers else set()
    linked = set()
    if answers:
        for a, b in answers.must_link + answers.cannot_link:
            linked.add((min(inv[a], inv[b]), max(inv[a], inv[b])))
            linked.add((int(a), int(inv[b])))
            linked.add((int(b), int(inv[a])))
    out: list[Question] = []
    used_faces: set = set()
    used_clusters: set = set()
    # two queues, each by expected gain, taken in a fixed proportion: joins (move / merge: what recall needs)
    # and splits (what precision needs); one queue by gain alone is all splits of loose stranger clusters,
    # whose P(no) is high but which fix one face each
    join = np.flatnonzero(c.kind != "split")
    spl = np.flatnonzero(c.kind == "split")
    queues = [join[np.argsort(-gain[join], kind="stable")], spl[np.argsort(-gain[spl], kind="stable")]]
    pos, picked, share = [0, 0], [0, 0], min(max(rp.split_share, 0.0), 1.0)

    def valid(k: int) -> bool:
        a, b, kind = int(c.a[k]), int(c.b[k]), str(c.kind[k])
        if tuple(sorted((a, b))) in done or a in used_faces:
            return False
        if kind == "merge" and ((int(c.ca[k]), int(c.cb[k])) in linked or (c.ca[k], c.cb[k]) in used_clusters):
            return False
        if kind == "move" and (a, int(c.cb[k])) in linked:
            return False
        return kind == "split" or not (int(c.ca[k]) in used_clusters and int(c.cb[k]) in used_clusters)

    while len(out) < limit:
        want = 1 if picked[1] < share * (len(out) + 1) else 0
        k = None
        for side in (want, 1 - want):  # the wanted queue's next valid question, else the other's
            q_, i_ = queues[side], pos[side]
            while i_ < len(q_) and not valid(int(q_[i_])):
                i_ += 1
            pos[side] = i_
            if i_ < len(q_):
                k, pos[side], picked[side] = int(q_[i_]), i_ + 1, picked[side] + 1
                break
        if k is None:
            break
        out.append(Question(int(c.a[k]), int(c.b[k]), str(c.kind[k]), float(gain[k]), float(c.L[k])))
        used_faces.add(int(c.a[k]))
        used_clusters.update((int(c.ca[k]), int(c.cb[k])))
    return out


def apply_answer(labels: np.ndarray, q: Question, same: bool) -> np.ndarray:
    """The clustering after one answer, as ``people.answer`` changes people: a yes to a move moves face a into
    b's cluster, a yes to a merge joins the two clusters, a no to a split (or to a move / merge between faces
    of one cluster) takes face a out on its own; other answers change nothing now (they are constraints)."""
    lab = np.asarray(labels).copy()
    la, lb = lab[q.a], lab[q.b]
    if same and la != lb:
        if q.kind == "move":
            lab[q.a] = lb
        else:
            lab[lab == la] = lb
    elif not same and la == lb:
        lab[q.a] = lab.max() + 1
    return lab


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

