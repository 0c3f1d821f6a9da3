"""Faces: boxes, landmarks, quality, embeddings and store keys of chips and crops."""

from __future__ import annotations

from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from .db import Repo, chunks, placeholders
from .schema import STORE_KEY_COLUMNS

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


class EmbeddingFingerprint(NamedTuple):
    """What the embedding sidecar compares against to know it is current (see vectors.py)."""

    count: int
    min_id: int
    max_id: int
    id_sum: int


class NewFace(NamedTuple):
    """One face as scan stores it (``idx`` is its rank in the photo, main subject first)."""

    idx: int
    box: tuple[float, float, float, float]  # x, y, w, h
    score: float
    detector: str
    landmarks: str  # JSON 5x2
    is_main: bool
    size: float
    blur: float
    brightness: float
    yaw: float
    quality: float
    embedding: bytes
    chip_key: str
    crop_key: str
    status: str


class FaceInImage(NamedTuple):
    """A face with what erasure needs to know about its photo."""

    face_id: int
    image_id: int
    person_id: int | None
    is_main: bool
    faces_in_image: int


class FaceGeometry(NamedTuple):
    """Where a face is in its photo, and the store keys cut from it (redaction re-cuts these)."""

    id: int
    box: tuple[float, float, float, float]  # x, y, w, h
    landmarks: str | None  # JSON 5x2
    chip_key: str | None
    crop_key: str | None


_FACE_KEY_COLUMNS = tuple(c for t, c in STORE_KEY_COLUMNS if t == "faces")


class SheetChip(NamedTuple):
    """A stored face chip with what a contact sheet captions it with."""

    face_id: int
    image_id: int
    chip_key: str
    score: float | None
    is_main: bool
    size: float | None
    blur: float | None


class FaceSize(NamedTuple):
    w: float
    h: float
    quality: float | None


class LowQualityFace(NamedTuple):
    """A face below the quality bar with its measures (None where unknown)."""

    id: int
    chip_key: str
    size: float | None
    blur: float | None
    brightness: float | None
    yaw: float | None
    quality: float | None


