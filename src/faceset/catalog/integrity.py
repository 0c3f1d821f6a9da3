"""Integrity checks of the catalog itself (what `faceset verify` asks the database)."""

from __future__ import annotations

from typing import NamedTuple

from .db import Repo
from .schema import STORE_KEY_COLUMNS


class KeyRef(NamedTuple):
    table: str
    column: str
    row_id: int
    key: str


class Integrity(Repo):
    """Reads across tables; no writes."""

    def integrity_errors(self, limit: int = 20) -> list[str]:
        rows = [r[0] for r in self.db.q(f"PRAGMA integrity_check({int(limit)})")]
        return [] if rows == ["ok"] else rows

    def foreign_key_errors(self) -> list[tuple[str, int, str]]:
        """(table, rowid, parent table) of every row whose reference points nowhere."""
        return [(r[0], r[1], r[2]) for r in self.db.q("PRAGMA foreign_key_check")]

    def key_refs(self) -> list[KeyRef]:
        """Every store key the catalog references, with where (the columns in schema.STORE_KEY_COLUMNS)."""
        out: list[KeyRef] = []
        for table, col in STORE_KEY_COLUMNS:
            out += [KeyRef(table, col, r[0], r[1])
                    for r in self.db.q(f"SELECT id, {col} FROM {table} WHERE {col} IS NOT NULL")]
        return out

    def referenced_keys(self) -> set[str]:
        return {k.key for k in self.key_refs()}

    def export_paths(self) -> list[tuple[int, str, bool]]:
        """(export id, recorded path, stale) of every export."""
        return [(r[0], r[1], bool(r[2])) for r in self.db.q("SELECT id, path, stale FROM exports ORDER BY id")]
