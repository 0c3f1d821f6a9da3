"""Exports: what was published where, item by item, and whether it is stale."""

from __future__ import annotations

import json
from typing import Iterable, NamedTuple

from ..errors import UsageError
from .db import Repo, chunks, now, placeholders
from .schema import EXPORT_FORMATS, EXPORT_WHAT


class ExportRecord(NamedTuple):
    """One recorded export: where, how, every parameter needed to rebuild it, and whether it is stale."""

    id: int
    path: str
    format: str
    what: str
    params: dict
    created_at: str
    stale: bool
    stale_reason: str | None


class Exports(Repo):
    """Rows of `exports` and `export_items`."""

    # -- section: export --
    _COLS = "id, path, format, what, params, created_at, stale, stale_reason"

    @staticmethod
    def _row(r) -> ExportRecord:
        return ExportRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], bool(r[6]), r[7])

    def get(self, export_id: int) -> ExportRecord | None:
        r = self.db.one(f"SELECT {self._COLS} FROM exports WHERE id=?", (int(export_id),))
        return None if r is None else self._row(r)

    def latest_at(self, path: str) -> ExportRecord | None:
        """The export last recorded at ``path`` (re-exporting there replaces it, same id and salt)."""
        r = self.db.one(f"SELECT {self._COLS} FROM exports WHERE path=? ORDER BY id DESC LIMIT 1", (str(path),))
        return None if r is None else self._row(r)

    def stale(self) -> list[ExportRecord]:
        """Exports erasure marked stale, by id: what ``export --refresh`` rebuilds."""
        return [self._row(r) for r in self.db.q(f"SELECT {self._COLS} FROM exports WHERE stale=1 ORDER BY id")]

    def all(self) -> list[ExportRecord]:
        return [self._row(r) for r in self.db.q(f"SELECT {self._COLS} FROM exports ORDER BY id")]

    def record(self, *, path: str, format: str, what: str, params: dict, items: Iterable[tuple[int, int | None]],
               export_id: int | None = None) -> int:
        """Record an export and every (image id, face id) it holds, so erasure finds the exports that
        published an image; ``export_id`` replaces that export's row and items (fresh, not stale).
        One unit of work; returns the export id."""
        if format not in EXPORT_FORMATS:
            raise UsageError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, not {format!r}")
        if what not in EXPORT_WHAT:
            raise UsageError(f"export content must be one of {', '.join(EXPORT_WHAT)}, not {what!r}")
        blob = json.dumps(params, sort_keys=True)
        with self.db.tx():
            if export_id is None:
                export_id = int(self.db.execute(
                    "INSERT INTO exports(path, format, what, params, created_at) VALUES (?,?,?,?,?)",
                    (str(path), format, what, blob, now())).lastrowid)
            else:
                self.db.execute("UPDATE exports SET path=?, format=?, what=?, params=?, created_at=?, stale=0, "
                                "stale_reason=NULL WHERE id=?", (str(path), format, what, blob, now(), int(export_id)))
                self.db.execute("DELETE FROM export_items WHERE export_id=?", (int(export_id),))
            self.db.executemany("INSERT INTO export_items(export_id, image_id, face_id) VALUES (?,?,?)",
                                [(export_id, int(i), None if f is None else int(f)) for i, f in items])
        return export_id

    def items(self, export_id: int) -> list[tuple[int, int | None]]:
        """(image id, face id) of every record an export holds (face id None for whole photos)."""
        return [(r[0], r[1]) for r in self.db.q(
            "SELECT image_id, face_id FROM export_items WHERE export_id=? ORDER BY rowid", (int(export_id),))]
    # (end of section: export)
    # -- section: ingest --
    # (end of section: ingest)
    # -- section: curate --
    # (end of section: curate)
    # -- section: privacy --
    def holding(self, *, image_ids: Iterable[int] = (), face_ids: Iterable[int] = ()) -> list[int]:
        """Ids of the exports that published any of these images or faces (they turn stale on erasure)."""
        out: set[int] = set()
        for col, ids in (("image_id", image_ids), ("face_id", face_ids)):
            for part in chunks(sorted({int(i) for i in ids})):
                out.update(r[0] for r in self.db.q(
                    f"SELECT DISTINCT export_id FROM export_items WHERE {col} IN ({placeholders(len(part))})", part))
        return sorted(out)

    def mark_stale(self, export_ids: Iterable[int], reason: str) -> int:
        """Flag exports whose files no longer match the catalog (``export --refresh`` rebuilds them)."""
        n = 0
        for part in chunks(sorted({int(i) for i in export_ids})):
            n += self.db.execute(f"UPDATE exports SET stale=1, stale_reason=? WHERE id IN ({placeholders(len(part))})",
                                 [reason, *part]).rowcount
        return n
    # (end of section: privacy)
    # -- section: harden_a --
    def changed_items(self, what: str, items: Iterable[tuple[int, int | None, str]]) -> int:
        """How many of an export's (image id, face id, store key) no longer hold that key: erased,
        redacted or blocked since the export selected them. Called inside the export's commit
        transaction, so no erasure can slip in between this check and the export's record."""
        items = list(items)
        if what == "images":
            col, ids = "store_key", [(int(i), k) for i, _, k in items]
            sql = "SELECT id, store_key FROM images WHERE status <> 'blocked' AND id IN ({})"
        else:
            col = "chip_key" if what == "chips" else "crop_key"
            ids = [(int(f), k) for _, f, k in items if f is not None]
            sql = f"SELECT id, {col} FROM faces WHERE id IN ({{}})"
        current: dict[int, str] = {}
        for part in chunks(sorted({i for i, _ in ids})):
            current.update((r[0], r[1]) for r in self.db.q(sql.format(placeholders(len(part))), part))
        missing_faces = sum(1 for _, f, _ in items if f is None) if what != "images" else 0
        return missing_faces + sum(1 for i, k in ids if current.get(i) != k)

    def mark_stale_at(self, path: str, reason: str) -> int:
        """Flag the export recorded at ``path`` stale (its folder's content is not what the catalog says)."""
        return self.db.execute("UPDATE exports SET stale=1, stale_reason=? WHERE path=?", (reason, str(path))).rowcount
    # (end of section: harden_a)
