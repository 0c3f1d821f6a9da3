"""Embedding sidecar: every embedded face's vector in a memory-mapped float32 file, kept in step with the catalog.

Reading 1M embeddings through SQLite means 1M blobs turned into Python objects (seconds and a few GB); the
sidecar maps them instead (``open_vectors(ws).vectors`` is a read-only ``np.memmap`` [n, 128], ``.ids`` the
face ids, ascending). The catalog stays the source of truth: the sidecar is a derived artefact under
``cache/vectors/``, checked against :meth:`Faces.embedding_fingerprint` (count, min, max and sum of embedded
face ids) on every open, and

- appended to when the only change is new faces after its last id (scan, ingest of more photos): only those
  rows are read, in chunks (:meth:`Faces.iter_embeddings`);
- rewritten from the catalog otherwise (erasure, re-scan; also when the last ``TAIL`` rows' bytes differ from
  the catalog's: SQLite reuses the ids of deleted top rows, which count / sum alone could miss): into a new
  generation of files; the old generation's bytes are overwritten with zeros before they are unlinked, so
  an erased face's vector does not survive here (:func:`shred` does the same for forget).

Files: ``meta.json`` (generation, rows, fingerprint) plus ``ids.<gen>.i64`` and ``vec.<gen>.f32``. Writes go
data first (fsynced), then ``meta.json`` by temp + rename; readers trust only ``meta.json``'s row count, so a
kill -9 at any point leaves either the old or the new state (trailing bytes of an interrupted append are
ignored and cut on the next append). The sidecar assumes embeddings are never changed in place (scan replaces
a photo's face rows, giving new ids); :func:`sync` with ``full=True`` rebuilds regardless.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .catalog.faces import EMBED_DIM
from .errors import WorkspaceError
from .index import EXACT_BELOW, VectorIndex, _fsync_dir, _overwrite, ann_available

__all__ = ["Vectors", "open_vectors", "sync", "shred", "sidecar_dir", "face_index", "save_face_index",
           "read_vectors"]

CHUNK = 65536
TAIL = 64  # last rows whose bytes are compared with the catalog on every open
INDEX_FILE = "faces.index"  # the workspace's ANN index over every embedded face (ids = face ids)
SIDECAR_FROM = EXACT_BELOW  # embedded faces from which people / forget / dedup read vectors through here


def sidecar_dir(ws) -> Path:
    return Path(ws.cache_dir) / "vectors"


@dataclass
class Vectors:
    """Face ids (int64[n], ascending) and their embeddings (float32[n, 128], memory-mapped, read-only)."""

    ids: np.ndarray
    vectors: np.ndarray
    generation: int
    appended: int = 0   # rows this open read from the catalog and appended
    rebuilt: bool = False

    def __len__(self) -> int:
        return len(self.ids)

    def rows_of(self, face_ids) -> np.ndarray:
        """Row positions of these face ids (-1 where absent)."""
        q = np.asarray(face_ids, np.int64)
        if len(self.ids) == 0:
            return np.full(len(q), -1, np.int64)
        pos = np.minimum(np.searchsorted(self.ids, q), len(self.ids) - 1)
        return np.where(self.ids[pos] == q, pos, -1)


def _meta(d: Path) -> dict | None:
    try:
        m = json.loads((d / "meta.json").read_text())
        return m if m.get("format") == "faceset-vectors/1" else None
    except (OSError, ValueError):
        return None


def _files(d: Path, gen: int) -> tuple[Path, Path]:
    return d / f"ids.{gen}.i64", d / f"vec.{gen}.f32"


def _write_meta(d: Path, meta: dict) -> None:
    tmp = d / "meta.json.tmp"
    with open(tmp, "w") as f:
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, d / "meta.json")
    _fsync_dir(d)


def _append_rows(d: Path, gen: int, have: int, chunks) -> int:
    """Append chunks of (ids, vectors) after row ``have`` (cutting any interrupted tail); fsynced."""
    fi, fv = _files(d, gen)
    n = have
    with open(fi, "ab") as a, open(fv, "ab") as b:
        a.truncate(have * 8)
        b.truncate(have * 4 * EMBED_DIM)
        for e in chunks:
            a.write(np.ascontiguousarray(e.ids, "<i8").tobytes())
            b.write(np.ascontiguousarray(e.vectors, "<f4").tobytes())
            n += len(e.ids)
        a.flush()
        b.flush()
        os.fsync(a.fileno())
        os.fsync(b.fileno())
    return n


def _map(d: Path, meta: dict, **kw) -> Vectors:
    n = int(meta["rows"])
    fi, fv = _files(d, int(meta["generation"]))
    if n == 0:
        return Vectors(np.zeros(0, np.int64), np.zeros((0, EMBED_DIM), np.float32), int(meta["generation"]), **kw)
    ids = np.fromfile(fi, "<i8", count=n)
    vec = np.memmap(fv, "<f4", mode="r", shape=(n, EMBED_DIM))
    return Vectors(ids, vec, int(meta["generation"]), **kw)


def sync(ws, *, full: bool = False) -> Vectors:
    """Bring the sidecar up to date with the catalog (append or rebuild, see module docstring) and map it."""
    d = sidecar_dir(ws)
    d.mkdir(parents=True, exist_ok=True)
    faces = ws.catalog.faces
    now = faces.embedding_fingerprint()
    meta = _meta(d)
    if meta is not None and not full and _tail_matches(d, meta, faces):
        fp = tuple(meta["fingerprint"])
        if fp == tuple(now):
            return _map(d, meta)
        last = int(meta["last_id"])
        if last and tuple(faces.embedding_fingerprint(upto=last)) == fp:
            gen, had = int(meta["generation"]), int(meta["rows"])
            n = _append_rows(d, gen, had, faces.iter_embeddings(after=last, chunk=CHUNK))
            meta = {**meta, "rows": n, "fingerprint": list(now), "last_id": now.max_id}
            _write_meta(d, meta)
            return _map(d, meta, appended=n - had)
    old = int(meta["generation"]) if meta else None
    gen = (old or 0) + 1
    for f in _files(d, gen):
        f.unlink(missing_ok=True)
    n = _append_rows(d, gen, 0, faces.iter_embeddings(chunk=CHUNK))
    meta = {"format": "faceset-vectors/1", "generation": gen, "rows": n, "fingerprint": list(now),
            "last_id": now.max_id}
    _write_meta(d, meta)
    _shred_other_generations(d, keep=gen)
    return _map(d, meta, appended=n, rebuilt=True)


open_vectors = sync


def _tail_matches(d: Path, meta: dict, faces) -> bool:
    """The sidecar's last rows hold the catalog's bytes (a deleted-then-reused id changes them; counts and
    id sums alone could match)."""
    n = int(meta["rows"])
    if n == 0:
        return True
    try:
        v = _map(d, meta)
    except (OSError, ValueError):
        return False
    k = min(TAIL, n)
    cat = faces.last_embeddings(upto=int(meta["last_id"]), limit=k)
    return (len(cat.ids) == k and np.array_equal(cat.ids, v.ids[n - k:])
            and np.array_equal(cat.vectors, np.asarray(v.vectors[n - k:])))


def shred(ws) -> int:
    """Overwrite and delete every sidecar file (forget calls this; the next open rebuilds). Returns files."""
    d = sidecar_dir(ws)
    if not d.exists():
        return 0
    n = 0
    for f in sorted(d.iterdir()):
        if f.is_file():
            _overwrite(f)
            f.unlink()
            n += 1
    _fsync_dir(d)
    return n


def _shred_other_generations(d: Path, keep: int) -> None:
    for f in d.iterdir():
        parts = f.name.split(".")
        if len(parts) == 3 and parts[0] in ("ids", "vec") and parts[1].isdigit() and int(parts[1]) != keep:
            _overwrite(f)
            f.unlink()


def read_vectors(ws, face_ids) -> np.ndarray:
    """float32[n, 128] embeddings of these face ids (all embedded), from the sidecar (a view when they are
    all of its rows, in order); the sidecar is rebuilt once when one is missing from it."""
    ids = np.asarray(face_ids, np.int64)
    v = sync(ws)
    for again in (False, True):
        if len(ids) == len(v.ids) and np.array_equal(ids, v.ids):
            return v.vectors
        rows = v.rows_of(ids)
        if (rows >= 0).all():
            return np.asarray(v.vectors[rows])
        if not again:
            v = sync(ws, full=True)
    raise WorkspaceError("embedding sidecar does not match the catalog after a rebuild")


def face_index(ws, v: Vectors | None = None) -> VectorIndex | None:
    """The workspace's ANN index over every embedded face (ids = face ids), in step with the sidecar; None
    below :data:`SIDECAR_FROM` faces or without faiss (callers search exactly, as before).

    A derived artefact in ``cache/vectors/faces.index``: loaded when readable and its sampled bytes match the
    sidecar (a zeroed, partial or foreign file fails that and is rebuilt; kill -9 mid-save leaves the old
    file or the new one, see ``VectorIndex.save``), then reconciled: faces no longer embedded are removed
    (the HNSW is rebuilt lazily), new ones added. Erasure shreds the whole cache (privacy/redact), index
    included. ``ix.changed`` says whether :func:`save_face_index` has something to write."""
    v = v if v is not None else sync(ws)
    if len(v) < SIDECAR_FROM or not ann_available():
        return None
    path = sidecar_dir(ws) / INDEX_FILE
    ix = None
    if path.exists():
        try:
            ix = VectorIndex.load(path)
        except WorkspaceError:
            ix = None
        if ix is not None and not _index_matches(ix, v):
            ix = None
    if ix is None:
        return VectorIndex.build(v.ids, np.asarray(v.vectors))
    gone = ix.ids[~np.isin(ix.ids, v.ids)]
    if len(gone):
        ix.remove(gone)
        ix.changed = True
    new = ~np.isin(v.ids, ix.ids)
    if new.any():
        ix.add(v.ids[new], np.asarray(v.vectors[np.flatnonzero(new)]))
        ix.changed = True
    return ix


def save_face_index(ws, ix: VectorIndex | None) -> None:
    """Write the index when it changed (temp + fsync + rename; the old file's bytes are zeroed first)."""
    if ix is not None and ix.changed:
        ix.save(sidecar_dir(ws) / INDEX_FILE)
        ix.changed = False


def _index_matches(ix: VectorIndex, v: Vectors, sample: int = 256) -> bool:
    """The index's vectors for a sample of shared ids (the last rows and random ones) equal the sidecar's:
    a reused face id or a stale file shows up here."""
    if ix.dim != EMBED_DIM or len(ix.ids) == 0:
        return False
    common = np.flatnonzero(np.isin(v.ids, ix.ids))
    if len(common) == 0:
        return False
    pick = np.unique(np.r_[common[-TAIL:], np.random.default_rng(len(common)).choice(common, min(sample,
                                                                                               len(common)))])
    order = np.argsort(ix.ids, kind="stable")
    pos = order[np.searchsorted(ix.ids, v.ids[pick], sorter=order)]
    return bool(np.array_equal(ix.vectors[pos], np.asarray(v.vectors[pick])))
