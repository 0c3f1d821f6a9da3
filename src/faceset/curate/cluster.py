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

Memory O(n k) (edges) + O(m d) (cluster sums); time O(n k log n) heap work + O(deg * d) per merge.

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

    def with_(self, **kw) -> "Params":
        return replace(self, **kw)


# Person-disjoint check on identities_wild halves + ALL 9,767 utkface distractor faces (raw embeddings, as
# scan stores them; thresholds 0.48-0.58 at density 0.5): LFW pairwise F rises with the threshold on both
# halves (0.76 / 0.755 at 0.48, 0.955 / 0.929 at 0.54, 0.969 / 0.949 at 0.58, BCubed 0.934 / 0.903), and
# only from 0.58 on is every identity of the 24-person dev set one person (splits stay identity-disjoint
# there). The price at 0.58: 198 / 292 distractors join LFW people and the largest distractor-only cluster
# has 670 / 623 faces (6.9% / 6.4%; 102 at 0.48). Density is a first-run notion: incremental runs compare
# new faces without it.
DEFAULT = Params(threshold=0.58, density=0.5)


class _Stats:
    """Weighted running sums per cluster: W (weight), S (vector sum), Q (sum of w*|x|^2), n (faces)."""

    def __init__(self, x: np.ndarray, w: np.ndarray):
        self.W = w.astype(np.float64).copy()
        self.S = x.astype(np.float64) * self.W[:, None]
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
    parent = np.arange(n)  # parent[b] = a when b merged into a (a keeps the statistics)
    st = _Stats(x, w)
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
    # cluster-level cannot-link sets
    cl: dict[int, set] = {}
    for a, b in cannot_link:
        ra, rb = int(root[int(a)]), int(root[int(b)])
        if ra == rb:
            continue
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
    both = np.concatenate([src, dst]), np.concatenate([dst, src])
    for p in passive.tolist():
        cand = both[1][(both[0] == p)]
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


def _graph(x: np.ndarray, params: Params) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Candidate edges (src, dst) and, when density is on, each row's local scale / median local scale."""
    i, d = knn(x, x, max(params.k, params.density_k if params.density else 0), exclude_self=True)
    scale = None
    if params.density and d.shape[1]:
        r = d[:, : params.density_k].mean(1).astype(np.float64)
        scale = r / max(float(np.median(r)), 1e-6)
    i, d = i[:, : params.k], d[:, : params.k]
    src = np.repeat(np.arange(len(x)), i.shape[1])
    keep = d.ravel() < params.edge
    return src[keep], i.ravel()[keep], scale


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
) -> np.ndarray:
    """Labels 0..m-1 (numbered in order of each cluster's first row) for rows of ``vectors`` [n, d].

    ``must_link`` / ``cannot_link``: pairs of row indices (human answers, one-face-per-photo rules...).
    """
    x = np.ascontiguousarray(vectors, np.float32)
    n = len(x)
    if n == 0:
        return np.zeros(0, np.int64)
    src, dst, scale = _graph(x, params)
    active = np.ones(n, bool)
    if quality is not None and params.min_quality > 0:
        active = np.asarray(quality, np.float64) >= params.min_quality
        for a, b in must_link:  # a face a human placed is not passive
            active[int(a)] = active[int(b)] = True
    roots = _agglomerate(x, _weights(n, quality, params), src, dst, params, active=active,
                         must_link=must_link, cannot_link=cannot_link, scale=scale)
    return _renumber(roots)


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
) -> IncrementalResult:
    """Assign ``new`` rows against existing people (``old`` rows with ``old_labels`` >= 0, never moved).

    Existing people enter as whole clusters (statistics over ALL their faces, so a person is compared on
    its average, not on its closest face); only those within ``params.edge`` of some new face are looked at.
    Two existing people are never merged here; the pairs that would have merged are ``proposals``.
    ``quality``: per new row. Constraint pairs index the concatenation ``[new; old]`` (new first).
    """
    xn = np.ascontiguousarray(new, np.float32)
    xo = np.ascontiguousarray(old, np.float32)
    old_labels = np.asarray(old_labels, np.int64)
    n = len(xn)
    if n == 0:
        return IncrementalResult(np.zeros(0, np.int64))
    if len(xo) == 0:
        lab = cluster(xn, quality=quality, must_link=must_link, cannot_link=cannot_link, params=params)
        return IncrementalResult(-(lab + 1))
    # which existing people are within reach of a new face
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
    src_n, dst_n, _ = _graph(xn, params.with_(density=0.0))
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
    roots = _agglomerate(x_all, np.r_[w_new, W], src, dst, params, active=active, must_link=ml,
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
    return IncrementalResult(labels, props)


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

