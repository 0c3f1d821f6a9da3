"""Audit log reader (writes go through `Database.audit`); the log is append-only by trigger."""

from __future__ import annotations

import json

from .db import Repo


class Audit(Repo):
    """Rows of `audit`."""

    def entries(self, *, action: str | None = None, limit: int | None = None) -> list[dict]:
        """Newest first, ``details`` decoded: {id, ts, actor, action, details}."""
        sql, params = "SELECT id, ts, actor, action, details FROM audit", []
        if action:
            sql += " WHERE action=?"
            params.append(action)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [{**dict(r), "details": json.loads(r["details"])} for r in self.db.q(sql, params)]

    # -- section: privacy --
    # (end of section: privacy)
    # -- section: ingest --
    # (end of section: ingest)
    # -- section: curate --
    # (end of section: curate)
    # -- section: export --
    # (end of section: export)
