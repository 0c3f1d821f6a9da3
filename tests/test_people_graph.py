"""kNN graph and Chinese whispers: exactness, no dense matrix, determinism."""

import numpy as np

from faceset.curate import graph
from faceset.curate.graph import chinese_whispers, knn
from faceset.curate.people import _cluster, cluster_embeddings


def test_blockwise_knn_matches_brute_force(monkeypatch):
    monkeypatch.setattr(graph, "BLOCK_BYTES", 4 * 300 * 7)  # force many small blocks
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 128)).astype(np.float32)
    idx, dist = knn(x, x, 5, exclude_self=True)
    full = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    np.fill_diagonal(full, np.inf)
    want = np.argsort(full, axis=1)[:, :5]
    assert (idx == want).all()
    assert np.allclose(dist, np.take_along_axis(full, want, 1), atol=1e-3)


def _blobs(n_people, per, seed=0, spread=0.12):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, 128)).astype(np.float32)
    centres *= 1.0 / np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.normal(scale=spread / np.sqrt(128), size=(n_people * per, 128)).astype(np.float32)
    x = np.repeat(centres, per, 0) + noise
    return x, np.repeat(np.arange(n_people), per)


def test_clusters_separated_blobs_and_is_deterministic():
    x, y = _blobs(40, 6)
    a = cluster_embeddings(x, threshold=0.5)
    b = cluster_embeddings(x, threshold=0.5)
    assert (a == b).all()
    assert len(set(a)) == 40
    for p in range(40):
        assert len(set(a[y == p])) == 1


def test_incremental_new_faces_join_known_people_and_new_people_stay_new():
    x, y = _blobs(30, 8, seed=1)
    old = np.isin(np.arange(len(x)) % 8, [0, 1, 2]) & (y < 20)  # people 20..29 arrive only later
    lab_old = y[old] + 100
    lab_new = _cluster(x[~old], x[old], lab_old, 0.5, 30, 0)
    yn = y[~old]
    known = yn < 20
    assert (lab_new[known] == yn[known] + 100).all()
    assert (lab_new[~known] < 0).all() and len(set(lab_new[~known])) == 10


def test_chinese_whispers_does_not_merge_cliques_over_one_weak_edge():
    a = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    b = [(i + 5, j + 5) for i, j in a]
    e = np.array(a + b + [(4, 5)])
    w = np.r_[np.ones(len(a) + len(b)), 0.2]
    lab = chinese_whispers(10, e[:, 0], e[:, 1], w, seed=3)
    assert len(set(lab[:5])) == 1 and len(set(lab[5:])) == 1 and lab[0] != lab[9]


def test_union_find_long_chain():
    from faceset.curate.graph import UnionFind

    uf = UnionFind()
    for i in range(5000, 0, -1):
        uf.union(i, i - 1)
    uf.union(10001, 10000)
    gs = uf.groups()
    assert sorted(map(len, gs)) == [2, 5001] and uf.find(5000) == 0


def test_one_face_per_photo_keeps_the_best_and_respects_assigned_faces():
    x, _ = _blobs(1, 4, seed=2, spread=0.05)  # four faces that all look alike
    images = np.array([10, 10, 11, 12])
    quality = np.array([0.2, 0.9, 0.5, 0.5])
    lab = _cluster(x, np.zeros((0, 128), np.float32), np.zeros(0, np.int64), 0.5, 30, 0,
                   images=images, priority=quality, taken=[])
    assert lab[1] == lab[2] == lab[3] and lab[0] != lab[1]  # the weaker face of photo 10 is split off
    # an existing person already seen in photo 12 does not take a second face from it
    lab = _cluster(x[3:], x[:3], np.array([7, 7, 7]), 0.5, 30, 0, images=images[3:], priority=quality[3:],
                   taken=[(7, 12)])
    assert lab[0] < 0


def test_threshold_outside_the_distance_range_is_a_usage_error(ws):
    import pytest

    from faceset.curate import cluster_people
    from faceset.errors import UsageError

    for bad in (0, -0.1, 2, 5):
        with pytest.raises(UsageError, match="threshold"):
            cluster_people(ws, threshold=bad, progress=False)
    assert cluster_people(ws, progress=False).faces == 0  # an empty workspace is fine