class NotRealFace(NamedTuple):
    """A face the real-human-face verifier rejected (status 'not_real_face')."""

    id: int
    image_id: int
    chip_key: str
    kind: str
    p_real: float


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

    # -- scan: the one writer of face rows --
    def replace_for_image(self, image_id: int, faces: Sequence[NewFace]) -> None:
        """A (re)scan's result for one photo: its old face rows go, these come in."""
        self.db.execute("DELETE FROM faces WHERE image_id=?", (int(image_id),))
        self.db.executemany(
            """INSERT INTO faces(image_id, idx, x, y, w, h, score, detector, landmarks, is_main,
               size, blur, brightness, yaw, quality, embedding, chip_key, crop_key, status)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            [(int(image_id), f.idx, *f.box, f.score, f.detector, f.landmarks, int(f.is_main), f.size, f.blur,
              f.brightness, f.yaw, f.quality, f.embedding, f.chip_key, f.crop_key, f.status) for f in faces])

    # -- section: privacy --
    def persons_of_embedded(self) -> dict[int, int | None]:
        """face id -> person id (None when unclustered) of every embedded face: forget's cluster expansion."""
        return {r[0]: r[1] for r in self.db.q("SELECT id, person_id FROM faces WHERE embedding IS NOT NULL")}

    def in_images(self, face_ids: Iterable[int]) -> list[FaceInImage]:
        """The faces with their photo, person, main flag and the photo's face count, by photo then rank:
        what decides between erasing a photo and hiding one face in it."""
        rows = []
        for part in chunks(sorted({int(i) for i in face_ids})):
            rows += self.db.q(
                f"""SELECT f.id, f.image_id, f.person_id, f.is_main,
                           (SELECT COUNT(*) FROM faces g WHERE g.image_id = f.image_id), f.idx
                    FROM faces f WHERE f.id IN ({placeholders(len(part))})""", part)
        rows.sort(key=lambda r: (r[1], r[5]))
        return [FaceInImage(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]

    def chip_keys(self, face_ids: Iterable[int]) -> dict[int, str | None]:
        """face id -> store key of its 150 px chip (contact sheets of matches)."""
        out: dict[int, str | None] = {}
        for part in chunks(sorted({int(i) for i in face_ids})):
            for r in self.db.q(f"SELECT id, chip_key FROM faces WHERE id IN ({placeholders(len(part))})", part):
                out[r[0]] = r[1]
        return out

    def geometry(self, image_id: int) -> list[FaceGeometry]:
        """Every face of one photo: box, landmarks and the keys of what was cut from it."""
        return [FaceGeometry(r[0], (r[1], r[2], r[3], r[4]), r[5], r[6], r[7]) for r in self.db.q(
            "SELECT id, x, y, w, h, landmarks, chip_key, crop_key FROM faces WHERE image_id=? ORDER BY idx",
            (int(image_id),))]

    def ids_in_images(self, image_ids: Iterable[int]) -> list[int]:
        """Ids of every face in these photos."""
        out: list[int] = []
        for part in chunks(sorted({int(i) for i in image_ids})):
            out += [r[0] for r in self.db.q(f"SELECT id FROM faces WHERE image_id IN ({placeholders(len(part))})",
                                            part)]
        return sorted(out)

    def store_keys_of(self, face_ids: Iterable[int]) -> set[str]:
        """Store keys these faces reference (every faces column in ``STORE_KEY_COLUMNS``)."""
        cols = ", ".join(_FACE_KEY_COLUMNS)
        keys: set[str] = set()
        for part in chunks(sorted({int(i) for i in face_ids})):
            for r in self.db.q(f"SELECT {cols} FROM faces WHERE id IN ({placeholders(len(part))})", part):
                keys.update(k for k in r if k)
        return keys

    def people_of(self, face_ids: Iterable[int]) -> set[int]:
        """The person clusters these faces belong to."""
        out: set[int] = set()
        for part in chunks(sorted({int(i) for i in face_ids})):
            out.update(r[0] for r in self.db.q(
                f"SELECT DISTINCT person_id FROM faces WHERE person_id IS NOT NULL AND id IN "
                f"({placeholders(len(part))})", part))
        return out

    def delete(self, face_ids: Iterable[int]) -> int:
        """Erase face rows (their export_items go with them by foreign key)."""
        n = 0
        for part in chunks(sorted({int(i) for i in face_ids})):
            n += self.db.execute(f"DELETE FROM faces WHERE id IN ({placeholders(len(part))})", part).rowcount
        return n

    def set_cuts(self, cuts: dict[int, tuple[str, str]]) -> None:
        """face id -> (chip key, crop key) cut again from a redacted copy of its photo."""
        self.db.executemany("UPDATE faces SET chip_key=?, crop_key=? WHERE id=?",
                            [(chip, crop, int(fid)) for fid, (chip, crop) in cuts.items()])
    # (end of section: privacy)
    # -- section: ingest --
    # (contact sheets and `faceset status` read faces here)
    def count(self) -> int:
        """How many faces the catalog holds (every status)."""
        return int(self.db.scalar("SELECT COUNT(*) FROM faces"))

    def sheet_chips(self, status: str, limit: int) -> list[SheetChip]:
        """Up to ``limit`` faces of ``status`` with a stored chip: 'ok' ones by photo and rank,
        'low_quality' ones worst first."""
        order = "quality" if status == "low_quality" else "image_id, idx"
        return [SheetChip(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6]) for r in self.db.q(
            f"SELECT id, image_id, chip_key, score, is_main, size, blur FROM faces "
            f"WHERE status=? AND chip_key IS NOT NULL ORDER BY {order} LIMIT ?", (status, int(limit)))]
    # (end of section: ingest)
    # -- section: curate --
    def main_embeddings(self) -> dict[int, tuple[np.ndarray, float]]:
        """image id -> (embedding, quality) of its main face, for images whose main face has an
        embedding (near-duplicates are confirmed by these; quality 0.0 when unknown)."""
        return {r[0]: (np.frombuffer(r[1], np.float32), float(r[2] or 0.0)) for r in self.db.q(
            "SELECT image_id, embedding, quality FROM faces WHERE is_main=1 AND embedding IS NOT NULL "
            "ORDER BY image_id")}

    def count_by_image(self) -> dict[int, int]:
        """image id -> how many faces it has (images without faces are absent)."""
        return dict(self.db.q("SELECT image_id, COUNT(*) FROM faces GROUP BY image_id"))

    def listing(self) -> list[dict]:
        """Every face (face_id, person_id, image_id, idx, is_main, status), by person then id
        (faces without a person first): what `faceset people --json` lists."""
        return [dict(r) for r in self.db.q(
            "SELECT id AS face_id, person_id, image_id, idx, is_main, status FROM faces ORDER BY person_id, id")]
    # (end of section: curate)
    # -- section: export --
    def bystander_boxes(self) -> dict[int, list[tuple[float, float, float, float]]]:
        """image id -> boxes (x, y, w, h) of the faces that are not its main subject (export blurs them)."""
        out: dict[int, list[tuple[float, float, float, float]]] = {}
        for r in self.db.q("SELECT image_id, x, y, w, h FROM faces WHERE is_main = 0"):
            out.setdefault(r[0], []).append((r[1], r[2], r[3], r[4]))
        return out

    def detectors(self) -> list[str]:
        """The detectors that found the stored faces, by name."""
        return [r[0] for r in self.db.q("SELECT DISTINCT detector FROM faces WHERE detector IS NOT NULL ORDER BY 1")]

    def count_by_status(self) -> dict[str, int]:
        """face status -> faces, by status."""
        return {r[0]: r[1] for r in self.db.q("SELECT status, COUNT(*) FROM faces GROUP BY 1 ORDER BY 1")}

    def sizes(self) -> list[FaceSize]:
        """Box width, height and quality score of every face (the report's histograms)."""
        return [FaceSize(*r) for r in self.db.q("SELECT w, h, quality FROM faces")]

    def low_quality(self) -> list[LowQualityFace]:
        """Low-quality faces that have a chip, worst first: the report shows why each was left out."""
        return [LowQualityFace(*r) for r in self.db.q(
            """SELECT id, chip_key, size, blur, brightness, yaw, quality FROM faces
               WHERE status = 'low_quality' AND chip_key IS NOT NULL ORDER BY quality, id""")]
    # (end of section: export)
    # -- section: W_detect --
    def set_verdicts(self, image_id: int, verdicts: Sequence[tuple[int, str | None, float | None]]) -> None:
        """Store the real-face verifier's (idx, kind, P(real)) per face of one photo, right after scan
        wrote its rows: the kind says why a 'not_real_face' face was left out."""
        self.db.executemany("UPDATE faces SET kind=?, p_real=? WHERE image_id=? AND idx=?",
                            [(k, None if p is None else float(p), int(image_id), int(i)) for i, k, p in verdicts])

    def not_real(self, limit: int = 1000) -> list[NotRealFace]:
        """Faces the verifier called not a photographed human face (with a chip), least real first:
        the rejected contact sheet and the report show them with their kind."""
        return [NotRealFace(*r) for r in self.db.q(
            """SELECT id, image_id, chip_key, COALESCE(kind, 'not_real'), COALESCE(p_real, 0.0) FROM faces
               WHERE status = 'not_real_face' AND chip_key IS NOT NULL ORDER BY p_real, id LIMIT ?""",
            (int(limit),))]
    # (end of section: W_detect)
    # -- section: W_scale --
    def embedding_fingerprint(self, *, upto: int | None = None) -> EmbeddingFingerprint:
        """(count, min id, max id, id sum) of embedded faces (ids <= ``upto`` when given): whether the
        embedding sidecar is current, or only behind by rows appended after its last id."""
        sql = ("SELECT COUNT(*), COALESCE(MIN(id), 0), COALESCE(MAX(id), 0), COALESCE(SUM(id), 0) FROM faces "
               "WHERE embedding IS NOT NULL")
        r = self.db.one(sql + (" AND id <= ?" if upto is not None else ""), (int(upto),) if upto is not None else ())
        return EmbeddingFingerprint(int(r[0]), int(r[1]), int(r[2]), int(r[3]))

    def last_embeddings(self, *, upto: int, limit: int = 64) -> Embeddings:
        """The ``limit`` highest-id embedded faces with id <= ``upto``, ascending. Ids are reused once the
        highest rows are deleted (INTEGER PRIMARY KEY), so the sidecar compares these bytes too."""
        rows = self.db.q("SELECT id, embedding FROM faces WHERE embedding IS NOT NULL AND id <= ? "
                         "ORDER BY id DESC LIMIT ?", (int(upto), int(limit)))
        return _pack(rows[::-1])

    def iter_embeddings(self, *, after: int = 0, chunk: int = 65536) -> Iterator[Embeddings]:
        """Embedded faces with id > ``after`` in id order, ``chunk`` rows at a time (keyset pages, so a
        million embeddings never sit in one result list)."""
        last = int(after)
        while True:
            rows = self.db.q("SELECT id, embedding FROM faces WHERE embedding IS NOT NULL AND id > ? "
                             "ORDER BY id LIMIT ?", (last, int(chunk)))
            if not rows:
                return
            yield _pack(rows)
            last = int(rows[-1][0])

    def persons_of(self, face_ids: Iterable[int]) -> dict[int, int | None]:
        """face id -> person id (None when unclustered) for these embedded faces: forget's candidates, found
        in the sidecar, get their cluster without reading every face's row."""
        out: dict[int, int | None] = {}
        for part in chunks(sorted({int(i) for i in face_ids})):
            out.update((r[0], r[1]) for r in self.db.q(
                f"SELECT id, person_id FROM faces WHERE embedding IS NOT NULL AND id IN ({placeholders(len(part))})",
                part))
        return out

    def embedded_of_people(self, person_ids: Iterable[int]) -> np.ndarray:
        """Ascending ids of every embedded face of these people: a candidate's whole cluster, so forget's
        person-level evidence stays exact when only the candidates were found by search."""
        out: list[int] = []
        for part in chunks(sorted({int(i) for i in person_ids})):
            out += [r[0] for r in self.db.q(f"SELECT id FROM faces WHERE embedding IS NOT NULL AND person_id IN "
                                            f"({placeholders(len(part))})", part)]
        return np.array(sorted(out), np.int64)
    # (end of section: W_scale)
