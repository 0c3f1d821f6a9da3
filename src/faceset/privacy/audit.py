"""Reading the append-only audit log (writes go through ``Catalog.audit``; triggers forbid edits)."""

from __future__ import annotations

import json

from ..workspace import Workspace


def entries(ws: Workspace, *, action: str | None = None, limit: int | None = None) -> list[dict]:
    """Newest first: who did what, when, with which counts. Details are JSON (never biometric)."""
    sql = "SELECT id, ts, actor, action, details FROM audit"
    params: list = []
    if action:
        sql += " WHERE action=?"
        params.append(action)
    sql += " ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [{**dict(r), "details": json.loads(r["details"])} for r in ws.catalog.q(sql, params)]
