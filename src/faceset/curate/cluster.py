"""Identity clustering that does not chain: average linkage on the kNN graph, exact from cluster statistics.

Why not Chinese whispers / single links: a link between two faces closer than a threshold is transitive; on
9.7k one-photo-each people (utkface) chains of look-alikes put 79% of the faces into four "people". Here two
clusters A, B merge only when the root-mean-square distance over ALL their cross pairs is below
``threshold``::

    rms(A, B)^2 = mean_{a in A, b in B} |a - b|^2 = Q_A / W_A + Q_B / W_B - 2 mu_A . mu_B

(Q = weighted sum of squared norms, W = weight sum, mu = weighted mean). That is exact from three running
statistics per cluster, so no pair is ever missing, however large a person grows: the kNN graph (blockwise
exact, :func:`graph.knn`) only proposes WHICH clusters to compare; merges go best-first from a heap
(classic agglomerative average linkage, restricted to graph-adjacent clusters). One bridge face between two
people no longer merges them: the average over every cross pair stays large.

Two engines make the same merges: the best-first heap (:func:`_agglomerate`, a Python tuple per candidate
pair) below ``ROUNDS_FROM`` rows, and from there :func:`_agglomerate_rounds`, which merges every mutual-best
pair per round in numpy over an int32 edge array (average linkage is reducible; memory O(n k) numpy + the
cluster sums, no Python object per edge). The kNN graph comes from :mod:`faceset.index` (exact blockwise
below ``index.EXACT_BELOW`` rows, HNSW above, or the workspace's index when one is passed).

Constraints: ``must_link`` face pairs start in one cluster; ``cannot_link`` face pairs never end up in one
cluster (a merge that would join them is refused, not postponed). ``quality``: faces below
``params.min_quality`` never merge clusters; at the end each attaches to its best cluster if the linkage is
below the threshold (blurred, tiny faces embed alike and otherwise bridge people). ``quality`` also weights
the cluster statistics (``params.quality_weight``).

Incremental (:func:`cluster_incremental`): existing labels never change and two existing people are never
merged (the pairs that would merge are returned as proposals); new faces join an existing person or form new
ones (negative labels -1, -2, ... in order of first arrival), as ``people._cluster`` does.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np

from . import refine
from .graph import UnionFind, knn

__all__ = ["Params", "DEFAULT", "cluster", "cluster_incremental", "IncrementalResult", "linkage"]


@dataclass(frozen=True)
class Params:
    threshold: float = 0.50       # largest RMS cross-pair distance at which two clusters merge
    k: int = 20                   # neighbours per face in the candidate graph
    edge: float = 0.62            # kNN edges longer than this never propose a merge (also bounds the heap)
    min_quality: float = 0.0      # faces with quality below never merge clusters, they attach at the end
    quality_weight: bool = False  # weight each face by its quality (clipped to [0.05, 1]) in the statistics
    max_size: int = 0             # > 0: no cluster grows past this many faces (a guard, off by default)
    density: float = 0.0          # > 0: threshold scaled by (local scale / median)^density (crowded = stricter)
    density_k: int = 10           # local scale of a face: mean distance to its density_k nearest faces
    crowd_size: int = 0           # > 0: clusters above this size that are crowds get split (curate/refine.py)
    crowd_radius: float = 0.45    # a member is on a crowd's border when another cluster's face is this close
    crowd_frac: float = 0.3       # a cluster is a crowd when more than this share of its members is on the border
    crowd_step: float = 0.04      # a crowd is re-clustered this much stricter, again for each piece still a crowd
    crowd_floor: float = 0.42     # ... down to this threshold; below it a crowd becomes single faces

    def with_(self, **kw) -> "Params":
        return replace(self, **kw)


# Person-disjoint CV (bench/people.py --cv -> bench/results/people_cv.md): identities_wild (300 LFW people) in
# two halves, ALL 9,767 utkface faces as distractors on both sides, parameters chosen on one half, reported on
# the other. Threshold alone (density 0.5, CV-chosen 0.56): LFW pairwise F 0.948 / 0.966 but look-alike children
# make distractor-only clusters of 511 / 515 faces (utkface alone: largest 5.3%). Density 1.0 / 1.5 stop that
# (15-35 faces) but shatter people with many photos (3 synthetic people x 300 faces: 1-16% in the largest
# piece). The crowd split (curate/refine.py; both halves chose threshold 0.58, crowd_size 20, crowd_frac 0.2,
# crowd_radius 0.45): F 0.949 / 0.969, BCubed 0.906 / 0.936, largest distractor-only cluster 22 / 22, 245 / 171
# distractors in LFW people (292 / 198 without it), utkface alone largest 0.23%, large people kept 98-99% whole;
# still 353 / 363 distractor-only clusters of 6-22 faces (goal: none above 5). The 24-person dev set is
# unchanged by the step (tests/test_refine.py). Density is a first-run notion: incremental runs compare new
# faces without it; the crowd split there touches only new clusters. crowd_radius by the same CV
# (bench/results/people_cv_radius.md, 0.42-0.50): both halves chose 0.44, held-out identical to 0.45; 0.44-0.50 tie,
# 0.42 is worse. These values are for the plain dlib descriptor (scan/embed.py "raw"; a flip kind needs 0.56).
DEFAULT = Params(threshold=0.58, density=0.5, crowd_size=20, crowd_frac=0.2, crowd_radius=0.45)


class _Stats:
    """Weighted running sums per cluster: W (weight), S (vector sum), Q (sum of w*|x|^2), n (faces).
    ``dtype`` of S: float64, or float32 for large n (halves the biggest array; linkage error ~1e-6)."""

    def __init__(self, x: np.ndarray, w: np.ndarray, dtype=np.float64):
        self.W = w.astype(np.float64).copy()
        self.S = x.astype(dtype) * self.W[:, None].astype(dtype)
        self.Q = (x.astype(np.float64) ** 2).sum(1) * self.W
        self.n = np.ones(len(x), np.int64)
        self.R = self.W.copy()   # weighted sum of local scales (1 each unless density is on)

    def add_into(self, a: int, b: int) -> None:
        self.W[a] += self.W[b]
        self.S[a] += self.S[b]
        self.Q[a] += self.Q[b]
        self.n[a] += self.n[b]
        self.R[a] += self.R[b]


def linkage(stats_a: tuple, stats_b: tuple) -> float:
    """RMS cross-pair distance between two clusters given (W, S, Q) of each (see module docstring)."""
    (wa, sa, qa), (wb, sb, qb) = stats_a, stats_b
    v = qa / wa + qb / wb - 2.0 * float(np.dot(sa, sb)) / (wa * wb)
    return float(np.sqrt(max(v, 0.0)))


def _link_many(st: _Stats, a: int, others: np.ndarray, beta: float = 0.0) -> np.ndarray:
    """Linkage of cluster a to each of ``others``, divided by the density factor when ``beta`` > 0."""
    if len(others) == 0:
        return np.zeros(0)
    v = st.Q[a] / st.W[a] + st.Q[others] / st.W[others] - 2.0 * (st.S[others] @ st.S[a]) / (st.W[a] * st.W[others])
    L = np.sqrt(np.maximum(v, 0.0))
    if beta:
        L = L / ((st.R[a] + st.R[others]) / (st.W[a] + st.W[others])) ** beta
    return L


def _weights(n: int, quality, params: Params) -> np.ndarray:
    if quality is None or not params.quality_weight:
        return np.ones(n)
    return np.clip(np.asarray(quality, np.float64), 0.05, 1.0)


def _setup(x, w, params, must_link, cannot_link, frozen_groups, exact, scale, dtype=np.float64):
    """Initial clusters shared by both engines: statistics, frozen groups and must-link groups merged, and the
    cannot-link pairs as (root, root) of different clusters."""
    n = len(x)
    parent = np.arange(n)  # parent[b] = a when b merged into a (a keeps the statistics)
    st = _Stats(x, w, dtype)
    beta = params.density if scale is not None else 0.0
    if beta:
        st.R = st.W * scale  # scale: local scale / its median, per row
    if exact is not None and len(exact[1]):
        f0, S_, Q_ = exact
        st.S[f0:], st.Q[f0:] = S_, Q_
        st.n[f0:] = np.maximum(1, np.round(w[f0:]).astype(np.int64))
    frozen = np.zeros(n, bool)
    # initial clusters: frozen groups and must-link groups, merged through the union-find
    pre = UnionFind()
    if frozen_groups is not None:
        first: dict[int, int] = {}
        for i in np.flatnonzero(frozen_groups >= 0):
            g = int(frozen_groups[i])
            if g in first:
                pre.union(first[g], int(i))
            else:
                first[g] = int(i)
                pre.find(int(i))
            frozen[i] = True
    for a, b in must_link:
        a, b = int(a), int(b)
        if frozen[a] and frozen[b] and pre.find(a) != pre.find(b):
            continue  # two existing people: a must-link between them is a merge proposal, not ours to apply
        pre.union(a, b)
    root = np.arange(n)
    for g in pre.groups():
        r = g[0]
        for i in g[1:]:
            st.add_into(r, i)
            parent[i] = r
        root[g] = r
        if frozen[g].any():
            frozen[r] = True
    alive = np.zeros(n, bool)
    alive[np.unique(root)] = True
    cl_pairs = []
    for a, b in cannot_link:
        ra, rb = int(root[int(a)]), int(root[int(b)])
        if ra != rb:
            cl_pairs.append((ra, rb))
    return st, parent, root, frozen, alive, beta, cl_pairs


def _agglomerate(
    x: np.ndarray,
    w: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    params: Params,
    *,
    active: np.ndarray,
    must_link: Iterable[tuple[int, int]] = (),
    cannot_link: Iterable[tuple[int, int]] = (),
    frozen_groups: np.ndarray | None = None,
    proposals: list | None = None,
    exact: tuple[int, np.ndarray, np.ndarray] | None = None,
    scale: np.ndarray | None = None,
) -> np.ndarray:
    """Core: returns a root id per row (rows of one cluster share it).

    ``active``: rows allowed to carry merges (the others attach afterwards). ``frozen_groups``: per row, a
    group id >= 0 for rows that start as one fixed cluster (existing people: two groups never merge), -1 else.
    ``exact`` = (first, S, Q): rows first.. stand for whole existing people, with these exact sums
    (their ``w`` is their face count).
    """
    n = len(x)
    st, parent, root, frozen, alive, beta, cl_pairs = _setup(x, w, params, must_link, cannot_link, frozen_groups,
                                                            exact, scale)
    cl: dict[int, set] = {}
    for ra, rb in cl_pairs:
        cl.setdefault(ra, set()).add(rb)
        cl.setdefault(rb, set()).add(ra)
    # cluster adjacency from active-active edges
    keep = active[src] & active[dst]
    s, d = root[src[keep]], root[dst[keep]]
    m = s != d
    s, d = np.minimum(s[m], d[m]), np.maximum(s[m], d[m])
    nb: dict[int, set] = {}
    if len(s):
        pairs = np.unique(np.stack([s, d], 1), axis=0)
        for a, b in pairs.tolist():
            nb.setdefault(a, set()).add(b)
            nb.setdefault(b, set()).add(a)
    else:
        pairs = np.zeros((0, 2), np.int64)
    version = np.zeros(n, np.int64)
    heap: list = []
    if len(pairs):
        pa, pb = pairs[:, 0], pairs[:, 1]
        v = st.Q[pa] / st.W[pa] + st.Q[pb] / st.W[pb] - 2.0 * np.einsum(
            "ij,ij->i", st.S[pa], st.S[pb]) / (st.W[pa] * st.W[pb])
        L = np.sqrt(np.maximum(v, 0.0))
        if beta:
            L = L / ((st.R[pa] + st.R[pb]) / (st.W[pa] + st.W[pb])) ** beta
        ok = L < params.threshold
        heap = [(float(l), int(a), 0, int(b), 0) for l, (a, b) in zip(L[ok], pairs[ok].tolist())]
        heapq.heapify(heap)
    t = params.threshold
    while heap:
        l, a, va, b, vb = heapq.heappop(heap)
        if not (alive[a] and alive[b]) or version[a] != va or version[b] != vb:
            continue
        if b in cl.get(a, ()):
            continue
        if frozen[a] and frozen[b]:
            if proposals is not None:
                proposals.append((a, b, l))
            continue
        if params.max_size and st.n[a] + st.n[b] > params.max_size:
            continue
        # merge the smaller into the larger (small-to-large keeps set updates O(n log n))
        if len(nb.get(a, ())) < len(nb.get(b, ())):
            a, b = b, a
        st.add_into(a, b)
        parent[b] = a
        alive[b] = False
        frozen[a] = frozen[a] or frozen[b]
        version[a] += 1
        na, nbb = nb.setdefault(a, set()), nb.pop(b, set())
        for c in nbb:
            if c != a:
                s_ = nb[c]
                s_.discard(b)
                s_.add(a)
                na.add(c)
        na.discard(a)
        na.discard(b)
        if b in cl:
            cb = cl.pop(b)
            ca = cl.setdefault(a, set())
            for c in cb:
                cl[c].discard(b)
                cl[c].add(a)
                ca.add(c)
        others = np.fromiter(na, np.int64, len(na))
        L = _link_many(st, a, others, beta)
        for c, lc in zip(others.tolist(), L.tolist()):
            if lc < t:
                heapq.heappush(heap, (lc, min(a, c), int(version[min(a, c)]), max(a, c), int(version[max(a, c)])))
    out = parent.copy()
    while True:  # pointer jumping: every row to its cluster's surviving id
        nxt = out[out]
        if (nxt == out).all():
            break
        out = nxt
    # passive rows (low quality) attach to the best adjacent cluster within the threshold
    passive = np.flatnonzero(~active)
    if len(passive):
        out = _attach(x, w, out, passive, src, dst, params, cl, frozen_groups)
    return out


def _edge_linkage(st: _Stats, ea: np.ndarray, eb: np.ndarray, beta: float, chunk: int = 1 << 12) -> np.ndarray:
    """Linkage (density-scaled when ``beta``) of each edge (ea[i], eb[i]), in chunks (no [E, d] temporaries;
    4k-row chunks keep the two gathered [chunk, d] blocks in cache: ~1.5x faster than 64k, measured)."""
    out = np.empty(len(ea), np.float64)
    for i in range(0, len(ea), chunk):
        pa, pb = ea[i:i + chunk], eb[i:i + chunk]
        wa, wb = st.W[pa], st.W[pb]
        dot = np.einsum("ij,ij->i", st.S[pa], st.S[pb]).astype(np.float64)
        L = np.sqrt(np.maximum(st.Q[pa] / wa + st.Q[pb] / wb - 2.0 * dot / (wa * wb), 0.0))
        if beta:
            L = L / ((st.R[pa] + st.R[pb]) / (wa + wb)) ** beta
        out[i:i + chunk] = L
    return out


STAGES, STAGE_FROM = 8, 0.5  # density on: thresholds t * linspace(0.5, 1, 8), one after the other
ROUNDS_S32_FROM = 50_000  # rows; from here the rounds engine keeps cluster sums in float32 (memory, speed)


def _unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values by sort + neighbour compare (numpy 2's hash-based unique is ~10x slower on
    millions of int64 keys)."""
    a = np.sort(a)
    return a[np.r_[True, a[1:] != a[:-1]]] if len(a) else a


