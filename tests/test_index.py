"""VectorIndex (exact / HNSW) and the embedding sidecar, on real embeddings from the scanned workspace."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from faceset import open_workspace
from faceset.curate.graph import knn
from faceset.errors import WorkspaceError
from faceset.index import VectorIndex, ann_available, knn_graph

needs_ann = pytest.mark.skipif(not ann_available(), reason="faiss-cpu not installed")


@pytest.fixture(scope="module")
def real(scanned_ws):
    w = open_workspace(scanned_ws)
    e = w.catalog.faces.embeddings()
    w.close()
    assert len(e.ids) > 100
    return e


def _grown(vectors: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n vectors around the real ones (each a real face plus small noise): the real geometry, larger."""
    rng = np.random.default_rng(seed)
    base = vectors[rng.integers(0, len(vectors), n)]
    return (base + rng.normal(scale=0.03, size=base.shape)).astype(np.float32)


def _recall(a: np.ndarray, b: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(x[:k]) & set(y[:k])) / k for x, y in zip(a, b)]))


def test_exact_index_matches_blockwise_knn(real):
    ix = VectorIndex.build(real.ids, real.vectors)
    assert not ix.uses_ann
    ids, d = ix.search(real.vectors[:20], 5)
    pos, d2 = knn(real.vectors[:20], real.vectors, 5)
    assert (ids == real.ids[pos]).all()
    assert np.allclose(d, d2, atol=1e-5)
    assert (ids[:, 0] == real.ids[:20]).all()  # each face finds itself first


@needs_ann
def test_hnsw_recall_against_exact_on_real_embeddings(real):
    x = np.concatenate([real.vectors, _grown(real.vectors, 6000)])
    ids = np.arange(len(x)) + 1000
    ix = VectorIndex.build(ids, x, kind="hnsw")
    assert ix.uses_ann
    q = x[:500]
    got, dist = ix.search(q, 10)
    pos, _ = knn(q, x, 10)
    assert _recall(got, ids[pos], 10) >= 0.97
    assert (np.diff(dist, axis=1) >= -1e-5).all()  # nearest first


@needs_ann
def test_knn_graph_excludes_self_like_graph_knn(real):
    x = real.vectors
    i1, _ = knn(x, x, 8, exclude_self=True)
    i2, d2 = knn_graph(x, 8, index=VectorIndex.build(np.arange(len(x)), x, kind="hnsw"))
    assert not (i2 == np.arange(len(x))[:, None]).any()
    assert _recall(i2, i1, 8) >= 0.97
    assert np.isfinite(d2).all()


@pytest.mark.parametrize("kind", ["exact", pytest.param("hnsw", marks=needs_ann)])
def test_search_rows_in_blocks_answers_as_in_one_go(real, monkeypatch, kind):
    """search_rows queries in blocks of SEARCH_BLOCK rows (bounded temporaries): same answer, also for a
    subset of the index's rows and with each row's own id excluded."""
    import faceset.index as I

    x = real.vectors
    ids = np.arange(len(x), dtype=np.int64) * 3 + 7
    ix = VectorIndex.build(ids, x, kind=kind)
    sub = ids[::2]
    one = I.search_rows(ix, x[::2], 6, sub, exclude_ids=sub)
    monkeypatch.setattr(I, "SEARCH_BLOCK", 37)
    blocks = I.search_rows(ix, x[::2], 6, sub, exclude_ids=sub)
    assert np.array_equal(one[0], blocks[0]) and np.allclose(one[1], blocks[1])
    assert not (one[0] == np.arange(len(sub))[:, None]).any()  # own row excluded
    # a row is padded (-1) exactly when the proportionally larger ask held fewer than k subset rows (as
    # documented); which rows those are depends on the scan's face order, so compare with the index itself
    kk = min(len(ix), int(np.ceil(6 * len(ids) / len(sub))) + 8)
    f, _ = ix.search(x[::2], kk, exclude_ids=sub)
    assert np.array_equal((one[0] < 0).any(1), np.isin(f, sub).sum(1) < 6)
    assert (one[0] >= 0).all(1).mean() > 0.8


@pytest.mark.parametrize("kind", ["exact", pytest.param("hnsw", marks=needs_ann)])
def test_remove_really_removes_also_from_the_saved_file(real, tmp_path, kind):
    x = real.vectors
    ix = VectorIndex.build(real.ids, x, kind=kind)
    path = tmp_path / "faces.index"
    ix.save(path)
    gone = real.ids[:10]
    assert ix.remove(gone) == 10
    assert ix.remove(gone) == 0
    found, _ = ix.search(x[:10], 5)
    assert not np.isin(found, gone).any()
    ix.save(path)
    raw = path.read_bytes()
    for v in x[:10]:
        assert v.tobytes() not in raw  # no erased vector's bytes anywhere in the file
    assert x[10].tobytes() in raw
    back = VectorIndex.load(path)
    assert len(back) == len(x) - 10 and not np.isin(back.ids, gone).any()
    found, _ = back.search(x[:10], 5)
    assert not np.isin(found, gone).any()
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("kind", ["exact", pytest.param("hnsw", marks=needs_ann)])
def test_save_load_round_trip(real, tmp_path, kind):
    ix = VectorIndex.build(real.ids, real.vectors, kind=kind)
    ix.save(tmp_path / "i")
    back = VectorIndex.load(tmp_path / "i")
    assert back.uses_ann == ix.uses_ann
    assert (back.ids == ix.ids).all() and np.array_equal(back.vectors, ix.vectors)
    a, da = ix.search(real.vectors[:30], 7)
    b, db = back.search(real.vectors[:30], 7)
    assert (a == b).all() and np.allclose(da, db)
    # the HNSW keeps growing after a load
    extra = _grown(real.vectors, 5, seed=3)
    back.add(np.arange(5) + 10**9, extra)
    f, _ = back.search(extra, 1)
    assert (f[:, 0] == np.arange(5) + 10**9).all()


