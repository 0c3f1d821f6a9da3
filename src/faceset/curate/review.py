"""Assisted review: the yes/no "same person?" questions whose answers improve the clustering most.

Pure (numpy). Four kinds of question, the first three shown to the curator as a pair of faces (a, b):
- ``move``: face a (in cluster C, or alone) may belong to a graph-adjacent cluster A (every adjacent cluster
  within the band, not only a's closest) of face b (A's face closest to its mean). Evidence: L_a = RMS distance
  from a to A's faces, L_own = RMS distance from a to the rest of C (1.0 when a is alone), and the shape of both
  clusters (:data:`MOVE_FEATURES`). A yes moves a into A: |A| correct pairs gained, |C| - 1 wrong pairs gone.
- ``merge``: two graph-adjacent clusters A, B of >= 2 faces each with RMS linkage L: a yes gains |A| |B| pairs.
- ``split``: the face a of a cluster C farthest (RMS) from the rest of C, against C's representative b: a no
  removes |C| - 1 wrong pairs.
- ``cluster`` ("is this one person?", shown as a sheet of the cluster's faces; a = its representative, b = its
  farthest face): for clusters of >= ``cluster_min`` faces, ranked by P(no) from their crowd statistics
  (border share, spread, size). A no splits the cluster into :func:`split_pieces` (re-clustered stricter until
  it parts: a person's core stays together, look-alike strangers part), a yes pins it (must-links).
P(the answer is the one that improves the clustering) is a small logistic model per kind on that evidence
(:class:`ReviewParams`, fitted by bench/review.py on one person-disjoint half of identities_wild + utkface
distractors, with the simulated curator's answers as labels); the expected gain is P x the pairs fixed, and
questions are asked best expected gain first.

Why moves, and to every adjacent cluster: on unseen people at the shipped threshold the lost pairs are one
face of a person sitting in a small cluster of strangers (bench/review.py's oracle, fold 0: 41 of 43 lost
pieces are one face, 42 of them among strangers), not two big halves of a person; a merge question between
clusters would ask about the strangers' representative and get a no. The face's own person is often NOT its
closest adjacent cluster (the strangers it sits with are): with each face's closest cluster only, even a
perfect ranker reaches LFW F 0.974; with every adjacent cluster in the band, 0.989 (35 questions).

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
           "apply_answer", "split_pieces", "KINDS"]

KINDS = ("move", "merge", "split", "cluster")


# Evidence of a move question (face a -> cluster A of face b; C = a's own cluster), the columns of the move model.
# Why so many: a face of an unseen person sitting in a cluster of strangers is about as close to its own
# person's faces as to the strangers (L_a, L_own and d_a alone rank the useful moves in the thousands among
# ~150k candidates); what tells them apart is the shape of the target: a person is a compact island (no other
# cluster's face within the crowd radius, ``border``), a look-alike crowd is not, and a's place among the
# faces near A (``rank_in_b``, ``rev``: share of A's members with a among their 10 nearest faces).
MOVE_FEATURES = (
    "La",             # L_a - t
    "own",            # L_own - t (1.0 - t when a is alone)
    "La_own",         # L_a - L_own
    "d_a",            # distance from a to A's nearest face - t
    "nn_a",           # share of a's k nearest faces in A
    "nn_own",         # share of a's k nearest faces in C
    "log_b",          # log |A|
    "log_a",          # log |C|
    "rank_a",         # rank of A among a's candidate clusters by L_a (0 = closest; capped at 3)
    "La_best",        # L_a - a's smallest L_a
    "spread_b",       # RMS pairwise distance inside A (0 for one face)
    "spread_a",       # the same for C
    "border_b",       # share of A's members with another cluster's face within params.crowd_radius
    "border_a",       # the same for C
    "La_typ_b",       # L_a - the mean RMS of A's members to the rest of A (0 for one face)
    "rank_in_b",      # rank of a among the faces asked about for A by L_a (capped at 10)
    "own_typ_a",      # L_own - the mean RMS of C's members to the rest of C (0 alone)
    "single_b",       # A is one face
    "rev",            # share of A's members with a among their 10 nearest faces
)

# Evidence of a merge question (clusters A, B; "small" / "large" by face count): pieces of one person with
# several faces each (a person of 10 photos in 4 + 3 + 3) are told from look-alike crowds by the same shape.
MERGE_FEATURES = (
    "L",              # RMS linkage - t
    "d_min",          # the closest kNN edge between the two - t
    "log_small",      # log of the smaller cluster's faces
    "log_large",
    "border_small",   # border share (as for moves)
    "border_large",
    "spread_small",
    "spread_large",
    "L_typ",          # L - the mean of the two clusters' typical member RMS
    "cross",          # kNN edges between the two / (k x the smaller's faces)
    "rank",           # rank of the pair among either side's merge candidates by L (capped at 5)
)

# Evidence of a cluster question ("is this one person?", about a whole cluster of >= cluster_min faces).
CLUSTER_FEATURES = (
    "border",         # share of members with another cluster's face within params.crowd_radius
    "spread",         # RMS pairwise distance inside
    "log_size",       # log of its faces
    "typ",            # mean RMS of a member to the rest - t
)


@dataclass(frozen=True)
class ReviewParams:
    """Logistic P(the answer improves the clustering) per kind, on distances relative to the threshold t:
    move: sigmoid(move_w[0] + sum_i move_w[i + 1] MOVE_FEATURES[i]) (P(yes, and A holds more of a's person
    than C does)); merge: the same with merge_w over MERGE_FEATURES (P(yes)); split: sigmoid(s0 + s1 (L_own - t))
    (P(no)).
    ``band``: candidates farther than t + band are not asked. ``pair_cap``: pairs counted per answer at most
    (a person has tens of photos, not hundreds: without the cap the loose look-alike clusters of strangers,
    hundreds of faces, win every ranking with a tiny P)."""

    move_w: tuple = (-17.7082, -9.8292, -1.4784, -1.4177, -21.9741, 3.4165, 1.8314, 1.9181, -0.2164, -0.8158,
                     -3.1175, 4.6248, 4.9156, -1.5799, -1.9304, 7.2555, -0.2357, 21.0799, -1.4805, 0.4112)
    merge_w: tuple = (-11.0471, 3.264, -8.1024, -0.5468, -0.225, -0.1209, -0.62, 5.0658, 1.7304, -3.9206, 15.03,
                      -0.2054)
    s0: float = 3.343
    s1: float = 14.676
    band: float = 0.20
    pair_cap: float = 5.0
    split_share: float = 0.15  # share of the questions taken from the split queue (the rest: moves / merges)
    cluster_w: tuple = (0.0936, 5.9657, 12.5298, -1.4999, 15.7697)  # P(no) of a cluster question (CLUSTER_FEATURES)
    cluster_share: float = 0.10  # share of the questions that are cluster questions (0: none are asked)
    cluster_min: int = 6        # cluster questions are about clusters of at least this many faces


# fitted by bench/review.py: logistic regressions on fold 0's training half of identities_wild + all utkface at
# cluster.DEFAULT (moves / merges / cluster questions on standardised features, stored unstandardised); band,
# pair_cap and the shares set by hand (on the training half pair_cap 20 or split_share 0.1 tie with these; split
# 0.15 + cluster 0.10 keep the LFW curve of split 0.25 alone and add the cluster questions). Held out (the other
# half), LFW pairwise F after 0 / 10 / 50 / 100 answers per 1,000 faces: 0.949 / 0.968 / 0.972 / 0.9745, and
# distractor-only clusters of > 5 faces 353 -> 340 / 276 / 202 (the former distances-only model, each face's
# closest cluster only, no cluster questions: 0.949 / 0.957 / 0.963 / 0.964); bench/results/review.md.
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

    clusters: list = field(default_factory=list)  # (a, b) of cluster questions answered no (no pair constraint)

    def add(self, q: Question, same: bool) -> None:
        if q.kind == "cluster" and not same:  # "not one person" says nothing about the two faces shown
            self.clusters.append((q.a, q.b))
            return
        (self.must_link if same else self.cannot_link).append((q.a, q.b))

    def pairs(self) -> set:
        return {tuple(sorted(p)) for p in self.must_link + self.cannot_link + self.clusters}


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
    X: np.ndarray        # [rows, len(MOVE_FEATURES)]: moves: MOVE_FEATURES; merges: MERGE_FEATURES, zero-padded


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


def _rank_within(group: np.ndarray, value: np.ndarray) -> np.ndarray:
    """0-based rank of each row by ``value`` among the rows of its ``group``."""
    o = np.lexsort((value, group))
    first = np.r_[True, group[o][1:] != group[o][:-1]]
    start = np.flatnonzero(first)
    r = np.empty(len(o), np.int64)
    r[o] = np.arange(len(o)) - start[np.cumsum(first) - 1]
    return r


def _shape(inv, m, W, Q, mu, own, i, d, params: Params):
    """Per cluster: share of members with another cluster's face within the crowd radius (``border``), RMS
    pairwise distance inside (``spread``), mean RMS distance of a member to the rest (``typ``)."""
    border_face = ((inv[i] != inv[:, None]) & (d < params.crowd_radius)).any(1)
    border = np.bincount(inv, weights=border_face, minlength=m) / W
    spread = np.sqrt(np.maximum(2 * (Q / W - (mu * mu).sum(1)), 0))
    typ = np.bincount(inv, weights=np.where(W[inv] > 1, own, 0.0), minlength=m) / W
    return border, spread, typ


def _moves(x, inv, m, W, Q, xx, mu, own, shape, i, d, params: Params, review: ReviewParams):
    """Move candidates: every (face, graph-adjacent cluster) within the band, with their MOVE_FEATURES."""
    n, kk = i.shape
    t = params.threshold
    fa = np.repeat(np.arange(n), kk)
    ca, cb = inv[fa], inv[i.ravel()]
    keep = (ca != cb) & (d.ravel() < params.edge + review.band)
    if not keep.any():
        return None
    key = np.unique(fa[keep] * m + cb[keep])
    f, c = key // m, key % m
    La = np.sqrt(np.maximum(xx[f] + Q[c] / W[c] - 2 * np.einsum("ij,ij->i", x[f], mu[c]), 0))
    ok = La < t + review.band
    f, c, La = f[ok], c[ok], La[ok]
    if not len(f):
        return None
    so = inv[f]
    border, spread, typ = shape
    nbc, nbd = inv[i[f]], d[f]
    nn_a = (nbc == c[:, None]).sum(1) / np.minimum(W[c], kk)
    nn_own = (nbc == so[:, None]).sum(1) / np.maximum(1, np.minimum(W[so] - 1, kk))
    d_a = np.where(nbc == c[:, None], nbd, 9.0).min(1)
    rank_a = _rank_within(f, La)
    fmin = np.full(n, np.inf)
    np.minimum.at(fmin, f, La)
    rank_b = _rank_within(c, La)
    # reverse neighbours: how many of A's members have a among their 10 nearest faces
    k10 = min(10, kk)
    rk = np.unique(i[:, :k10].ravel() * m + np.repeat(inv, k10), return_counts=True)
    q = f * m + c
    pos = np.clip(np.searchsorted(rk[0], q), 0, len(rk[0]) - 1)
    rev = np.where(rk[0][pos] == q, rk[1][pos], 0) / W[c]
    single_b = W[c] < 2
    X = np.stack([La - t, own[f] - t, La - own[f], np.minimum(d_a, 1.5) - t, nn_a, nn_own, np.log(W[c]), np.log(W[so]),
                  np.minimum(rank_a, 3), La - fmin[f], spread[c], np.where(W[so] > 1, spread[so], 0.0), border[c],
                  border[so], np.where(single_b, 0.0, La - typ[c]), np.minimum(rank_b, 10),
                  np.where(W[so] > 1, own[f] - typ[so], 0.0), single_b.astype(np.float64), rev], 1)
    return f, c, La, so, X


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
    nf = len(MOVE_FEATURES)
    # RMS distance of face j to the other faces of its cluster
    Wi, Qi, Si = W[inv], Q[inv], S[inv]
    with np.errstate(invalid="ignore", divide="ignore"):
        v = (xx * (Wi - 1) + (Qi - xx) - 2 * np.einsum("ij,ij->i", x, Si - x)) / (Wi - 1)
    own = np.where(Wi > 1, np.sqrt(np.maximum(np.nan_to_num(v, nan=1.0), 0)), 1.0)
    K, A_, B_, L_, O_, P_, CA, CB, X_ = [], [], [], [], [], [], [], [], []
    i, d = graph if graph is not None else neighbours(x, params)
    shape = _shape(inv, m, W, Q, mu, own, i, d, params)
    mv = _moves(x, inv, m, W, Q, xx, mu, own, shape, i, d, params, review)
    if mv is not None:
        f, c, La, so, X = mv
        K.append(np.full(len(f), "move")), A_.append(f), B_.append(rep[c]), L_.append(La), O_.append(own[f])
        P_.append(W[c] + W[so] - 1), CA.append(so), CB.append(c), X_.append(X)
        # merges: adjacent clusters of >= 2 faces each
        fa = np.repeat(np.arange(n), i.shape[1])
        ca, cb = inv[fa], inv[i.ravel()]
        keep = (ca != cb) & (d.ravel() < params.edge + review.band)
        ek = np.minimum(ca[keep], cb[keep]) * m + np.maximum(ca[keep], cb[keep])
        pk, e_inv = np.unique(ek, return_inverse=True)
        n_edges = np.bincount(e_inv, minlength=len(pk)).astype(np.float64)
        d_min = np.full(len(pk), np.inf)
        np.minimum.at(d_min, e_inv, d.ravel()[keep])
        A, B = pk // m, pk % m
        big = (W[A] >= 2) & (W[B] >= 2)
        A, B, n_edges, d_min = A[big], B[big], n_edges[big], d_min[big]
        L = np.sqrt(np.maximum(Q[A] / W[A] + Q[B] / W[B] - 2 * np.einsum("ij,ij->i", mu[A], mu[B]), 0))
        ok = L < t + review.band
        A, B, L, n_edges, d_min = A[ok], B[ok], L[ok], n_edges[ok], d_min[ok]
        border, spread, typ = shape
        sm = W[A] <= W[B]
        Sm, Lg = np.where(sm, A, B), np.where(sm, B, A)
        rank = np.minimum(_rank_within(A, L), _rank_within(B, L)) if len(A) else np.zeros(0)
        Xg = np.stack([L - t, np.minimum(d_min, 1.5) - t, np.log(W[Sm]), np.log(W[Lg]), border[Sm], border[Lg],
                       spread[Sm], spread[Lg], L - (typ[A] + typ[B]) / 2, n_edges / (i.shape[1] * W[Sm]),
                       np.minimum(rank, 5)], 1)
        Xg = np.pad(Xg, ((0, 0), (0, nf - Xg.shape[1])))
        K.append(np.full(len(A), "merge")), A_.append(rep[A]), B_.append(rep[B]), L_.append(L), O_.append(L)
        P_.append(W[A] * W[B]), CA.append(A), CB.append(B), X_.append(Xg)
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
    P_.append(W[inv[j]] - 1), CA.append(inv[j]), CB.append(inv[j]), X_.append(np.zeros((len(j), nf)))
    # cluster questions: every cluster of >= cluster_min faces, shown as its representative and its farthest face
    if review.cluster_share > 0:
        border, spread, typ = shape
        cl = np.flatnonzero(W >= max(2, review.cluster_min))
        far = np.full(m, -1)
        o = np.lexsort((-own, inv))
        fi = np.r_[True, inv[o][1:] != inv[o][:-1]]
        far[inv[o][fi]] = o[fi]
        fb = far[cl]
        if len(cl) and (fb == rep[cl]).any():  # farthest is the representative: pair it with another member
            for k in np.flatnonzero(fb == rep[cl]):
                mem = np.flatnonzero(inv == cl[k])
                fb[k] = mem[mem != rep[cl[k]]][0]
        Xc = np.stack([border[cl], spread[cl], np.log(W[cl]), typ[cl] - t], 1)
        K.append(np.full(len(cl), "cluster")), A_.append(rep[cl]), B_.append(fb), L_.append(spread[cl])
        O_.append(spread[cl]), P_.append(W[cl] * (W[cl] - 1) / 2), CA.append(cl), CB.append(cl)
        X_.append(np.pad(Xc, ((0, 0), (0, nf - Xc.shape[1]))))
    cat = [np.concatenate(z) for z in (K, A_, B_, L_, O_, P_, CA, CB)]
    return Candidates(cat[0].astype(str), cat[1].astype(np.int64), cat[2].astype(np.int64), cat[3], cat[4],
                      cat[5], cat[6].astype(np.int64), cat[7].astype(np.int64), np.concatenate(X_))


def probability(c: Candidates, threshold: float, rp: ReviewParams = REVIEW_DEFAULT) -> np.ndarray:
    """P(the answer is the one that improves the clustering): yes for move/merge, no for split / cluster."""
    w = np.asarray(rp.move_w, np.float64)
    if len(w) != len(MOVE_FEATURES) + 1:
        raise ValueError(f"move_w needs {len(MOVE_FEATURES) + 1} numbers (intercept + MOVE_FEATURES), got {len(w)}")
    g = np.asarray(rp.merge_w, np.float64)
    if len(g) != len(MERGE_FEATURES) + 1:
        raise ValueError(f"merge_w needs {len(MERGE_FEATURES) + 1} numbers (intercept + MERGE_FEATURES), got {len(g)}")
    h = np.asarray(rp.cluster_w, np.float64)
    if len(h) != len(CLUSTER_FEATURES) + 1:
        raise ValueError(f"cluster_w needs {len(CLUSTER_FEATURES) + 1} numbers, got {len(h)}")
    zm = w[0] + c.X @ w[1:]
    zg = g[0] + c.X[:, :len(MERGE_FEATURES)] @ g[1:]
    zc = h[0] + c.X[:, :len(CLUSTER_FEATURES)] @ h[1:]
    z = np.where(c.kind == "move", zm, np.where(c.kind == "merge", zg, np.where(
        c.kind == "cluster", zc, rp.s0 + rp.s1 * (c.L - threshold))))
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
    order: str = "gain",
) -> list[Question]:
    """Up to ``limit`` questions, best expected gain first, never one already answered (or settled by an
    answer: clusters with a constraint between them are not asked about again, a face a yes placed is never
    asked to move or split off again; each face and each pair of clusters is asked about once per call).
    ``order`` "closest": the same candidates, closest pair first (splits: farthest face first; no cluster
    questions), no probability and no sizes (the naive baseline bench/review.py reports)."""
    if order not in ("gain", "closest"):
        raise ValueError(f"order must be gain or closest, not {order!r}")
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
    pinned = set()  # faces a yes placed where they are (must-linked inside their cluster): never asked to move
    if answers:
        for a, b in answers.must_link + answers.cannot_link:
            linked.add((min(inv[a], inv[b]), max(inv[a], inv[b])))
            linked.add((int(a), int(inv[b])))
            linked.add((int(b), int(inv[a])))
        for a, b in answers.must_link:
            if inv[a] == inv[b]:
                pinned.update((int(a), int(b)))
    out: list[Question] = []
    used_faces: set = set()
    used_clusters: set = set()
    whole: set = set()  # clusters asked about as a whole in this call (no split question about them too)
    # queues, each by expected gain, taken in fixed proportions: joins (move / merge: what recall needs),
    # splits (what precision needs) and cluster questions (look-alike crowds); one queue by gain alone is all
    # splits of loose stranger clusters, whose P(no) is high but which fix one face each
    join = np.flatnonzero((c.kind != "split") & (c.kind != "cluster"))
    spl = np.flatnonzero(c.kind == "split")
    clq = np.flatnonzero(c.kind == "cluster")
    queues = [join[np.argsort(-gain[join], kind="stable")], spl[np.argsort(-gain[spl], kind="stable")],
              clq[np.argsort(-gain[clq], kind="stable")]]
    share = [0.0, min(max(rp.split_share, 0.0), 1.0), min(max(rp.cluster_share, 0.0), 1.0)]
    if order == "closest":
        queues = [np.argsort(np.where(c.kind == "split", 2 - c.L, c.L), kind="stable"), join[:0], join[:0]]
        queues[0] = queues[0][c.kind[queues[0]] != "cluster"]
        share = [0.0, 0.0, 0.0]
    pos, picked = [0, 0, 0], [0, 0, 0]

    def valid(k: int) -> bool:
        a, b, kind = int(c.a[k]), int(c.b[k]), str(c.kind[k])
        if tuple(sorted((a, b))) in done or a in used_faces:
            return False
        if kind == "merge" and ((int(c.ca[k]), int(c.cb[k])) in linked or (c.ca[k], c.cb[k]) in used_clusters):
            return False
        if kind == "move" and ((a, int(c.cb[k])) in linked or a in pinned):
            return False
        if kind == "cluster":  # not with another question about the same cluster in one call
            return int(c.ca[k]) not in used_clusters
        if kind == "split":
            return int(c.ca[k]) not in whole and a not in pinned
        return not (int(c.ca[k]) in used_clusters and int(c.cb[k]) in used_clusters)

    while len(out) < limit:
        want = next((s_ for s_ in (2, 1) if picked[s_] < share[s_] * (len(out) + 1)), 0)
        k = None
        for side in (want, *(s_ for s_ in (0, 1, 2) if s_ != want)):  # the wanted queue's next, else another's
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
        if c.kind[k] == "cluster":
            whole.add(int(c.ca[k]))
    return out


def split_pieces(vectors: np.ndarray, params: Params = DEFAULT) -> np.ndarray:
    """Labels 0.. of the pieces a cluster the curator said is not one person falls into: re-clustered at
    ``params.threshold - crowd_step``, then stricter by ``crowd_step`` each time, down to ``crowd_floor``,
    until it parts (the first split only: a person's core stays together, the stranger goes; pieces still of
    ``cluster_min`` faces can be asked about again); one piece even at the floor: single faces. Why not
    straight to the floor: there a real person's photos (within-person RMS ~0.4-0.5) fall apart too (measured,
    bench/review.py fold 1: LFW F 0.992 -> 0.989 after 100 answers per 1,000 faces, against 0.994 this way)."""
    x = np.asarray(vectors, np.float32)
    if len(x) < 2:
        return np.zeros(len(x), np.int64)
    t = params.threshold - params.crowd_step
    while t >= params.crowd_floor - 1e-9:  # the first stricter threshold that parts it (a person's core stays)
        lab = cluster(x, params=params.with_(threshold=round(t, 6), crowd_size=0, density=0.0))
        if lab.max() > 0:
            return lab
        t -= params.crowd_step
    return np.arange(len(x))


def apply_answer(labels: np.ndarray, q: Question, same: bool, vectors: np.ndarray | None = None,
                 params: Params = DEFAULT) -> np.ndarray:
    """The clustering after one answer, as ``people.answer`` changes people: a yes to a move moves face a into
    b's cluster, a yes to a merge joins the two clusters, a no to a split (or to a move / merge between faces
    of one cluster) takes face a out on its own, a no to a cluster question splits the cluster into
    :func:`split_pieces` (needs ``vectors``); other answers change nothing now (they are constraints)."""
    lab = np.asarray(labels).copy()
    la, lb = lab[q.a], lab[q.b]
    if q.kind == "cluster":
        if not same and la == lb:
            if vectors is None:
                raise ValueError("a no to a cluster question needs the vectors to split the cluster")
            mem = np.flatnonzero(lab == la)
            pieces = split_pieces(np.asarray(vectors)[mem], params)
            lab[mem[pieces > 0]] = lab.max() + pieces[pieces > 0]
        return lab
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

