"""Blocklist: templates of forgotten people (a float16 unit centroid + radius, nothing else)."""

from __future__ import annotations

from typing import NamedTuple

from .db import Repo, now


class Entry(NamedTuple):
    """What may be shown of an entry: never the template."""

    id: int
    radius: float
    created_at: str


class Template(NamedTuple):
    id: int
    template: bytes  # float16[128] unit vector
    radius: float


class Blocklist(Repo):
    """Rows of `blocklist`."""

    def add(self, template: bytes, radius: float) -> int:
        """Store one template (already reduced to a float16 unit mean); returns its id."""
        cur = self.db.execute("INSERT INTO blocklist(template, radius, created_at) VALUES (?,?,?)",
                              (template, float(radius), now()))
        return int(cur.lastrowid)

    def remove(self, blocklist_id: int) -> bool:
        """Delete one template (secure_delete zeroes its page); False when there is no such entry."""
        return bool(self.db.execute("DELETE FROM blocklist WHERE id=?", (int(blocklist_id),)).rowcount)

    def entries(self) -> list[Entry]:
        return [Entry(*r) for r in self.db.q("SELECT id, radius, created_at FROM blocklist ORDER BY id")]

    def templates(self) -> list[Template]:
        """Every template, for matching new faces against (scan, forget)."""
        return [Template(r[0], bytes(r[1]), r[2]) for r in
                self.db.q("SELECT id, template, radius FROM blocklist ORDER BY id")]

    def count(self) -> int:
        """How many people are blocked (scan skips the matching step when none is)."""
        return int(self.db.scalar("SELECT COUNT(*) FROM blocklist"))

    # -- section: privacy --
    # (end of section: privacy)
    # -- section: ingest --
    # (end of section: ingest)
    # -- section: curate --
    # (end of section: curate)
    # -- section: export --
    # (end of section: export)