def test_add_refuses_duplicate_ids_and_load_refuses_garbage(real, tmp_path):
    ix = VectorIndex.build(real.ids[:5], real.vectors[:5])
    with pytest.raises(ValueError):
        ix.add(real.ids[:1], real.vectors[:1])
    (tmp_path / "bad").write_bytes(b"\0" * 100)
    with pytest.raises(WorkspaceError):
        VectorIndex.load(tmp_path / "bad")
    with pytest.raises(WorkspaceError):
        VectorIndex.load(tmp_path / "missing")


def test_short_answers_pad_with_minus_one(real):
    ix = VectorIndex.build(real.ids[:3], real.vectors[:3])
    f, d = ix.search(real.vectors[:1], 5)
    assert (f[0, 3:] == -1).all() and np.isinf(d[0, 3:]).all()


# -- the embedding sidecar --

def test_sidecar_matches_catalog_appends_and_rebuilds_without_erased_bytes(scanned_ws, tmp_path):
    from faceset import vectors

    root = tmp_path / "ws"
    shutil.copytree(scanned_ws, root)
    w = open_workspace(root)
    try:
        truth = w.catalog.faces.embeddings()
        v = vectors.sync(w)
        assert v.rebuilt and (v.ids == truth.ids).all() and np.array_equal(np.asarray(v.vectors), truth.vectors)
        again = vectors.sync(w)
        assert not again.rebuilt and again.appended == 0 and again.generation == v.generation
        # erasing faces: rebuilt into a new generation, the old files' bytes are gone
        gone = truth.ids[:3]
        with w.catalog.tx():
            w.catalog.faces.delete(gone)
        v2 = vectors.sync(w)
        assert v2.rebuilt and v2.generation == v.generation + 1
        assert not np.isin(v2.ids, gone).any() and len(v2) == len(truth.ids) - 3
        d = vectors.sidecar_dir(w)
        blob = b"".join(f.read_bytes() for f in d.iterdir())
        for x in truth.vectors[:3]:
            assert x.tobytes() not in blob
        assert v2.rows_of(gone).tolist() == [-1, -1, -1]
        assert vectors.shred(w) >= 3 and not list(d.iterdir())
        assert len(vectors.sync(w)) == len(v2)
    finally:
        w.close()


def test_sidecar_survives_an_interrupted_append(scanned_ws, tmp_path):
    from faceset import vectors

    root = tmp_path / "ws"
    shutil.copytree(scanned_ws, root)
    w = open_workspace(root)
    try:
        v = vectors.sync(w)
        d = vectors.sidecar_dir(w)
        # a kill -9 mid-append: bytes past meta.json's row count, meta unchanged
        for f in d.glob("*.f32"):
            with open(f, "ab") as fh:
                fh.write(b"\1" * 1000)
        v2 = vectors.sync(w)
        assert len(v2) == len(v) and np.array_equal(np.asarray(v2.vectors), np.asarray(v.vectors))
        # a torn meta.json: rebuilt from the catalog
        (d / "meta.json").write_text("{")
        v3 = vectors.sync(w)
        assert v3.rebuilt and (v3.ids == v.ids).all()
    finally:
        w.close()


def test_sidecar_appends_new_faces_and_notices_a_reused_id(scanned_ws, tmp_path):
    from faceset import vectors
    from faceset.catalog.faces import NewFace

    root = tmp_path / "ws"
    shutil.copytree(scanned_ws, root)
    w = open_workspace(root)
    try:
        truth = w.catalog.faces.embeddings()
        last = int(truth.ids[-1])
        img = w.catalog.faces.in_images([last])[0].image_id

        def face(vec):
            return NewFace(0, (1.0, 1.0, 20.0, 20.0), 1.0, "hog", None, True, 20.0, 1.0, 1.0, 0.0, 1.0,
                           np.asarray(vec, np.float32).tobytes(), None, None, "ok")

        with w.catalog.tx():
            w.catalog.faces.replace_for_image(img, [])
        v = vectors.sync(w)
        assert v.rebuilt
        with w.catalog.tx():
            w.catalog.faces.replace_for_image(img, [face(truth.vectors[-1])])
        v2 = vectors.sync(w)
        assert not v2.rebuilt and v2.appended == 1 and v2.generation == v.generation
        now = w.catalog.faces.embeddings()
        assert (v2.ids == now.ids).all() and np.array_equal(np.asarray(v2.vectors), now.vectors)
        # the same id reused for another vector (delete the top row, insert one): the sidecar must notice
        with w.catalog.tx():
            w.catalog.faces.replace_for_image(img, [face(truth.vectors[0] + 0.01)])
        after = w.catalog.faces.embeddings()
        assert after.ids[-1] == now.ids[-1]  # SQLite reused the id
        v3 = vectors.sync(w)
        assert np.array_equal(np.asarray(v3.vectors), after.vectors)
    finally:
        w.close()
