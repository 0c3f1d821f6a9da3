"""Reading the append-only audit log (writes go through ``Catalog.audit``; triggers forbid edits)."""

from __future__ import annotations

from ..errors import UsageError
from ..workspace import Workspace


def entries(ws: Workspace, *, action: str | None = None, limit: int | None = None) -> list[dict]:
    """Newest first: who did what, when, with which counts. Details are JSON (never biometric)."""
    if limit is not None and int(limit) < 0:
        raise UsageError(f"limit must be >= 0, not {limit}")
    return ws.catalog.audit_log.entries(action=action, limit=limit)
