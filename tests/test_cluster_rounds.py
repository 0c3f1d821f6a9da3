"""The rounds engine (cluster._agglomerate_rounds: mutual-best merges in numpy, what `cluster` uses from
ROUNDS_FROM rows) against the best-first heap on real embeddings, and every behaviour test of
test_cluster.py rerun here with the rounds engine forced for all sizes."""

from __future__ import annotations

import numpy as np
import pytest

from faceset import open_workspace
from faceset.curate import cluster as C
from test_cluster import (  # noqa: F401  (collected again here, under rounds_everywhere)
    test_a_bridge_face_does_not_merge_two_people,
    test_cannot_link_splits_and_must_link_joins,
    test_density_option_runs_and_keeps_separated_people,
    test_incremental_keeps_people_and_proposes_rather_than_merges,
    test_incremental_without_old_faces_numbers_new_people_negative,
    test_low_quality_faces_attach_but_never_bridge,
    test_no_chaining_along_a_line_of_look_alikes,
    test_separated_people_are_found_and_result_is_deterministic,
)


@pytest.fixture(autouse=True)
def rounds_everywhere(monkeypatch):
    monkeypatch.setattr(C, "ROUNDS_FROM", 0)


@pytest.fixture(scope="module")
def real(scanned_ws):
    w = open_workspace(scanned_ws)
    e = w.catalog.faces.embeddings()
    w.close()
    assert len(e.ids) > 100
    # the real faces plus jittered copies (new look-alikes): the real geometry, a few thousand rows
    rng = np.random.default_rng(0)
    base = e.vectors[rng.integers(0, len(e.vectors), 2500)]
    grown = (base + rng.normal(scale=0.04, size=base.shape)).astype(np.float32)
    return np.concatenate([e.vectors, grown])


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(C._renumber(a), C._renumber(b)))


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Pairwise F of partition b against partition a (1.0 = same clusters)."""
    c2 = lambda v: float((v * (v - 1) / 2).sum())  # noqa: E731
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    tp = c2(np.unique(np.stack([ia, ib], 1), axis=0, return_counts=True)[1].astype(np.float64))
    pa, pb = c2(np.bincount(ia).astype(np.float64)), c2(np.bincount(ib).astype(np.float64))
    return 2 * tp / (pa + pb) if pa + pb else 1.0


@pytest.mark.parametrize("threshold", [0.46, 0.58])
def test_rounds_give_the_heaps_clusters_without_density(real, threshold):
    p = C.DEFAULT.with_(threshold=threshold, density=0.0)
    heap = C.cluster(real, params=p, engine="heap")
    rounds = C.cluster(real, params=p, engine="rounds")
    assert len(set(heap)) < len(real) - 100  # merges happened
    assert _same_partition(heap, rounds) or _agreement(heap, rounds) >= 0.995


def test_rounds_stay_close_to_the_heap_with_density(real):
    heap = C.cluster(real, params=C.DEFAULT, engine="heap")
    rounds = C.cluster(real, params=C.DEFAULT, engine="rounds")
    assert _agreement(heap, rounds) >= 0.95  # density is not reducible: merge order matters a little


def test_rounds_respect_max_size_cannot_link_and_passive_faces(real):
    p = C.DEFAULT.with_(max_size=5, min_quality=0.5)
    free = C.cluster(real, params=C.DEFAULT.with_(density=0.0), engine="rounds")
    big = np.flatnonzero(np.bincount(free) >= 2)
    pairs = [tuple(np.flatnonzero(free == c)[:2]) for c in big[:20]]
    q = np.ones(len(real))
    q[::7] = 0.1  # passive: attach at the end, never carry merges
    lab = C.cluster(real, quality=q, cannot_link=pairs, params=p, engine="rounds")
    active = q >= 0.5
    assert np.bincount(lab[active]).max() <= 5
    assert all(lab[a] != lab[b] for a, b in pairs)
    heap = C.cluster(real, quality=q, cannot_link=pairs, params=p, engine="heap")
    assert _agreement(heap, lab) >= 0.95


def test_unknown_engine_is_refused(real):
    with pytest.raises(ValueError):
        C.cluster(real[:10], engine="fast")


@pytest.mark.parametrize("density", [0.0, 0.5])
def test_first_linkage_read_from_edge_distances_gives_the_same_clusters(real, density):
    """cluster() hands the rounds engine the graph's edge distances (two single faces: linkage = distance);
    with must-link groups (not single faces: their linkage comes from the sums) the result is the one the
    engine computes from the cluster sums alone."""
    p = C.DEFAULT.with_(density=density)
    src, dst, dist, scale, _ = C._graph(real, p)
    must = [(int(a), int(b)) for a, b in zip(range(0, 60, 2), range(1, 60, 2))]
    args = (real, np.ones(len(real)), src, dst, p)
    kw = dict(active=np.ones(len(real), bool), must_link=must, scale=scale)
    from_sums = C._agglomerate_rounds(*args, **kw)
    from_dist = C._agglomerate_rounds(*args, **kw, edge_d=dist)
    assert len(set(from_sums)) < len(real) - 100  # merges happened
    assert _same_partition(from_sums, from_dist) or _agreement(from_sums, from_dist) >= 0.995
    assert all(from_dist[a] == from_dist[b] for a, b in must)


def test_crowd_split_on_the_graphs_neighbours_matches_a_fresh_search(real):
    """The crowd split reads each face's nearest others from the clustering's kNN graph (exact here, below
    index.EXACT_BELOW) instead of searching again: same labels."""
    from faceset.curate import refine

    p = C.DEFAULT.with_(crowd_size=5, crowd_frac=0.05, threshold=0.62)
    lab = C._renumber(C.cluster(real, params=p.with_(crowd_size=0)))
    assert np.bincount(lab).max() > 5  # there are clusters to look at
    _, _, _, _, near = C._graph(real, p, nn=C.CROWD_K)
    fresh = refine.split_crowds(real, lab, p, C.cluster, k=C.CROWD_K)
    assert not np.array_equal(C._renumber(fresh), lab)  # something was split
    reused = refine.split_crowds(real, lab, p, C.cluster, k=C.CROWD_K, neighbours=near)
    assert np.array_equal(fresh, reused)
