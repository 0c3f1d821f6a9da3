"""Faces: boxes, landmarks, quality, embeddings and store keys of chips and crops."""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

import numpy as np

from .db import Repo, chunks, placeholders

EMBED_DIM = 128


class Embeddings(NamedTuple):
    """Face ids (int64[n], ascending) and their float32[n, 128] embeddings."""

    ids: np.ndarray
    vectors: np.ndarray


def _pack(rows) -> Embeddings:
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    emb = (np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, EMBED_DIM)
           if rows else np.zeros((0, EMBED_DIM), np.float32))
    return Embeddings(ids, emb)


class Faces(Repo):
    """Rows of ``faces``."""

    def embeddings(self, *, face_ids: Sequence[int] | None = None, person_id: int | None = None,
                   statuses: Sequence[str] | None = None) -> Embeddings:
        """Embeddings of faces that have one, filtered by ids, person and status (all optional)."""
        where, params = ["embedding IS NOT NULL"], []
        if person_id is not None:
            where.append("person_id=?")
            params.append(int(person_id))
        if statuses is not None:
            where.append(f"status IN ({placeholders(len(statuses))})")
            params.extend(statuses)
        sql = f"SELECT id, embedding FROM faces WHERE {' AND '.join(where)}"
        if face_ids is None:
            return _pack(self.db.q(sql + " ORDER BY id", params))
        rows = []
        for part in chunks(sorted({int(i) for i in face_ids})):
            rows += self.db.q(sql + f" AND id IN ({placeholders(len(part))}) ORDER BY id", params + part)
        return _pack(sorted(rows, key=lambda r: r[0]))

    def main_of(self, image_ids: Iterable[int]) -> dict[int, int]:
        """image id -> id of its main face (images without one are absent)."""
        out: dict[int, int] = {}
        for part in chunks(image_ids):
            for r in self.db.q(f"SELECT image_id, id FROM faces WHERE is_main=1 AND image_id IN "
                               f"({placeholders(len(part))})", part):
                out[r[0]] = r[1]
        return out

    # -- section: privacy --
    # (end of section: privacy)
    # -- section: ingest --
    # (end of section: ingest)
    # -- section: curate --
    # (end of section: curate)
    # -- section: export --
    # (end of section: export)
