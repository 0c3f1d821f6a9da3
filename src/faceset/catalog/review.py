"""Review: the queries behind `faceset serve` and the human decisions it records.

Pages page with keyset queries (``id > after`` / ``(n_faces, id) < (...)``), never OFFSET, so the
100th page of a 100k-face workspace costs what the first does. Decisions (merge, split, not a person)
are stored per face in ``decisions`` (person ids change when clustering reruns); the verbs in
``faceset.curate.decisions`` call these inside one transaction and append the audit entry.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

import numpy as np

from .db import Repo, chunks, now, placeholders
from .schema import DECISION_KINDS

EMBED_DIM = 128


class ImageTile(NamedTuple):
    """One cell of the image grid."""

    id: int
    width: int
    height: int
    status: str
    dup_of: int | None


class FaceBox(NamedTuple):
    """A face as the pages draw it: where it is and what the curation says about it."""

    id: int
    image_id: int
    x: float
    y: float
    w: float
    h: float
    person_id: int | None
    status: str
    is_main: bool
    quality: float | None


class PersonCard(NamedTuple):
    """A person as the people page shows it."""

    id: int
    n_faces: int
    split: str | None


class ImageDetail(NamedTuple):
    """An image with its provenance (source, licence, consent: row value or the source's)."""

    id: int
    width: int
    height: int
    format: str
    bytes: int
    status: str
    status_reason: str | None
    dup_of: int | None
    created_at: str
    scanned_at: str | None
    source_id: int
    source_name: str
    source_kind: str
    license: str
    consent: str
    consent_expires: str | None
    image_consent: str | None


class OriginalPath(NamedTuple):
    """One original file of an image (owner view only): the source's kind and uri, and the path in it."""

    kind: str
    uri: str | None
    path: str
    outcome: str


class DupGroup(NamedTuple):
    """A near-duplicate group: the kept image first, then the copies set aside (``dup_of`` = keeper)."""

    keeper: int
    members: list[int]


class RejectedFile(NamedTuple):
    id: int
    source: str
    path: str
    size: int | None
    reason_code: str
    reason: str | None
    seen_at: str


class AuditRow(NamedTuple):
    id: int
    ts: str
    actor: str
    action: str
    details: str


class ExportRow(NamedTuple):
    id: int
    path: str
    format: str
    what: str
    created_at: str
    stale: bool
    stale_reason: str | None
    items: int


class Decision(NamedTuple):
    id: int
    kind: str
    face_a: int
    face_b: int | None
    created_at: str


_IMAGE_FILTERS = ("ok", "no_face", "error", "blocked", "new", "low_quality", "duplicate")


class Review(Repo):
    """Named queries of the review app and of the review verbs."""

    # -- images -------------------------------------------------------------------------------------------
    def images_page(self, *, after: int = 0, limit: int = 60, status: str | None = None,
                    source_id: int | None = None, label: tuple[str, str] | None = None,
                    split: str | None = None, person_id: int | None = None) -> list[ImageTile]:
        """One page of the image grid, by id after ``after`` (keyset). ``status`` is an image status or
        'low_quality' (has a low-quality face) or 'duplicate' (set aside as a near-duplicate)."""
        where, params = ["i.id > ?"], [int(after)]
        if status in ("ok", "no_face", "error", "blocked", "new"):
            where.append("i.status = ?")
            params.append(status)
        elif status == "low_quality":
            where.append("i.id IN (SELECT image_id FROM faces WHERE status = 'low_quality')")
        elif status == "duplicate":
            where.append("i.dup_of IS NOT NULL")
        if source_id is not None:
            where.append("i.source_id = ?")
            params.append(int(source_id))
        if label is not None:
            where.append("i.id IN (SELECT image_id FROM labels WHERE name = ? AND value = ?)")
            params += [label[0], label[1]]
        if person_id is not None:
            where.append("i.id IN (SELECT image_id FROM faces WHERE person_id = ?)")
            params.append(int(person_id))
        if split is not None:
            where.append("i.id IN (SELECT f.image_id FROM faces f JOIN people p ON p.id = f.person_id "
                         "WHERE f.is_main = 1 AND p.split = ?)")
            params.append(split)
        params.append(int(limit))
        return [ImageTile(*r) for r in self.db.q(
            f"SELECT i.id, i.width, i.height, i.status, i.dup_of FROM images i WHERE {' AND '.join(where)} "
            f"ORDER BY i.id LIMIT ?", params)]

    def boxes_of(self, image_ids: Iterable[int]) -> dict[int, list[FaceBox]]:
        """image id -> its faces (by rank), for drawing boxes on thumbnails."""
        out: dict[int, list[FaceBox]] = {}
        for part in chunks(sorted({int(i) for i in image_ids})):
            for r in self.db.q(
                    f"SELECT id, image_id, x, y, w, h, person_id, status, is_main, quality FROM faces "
                    f"WHERE image_id IN ({placeholders(len(part))}) ORDER BY image_id, idx", part):
                out.setdefault(r[1], []).append(FaceBox(*r[:8], bool(r[8]), r[9]))
        return out

    def image(self, image_id: int) -> ImageDetail | None:
        """One image with its source, licence and consent (the image's own value, else the source's)."""
        r = self.db.one(
            """SELECT i.id, i.width, i.height, i.format, i.bytes, i.status, i.status_reason, i.dup_of,
                      i.created_at, i.scanned_at, s.id, s.name, s.kind, COALESCE(i.license, s.license),
                      COALESCE(i.consent, s.consent), COALESCE(i.consent_expires, s.consent_expires), i.consent
               FROM images i JOIN sources s ON s.id = i.source_id WHERE i.id = ?""", (int(image_id),))
        return None if r is None else ImageDetail(*r)

    def image_face_details(self, image_id: int) -> list[dict]:
        """Every face of one image with its quality measures and person (the image page's table)."""
        return [dict(r) for r in self.db.q(
            """SELECT id, idx, x, y, w, h, score, detector, is_main, size, blur, brightness, yaw, quality,
                      person_id, status, (embedding IS NOT NULL) AS embedded,
                      EXISTS(SELECT 1 FROM decisions d WHERE d.face_a = faces.id AND d.kind = 'not_a_person')
                        AS not_a_person
               FROM faces WHERE image_id = ? ORDER BY idx""", (int(image_id),))]

    def labels_of(self, image_id: int) -> list[tuple[str, str, str]]:
        """(name, value, origin) of one image's labels."""
        return [tuple(r) for r in self.db.q(
            "SELECT name, value, origin FROM labels WHERE image_id = ? ORDER BY name", (int(image_id),))]

    def original_paths(self, image_id: int) -> list[OriginalPath]:
        """Every original file that collapsed into this image (owner view: these name people)."""
        return [OriginalPath(*r) for r in self.db.q(
            """SELECT s.kind, s.uri, f.path, f.outcome FROM files f JOIN sources s ON s.id = f.source_id
               WHERE f.image_id = ? ORDER BY f.id""", (int(image_id),))]

    def source_choices(self) -> list[tuple[int, str]]:
        """(id, name) of every source, for the grid's filter."""
        return [tuple(r) for r in self.db.q("SELECT id, name FROM sources ORDER BY name")]

    def store_key_of_image(self, image_id: int) -> str | None:
        """Store key of an image's clean copy (served by id; the key never reaches a URL)."""
        return self.db.scalar("SELECT store_key FROM images WHERE id = ?", (int(image_id),))

    def chip_key_of_face(self, face_id: int) -> str | None:
        """Store key of a face's 150 px chip."""
        return self.db.scalar("SELECT chip_key FROM faces WHERE id = ?", (int(face_id),))

    def face_image(self, face_id: int) -> tuple[int, tuple[float, float, float, float]] | None:
        """(image id, box) of one face: the fallback thumbnail of a face without a chip."""
        r = self.db.one("SELECT image_id, x, y, w, h FROM faces WHERE id = ?", (int(face_id),))
        return None if r is None else (r[0], (r[1], r[2], r[3], r[4]))

    # -- people -------------------------------------------------------------------------------------------
    def people_by_size(self, *, after: tuple[int, int] | None = None, limit: int = 48) -> list[PersonCard]:
        """People with faces, largest first (ties by id), strictly after the keyset ``(n_faces, id)``."""
        if after is None:
            rows = self.db.q("SELECT id, n_faces, split FROM people WHERE n_faces > 0 "
                             "ORDER BY n_faces DESC, id LIMIT ?", (int(limit),))
        else:
            rows = self.db.q("SELECT id, n_faces, split FROM people WHERE n_faces > 0 AND "
                             "(n_faces < ? OR (n_faces = ? AND id > ?)) ORDER BY n_faces DESC, id LIMIT ?",
                             (int(after[0]), int(after[0]), int(after[1]), int(limit)))
        return [PersonCard(*r) for r in rows]

    def people_cards(self, person_ids: Sequence[int]) -> list[PersonCard]:
        """These people (in the order given; unknown ids are skipped)."""
        found: dict[int, PersonCard] = {}
        for part in chunks(sorted({int(i) for i in person_ids})):
            for r in self.db.q(f"SELECT id, n_faces, split FROM people WHERE id IN ({placeholders(len(part))})",
                               part):
                found[r[0]] = PersonCard(*r)
        return [found[int(i)] for i in person_ids if int(i) in found]

    def person(self, person_id: int) -> PersonCard | None:
        r = self.db.one("SELECT id, n_faces, split FROM people WHERE id = ?", (int(person_id),))
        return None if r is None else PersonCard(*r)

    def mosaic(self, person_ids: Iterable[int], per_person: int = 8) -> dict[int, list[int]]:
        """person id -> up to ``per_person`` face ids, best quality first (the card's mosaic)."""
        out: dict[int, list[int]] = {}
        for part in chunks(sorted({int(i) for i in person_ids})):
            for r in self.db.q(
                    f"""SELECT person_id, id FROM (
                          SELECT person_id, id, ROW_NUMBER() OVER (
                              PARTITION BY person_id ORDER BY status = 'ok' DESC, quality DESC, id) AS rn
                          FROM faces WHERE person_id IN ({placeholders(len(part))}))
                        WHERE rn <= ? ORDER BY person_id, rn""", part + [int(per_person)]):
                out.setdefault(r[0], []).append(r[1])
        return out

    def person_faces(self, person_id: int, *, after: int = 0, limit: int = 120) -> list[FaceBox]:
        """One page of a person's faces by id after ``after`` (keyset)."""
        return [FaceBox(*r[:8], bool(r[8]), r[9]) for r in self.db.q(
            "SELECT id, image_id, x, y, w, h, person_id, status, is_main, quality FROM faces "
            "WHERE person_id = ? AND id > ? ORDER BY id LIMIT ?", (int(person_id), int(after), int(limit)))]

    def face_ids_of_person(self, person_id: int) -> list[int]:
        """Every face id of one person, ascending."""
        return [r[0] for r in self.db.q("SELECT id FROM faces WHERE person_id = ? ORDER BY id", (int(person_id),))]

    def persons_of_faces(self, face_ids: Iterable[int]) -> dict[int, int | None]:
        """face id -> person id (None: unassigned) of the faces that exist."""
        out: dict[int, int | None] = {}
        for part in chunks(sorted({int(i) for i in face_ids})):
            for r in self.db.q(f"SELECT id, person_id FROM faces WHERE id IN ({placeholders(len(part))})", part):
                out[r[0]] = r[1]
        return out

    def person_vectors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(face ids, person ids, float32[n, 128]) of every 'ok' assigned face with an embedding:
        what the doubt order (cohesion) and merge suggestions are computed from."""
        rows = self.db.q("SELECT id, person_id, embedding FROM faces WHERE person_id IS NOT NULL "
                         "AND embedding IS NOT NULL AND status = 'ok' ORDER BY person_id, id")
        ids = np.array([r[0] for r in rows], np.int64)
        pids = np.array([r[1] for r in rows], np.int64)
        emb = (np.frombuffer(b"".join(r[2] for r in rows), np.float32).reshape(-1, EMBED_DIM)
               if rows else np.zeros((0, EMBED_DIM), np.float32))
        return ids, pids, emb

    def people_sizes(self) -> dict[int, int]:
        """person id -> n_faces of every person with faces."""
        return dict(self.db.q("SELECT id, n_faces FROM people WHERE n_faces > 0"))

    def people_signature(self) -> tuple:
        """A cheap fingerprint of who-is-who: changes whenever faces move between people (or appear,
        or go), so cached orderings know to recompute."""
        r = self.db.one("SELECT COUNT(*), COALESCE(MAX(id), 0), COALESCE(SUM(person_id), 0), "
                        "COALESCE(SUM(person_id * (id % 1009)), 0) FROM faces")
        return tuple(r)

    def main_images_of(self, person_id: int) -> list[int]:
        """Images whose main face is this person (what a per-person label touches)."""
        return [r[0] for r in self.db.q("SELECT image_id FROM faces WHERE person_id = ? AND is_main = 1 "
                                        "ORDER BY image_id", (int(person_id),))]

    def label_values_of_person(self, person_id: int) -> dict[str, dict[str, int]]:
        """label name -> value -> images, over the images whose main face is this person."""
        out: dict[str, dict[str, int]] = {}
        for r in self.db.q("""SELECT l.name, l.value, COUNT(*) FROM labels l JOIN faces f ON f.image_id = l.image_id
                              WHERE f.person_id = ? AND f.is_main = 1 GROUP BY l.name, l.value
                              ORDER BY l.name, l.value""", (int(person_id),)):
            out.setdefault(r[0], {})[r[1]] = r[2]
        return out

    def people_with_conflicting_labels(self) -> set[int]:
        """People whose main-face images carry two or more values of one label (the doubt order bumps them)."""
        return {r[0] for r in self.db.q(
            """SELECT f.person_id FROM faces f JOIN labels l ON l.image_id = f.image_id
               WHERE f.is_main = 1 AND f.person_id IS NOT NULL AND l.value != ''
               GROUP BY f.person_id, l.name HAVING COUNT(DISTINCT l.value) > 1""")}

    # -- decisions (the review verbs' writes) ---------------------------------------------------------------
    def anchor_face(self, person_id: int, *, excluding: Iterable[int] = ()) -> int | None:
        """The face that stands for a person in decisions: its best 'ok' face with an embedding
        (lowest id among equals), not one of ``excluding``."""
        skip = sorted({int(i) for i in excluding})
        filt = f" AND id NOT IN ({placeholders(len(skip))})" if skip else ""
        return self.db.scalar(
            f"SELECT id FROM faces WHERE person_id = ? AND embedding IS NOT NULL{filt} "
            f"ORDER BY status = 'ok' DESC, quality DESC, id LIMIT 1", [int(person_id)] + skip)

    def move_faces(self, face_ids: Iterable[int], person_id: int | None) -> int:
        """Give these faces to ``person_id`` (None: no person); returns how many moved."""
        n = 0
        pid = None if person_id is None else int(person_id)
        for part in chunks(sorted({int(i) for i in face_ids})):
            n += self.db.execute(f"UPDATE faces SET person_id = ? WHERE id IN ({placeholders(len(part))})",
                                 [pid] + part).rowcount
        return n

    def add_decisions(self, kind: str, pairs: Iterable[tuple[int, int | None]], *, at: str | None = None) -> int:
        """Record decisions (pairs are ordered for storage; a repeated decision is kept once).
        Returns how many are new."""
        if kind not in DECISION_KINDS:
            raise ValueError(f"unknown decision kind {kind!r}")
        rows = []
        for a, b in pairs:
            if b is None:
                rows.append((kind, int(a), None))
            elif int(a) != int(b):
                rows.append((kind, min(int(a), int(b)), max(int(a), int(b))))
        ts = at or now()
        n = 0
        for row in rows:
            n += self.db.execute("INSERT OR IGNORE INTO decisions(kind, face_a, face_b, created_at) "
                                 "VALUES (?,?,?,?)", (*row, ts)).rowcount
        return n

    def drop_links_between(self, kind: str, faces_a: Iterable[int], faces_b: Iterable[int]) -> int:
        """Delete ``kind`` decisions joining a face of ``faces_a`` to one of ``faces_b`` (a merge overrides an
        earlier cannot-link between the two groups, a split an earlier must-link)."""
        a, b = sorted({int(i) for i in faces_a}), sorted({int(i) for i in faces_b})
        if not a or not b:
            return 0
        n = 0
        for pa in chunks(a, 400):
            for pb in chunks(b, 400):
                ma, mb = placeholders(len(pa)), placeholders(len(pb))
                n += self.db.execute(
                    f"DELETE FROM decisions WHERE kind = ? AND ((face_a IN ({ma}) AND face_b IN ({mb})) "
                    f"OR (face_a IN ({mb}) AND face_b IN ({ma})))", [kind] + pa + pb + pb + pa).rowcount
        return n

    def decisions_of(self, face_ids: Iterable[int]) -> list[Decision]:
        """Every decision that names one of these faces, by id."""
        out: dict[int, Decision] = {}
        for part in chunks(sorted({int(i) for i in face_ids}), 450):
            m = placeholders(len(part))
            for r in self.db.q(f"SELECT id, kind, face_a, face_b, created_at FROM decisions "
                               f"WHERE face_a IN ({m}) OR face_b IN ({m})", part + part):
                out[r[0]] = Decision(*r)
        return [out[k] for k in sorted(out)]

    def decision_counts(self) -> dict[str, int]:
        """kind -> how many decisions are recorded."""
        return dict(self.db.q("SELECT kind, COUNT(*) FROM decisions GROUP BY kind"))

    def not_a_person_faces(self) -> set[int]:
        """Faces a person marked as no person at all (poster, painting, screen)."""
        return {r[0] for r in self.db.q("SELECT face_a FROM decisions WHERE kind = 'not_a_person'")}

    def exports_holding_faces(self, face_ids: Iterable[int]) -> list[int]:
        """Exports whose items include one of these faces or their images (a review change makes them stale)."""
        out: set[int] = set()
        for part in chunks(sorted({int(i) for i in face_ids}), 450):
            m = placeholders(len(part))
            out.update(r[0] for r in self.db.q(
                f"SELECT DISTINCT export_id FROM export_items WHERE face_id IN ({m}) "
                f"OR image_id IN (SELECT image_id FROM faces WHERE id IN ({m}))", part + part))
        return sorted(out)

    # -- duplicates ---------------------------------------------------------------------------------------
    def dup_groups(self, *, after: int = 0, limit: int = 30) -> list[DupGroup]:
        """Near-duplicate groups by keeper id after ``after`` (keyset): keeper, then its copies by id."""
        keepers = [r[0] for r in self.db.q(
            "SELECT DISTINCT dup_of FROM images WHERE dup_of IS NOT NULL AND dup_of > ? ORDER BY dup_of LIMIT ?",
            (int(after), int(limit)))]
        members: dict[int, list[int]] = {k: [] for k in keepers}
        for part in chunks(keepers):
            for r in self.db.q(f"SELECT dup_of, id FROM images WHERE dup_of IN ({placeholders(len(part))}) "
                               f"ORDER BY dup_of, id", part):
                members[r[0]].append(r[1])
        return [DupGroup(k, members[k]) for k in keepers]

    def dup_group_of(self, image_id: int) -> DupGroup | None:
        """The near-duplicate group an image is in (as keeper or copy); None when it is in none."""
        r = self.db.one("SELECT id, dup_of FROM images WHERE id = ?", (int(image_id),))
        if r is None:
            return None
        keeper = r[1] if r[1] is not None else r[0]
        copies = [x[0] for x in self.db.q("SELECT id FROM images WHERE dup_of = ? ORDER BY id", (keeper,))]
        return DupGroup(keeper, copies) if copies else None

    def set_keeper(self, group: DupGroup, keeper: int) -> None:
        """Make ``keeper`` the kept image of ``group``: every other member points at it."""
        everyone = sorted({group.keeper, *group.members})
        m = placeholders(len(everyone))
        self.db.execute(f"UPDATE images SET dup_of = ? WHERE id IN ({m}) AND id != ?",
                        [int(keeper)] + everyone + [int(keeper)])
        self.db.execute("UPDATE images SET dup_of = NULL WHERE id = ?", (int(keeper),))

    def dup_group_count(self) -> int:
        return int(self.db.scalar("SELECT COUNT(DISTINCT dup_of) FROM images WHERE dup_of IS NOT NULL") or 0)

    # -- rejected files -----------------------------------------------------------------------------------
    def rejected_files(self, *, after: int = 0, limit: int = 100, reason: str | None = None) -> list[RejectedFile]:
        """Files ingest refused (no image row, so no thumbnail): where they were and why, by id after ``after``
        (keyset), optionally of one reason code. The curator's own paths: this page is never exported."""
        sql = ("SELECT f.id, s.name, f.path, f.size, f.reason_code, f.reason, f.seen_at FROM files f "
               "JOIN sources s ON s.id = f.source_id WHERE f.outcome = 'rejected' AND f.id > ?")
        params: list = [int(after)]
        if reason:
            sql += " AND f.reason_code = ?"
            params.append(reason)
        return [RejectedFile(*r) for r in self.db.q(sql + " ORDER BY f.id LIMIT ?", params + [int(limit)])]

    # -- audit and exports --------------------------------------------------------------------------------
    def audit_page(self, *, before: int | None = None, limit: int = 100, action: str | None = None) -> list[AuditRow]:
        """Audit entries newest first, with id below ``before`` (keyset), optionally of one action."""
        where, params = [], []
        if before is not None:
            where.append("id < ?")
            params.append(int(before))
        if action:
            where.append("action = ?")
            params.append(action)
        sql = "SELECT id, ts, actor, action, details FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [AuditRow(*r) for r in self.db.q(sql + " ORDER BY id DESC LIMIT ?", params + [int(limit)])]

    def audit_actions(self) -> list[str]:
        return [r[0] for r in self.db.q("SELECT DISTINCT action FROM audit ORDER BY action")]

    def exports_list(self) -> list[ExportRow]:
        """Every recorded export, newest first, with its item count and stale flag."""
        return [ExportRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7]) for r in self.db.q(
            """SELECT e.id, e.path, e.format, e.what, e.created_at, e.stale, e.stale_reason,
                      (SELECT COUNT(*) FROM export_items x WHERE x.export_id = e.id)
               FROM exports e ORDER BY e.id DESC""")]

    def face_count(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) FROM faces") or 0)

    # -- section: identity --
    def link_decisions(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(must-link, cannot-link) face pairs a person decided: clustering passes them to the algorithm
        so a rerun never undoes a human answer."""
        must: list[tuple[int, int]] = []
        cannot: list[tuple[int, int]] = []
        for kind, a, b in self.db.q("SELECT kind, face_a, face_b FROM decisions WHERE face_b IS NOT NULL "
                                    "AND kind IN ('must_link', 'cannot_link') ORDER BY id"):
            (must if kind == "must_link" else cannot).append((int(a), int(b)))
        return must, cannot
    # (end of section: identity)


IMAGE_FILTERS = _IMAGE_FILTERS
