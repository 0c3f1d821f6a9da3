"""The scale paths on a real workspace, with the cut-offs lowered so the small test set takes them: people
clustering through the sidecar + the workspace ANN index, forget's candidate search over the sidecar, the
index as a derived artefact (shredded by forget, rebuilt when stale or damaged)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import read_labels
from faceset import index as I
from faceset import open_workspace
from faceset import vectors as V

needs_ann = pytest.mark.skipif(not I.ann_available(), reason="faiss-cpu not installed")


@pytest.fixture
def scale_paths(monkeypatch):
    """Every workspace counts as large: sidecar reads, the face index (HNSW), forget's range search."""
    monkeypatch.setattr(V, "SIDECAR_FROM", 50)
    monkeypatch.setattr(I, "EXACT_BELOW", 50)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return open_workspace(dst)


def _selfie(data_dir, who="angelina_jolie"):
    labels = read_labels(data_dir / "identities")
    return data_dir / "identities" / sorted(r["file"] for r in labels if r["identity"] == who)[0]


@needs_ann
def test_people_through_sidecar_and_index_match_the_small_path(scanned_ws, tmp_path, monkeypatch):
    from faceset.curate import cluster_people

    small = _copy(scanned_ws, tmp_path / "small")
    r_small = cluster_people(small, progress=False)
    assert not (small.cache_dir / "vectors" / V.INDEX_FILE).exists()
    monkeypatch.setattr(V, "SIDECAR_FROM", 50)
    monkeypatch.setattr(I, "EXACT_BELOW", 50)
    big = _copy(scanned_ws, tmp_path / "big")
    r_big = cluster_people(big, progress=False)
    assert (big.cache_dir / "vectors" / V.INDEX_FILE).exists()
    assert I.VectorIndex.load(big.cache_dir / "vectors" / V.INDEX_FILE).uses_ann
    # same faces, same people (HNSW recall on a few hundred faces is ~1; the engine is the heap below ROUNDS_FROM)
    pa = {f["face_id"]: f["person_id"] for f in __import__("faceset").curate.people_listing(small)["faces"]}
    pb = {f["face_id"]: f["person_id"] for f in __import__("faceset").curate.people_listing(big)["faces"]}
    assert pa.keys() == pb.keys() and r_small.people == r_big.people
    groups_a = sorted(sorted(f for f in pa if pa[f] == p) for p in set(pa.values()))
    groups_b = sorted(sorted(f for f in pb if pb[f] == p) for p in set(pb.values()))
    assert groups_a == groups_b
    # a rerun loads the saved index (nothing new to add) and changes nothing
    again = cluster_people(big, progress=False)
    assert again.assigned_now == 0 and again.people == r_big.people
    small.close()
    big.close()


@needs_ann
def test_forget_candidates_equal_the_full_scan_and_no_vector_survives(curated_ws, tmp_path, data_dir,
                                                                      monkeypatch):
    from faceset.curate import cluster_people
    from faceset.privacy import forget
    from faceset.privacy.forget import find_matches

    ws = _copy(curated_ws, tmp_path / "ws")
    selfie = _selfie(data_dir)
    full = find_matches(ws, [selfie])
    monkeypatch.setattr(V, "SIDECAR_FROM", 50)
    monkeypatch.setattr(I, "EXACT_BELOW", 50)
    cluster_people(ws, progress=False)  # writes the sidecar and the face index (HNSW)
    d = ws.cache_dir / "vectors"
    assert (d / V.INDEX_FILE).exists() and list(d.glob("vec.*.f32"))
    ranged = find_matches(ws, [selfie])
    key = lambda ms: sorted((m.face_id, m.certainty, m.rms, m.person_distance) for m in ms)  # noqa: E731
    assert full and key(full) == key(ranged)
    erased = [m.face_id for m in ranged if m.certainty == "certain"]
    blobs = [bytes(r[0]) for r in ws.catalog.q(
        f"SELECT embedding FROM faces WHERE id IN ({','.join('?' * len(erased))})", erased)]
    assert blobs and all(b in (d / V.INDEX_FILE).read_bytes() for b in blobs)  # the search below can find them
    forget(ws, [selfie])
    files = [p for p in ws.root.rglob("*") if p.is_file()]
    hits = [str(p.relative_to(ws.root)) for p in files for b in blobs if b[:64] in p.read_bytes()]
    assert not hits, hits[:5]
    # the next run rebuilds sidecar and index without her
    cluster_people(ws, progress=False)
    raw = (d / V.INDEX_FILE).read_bytes() + b"".join(p.read_bytes() for p in d.glob("vec.*.f32"))
    assert not any(b[:64] in raw for b in blobs)
    ws.close()


@needs_ann
def test_a_damaged_or_stale_index_is_rebuilt(scanned_ws, tmp_path, scale_paths):
    ws = _copy(scanned_ws, tmp_path / "ws")
    v = V.sync(ws)
    ix = V.face_index(ws, v)
    assert ix is not None and ix.uses_ann and len(ix) == len(v)
    V.save_face_index(ws, ix)
    path = ws.cache_dir / "vectors" / V.INDEX_FILE
    good = path.read_bytes()
    loaded = V.face_index(ws, v)
    assert not loaded.changed and np.array_equal(loaded.ids, ix.ids)
    for damage in (b"\0" * len(good), good[: len(good) // 2], b"not an index"):  # zeroed / cut by kill -9
        path.write_bytes(damage)
        again = V.face_index(ws, v)
        assert again.changed and len(again) == len(v) and np.array_equal(np.sort(again.ids), v.ids)
    # a stale file: one face's vector differs from the sidecar (a reused id) -> rebuilt, not trusted
    stale = I.VectorIndex.build(v.ids, np.asarray(v.vectors))
    stale.vectors[-1] += 0.5
    stale.save(path)
    again = V.face_index(ws, v)
    assert again.changed
    pos = int(np.flatnonzero(again.ids == v.ids[-1])[0])
    assert np.array_equal(again.vectors[pos], np.asarray(v.vectors[-1]))
    # faces no longer embedded leave the index; new ones join it
    V.save_face_index(ws, again)
    sub = V.Vectors(v.ids[:-5], np.asarray(v.vectors[:-5]), v.generation)
    fewer = V.face_index(ws, sub)
    assert fewer.changed and set(fewer.ids.tolist()) == set(sub.ids.tolist())
    ws.close()


def test_within_is_an_exact_range_search(scanned_ws):
    ws = open_workspace(scanned_ws)
    e = ws.catalog.faces.embeddings()
    ws.close()
    q = e.vectors[:3] + 0.01
    for r in (0.3, 0.5, 0.62):
        d = np.sqrt(((e.vectors[:, None, :] - q[None]) ** 2).sum(-1)).min(1)
        want = np.flatnonzero(d <= r)
        got = I.within(q, e.vectors, r, block=17)
        # float32 rounding at the boundary only
        assert set(want) <= set(got) and all(abs(d[g] - r) < 1e-4 for g in set(got) - set(want))