def _agglomerate_rounds(
    x: np.ndarray,
    w: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    params: Params,
    *,
    active: np.ndarray,
    must_link: Iterable[tuple[int, int]] = (),
    cannot_link: Iterable[tuple[int, int]] = (),
    frozen_groups: np.ndarray | None = None,
    proposals: list | None = None,
    exact: tuple[int, np.ndarray, np.ndarray] | None = None,
    scale: np.ndarray | None = None,
    edge_d: np.ndarray | None = None,
) -> np.ndarray:
    """Same contract and result as :func:`_agglomerate` (the heap), in rounds of numpy over an edge array.
    ``edge_d``: the kNN distance of each (src, dst) edge (only when rows are faces, not :func:`cluster_incremental`'s
    person rows): the first linkage of two single faces is read from it instead of recomputed.

    Why: the heap holds a Python tuple per candidate pair and a Python set of neighbours per cluster (3.8 GB at
    100k faces). Average linkage is reducible (merging two clusters never brings the result closer to a third
    than the nearer of the two was), so merging every *mutual best* pair below the threshold at once gives the
    merges the best-first heap makes (reciprocal-nearest-neighbour agglomeration); the globally closest pair is
    always mutual, so each round makes progress. State: edges (int32 roots a < b, float64 linkage, a
    ``blocked`` flag for vetoed pairs: cannot-link, two frozen clusters (a proposal), ``max_size``; a block
    lifts when either side changes, as the heap re-pushes a changed pair). Per round only the edges of merged
    clusters are contracted, deduplicated and re-linked. Memory O(E) numpy + the cluster sums.
    """
    n = len(x)
    dtype = np.float32 if n >= ROUNDS_S32_FROM else np.float64
    st, parent, root, frozen, alive, beta, cl_pairs = _setup(x, w, params, must_link, cannot_link, frozen_groups,
                                                            exact, scale, dtype)
    idt = np.int32 if n < 2**31 - 1 else np.int64
    keep = active[src] & active[dst]
    s, d = root[src[keep]], root[dst[keep]]
    m = s != d
    key = np.minimum(s[m], d[m]).astype(np.int64) * n + np.maximum(s[m], d[m])
    del s, d
    if edge_d is None:
        key = _unique(key)
    else:  # carry each edge's kNN distance through the dedup (a pair's two directions hold the same one)
        dd = np.asarray(edge_d, np.float32)[keep][m]
        order = np.argsort(key)
        key, dd = key[order], dd[order]
        del order
        first = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, bool)
        key, dd = key[first], dd[first]
        del first
    del m, keep
    ea, eb = (key // n).astype(idt), (key % n).astype(idt)
    del key
    if edge_d is None:
        L = _edge_linkage(st, ea, eb, beta)
    else:
        # two single faces: their linkage IS their distance (whatever their weights); only the other
        # pairs (must-link groups, ...) need the cluster sums: the first linkage pass was ~a fifth of the engine
        one = (st.n[ea] == 1) & (st.n[eb] == 1)
        L = np.empty(len(ea), np.float64)
        L[one] = dd[one]
        if beta:
            pa, pb = ea[one], eb[one]
            L[one] /= ((st.R[pa] + st.R[pb]) / (st.W[pa] + st.W[pb])) ** beta
            del pa, pb
        L[~one] = _edge_linkage(st, ea[~one], eb[~one], beta)
        del dd, one
    blocked = np.zeros(len(ea), bool)
    cl_key = _unique(np.array([min(a, b) * n + max(a, b) for a, b in cl_pairs], np.int64))
    # thresholds rising in steps to the real one: with density on, linkage is not reducible, and a stage
    # lets the close merges settle before far pairs may merge (closer to the heap's global order)
    stages = list(np.linspace(params.threshold * STAGE_FROM, params.threshold, STAGES)[:-1]) if beta else []
    stages.append(params.threshold)
    t = stages.pop(0)
    mapto = np.arange(n, dtype=idt)
    touched = np.zeros(n, bool)
    best_l = np.full(n, np.inf)
    best_o = np.full(n, n, np.int64)
    while True:
        live = np.flatnonzero(~blocked & (L < t))
        if not len(live):
            if not stages:
                break
            t = stages.pop(0)
            continue
        la, lb, ll = ea[live], eb[live], L[live]
        np.minimum.at(best_l, la, ll)
        np.minimum.at(best_l, lb, ll)
        ta, tb = ll == best_l[la], ll == best_l[lb]
        np.minimum.at(best_o, la[ta], lb[ta])  # ties: the smaller other id (the globally first pair is mutual)
        np.minimum.at(best_o, lb[tb], la[tb])
        mut = ta & tb & (best_o[la] == lb) & (best_o[lb] == la)
        best_l[la], best_l[lb], best_o[la], best_o[lb] = np.inf, np.inf, n, n
        mi = live[mut]
        pa, pb = ea[mi].astype(np.int64), eb[mi].astype(np.int64)
        del la, lb, ll, ta, tb, mut, live
        veto = np.isin(pa * n + pb, cl_key) if len(cl_key) else np.zeros(len(mi), bool)
        ff = frozen[pa] & frozen[pb] & ~veto
        if proposals is not None and ff.any():
            proposals.extend((int(a), int(b), float(l)) for a, b, l in zip(pa[ff], pb[ff], L[mi[ff]]))
        veto |= ff
        if params.max_size:
            veto |= st.n[pa] + st.n[pb] > params.max_size
        blocked[mi[veto]] = True
        go = ~veto
        pa, pb = pa[go], pb[go]
        if not len(pa):
            continue
        st.W[pa] += st.W[pb]
        st.S[pa] += st.S[pb]
        st.Q[pa] += st.Q[pb]
        st.n[pa] += st.n[pb]
        st.R[pa] += st.R[pb]
        parent[pb] = pa
        alive[pb] = False
        frozen[pa] |= frozen[pb]
        mapto[pb] = pa
        touched[pa] = touched[pb] = True
        ch = touched[ea] | touched[eb]
        ci = np.flatnonzero(ch)
        na, nb = mapto[ea[ci]], mapto[eb[ci]]
        ok = na != nb
        key = _unique(np.minimum(na[ok], nb[ok]).astype(np.int64) * n + np.maximum(na[ok], nb[ok]))
        del na, nb, ok, ci
        new_a, new_b = (key // n).astype(idt), (key % n).astype(idt)
        del key
        un = ~ch
        ea = np.concatenate([ea[un], new_a])
        eb = np.concatenate([eb[un], new_b])
        L = np.concatenate([L[un], _edge_linkage(st, new_a, new_b, beta)])
        blocked = np.concatenate([blocked[un], np.zeros(len(new_a), bool)])
        del un, ch, new_a, new_b
        if len(cl_key):
            ca, cb = mapto[cl_key // n].astype(np.int64), mapto[cl_key % n].astype(np.int64)
            cl_key = _unique(np.minimum(ca, cb) * n + np.maximum(ca, cb))
        mapto[pb] = pb
        touched[pa] = touched[pb] = False
    out = parent.copy()
    while True:  # pointer jumping: every row to its cluster's surviving id
        nxt = out[out]
        if (nxt == out).all():
            break
        out = nxt
    passive = np.flatnonzero(~active)
    if len(passive):
        cl: dict[int, set] = {}
        for k in cl_key.tolist():
            a, b = divmod(k, n)
            cl.setdefault(a, set()).add(b)
            cl.setdefault(b, set()).add(a)
        out = _attach(x, w, out, passive, src, dst, params, cl, frozen_groups)
    return out


def _attach(x, w, out, passive, src, dst, params, cl, frozen_groups) -> np.ndarray:
    """Each passive row joins the adjacent active cluster with the smallest linkage < threshold, if any.
    Passive rows never change the statistics other passive rows see (order does not matter)."""
    act = np.ones(len(x), bool)
    act[passive] = False
    roots = np.unique(out[act])
    pos = {int(r): i for i, r in enumerate(roots)}
    W = np.zeros(len(roots))
    S = np.zeros((len(roots), x.shape[1]))
    Q = np.zeros(len(roots))
    idx = np.array([pos[int(r)] for r in out[act]], np.int64)
    np.add.at(W, idx, w[act])
    np.add.at(S, idx, x[act] * w[act][:, None])
    np.add.at(Q, idx, (x[act].astype(np.float64) ** 2).sum(1) * w[act])
    res = out.copy()
    is_p = np.zeros(len(x), bool)
    is_p[passive] = True
    bs, bd = np.concatenate([src, dst]), np.concatenate([dst, src])
    order = np.argsort(bs, kind="stable")  # edges by source (CSR): each passive row's neighbours in O(log E)
    bs, bd = bs[order], bd[order]
    for p in passive.tolist():
        cand = bd[np.searchsorted(bs, p):np.searchsorted(bs, p, "right")]
        cand = cand[act[cand]]
        if len(cand) == 0:
            continue
        rs = np.unique(out[cand])
        ci = np.array([pos[int(r)] for r in rs])
        xp = x[p].astype(np.float64)
        v = (xp @ xp) + Q[ci] / W[ci] - 2.0 * (S[ci] @ xp) / W[ci]
        L = np.sqrt(np.maximum(v, 0.0))
        for j in np.argsort(L, kind="stable"):
            if L[j] >= params.threshold:
                break
            r = int(rs[j])
            if r in cl.get(int(out[p]), ()):  # cannot-link from this face's own (singleton or must) cluster
                continue
            res[p] = r
            break
    return res


CROWD_K = 10  # neighbours per face the crowd split looks at (refine.split_crowds' k), kept from the graph


def _graph(x: np.ndarray, params: Params, index=None, ids=None,
           nn: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, tuple | None]:
    """Candidate edges (src, dst; int32 below 2^31 rows), their distances (float32) and, when density is on,
    each row's local scale / median local scale; with ``nn`` > 0 also the first ``nn`` columns of the kNN
    answer (int32 rows, float32 distances, -1 / inf pads) for the crowd split. Exact blockwise kNN below
    ``index.EXACT_BELOW`` rows (or given no ANN), the vector index above."""
    k = max(params.k, params.density_k if params.density else 0, nn)
    from ..index import knn_graph

    i, d = knn_graph(x, k, index=index, ids=ids)
    scale = None
    if params.density and d.shape[1]:
        r = d[:, : params.density_k].mean(1).astype(np.float64)
        scale = r / max(float(np.median(r)), 1e-6)
    idt = np.int32 if len(x) < 2**31 - 1 else np.int64
    near = (i[:, :nn].astype(idt), np.ascontiguousarray(d[:, :nn], np.float32)) if nn else None
    kc = min(params.k, d.shape[1])
    keep = (d[:, :kc] < params.edge).ravel()  # also drops the -1 pads of short ANN answers (distance inf)
    dst = i[:, :kc].ravel()[keep].astype(idt)
    dist = np.ascontiguousarray(d[:, :kc]).ravel()[keep].astype(np.float32)
    del i, d
    src = np.repeat(np.arange(len(x), dtype=idt), kc)[keep]
    return src, dst, dist, scale, near


_agglomerate_rounds.takes_edge_d = True  # cluster() hands it the graph's edge distances
_ENGINES = {"rounds": _agglomerate_rounds, "heap": _agglomerate}
# Rows from which "auto" uses the rounds engine. Below it the heap stays: without density both agree
# (identities_wild + utkface, 11.6k faces: pairwise F 0.9996 between the two partitions, identical at 0.46),
# but the density factor is not reducible, so at the shipped density 0.5 the two orders differ in the large
# distractor clusters (same LFW F 0.8674; pairwise F 0.816 between the partitions): small workspaces keep
# the results (and the README numbers) they had. The heap's memory (a Python tuple per pair) is what caps it.
ROUNDS_FROM = 20_000


def _engine(name: str, n: int):
    if name == "auto":
        name = "heap" if n < ROUNDS_FROM else "rounds"
    if name not in _ENGINES:
        raise ValueError(f"engine must be auto, rounds or heap, not {name!r}")
    return _ENGINES[name]


def _renumber(roots: np.ndarray) -> np.ndarray:
    _, first, inv = np.unique(roots, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inv].astype(np.int64)


def cluster(
    vectors: np.ndarray,
    *,
    quality: Sequence[float] | np.ndarray | None = None,
    must_link: Iterable[tuple[int, int]] = (),
    cannot_link: Iterable[tuple[int, int]] = (),
    params: Params = DEFAULT,
    engine: str = "auto",
    index=None,
    index_ids: np.ndarray | None = None,
) -> np.ndarray:
    """Labels 0..m-1 (numbered in order of each cluster's first row) for rows of ``vectors`` [n, d].

    ``must_link`` / ``cannot_link``: pairs of row indices (human answers, one-face-per-photo rules...).
    ``engine``: "rounds" (numpy mutual-best rounds), "heap" (best-first) or "auto" (heap below
    :data:`ROUNDS_FROM` rows, rounds from there; see :func:`_agglomerate_rounds`).
    ``index``: a :class:`faceset.index.VectorIndex` holding these rows under ``index_ids`` (ascending;
    default row numbers) for the kNN graph; without one, one is built from ``index.EXACT_BELOW`` rows
    (exact blockwise kNN below).
    """
    x = np.ascontiguousarray(vectors, np.float32)
    n = len(x)
    if n == 0:
        return np.zeros(0, np.int64)
    src, dst, dist, scale, near = _graph(x, params, index=index, ids=index_ids,
                                         nn=CROWD_K if params.crowd_size else 0)
    active = np.ones(n, bool)
    if quality is not None and params.min_quality > 0:
        active = np.asarray(quality, np.float64) >= params.min_quality
        for a, b in must_link:  # a face a human placed is not passive
            active[int(a)] = active[int(b)] = True
    eng = _engine(engine, n)
    kw = {"edge_d": dist} if getattr(eng, "takes_edge_d", False) else {}
    roots = eng(x, _weights(n, quality, params), src, dst, params, active=active, must_link=must_link,
                cannot_link=cannot_link, scale=scale, **kw)
    del src, dst, dist, scale
    return _renumber(refine.split_crowds(x, _renumber(roots), params, cluster, quality=quality, must_link=must_link,
                                         k=CROWD_K, neighbours=near))


@dataclass
class IncrementalResult:
    labels: np.ndarray                      # per new row: an existing label (>= 0) or a new one (-1, -2, ...)
    proposals: list = field(default_factory=list)  # (label_a, label_b, linkage): existing people that would merge


def cluster_incremental(
    new: np.ndarray,
    old: np.ndarray,
    old_labels: np.ndarray,
    *,
    quality: Sequence[float] | np.ndarray | None = None,
    must_link: Iterable[tuple[int, int]] = (),
    cannot_link: Iterable[tuple[int, int]] = (),
    params: Params = DEFAULT,
    engine: str = "auto",
    index=None,
    new_ids: np.ndarray | None = None,
    old_ids: np.ndarray | None = None,
) -> IncrementalResult:
    """Assign ``new`` rows against existing people (``old`` rows with ``old_labels`` >= 0, never moved).

    Existing people enter as whole clusters (statistics over ALL their faces, so a person is compared on
    its average, not on its closest face); only those within ``params.edge`` of some new face are looked at.
    Two existing people are never merged here; the pairs that would have merged are ``proposals``.
    ``quality``: per new row. Constraint pairs index the concatenation ``[new; old]`` (new first).
    ``index``: a :class:`faceset.index.VectorIndex` holding the old rows under ``old_ids`` and the new
    ones under ``new_ids`` (both ascending; the workspace index keyed by face id) for the new -> old
    neighbours and, with many new rows, their graph; exact blockwise kNN without one or below its cut-off.
    """
    xn = np.ascontiguousarray(new, np.float32)
    xo = np.ascontiguousarray(old, np.float32)
    old_labels = np.asarray(old_labels, np.int64)
    n = len(xn)
    if n == 0:
        return IncrementalResult(np.zeros(0, np.int64))
    if len(xo) == 0:
        lab = cluster(xn, quality=quality, must_link=must_link, cannot_link=cannot_link, params=params,
                      engine=engine, index=index if new_ids is not None else None, index_ids=new_ids)
        return IncrementalResult(-(lab + 1))
    # which existing people are within reach of a new face
    from ..index import EXACT_BELOW, search_rows

    ann = index is not None and old_ids is not None and (index.uses_ann or index._wants_ann())
    if ann and len(xo) >= EXACT_BELOW:
        io, do = search_rows(index, xn, params.k, old_ids)
        io, do = np.maximum(io, 0), np.where(io >= 0, do, np.inf)  # pads: distance inf, never an edge
    else:
        io, do = knn(xn, xo, params.k)
    touched = np.unique(old_labels[io[do < params.edge]])
    uniq = touched
    # one row per touched person: its statistics over all its faces (weights: face counts)
    W = np.zeros(len(uniq))
    S = np.zeros((len(uniq), xo.shape[1]))
    Q = np.zeros(len(uniq))
    sel = np.isin(old_labels, uniq)
    gi = np.searchsorted(uniq, old_labels[sel])
    np.add.at(W, gi, 1.0)
    np.add.at(S, gi, xo[sel].astype(np.float64))
    np.add.at(Q, gi, (xo[sel].astype(np.float64) ** 2).sum(1))
    # graph among new faces + new -> touched people
    big = ann and new_ids is not None and n >= EXACT_BELOW
    src_n, dst_n, _, _, _ = _graph(xn, params.with_(density=0.0), index if big else None, new_ids if big else None)
    m = (do < params.edge) & np.isin(old_labels[io], uniq)
    rows = np.repeat(np.arange(n), io.shape[1])[m.ravel()]
    ppl = n + np.searchsorted(uniq, old_labels[io].ravel()[m.ravel()])
    src = np.concatenate([src_n, rows])
    dst = np.concatenate([dst_n, ppl])
    g = len(uniq)
    # the person rows' vectors are their means; _Stats is overwritten with the exact sums below
    x_all = np.concatenate([xn, (S / W[:, None]).astype(np.float32)]) if g else xn
    w_new = _weights(n, quality, params)
    active = np.ones(n + g, bool)
    if quality is not None and params.min_quality > 0:
        active[:n] = np.asarray(quality, np.float64) >= params.min_quality
    frozen_groups = np.r_[np.full(n, -1), np.arange(g)]
    # constraints given on [new; old] rows map old rows to their person row
    old_pos = {}
    if g:
        for j in np.flatnonzero(sel):
            old_pos[n + int(j)] = n + int(np.searchsorted(uniq, old_labels[j]))

    def remap(pairs):
        out = []
        for a, b in pairs:
            a, b = int(a), int(b)
            if (a >= n and a not in old_pos) or (b >= n and b not in old_pos):
                continue  # an old face out of reach: the constraint cannot bite
            out.append((old_pos.get(a, a), old_pos.get(b, b)))
        return out

    ml, cl = remap(must_link), remap(cannot_link)
    for a, b in ml:
        if a < n:
            active[a] = True
        if b < n:
            active[b] = True
    proposals: list = []
    roots = _engine(engine, len(x_all))(x_all, np.r_[w_new, W], src, dst, params, active=active, must_link=ml,
                         cannot_link=cl, frozen_groups=frozen_groups, proposals=proposals, exact=(n, S, Q))
    labels = np.empty(n, np.int64)
    person_of_root = {}
    for j in range(g):
        person_of_root.setdefault(int(roots[n + j]), int(uniq[j]))
    nxt = -1
    fresh: dict[int, int] = {}
    for i in range(n):
        r = int(roots[i])
        if r in person_of_root:
            labels[i] = person_of_root[r]
        else:
            if r not in fresh:
                fresh[r] = nxt
                nxt -= 1
            labels[i] = fresh[r]
    props = sorted({(min(int(uniq[a - n]), int(uniq[b - n])), max(int(uniq[a - n]), int(uniq[b - n])), round(l, 4))
                    for a, b, l in _proposal_rows(proposals, roots, n)})
    return IncrementalResult(refine.split_new_crowds(xn, xo, old_labels, labels, params, cluster, quality=quality,
                                                     must_link=must_link), props)


def _proposal_rows(proposals, roots, n):
    """Map root ids of refused frozen-frozen merges back to person rows (a root is the smallest member
    row of its union; for frozen clusters that member may be a new row, so look the person row up)."""
    rep = {}
    for j in range(n, len(roots)):
        rep.setdefault(int(roots[j]), j)
    for a, b, l in proposals:
        ra, rb = rep.get(int(_find_root(roots, a))), rep.get(int(_find_root(roots, b)))
        if ra is not None and rb is not None and ra != rb:
            yield ra, rb, l


def _find_root(roots, a):
    return roots[a]

