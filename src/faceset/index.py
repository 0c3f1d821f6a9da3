"""Nearest-neighbour search behind one small interface: exact below a size cut-off, HNSW (faiss) above it.

    ix = VectorIndex.build(ids, vectors)      # int64 ids, float32 [n, d]
    found, dist = ix.search(q, k)             # [nq, k] ids (-1 pads) and Euclidean distances, nearest first
    ix.add(ids, vectors); ix.remove(ids); ix.save(path); VectorIndex.load(path)

Choice (bench/results/scale.json, ``ann_choice``; 100k synthetic face embeddings, 2 shared cores): faiss
``IndexHNSWFlat`` M=32, efConstruction=80, efSearch=64: recall@10 0.989 vs exact, build 80 s, 2000 queries
0.6 s. usearch HNSW (connectivity 16) reached 0.981 but built in 250 s; faiss IVF-Flat (nlist 1024) built in
29 s but recall@10 was 0.80 (nprobe 16) / 0.88 (nprobe 32): face embeddings are not clustered enough for
coarse quantisation. For people clustering (bench/results/scale.json, 100k): the HNSW graph's pairwise F is
0.8417 against 0.8415 on the exact graph (edge recall 0.972 over edges that can propose merges); M=16 /
efConstruction=40 builds 2.5x faster end to end (92 s vs 228 s) at F 0.8409 (within 0.001 of exact), so it is
the default now (M=32 / 80 stays available: ``m=``, ``ef_construction=``; tests/test_index.py holds recall@10
>= 0.97 on real embeddings). efSearch (same 100k set and exact graph, F of the shipped clustering; directed
recall of the exact edges < 0.62): 64 -> F 0.8409 (recall 0.896), 48 -> 0.8400 (0.871), 40 -> 0.8394 (0.855),
32 -> 0.8383 (0.837); M=12 / efC=24 / efS=40 -> 0.8309 (0.717): 48 is the default (search ~1.3x faster than
64, F within 0.0015 of exact). Re-measured for the all-rows self-join (300k, 2 shared cores): IVF-Flat
nlist 1024 / nprobe 64 recalls 0.90 of those edges but its search alone takes ~4x HNSW's build + search
(~800 s vs 174 s), nlist 2048 / nprobe 32 only 0.74; faiss NN-descent (100k, K=24, 8 iterations) 0.958 in
~1.3x HNSW's time, fewer iterations collapse (5: 0.53); so HNSW stays. Exact blockwise numpy
(:func:`faceset.curate.graph.knn`, :func:`within`) answers a few queries against 100k rows in ~0.1 s, so
single queries (forget's range search, the blocklist) stay exact; the ANN pays off for all-rows kNN graphs
(clustering, embedding dedup).

Erasure: ``remove`` drops the rows from the index's own arrays at once AND discards the HNSW structure (faiss
HNSW cannot delete; a tombstone would keep the vector bytes and its graph links, from which a vector can be
approximately rebuilt as the mean of its neighbours). Until the next :meth:`rebuild` (explicit, or lazily at
the next bulk search of >= ``REBUILD_AT_QUERIES`` rows) searches run exact, so results stay right, just
slower for bulk work. :meth:`save` never writes a stale HNSW: the file holds exactly the live rows (+ the
HNSW of exactly those rows when current). It is written to a temp file, fsynced, renamed over the old one;
the old file's bytes are overwritten first (``shred=True``), so a removed vector does not survive in the
index file. A crash mid-save leaves either the old file or the new one (a zeroed old file fails to load,
and callers rebuild: the index is a derived artefact, the catalog is the truth).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .errors import WorkspaceError

__all__ = ["VectorIndex", "EXACT_BELOW", "ann_available", "knn_graph", "search_rows", "within"]

EXACT_BELOW = 50_000       # rows; below this an exact search of every row is cheaper than building HNSW
REBUILD_AT_QUERIES = 5_000  # a stale HNSW is rebuilt before a search with at least this many query rows
SEARCH_BLOCK = 1 << 16     # query rows per block in search_rows (bounds its temporaries)
HNSW_M = 16
EF_CONSTRUCTION = 40
EF_SEARCH = 48
FORMAT = "faceset-vector-index/1"


def exact_knn(query, base, k, **kw):
    """:func:`faceset.curate.graph.knn` (blockwise exact), imported on use: curate imports this module."""
    from .curate.graph import knn

    return knn(query, base, k, **kw)


def ann_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class VectorIndex:
    """Ids + float32 vectors, searched exactly or through an HNSW graph (see module docstring)."""

    def __init__(self, dim: int = 128, *, exact_below: int | None = None, kind: str = "auto",
                 ef_search: int = EF_SEARCH, m: int = HNSW_M, ef_construction: int = EF_CONSTRUCTION):
        if kind not in ("auto", "exact", "hnsw"):
            raise ValueError(f"kind must be auto, exact or hnsw, not {kind!r}")
        self.dim = int(dim)
        self.exact_below = int(EXACT_BELOW if exact_below is None else exact_below)
        self.kind = kind
        self.ef_search = int(ef_search)
        self.m, self.ef_construction = int(m), int(ef_construction)
        self.ids = np.zeros(0, np.int64)
        self.vectors = np.zeros((0, self.dim), np.float32)
        self._hnsw = None  # faiss index over self.vectors in row order, or None (exact / stale)
        self.changed = True  # differs from its file (vectors.save_face_index writes only then)

    # -- building --
    @classmethod
    def build(cls, ids, vectors, **kw) -> "VectorIndex":
        """A new index over these rows (ids must be unique)."""
        x = np.ascontiguousarray(vectors, np.float32)
        ix = cls(x.shape[1] if x.ndim == 2 else 128, **kw)
        ix.add(ids, x)
        return ix

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def uses_ann(self) -> bool:
        """Whether searches go through a current HNSW graph right now."""
        return self._hnsw is not None

    def _wants_ann(self) -> bool:
        if self.kind == "exact" or not ann_available():
            return False
        return self.kind == "hnsw" or len(self.ids) >= self.exact_below

    def add(self, ids, vectors) -> None:
        """Append rows (ids not already present). HNSW grows incrementally when it is current."""
        ids = np.asarray(ids, np.int64).ravel()
        x = np.ascontiguousarray(vectors, np.float32).reshape(len(ids), self.dim)
        if len(ids) == 0:
            return
        if len(np.unique(ids)) != len(ids) or np.isin(ids, self.ids).any():
            raise ValueError("ids must be unique and not already in the index")
        self.ids = np.concatenate([self.ids, ids])
        self.vectors = np.concatenate([self.vectors, x]) if len(self.vectors) else x.copy()
        self.changed = True
        if self._hnsw is not None:
            self._hnsw.add(x)
        elif self._wants_ann():
            self.rebuild()

    def remove(self, ids) -> int:
        """Drop these ids (absent ones are ignored); returns how many went. Their vectors leave the arrays at
        once and the HNSW graph is discarded (rebuilt later, see module docstring)."""
        drop = np.isin(self.ids, np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, np.int64))
        n = int(drop.sum())
        if n:
            self.ids = self.ids[~drop]
            self.vectors = np.ascontiguousarray(self.vectors[~drop])
            self._hnsw = None
            self.changed = True
        return n

    def rebuild(self) -> None:
        """(Re)build the HNSW graph over the live rows when the size calls for one; exact otherwise."""
        self._hnsw = None
        if not self._wants_ann() or len(self.ids) == 0:
            return
        import faiss

        h = faiss.IndexHNSWFlat(self.dim, self.m)
        h.hnsw.efConstruction = self.ef_construction
        h.add(self.vectors)
        self._hnsw = h
        self.changed = True

    # -- searching --
    def search(self, q, k: int, *, exclude_ids=None) -> tuple[np.ndarray, np.ndarray]:
        """k nearest ids and Euclidean distances per query row, nearest first; -1 / inf pad short answers.

        ``exclude_ids``: per query row, one id to leave out (e.g. the query's own id for a kNN graph).
        """
        q = np.ascontiguousarray(q, np.float32).reshape(-1, self.dim)
        nq = len(q)
        extra = 1 if exclude_ids is not None else 0
        kk = min(k + extra, len(self.ids))
        out_i = np.full((nq, k), -1, np.int64)
        out_d = np.full((nq, k), np.inf, np.float32)
        if nq == 0 or kk == 0 or k <= 0:
            return out_i, out_d
        if self._hnsw is None and self._wants_ann() and nq >= REBUILD_AT_QUERIES:
            self.rebuild()
        if self._hnsw is not None:
            self._hnsw.hnsw.efSearch = max(self.ef_search, kk)
            d2, pos = self._hnsw.search(q, kk)
            d = np.sqrt(np.maximum(d2, 0.0))
        else:
            pos, d = exact_knn(q, self.vectors, kk)
        found = np.where(pos >= 0, self.ids[np.maximum(pos, 0)], -1)
        d = np.where(pos >= 0, d, np.inf).astype(np.float32)
        if exclude_ids is not None:
            ex = np.asarray(exclude_ids, np.int64).reshape(nq, 1)
            hit = found == ex
            # push the excluded id to the end of its row (stable: the others keep their order)
            order = np.argsort(hit, axis=1, kind="stable")
            found = np.take_along_axis(found, order, 1)
            d = np.take_along_axis(np.where(hit, np.inf, d), order, 1)
            found = np.where(np.isinf(d), -1, found)
        w = min(k, found.shape[1])
        out_i[:, :w], out_d[:, :w] = found[:, :w], d[:, :w]
        return out_i, out_d

    # -- persistence --
    def save(self, path: str | Path, *, shred: bool = True) -> None:
        """Write the live rows (and a current HNSW) to ``path``: temp + fsync + rename, old bytes overwritten."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            self._write(f)
            f.flush()
            os.fsync(f.fileno())
        if shred and path.exists():
            _overwrite(path)
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    @classmethod
    def load(cls, path: str | Path) -> "VectorIndex":
        """An index saved by :meth:`save`; WorkspaceError when the file is missing or unreadable (rebuild)."""
        path = Path(path)
        try:
            with open(path, "rb") as f:
                return cls._read(f.read())
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, RuntimeError) as e:  # faiss: RuntimeError
            raise WorkspaceError(f"vector index {path} is unreadable ({e}); rebuild it") from e

    # -- shipping (an engine's workers get the index once, as bytes: curate/knn_dist.py) --
    def dumps(self) -> bytes:
        """The index as bytes, the layout :meth:`save` writes (live rows, a current HNSW serialised as is), so
        :meth:`loads` on another machine gives the same rows, the same graph and so the same answers."""
        buf = io.BytesIO()
        self._write(buf)
        return buf.getvalue()

    @classmethod
    def loads(cls, data: bytes) -> "VectorIndex":
        """The index :meth:`dumps` gave; ValueError on bytes that are not one."""
        try:
            return cls._read(data)
        except (OSError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"not a vector index ({e})") from e

    def _write(self, f) -> None:
        """The one on-disk / on-wire layout: an npz of ids, vectors, meta (json) and the serialised HNSW."""
        meta = {"format": FORMAT, "dim": self.dim, "kind": self.kind, "exact_below": self.exact_below,
                "ef_search": self.ef_search, "m": self.m, "ef_construction": self.ef_construction,
                "rows": len(self.ids)}
        arrays = {"ids": self.ids, "vectors": self.vectors, "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
        if self._hnsw is not None:
            import faiss

            arrays["hnsw"] = faiss.serialize_index(self._hnsw)
        np.savez(f, **arrays)

    @classmethod
    def _read(cls, data: bytes) -> "VectorIndex":
        """Inverse of :meth:`_write`. An HNSW that does not match the rows (or no faiss) is dropped: rebuilt on use."""
        z = np.load(io.BytesIO(data), allow_pickle=False)
        meta = json.loads(bytes(z["meta"]).decode())
        if meta.get("format") != FORMAT:
            raise ValueError(f"unknown format {meta.get('format')!r}")
        ix = cls(meta["dim"], exact_below=meta["exact_below"], kind=meta["kind"], ef_search=meta["ef_search"],
                 m=meta.get("m", HNSW_M), ef_construction=meta.get("ef_construction", EF_CONSTRUCTION))
        ix.ids = z["ids"].astype(np.int64)
        ix.vectors = np.ascontiguousarray(z["vectors"], np.float32)
        if "hnsw" in z.files and ann_available():
            import faiss

            h = faiss.deserialize_index(z["hnsw"])
            if h.ntotal == len(ix.ids):
                ix._hnsw = h
        ix.changed = False
        return ix

def knn_graph(x: np.ndarray, k: int, *, index: VectorIndex | None = None,
              ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """kNN of every row of ``x`` among the others: (row indices, distances) [n, k], the shape
    :func:`faceset.curate.graph.knn` (``exclude_self=True``) returns; through HNSW above the cut-off.
    ``ids``: the index ids of the rows of ``x`` (ascending; default 0..n-1), so an index over more rows
    (the workspace's, keyed by face id) can serve a subset. Rows a short answer lacks hold -1 / inf."""
    x = np.ascontiguousarray(x, np.float32)
    n = len(x)
    ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    if index is None:
        if n < EXACT_BELOW or not ann_available():
            return exact_knn(x, x, k, exclude_self=True)
        index = VectorIndex.build(ids, x)
    if not index.uses_ann and not index._wants_ann():
        return exact_knn(x, x, k, exclude_self=True)
    return search_rows(index, x, min(k, max(n - 1, 0)), ids, exclude_ids=ids)


def search_rows(index: VectorIndex, q: np.ndarray, k: int, row_ids: np.ndarray, *,
                exclude_ids=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`search_rows_local`, or on the engine ``curate.graph.ROUTE`` names (same answer)."""
    from .curate.graph import ROUTE

    route = ROUTE.get()
    if route is not None:
        return route.search_rows(index, q, k, row_ids, exclude_ids=exclude_ids)
    return search_rows_local(index, q, k, row_ids, exclude_ids=exclude_ids)


def search_rows_local(index: VectorIndex, q: np.ndarray, k: int, row_ids: np.ndarray, *,
                      exclude_ids=None) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest among the rows whose index ids are ``row_ids`` (ascending), when ``index`` may hold
    other ids too: (positions in ``row_ids``, distances), -1 / inf pads. Asks the index for proportionally
    more neighbours when the subset is smaller than the index, then keeps the first k in the subset.
    Queries go in blocks of ``SEARCH_BLOCK`` rows (the [block, k] int64 temporaries of the id mapping stay
    small; a 1M-row kNN graph otherwise held ~6 [n, k] int64 copies at once)."""
    row_ids = np.asarray(row_ids, np.int64)
    nq = len(q)
    out_i = np.full((nq, max(k, 0)), -1, np.int64)
    out_d = np.full((nq, max(k, 0)), np.inf, np.float32)
    if len(row_ids) == 0 or k <= 0:
        return out_i, out_d
    share = len(index) / len(row_ids)
    kk = k if share <= 1.0 else min(len(index), int(np.ceil(k * share)) + 8)
    ex = None if exclude_ids is None else np.asarray(exclude_ids, np.int64).reshape(nq)
    for s in range(0, nq, SEARCH_BLOCK):
        e = min(nq, s + SEARCH_BLOCK)
        f, d = index.search(q[s:e], kk, exclude_ids=None if ex is None else ex[s:e])
        pos = np.minimum(np.searchsorted(row_ids, f), len(row_ids) - 1)
        ok = (f >= 0) & (row_ids[pos] == f)
        del f
        order = np.argsort(~ok, axis=1, kind="stable")[:, :k]
        pos, d, ok = (np.take_along_axis(a, order, 1) for a in (pos, d, ok))
        w = pos.shape[1]
        out_i[s:e, :w] = np.where(ok, pos, -1)
        out_d[s:e, :w] = np.where(ok, d, np.inf)
    return out_i, out_d


def within(q: np.ndarray, base: np.ndarray, radius: float, *, block: int = 1 << 16) -> np.ndarray:
    """Ascending rows of ``base`` within ``radius`` (Euclidean) of ANY query row: an exact range search in
    row blocks, so ``base`` may be the memory-mapped sidecar (read once, front to back). Exact on purpose:
    erasure must not depend on an ANN's recall, and a scan of 1M rows costs well under a second."""
    q = np.ascontiguousarray(q, np.float32).reshape(-1, base.shape[1] if base.ndim == 2 else q.shape[-1])
    if len(q) == 0 or len(base) == 0:
        return np.zeros(0, np.int64)
    qq = (q * q).sum(1)
    r2 = float(radius) ** 2
    out = []
    for s in range(0, len(base), block):
        b = np.asarray(base[s:s + block], np.float32)
        d2 = (b * b).sum(1)[:, None] + qq[None, :] - 2.0 * (b @ q.T)
        out.append(s + np.flatnonzero((d2 <= r2 * (1 + 1e-5) + 1e-6).any(1)))
    return np.concatenate(out).astype(np.int64)


def _overwrite(path: Path) -> None:
    """Overwrite a file's bytes with zeros in place (the old copy of erased vectors), then fsync."""
    size = path.stat().st_size
    block = b"\0" * (1 << 20)
    with open(path, "r+b") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
