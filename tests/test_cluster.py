"""curate/cluster.py: average linkage on the kNN graph does not chain, honours constraints, keeps ids stable."""

import numpy as np
import pytest

from faceset.curate import graph
from faceset.curate.cluster import Params, cluster, cluster_incremental, linkage
from faceset.curate.review import Answers, apply, questions


def _blobs(n_people, per, seed=0, spread=0.12, dim=128):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n_people, dim))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    x = np.repeat(c, per, 0) + rng.normal(scale=spread / np.sqrt(dim), size=(n_people * per, dim))
    return x.astype(np.float32), np.repeat(np.arange(n_people), per)


def test_separated_people_are_found_and_result_is_deterministic():
    x, y = _blobs(40, 6)
    a = cluster(x, params=Params(threshold=0.5))
    assert (a == cluster(x, params=Params(threshold=0.5))).all()
    assert len(set(a)) == 40 and all(len(set(a[y == p])) == 1 for p in range(40))
    assert a[0] == 0 and (np.diff(np.unique(a, return_index=True)[1]) > 0).all()  # numbered by first row


def test_no_chaining_along_a_line_of_look_alikes():
    # 30 faces on a line, neighbours 0.3 apart: every link is below the threshold, the ends are 8.7 apart
    rng = np.random.default_rng(1)
    d = rng.normal(size=128)
    d /= np.linalg.norm(d)
    x = (np.arange(30)[:, None] * 0.3 * d[None]).astype(np.float32)
    lab = cluster(x, params=Params(threshold=0.5, edge=0.62))
    assert max(np.bincount(lab)) <= 3  # single link would make one cluster of 30


def test_a_bridge_face_does_not_merge_two_people():
    rng = np.random.default_rng(3)
    a, b = np.zeros(128), rng.normal(size=128)
    b = b / np.linalg.norm(b) * 0.7  # two people 0.7 apart
    pa = a + rng.normal(scale=0.03 / np.sqrt(128), size=(8, 128))
    pb = b + rng.normal(scale=0.03 / np.sqrt(128), size=(8, 128))
    bridge = (a + b) / 2  # 0.35 from both: single link would join everyone at 0.5
    x = np.concatenate([pa, pb, bridge[None]]).astype(np.float32)
    lab = cluster(x, params=Params(threshold=0.5))
    assert lab[0] != lab[8] and len(set(lab[:8])) == 1 and len(set(lab[8:16])) == 1
    sl = _single_link(x, 0.5)
    assert sl[0] == sl[8]  # the peer rule does chain here


def _single_link(x, t):
    uf = graph.UnionFind()
    i, d = graph.knn(x, x, 10, exclude_self=True)
    for r in range(len(x)):
        uf.find(r)
        for j, dd in zip(i[r], d[r]):
            if dd < t:
                uf.union(r, int(j))
    return np.array([uf.find(r) for r in range(len(x))])


def test_linkage_is_the_exact_rms_cross_distance():
    rng = np.random.default_rng(4)
    A, B = rng.normal(size=(5, 16)), rng.normal(size=(7, 16))
    want = np.sqrt(((A[:, None] - B[None]) ** 2).sum(-1).mean())
    st = lambda Z: (len(Z), Z.sum(0), (Z * Z).sum())  # noqa: E731
    assert linkage(st(A), st(B)) == pytest.approx(want, rel=1e-9)


def test_cannot_link_splits_and_must_link_joins():
    x, y = _blobs(3, 5, seed=5)
    base = cluster(x, params=Params(threshold=0.5))
    assert base[0] == base[1]
    lab = cluster(x, cannot_link=[(0, 1)], params=Params(threshold=0.5))
    assert lab[0] != lab[1]
    lab = cluster(x, must_link=[(0, 5)], params=Params(threshold=0.5))
    assert lab[0] == lab[5]


def test_low_quality_faces_attach_but_never_bridge():
    rng = np.random.default_rng(6)
    a = np.zeros(128)
    b = np.zeros(128)
    b[0] = 0.7
    pa = a + rng.normal(scale=0.03 / np.sqrt(128), size=(6, 128))
    pb = b + rng.normal(scale=0.03 / np.sqrt(128), size=(6, 128))
    blur = np.tile((a + b) / 2, (4, 1)) + rng.normal(scale=0.01 / np.sqrt(128), size=(4, 128))
    x = np.concatenate([pa, pb, blur]).astype(np.float32)
    q = np.r_[np.ones(12), np.full(4, 0.05)]
    lab = cluster(x, quality=q, params=Params(threshold=0.5, min_quality=0.1))
    assert lab[0] != lab[6]
    assert len(set(lab[12:]) & set(lab[:12])) <= 1  # at most attached, never joining the two


def test_density_option_runs_and_keeps_separated_people():
    x, y = _blobs(20, 5, seed=7)
    lab = cluster(x, params=Params(threshold=0.5, density=0.5))
    assert all(len(set(lab[y == p])) == 1 for p in range(20))


def test_incremental_keeps_people_and_proposes_rather_than_merges():
    x, y = _blobs(12, 6, seed=8)
    old = np.arange(len(x)) % 6 < 3
    old &= y < 8  # people 8..11 are new
    lab_old = y[old] + 100
    res = cluster_incremental(x[~old], x[old], lab_old, params=Params(threshold=0.5))
    yn = y[~old]
    known = yn < 8
    assert (res.labels[known] == yn[known] + 100).all()
    assert (res.labels[~known] < 0).all() and len(set(res.labels[~known])) == 4
    # two existing labels for one person: never merged, proposed
    lab_split = lab_old.copy()
    lab_split[(y[old] == 0) & (np.arange(old.sum()) % 2 == 0)] = 500
    res = cluster_incremental(x[~old], x[old], lab_split, params=Params(threshold=0.5))
    assert set(res.labels[yn == 0]) <= {100, 500}
    assert any({a, b} == {100, 500} for a, b, _ in res.proposals)


def test_incremental_without_old_faces_numbers_new_people_negative():
    x, y = _blobs(3, 4, seed=9)
    res = cluster_incremental(x, np.zeros((0, 128), np.float32), np.zeros(0, np.int64))
    assert set(res.labels) == {-1, -2, -3}


def test_review_questions_fix_a_wrong_merge_and_a_missed_one():
    x, y = _blobs(6, 5, seed=10, spread=0.12)
    p = Params(threshold=0.5)
    lab = cluster(x, params=p)
    # fake a bad clustering: person 0 and 1 joined, person 2 split in two
    bad = lab.copy()
    bad[y == 1] = bad[y == 0][0]
    bad[np.flatnonzero(y == 2)[:2]] = 99
    qs = questions(x, bad, limit=20, params=p)
    joins, splits = [q for q in qs if q.kind != "split"], [q for q in qs if q.kind == "split"]
    assert qs and all(q.a != q.b for q in qs) and all(g == sorted(g, key=lambda q: -q.gain) for g in (joins, splits))
    ans = Answers()
    for q in qs:
        ans.add(q, bool(y[q.a] == y[q.b]))
    new = apply(x, ans, params=p)
    for a, b in ans.must_link:
        assert new[a] == new[b]
    for a, b in ans.cannot_link:
        assert new[a] != new[b]
    assert not set((min(q.a, q.b), max(q.a, q.b)) for q in questions(x, new, limit=50, params=p, answers=ans)) \
        & ans.pairs()
