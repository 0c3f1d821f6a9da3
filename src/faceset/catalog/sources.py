"""Sources: where photos were read from, with their declared licence and consent basis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..errors import UsageError
from .db import Repo, now
from .schema import SOURCE_KINDS


@dataclass(frozen=True)
class SourceRecord:
    """One row of ``sources``: licence and consent are the defaults of the images read from it."""

    id: int
    name: str
    kind: str
    uri: str | None
    license: str
    consent: str
    consent_expires: str | None


class SourceSheetRow(NamedTuple):
    """A source as the datasheet shows it: declared terms, when it was added, photos, rejected files."""

    id: int
    kind: str
    license: str
    consent: str
    consent_expires: str | None
    created_at: str
    images: int
    rejected: int


class Sources(Repo):
    """Rows of `sources`."""

    # -- section: ingest --
    _COLS = "id, name, kind, uri, license, consent, consent_expires"

    def by_name(self, name: str) -> SourceRecord | None:
        """The source called ``name`` (names are unique; ``--source-name`` picks one)."""
        r = self.db.one(f"SELECT {self._COLS} FROM sources WHERE name=?", (name,))
        return SourceRecord(*r) if r else None

    def by_location(self, kind: str, uri: str) -> SourceRecord | None:
        """The source read earlier from the same place, so a re-ingest joins it instead of a new one."""
        r = self.db.one(f"SELECT {self._COLS} FROM sources WHERE kind=? AND uri=? ORDER BY id LIMIT 1", (kind, uri))
        return SourceRecord(*r) if r else None

    def name_taken(self, name: str) -> bool:
        return self.db.scalar("SELECT 1 FROM sources WHERE name=?", (name,)) is not None

    def ensure(self, name: str, *, kind: str, uri: str | None, license: str, consent: str) -> int:
        """Id of the source ``name``, created (and audited) if it does not exist yet. One unit of work."""
        if kind not in SOURCE_KINDS:
            raise UsageError(f"source kind {kind!r} is not one of {', '.join(SOURCE_KINDS)}")
        with self.db.tx():
            sid = self.db.scalar("SELECT id FROM sources WHERE name=?", (name,))
            if sid is not None:
                return int(sid)
            cur = self.db.execute(
                "INSERT INTO sources(name, kind, uri, license, consent, created_at) VALUES (?,?,?,?,?,?)",
                (name, kind, uri, license, consent, now()))
            self.db.audit("source.create", kind=kind, license=license, consent=consent)
            return int(cur.lastrowid)

    def summary(self) -> list[dict]:
        """Per source, in creation order: name, kind, licence, consent, images, duplicate and rejected files."""
        return [dict(r) for r in self.db.q(
            """SELECT s.name, s.kind, s.license, s.consent,
                      (SELECT COUNT(*) FROM images i WHERE i.source_id=s.id) AS images,
                      (SELECT COUNT(*) FROM files f WHERE f.source_id=s.id AND f.outcome='duplicate') AS duplicates,
                      (SELECT COUNT(*) FROM files f WHERE f.source_id=s.id AND f.outcome='rejected') AS rejected
               FROM sources s ORDER BY s.id""")]
    # (end of section: ingest)
    # -- section: curate --
    # (end of section: curate)
    # -- section: export --
    def records(self) -> list[SourceRecord]:
        """Every source, by id."""
        return [SourceRecord(*r) for r in self.db.q(
            "SELECT id, name, kind, uri, license, consent, consent_expires FROM sources ORDER BY id")]

    def for_datasheet(self) -> list[SourceSheetRow]:
        """Every source with its photo and rejected-file counts, by id (the datasheet's collection table)."""
        return [SourceSheetRow(*r) for r in self.db.q(
            """SELECT s.id, s.kind, s.license, s.consent, s.consent_expires, s.created_at,
                      (SELECT COUNT(*) FROM images i WHERE i.source_id=s.id),
                      (SELECT COUNT(*) FROM files f WHERE f.source_id=s.id AND f.outcome='rejected')
               FROM sources s ORDER BY s.id""")]
    # (end of section: export)
    # -- section: privacy --
    def delete_unused(self, source_ids) -> int:
        """Delete those of these sources that no image or files row refers to any more: after an
        erasure, a source that only ever held that person (e.g. one file) would still name them."""
        n = 0
        for sid in sorted({int(i) for i in source_ids}):
            n += self.db.execute("DELETE FROM sources WHERE id=? AND NOT EXISTS (SELECT 1 FROM images WHERE "
                                 "source_id=?) AND NOT EXISTS (SELECT 1 FROM files WHERE source_id=?)",
                                 (sid, sid, sid)).rowcount
        return n
    # (end of section: privacy)
