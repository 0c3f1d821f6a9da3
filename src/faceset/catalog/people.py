"""People: who is who (clusters of faces), their centroids and per-person consent."""

from __future__ import annotations

from typing import Iterable, Mapping, NamedTuple

import numpy as np

from .db import Repo, chunks, now, placeholders


class PersonSummary(NamedTuple):
    """One person with at least one face: faces, distinct photos, split (None until assigned)."""

    person_id: int
    faces: int
    images: int
    split: str | None


class ClusterFaces(NamedTuple):
    """Every face with an embedding, by id, as clustering reads it (arrays of one length n)."""

    ids: np.ndarray  # int64 face ids
    image_ids: np.ndarray  # int64
    person_ids: np.ndarray  # int64, -1 = no person yet
    ok: np.ndarray  # bool: status 'ok' (low-quality faces never anchor others)
    quality: np.ndarray  # float64, 0.0 when unknown
    vectors: np.ndarray  # float32[n, 128]


class People(Repo):
    """Rows of `people`."""

    # -- section: curate --
    def create(self, *, created_at: str | None = None) -> int:
        """A new person with no faces yet (clustering gives it faces right after)."""
        return int(self.db.execute("INSERT INTO people(created_at) VALUES (?)", (created_at or now(),)).lastrowid)

    def assign(self, person_of: Mapping[int, int]) -> int:
        """Give each face (key) its person (value); returns how many faces were assigned."""
        pairs = [(int(p), int(f)) for f, p in person_of.items()]
        self.db.executemany("UPDATE faces SET person_id=? WHERE id=?", pairs)
        return len(pairs)

    def follow_kept_duplicates(self) -> int:
        """Main faces of images marked ``dup_of`` join the person of the kept image's main face, so a
        duplicate group is one person (and one split). Returns the faces moved."""
        return self.db.execute(
            """UPDATE faces SET person_id=(
                   SELECT k.person_id FROM images i JOIN faces k ON k.image_id=i.dup_of AND k.is_main=1
                   WHERE i.id=faces.image_id AND k.person_id IS NOT NULL)
               WHERE is_main=1 AND image_id IN (SELECT id FROM images WHERE dup_of IS NOT NULL)
                 AND EXISTS (SELECT 1 FROM images i JOIN faces k ON k.image_id=i.dup_of AND k.is_main=1
                             WHERE i.id=faces.image_id AND k.person_id IS NOT NULL
                               AND k.person_id != faces.person_id)"""
        ).rowcount

    def refresh_centroids(self, person_ids: Iterable[int] | None = None) -> None:
        """Recompute ``n_faces`` (all faces) and ``centroid`` (mean embedding of the person's 'ok' faces,
        of all faces if none is ok, NULL without any embedding) of these people (None: everyone)."""
        if person_ids is None:
            people = [r[0] for r in self.db.q("SELECT id FROM people")]
            faces = self.db.q("SELECT person_id, status, embedding FROM faces "
                              "WHERE person_id IS NOT NULL AND embedding IS NOT NULL")
            counts = dict(self.db.q("SELECT person_id, COUNT(*) FROM faces WHERE person_id IS NOT NULL "
                                    "GROUP BY person_id"))
        else:
            people, faces, counts = [], [], {}
            for part in chunks(sorted({int(i) for i in person_ids})):
                marks = placeholders(len(part))
                people += [r[0] for r in self.db.q(f"SELECT id FROM people WHERE id IN ({marks})", part)]
                faces += self.db.q(f"SELECT person_id, status, embedding FROM faces "
                                   f"WHERE person_id IN ({marks}) AND embedding IS NOT NULL", part)
                counts.update(self.db.q(f"SELECT person_id, COUNT(*) FROM faces WHERE person_id IN ({marks}) "
                                        f"GROUP BY person_id", part))
        # per person: [ok faces, sum of ok embeddings, faces, sum of all embeddings]
        sums: dict[int, list] = {}
        for person_id, status, blob in faces:
            acc = sums.setdefault(person_id, [0, np.zeros(128), 0, np.zeros(128)])
            e = np.frombuffer(blob, np.float32)
            acc[2] += 1
            acc[3] += e
            if status == "ok":
                acc[0] += 1
                acc[1] += e
        rows = []
        for pid in people:
            acc = sums.get(pid)
            centroid = None
            if acc is not None:
                centroid = (acc[1] / acc[0] if acc[0] else acc[3] / acc[2]).astype(np.float32).tobytes()
            rows.append((counts.get(pid, 0), centroid, pid))
        self.db.executemany("UPDATE people SET n_faces=?, centroid=? WHERE id=?", rows)

    def face_counts(self) -> list[int]:
        """``n_faces`` of every person that has at least one face (for size statistics)."""
        return [r[0] for r in self.db.q("SELECT n_faces FROM people WHERE n_faces > 0")]

    def summaries(self, *, largest_first: bool = False, limit: int | None = None) -> list[PersonSummary]:
        """People with at least one face, by id (or largest first, ties by id), at most ``limit``."""
        order = "p.n_faces DESC, p.id" if largest_first else "p.id"
        return [PersonSummary(*r) for r in self.db.q(
            f"""SELECT p.id, p.n_faces, COUNT(DISTINCT f.image_id), p.split
                FROM people p LEFT JOIN faces f ON f.person_id=p.id WHERE p.n_faces > 0
                GROUP BY p.id ORDER BY {order} LIMIT ?""", (-1 if limit is None else int(limit),))]

    def main_images(self) -> dict[int, list[int]]:
        """person id -> images whose main face is that person (what a per-person label fix touches)."""
        out: dict[int, list[int]] = {}
        for person_id, image_id in self.db.q(
                "SELECT person_id, image_id FROM faces WHERE is_main=1 AND person_id IS NOT NULL"):
            out.setdefault(person_id, []).append(image_id)
        return out

    def clustering_faces(self) -> ClusterFaces:
        """Every face with an embedding, with its current person: the input of people clustering."""
        rows = self.db.q("SELECT id, image_id, person_id, status, quality, embedding FROM faces "
                         "WHERE embedding IS NOT NULL ORDER BY id")
        return ClusterFaces(
            ids=np.array([r[0] for r in rows], np.int64),
            image_ids=np.array([r[1] for r in rows], np.int64),
            person_ids=np.array([r[2] if r[2] is not None else -1 for r in rows], np.int64),
            ok=np.array([r[3] == "ok" for r in rows], bool),
            quality=np.array([r[4] or 0.0 for r in rows], np.float64),
            vectors=np.frombuffer(b"".join(r[5] for r in rows), np.float32).reshape(-1, 128),
        )
    # (end of section: curate)
    # -- section: ingest --
    # (`faceset status` uses count(), in the export section)
    # (end of section: ingest)
    # -- section: export --
    def splits(self) -> dict[int, str | None]:
        """person id -> split (None until assigned), for every person with at least one face."""
        return {r[0]: r[1] for r in self.db.q("SELECT id, split FROM people WHERE n_faces > 0")}

    def set_splits(self, split_of: Mapping[int, str]) -> None:
        """Give these people their split; a split already assigned never changes."""
        self.db.executemany("UPDATE people SET split=? WHERE id=? AND split IS NULL",
                            [(s, int(p)) for p, s in split_of.items()])

    def usable_face_counts(self) -> dict[int, int]:
        """person id -> faces with status 'ok' in kept photos (not near-duplicates): a person's weight
        when splits are balanced."""
        return {r[0]: r[1] for r in self.db.q(
            """SELECT f.person_id, COUNT(*) FROM faces f JOIN images i ON i.id=f.image_id
               WHERE f.person_id IS NOT NULL AND i.dup_of IS NULL AND f.status='ok' GROUP BY f.person_id""")}

    def in_duplicate_groups(self) -> list[tuple[int, int]]:
        """(kept image id, person id) for the main face of every photo of a near-duplicate group,
        kept photo included: people sharing a group go to one split."""
        return [(r[0], r[1]) for r in self.db.q(
            """SELECT COALESCE(i.dup_of, i.id), f.person_id FROM faces f JOIN images i ON i.id=f.image_id
               WHERE f.person_id IS NOT NULL AND f.is_main=1
                 AND (i.dup_of IS NOT NULL OR i.id IN (SELECT dup_of FROM images WHERE dup_of IS NOT NULL))""")]

    def count(self) -> int:
        """Every person row, with or without faces."""
        return int(self.db.scalar("SELECT COUNT(*) FROM people"))

    def count_by_split(self) -> dict[str | None, int]:
        """split (None: unassigned) -> people, every person row counted."""
        return {r[0]: r[1] for r in self.db.q("SELECT split, COUNT(*) FROM people GROUP BY 1")}

    def photo_counts(self) -> list[int]:
        """Distinct photos per person, for every person some face belongs to (the report's histogram)."""
        return [r[0] for r in self.db.q(
            "SELECT COUNT(DISTINCT image_id) FROM faces WHERE person_id IS NOT NULL GROUP BY person_id")]
    # (end of section: export)
    # -- section: privacy --
    def centroids(self, person_ids: Iterable[int]) -> dict[int, bytes]:
        """person id -> centroid (float32[128] bytes) for those that have one: forget follows a cluster
        only when its centroid is close to the selfie."""
        out: dict[int, bytes] = {}
        for part in chunks(sorted({int(i) for i in person_ids})):
            for r in self.db.q(f"SELECT id, centroid FROM people WHERE id IN ({placeholders(len(part))}) "
                               f"AND centroid IS NOT NULL", part):
                out[r[0]] = bytes(r[1])
        return out

    def delete_empty(self, person_ids: Iterable[int]) -> int:
        """Delete those of these people who have no face left (after an erasure); returns how many."""
        n = 0
        for part in chunks(sorted({int(i) for i in person_ids})):
            n += self.db.execute(f"DELETE FROM people WHERE id IN ({placeholders(len(part))}) AND NOT EXISTS "
                                 f"(SELECT 1 FROM faces f WHERE f.person_id = people.id)", part).rowcount
        return n
    # (end of section: privacy)
    # -- section: W_scale --
    def clustering_faces_chunked(self, vectors_of=None, *, chunk: int = 65536) -> ClusterFaces:
        """What :meth:`clustering_faces` returns, read in keyset pages of ``chunk`` rows without the
        embedding blobs; ``vectors_of(ids) -> float32[n, 128]`` supplies the vectors (the memory-mapped
        sidecar, vectors.py), so a million faces never become a million Python bytes objects at once."""
        parts: list[np.ndarray] = []
        last = -1
        while True:
            rows = self.db.q("SELECT id, image_id, COALESCE(person_id, -1), status = 'ok', COALESCE(quality, 0.0) "
                             "FROM faces WHERE embedding IS NOT NULL AND id > ? ORDER BY id LIMIT ?",
                             (last, int(chunk)))
            if not rows:
                break
            parts.append(np.array(rows, np.float64))
            last = int(rows[-1][0])
        a = np.concatenate(parts) if parts else np.zeros((0, 5))
        ids = a[:, 0].astype(np.int64)
        vec = vectors_of(ids) if vectors_of is not None else np.zeros((len(ids), 128), np.float32)
        return ClusterFaces(ids=ids, image_ids=a[:, 1].astype(np.int64), person_ids=a[:, 2].astype(np.int64),
                            ok=a[:, 3] > 0, quality=a[:, 4].astype(np.float64), vectors=vec)
    # (end of section: W_scale)
