"""Images and files: one row per distinct image, one per original path seen (rejects included)."""

from __future__ import annotations

import re
from typing import Iterable, NamedTuple

from .db import Repo, chunks, now, placeholders
from .schema import STORE_KEY_COLUMNS


class OriginalFile(NamedTuple):
    """One original path of an image, with its source's kind and location (to tell the owner where it is)."""

    path: str
    kind: str
    uri: str | None


class StoredImage(NamedTuple):
    """What erasing an image must also reach: its stored copy, its original file hash and its source."""

    id: int
    store_key: str
    sha256: str
    source_id: int


class SeenFile(NamedTuple):
    """A path a source already recorded: the hash of the bytes it had (None when they were never read)."""

    sha256: str | None


class Duplicate(NamedTuple):
    """The kept image a new file duplicates, how (``same_bytes`` | ``same_pixels``) and its stored copy."""

    image_id: int
    how: str
    store_key: str


class UnusableImage(NamedTuple):
    """An image scan could not use (no face, or it failed), with why."""

    id: int
    store_key: str
    status: str
    status_reason: str | None


class RejectedFile(NamedTuple):
    """An original path ingest refused, with its reason code and detail."""

    path: str
    reason_code: str
    reason: str | None


_HEX64 = re.compile(r"[0-9a-f]{64}")


