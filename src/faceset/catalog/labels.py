"""Labels of images (name -> value, with where each came from)."""

from __future__ import annotations

from typing import Iterable, NamedTuple

import numpy as np

from .db import Repo, chunks, now, placeholders


class PersonLabel(NamedTuple):
    """A label of an image whose main face belongs to ``person_id``."""

    person_id: int
    name: str
    value: str
    image_id: int


class LabelledFace(NamedTuple):
    """A main face with an embedding and the value its image carries for one label."""

    face_id: int
    image_id: int
    person_id: int | None
    value: str
    embedding: np.ndarray  # float32[128]


class ReviewRow(NamedTuple):
    """One (image, label) for a person to review, with the person of the image's main face."""

    image_id: int
    person_id: int | None
    label: str
    value: str
    origin: str


class LabelConflict(NamedTuple):
    """A label a duplicate file carries that disagrees with the kept image's (which is kept)."""

    name: str
    value: str
    kept: str


class Labels(Repo):
    """Rows of `labels`."""

    # -- section: curate --
    def names(self) -> set[str]:
        """Every label name some image carries (to refuse a misspelt ``--label``)."""
        return {r[0] for r in self.db.q("SELECT DISTINCT name FROM labels")}

    def per_person(self, name: str | None = None) -> list[PersonLabel]:
        """Labels (only ``name``, or all) of images whose main face has a person, by person, name, image:
        what label conflicts compare."""
        filt, params = (" AND l.name=?", (name,)) if name is not None else ("", ())
        return [PersonLabel(*r) for r in self.db.q(
            f"""SELECT f.person_id, l.name, l.value, l.image_id FROM faces f
                JOIN labels l ON l.image_id=f.image_id
                WHERE f.is_main=1 AND f.person_id IS NOT NULL{filt}
                ORDER BY f.person_id, l.name, l.image_id""", params)]

    def on_main_faces(self, name: str) -> list[LabelledFace]:
        """Main faces with an embedding, of kept images (not near-duplicates), whose image has a
        non-empty value of ``name``, by face id: what label-noise cross-validation learns from."""
        return [LabelledFace(r[0], r[1], r[2], r[3], np.frombuffer(r[4], np.float32)) for r in self.db.q(
            """SELECT f.id, f.image_id, f.person_id, l.value, f.embedding FROM faces f
               JOIN labels l ON l.image_id=f.image_id AND l.name=?
               JOIN images i ON i.id=f.image_id
               WHERE f.is_main=1 AND f.embedding IS NOT NULL AND i.dup_of IS NULL AND l.value != ''
               ORDER BY f.id""", (name,))]

    def for_review(self, name: str | None = None) -> list[ReviewRow]:
        """Every label (only ``name``, or all) by image then name, with the main face's person."""
        filt, params = (" WHERE l.name=?", (name,)) if name is not None else ("", ())
        return [ReviewRow(*r) for r in self.db.q(
            f"""SELECT l.image_id, (SELECT person_id FROM faces WHERE image_id=l.image_id AND is_main=1),
                       l.name, l.value, l.origin FROM labels l{filt} ORDER BY l.image_id, l.name""", params)]

    def values(self) -> dict[tuple[int, str], str]:
        """(image id, label name) -> value, for every label."""
        return {(r[0], r[1]): r[2] for r in self.db.q("SELECT image_id, name, value FROM labels")}

    def set_by_user(self, image_id: int, name: str, value: str, *, at: str | None = None) -> None:
        """Set a label a person reviewed (origin 'user'), replacing any value it had."""
        self.db.execute(
            "INSERT INTO labels(image_id, name, value, origin, updated_at) VALUES (?,?,?,'user',?) "
            "ON CONFLICT(image_id, name) DO UPDATE SET value=excluded.value, origin='user', "
            "updated_at=excluded.updated_at",
            (int(image_id), name, value, at or now()))

    def remove(self, image_id: int, name: str) -> None:
        """Delete one label of one image."""
        self.db.execute("DELETE FROM labels WHERE image_id=? AND name=?", (int(image_id), name))
    # (end of section: curate)
    # -- section: ingest --
    def add_missing(self, image_id: int, labels: dict[str, str], origin: str) -> None:
        """Give an image these labels where it has none of that name yet (ingest of a new image)."""
        if labels:
            at = now()
            self.db.executemany(
                "INSERT OR IGNORE INTO labels(image_id, name, value, origin, updated_at) VALUES (?,?,?,?,?)",
                [(image_id, n, v, origin, at) for n, v in labels.items()])

    def merge(self, image_id: int, labels: dict[str, str], origin: str) -> list[LabelConflict]:
        """Add the labels a kept image lacks (from a duplicate file); report, never overwrite, the
        ones that disagree."""
        conflicts = []
        for n, v in labels.items():
            cur = self.db.execute("SELECT value FROM labels WHERE image_id=? AND name=?", (image_id, n)).fetchone()
            if cur is None:
                self.db.execute("INSERT INTO labels(image_id, name, value, origin, updated_at) VALUES (?,?,?,?,?)",
                                (image_id, n, v, origin, now()))
            elif cur[0] != v:
                conflicts.append(LabelConflict(n, v, cur[0]))
        return conflicts

    def value_counts(self) -> dict[str, dict[str, int]]:
        """label name -> value -> number of images, sorted by name then value."""
        out: dict[str, dict[str, int]] = {}
        for r in self.db.q("SELECT name, value, COUNT(*) FROM labels GROUP BY name, value ORDER BY name, value"):
            out.setdefault(r[0], {})[r[1]] = r[2]
        return out

    def names_with_values(self) -> list[str]:
        """Sorted label names at least one image has a non-empty value for (the candidate class labels)."""
        return [r[0] for r in self.db.q("SELECT DISTINCT name FROM labels WHERE value != '' ORDER BY 1")]
    # (end of section: ingest)
    # -- section: export --
    def of_images(self, image_ids: Iterable[int] | None = None) -> dict[int, dict[str, str]]:
        """image id -> {label name: value} for these images (None: every image that has a label)."""
        out: dict[int, dict[str, str]] = {}
        if image_ids is None:
            rows = self.db.q("SELECT image_id, name, value FROM labels")
        else:
            rows = []
            for part in chunks(sorted({int(i) for i in image_ids})):
                rows += self.db.q(f"SELECT image_id, name, value FROM labels WHERE image_id IN "
                                  f"({placeholders(len(part))})", part)
        for r in rows:
            out.setdefault(r[0], {})[r[1]] = r[2]
        return out

    def count_with_name(self, name: str) -> int:
        """How many images carry label ``name``."""
        return int(self.db.scalar("SELECT COUNT(*) FROM labels WHERE name=?", (name,)))

    def origins(self) -> list[tuple[str, str, int]]:
        """(label name, origin, images) by name then origin: where the labels came from (datasheet)."""
        return [(r[0], r[1], r[2]) for r in self.db.q(
            "SELECT name, origin, COUNT(*) FROM labels GROUP BY 1, 2 ORDER BY 1, 2")]

    def main_face_balance(self) -> list[tuple[str, str, str, int]]:
        """(label name, value, split or 'unsplit', main faces) over kept photos' main faces with a
        non-empty value, by name, value, split: the report's class balance."""
        return [(r[0], r[1], r[2], r[3]) for r in self.db.q(
            """SELECT l.name, l.value, COALESCE(p.split, 'unsplit'), COUNT(*)
               FROM faces f JOIN labels l ON l.image_id = f.image_id
               LEFT JOIN people p ON p.id = f.person_id
               JOIN images i ON i.id = f.image_id
               WHERE f.is_main = 1 AND i.dup_of IS NULL AND l.value != ''
               GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""")]
    def self_reported(self, image_ids: Iterable[int]) -> dict[int, list[str]]:
        """image id -> names of its labels the person in it reported themselves (the portal), sorted."""
        out: dict[int, list[str]] = {}
        for part in chunks(sorted({int(i) for i in image_ids})):
            for r in self.db.q(f"SELECT image_id, name FROM labels WHERE origin='self_reported' AND image_id IN "
                               f"({placeholders(len(part))}) ORDER BY name", part):
                out.setdefault(r[0], []).append(r[1])
        return out

    # (end of section: export)
    # -- section: privacy --
    # (end of section: privacy)