class Images(Repo):
    """Rows of ``images`` and ``files``."""

    def first_paths(self, image_ids: Iterable[int]) -> dict[int, str]:
        """image id -> the first original path recorded for it (the owner's view; never exported)."""
        out: dict[int, str] = {}
        for part in chunks(image_ids):
            for r in self.db.q(f"SELECT image_id, path FROM files WHERE id IN (SELECT MIN(id) FROM files "
                               f"WHERE image_id IN ({placeholders(len(part))}) GROUP BY image_id)", part):
                out[r[0]] = r[1]
        return out

    def store_key(self, image_id: int) -> str | None:
        return self.db.scalar("SELECT store_key FROM images WHERE id=?", (int(image_id),))

    # -- section: ingest --
    # Ingest's per-file statements run inside its one transaction per batch: one or two cheap
    # indexed statements per file, nothing more (ingest runs at ~1,700 files/s).
    def seen_file(self, source_id: int, path: str) -> SeenFile | None:
        """What this source recorded at ``path`` earlier, or None: a rerun skips what it has seen."""
        r = self.db.execute("SELECT sha256 FROM files WHERE source_id=? AND path=?", (source_id, path)).fetchone()
        return None if r is None else SeenFile(r[0])

    def record_file(self, source_id: int, path: str, *, sha256: str | None, size: int | None,
                    image_id: int | None, outcome: str, reason_code: str | None = None,
                    reason: str | None = None) -> None:
        """Record (or re-record, when its bytes changed) one original path and its outcome.

        ``outcome`` is one of FILE_OUTCOMES; ``reason_code`` is None exactly when it is 'added'
        (a REJECT_CODES value for 'rejected', a DUPLICATE_CODES value for 'duplicate').
        """
        self.db.execute(
            """INSERT INTO files(source_id, path, sha256, size, image_id, outcome, reason_code, reason, seen_at)
               VALUES (?,?,?,?,?,?,?,?,?)
               ON CONFLICT(source_id, path) DO UPDATE SET sha256=excluded.sha256, size=excluded.size,
                 image_id=excluded.image_id, outcome=excluded.outcome, reason_code=excluded.reason_code,
                 reason=excluded.reason, seen_at=excluded.seen_at""",
            (source_id, path, sha256, size, image_id, outcome, reason_code, reason, now()))

    def find_duplicate(self, sha256: str, pixel_sha: str) -> Duplicate | None:
        """The image a file with these bytes / these decoded pixels already is, or None if it is new."""
        r = self.db.execute(
            "SELECT f.image_id, i.store_key FROM files f JOIN images i ON i.id=f.image_id "
            "WHERE f.sha256=? AND f.image_id IS NOT NULL LIMIT 1", (sha256,)).fetchone()
        if r is not None:
            return Duplicate(r[0], "same_bytes", r[1])
        r = self.db.execute("SELECT id, store_key FROM images WHERE pixel_sha=?", (pixel_sha,)).fetchone()
        return None if r is None else Duplicate(r[0], "same_pixels", r[1])

    def add(self, *, pixel_sha: str, sha256: str, store_key: str, format: str, width: int, height: int,
            nbytes: int, source_id: int, license: str | None, consent: str | None,
            consent_expires: str | None) -> int:
        """A new image (status 'new', waiting for scan); licence/consent None = the source's. Returns its id."""
        return self.db.execute(
            """INSERT INTO images(pixel_sha, sha256, store_key, format, width, height, bytes, source_id,
                                  license, consent, consent_expires, status, created_at)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,'new',?)""",
            (pixel_sha, sha256, store_key, format, width, height, nbytes, source_id,
             license, consent, consent_expires, now())).lastrowid

    def store_key_in_use(self, store_key: str) -> bool:
        """Does an image still point at this stored copy? (Unreferenced copies can be deleted.)"""
        return self.db.scalar("SELECT 1 FROM images WHERE store_key=? LIMIT 1", (store_key,)) is not None

    def count_by_status(self) -> dict[str, int]:
        """status -> number of images, by status name."""
        return {r[0]: r[1] for r in self.db.q("SELECT status, COUNT(*) FROM images GROUP BY status ORDER BY status")}

    def files_by_outcome(self) -> dict[str, int]:
        """Every original path seen: outcome (added | duplicate | rejected) -> count, most first."""
        return {r[0]: r[1] for r in self.db.q("SELECT outcome, COUNT(*) FROM files GROUP BY outcome ORDER BY 2 DESC")}

    def rejected_by_reason(self) -> dict[str, int]:
        """Rejected files: reason code -> count, most first."""
        return {r[0]: r[1] for r in self.db.q(
            "SELECT reason_code, COUNT(*) FROM files WHERE outcome='rejected' GROUP BY reason_code ORDER BY 2 DESC")}

    def unusable(self, limit: int) -> list[UnusableImage]:
        """Up to ``limit`` images scan found no face in or failed on, by id (the 'rejected' contact sheet)."""
        return [UnusableImage(*r) for r in self.db.q(
            "SELECT id, store_key, status, status_reason FROM images WHERE status IN ('no_face','error') "
            "ORDER BY id LIMIT ?", (int(limit),))]
    # (end of section: ingest)
    # -- section: privacy --
    # (scan's reads and writes of image rows live here too: scan is the privacy helper's)
    def pending(self, after_id: int = 0, limit: int = 256) -> list[tuple[int, str]]:
        """(id, store key) of images not scanned yet (status 'new'), by id after ``after_id``: one page."""
        return [(r[0], r[1]) for r in self.db.q(
            "SELECT id, store_key FROM images WHERE status='new' AND id>? ORDER BY id LIMIT ?",
            (int(after_id), int(limit)))]

    def count_with_status(self, status: str) -> int:
        """How many images have this status (e.g. 'new': not scanned yet)."""
        return int(self.db.scalar("SELECT COUNT(*) FROM images WHERE status=?", (status,)))

    def ids_with_status(self, status: str) -> list[int]:
        """Ids of images with this status (e.g. 'blocked': waiting to be purged)."""
        return [r[0] for r in self.db.q("SELECT id FROM images WHERE status=? ORDER BY id", (status,))]

    def exists(self, image_id: int) -> bool:
        return self.db.one("SELECT 1 FROM images WHERE id=?", (int(image_id),)) is not None

    def set_scanned(self, image_id: int, status: str, reason: str | None, scanned_at: str) -> None:
        """Record a scan outcome (ok | no_face | error | blocked) and why."""
        self.db.execute("UPDATE images SET status=?, status_reason=?, scanned_at=? WHERE id=?",
                        (status, reason, scanned_at, int(image_id)))

    def original_files(self, image_ids: Iterable[int]) -> dict[int, list[OriginalFile]]:
        """image id -> every original path recorded for it, in the order seen (the owner's view)."""
        out: dict[int, list[OriginalFile]] = {}
        for part in chunks(sorted({int(i) for i in image_ids})):
            for r in self.db.q(f"""SELECT f.image_id, f.path, s.kind, s.uri FROM files f
                                   JOIN sources s ON s.id = f.source_id
                                   WHERE f.image_id IN ({placeholders(len(part))}) ORDER BY f.id""", part):
                out.setdefault(r[0], []).append(OriginalFile(r[1], r[2], r[3]))
        return out

    def stored(self, image_ids: Iterable[int]) -> list[StoredImage]:
        """Store key, original hash and source of these images."""
        out: list[StoredImage] = []
        for part in chunks(sorted({int(i) for i in image_ids})):
            out += [StoredImage(*r) for r in self.db.q(
                f"SELECT id, store_key, sha256, source_id FROM images WHERE id IN ({placeholders(len(part))})", part)]
        return out

    def erase(self, image_ids: Iterable[int]) -> int:
        """Delete these images and every files row that names them or holds their original bytes
        (rejected or duplicate copies of the same file): returns the files rows deleted. Faces,
        labels and export items go with the images by foreign key."""
        ids = sorted({int(i) for i in image_ids})
        shas = sorted({r.sha256 for r in self.stored(ids)})
        n = 0
        for part in chunks(ids):
            n += self.db.execute(f"DELETE FROM files WHERE image_id IN ({placeholders(len(part))})", part).rowcount
        for part in chunks(shas):
            n += self.db.execute(f"DELETE FROM files WHERE sha256 IN ({placeholders(len(part))})", part).rowcount
        for part in chunks(ids):
            self.db.execute(f"DELETE FROM images WHERE id IN ({placeholders(len(part))})", part)
        return n

    def replace_copy(self, image_id: int, store_key: str, pixel_sha: str, nbytes: int) -> None:
        """Point an image at a new stored copy (a redacted one); its original hash stays."""
        self.db.execute("UPDATE images SET store_key=?, pixel_sha=?, bytes=? WHERE id=?",
                        (store_key, pixel_sha, int(nbytes), int(image_id)))

    def referenced_keys(self) -> set[str]:
        """Every store key the catalog still references, from the columns ``STORE_KEY_COLUMNS`` lists.

        Key columns only, never other hashes: images.sha256 (the original file's hash) can equal an
        old stored copy's key and must not keep an unredacted copy alive.
        """
        keys: set[str] = set()
        for table, col in STORE_KEY_COLUMNS:
            for (v,) in self.db.q(f"SELECT DISTINCT {col} FROM {table} WHERE typeof({col})='text'"):
                if _HEX64.fullmatch(v):
                    keys.add(v)
        return keys
    # (end of section: privacy)
    # -- section: curate --
    def unhashed(self) -> list[int]:
        """Images without a perceptual hash yet (scan errors excluded: no readable copy), by id."""
        return [r[0] for r in self.db.q(
            "SELECT id FROM images WHERE phash IS NULL AND status != 'error' ORDER BY id")]

    def set_phashes(self, hashes: Iterable[tuple[int, str, str]]) -> None:
        """Store (image id, phash hex, mirrored phash hex) triples."""
        self.db.executemany("UPDATE images SET phash=?, phash_flip=? WHERE id=?",
                            [(h, hf, int(i)) for i, h, hf in hashes])

    def hashed(self) -> list[tuple[int, int, str, str]]:
        """(image id, width * height, phash hex, mirrored phash hex) of every hashed image, by id."""
        return [(r[0], r[1] * r[2], r[3], r[4]) for r in self.db.q(
            "SELECT id, width, height, phash, phash_flip FROM images WHERE phash IS NOT NULL ORDER BY id")]

    def exact_copies(self) -> tuple[int, int]:
        """(images, files) of exact copies collapsed at ingest: images with more than one added or
        duplicate file, and those files."""
        r = self.db.one(
            """SELECT COUNT(*), COALESCE(SUM(n), 0) FROM
               (SELECT image_id, COUNT(*) AS n FROM files WHERE image_id IS NOT NULL
                AND outcome IN ('added','duplicate') GROUP BY image_id HAVING COUNT(*) > 1)""")
        return int(r[0]), int(r[1])

    def set_dup_of(self, dup_of: dict[int, int]) -> None:
        """Replace every near-duplicate link: image (key) -> its group's kept image (value); every
        other image is unlinked. Part of the caller's transaction."""
        self.db.execute("UPDATE images SET dup_of=NULL WHERE dup_of IS NOT NULL")
        self.db.executemany("UPDATE images SET dup_of=? WHERE id=?", [(int(k), int(i)) for i, k in dup_of.items()])
    # (end of section: curate)
    # -- section: export --
    def duplicate_groups(self) -> dict[int, list[int]]:
        """kept image id -> ids of its near-duplicates (images.dup_of), both ascending."""
        groups: dict[int, list[int]] = {}
        for r in self.db.q("SELECT id, dup_of FROM images WHERE dup_of IS NOT NULL ORDER BY dup_of, id"):
            groups.setdefault(r[1], []).append(r[0])
        return groups

    def rejected_files(self) -> list[RejectedFile]:
        """Every file ingest rejected, in the order seen (the owner's report names them)."""
        return [RejectedFile(*r) for r in self.db.q(
            "SELECT path, reason_code, reason FROM files WHERE outcome='rejected' ORDER BY id")]
    # (end of section: export)
