"""Settings: small stage parameters later stages must honour (e.g. the split parameters)."""

from __future__ import annotations

import json
from typing import Any

from .db import Repo, now


class Settings(Repo):
    """Rows of `settings`."""

    # -- section: ingest --
    # (end of section: ingest)
    # -- section: curate --
    # (end of section: curate)
    # -- section: export --
    def get_json(self, key: str) -> Any:
        """The JSON value stored under ``key``, or None when it was never set."""
        v = self.db.scalar("SELECT value FROM settings WHERE key=?", (key,))
        return json.loads(v) if v else None

    def put_json(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON) under ``key``, replacing what was there."""
        self.db.execute(
            "INSERT INTO settings(key, value, updated_at) VALUES (?,?,?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
            (key, json.dumps(value), now()))
    # (end of section: export)
    # -- section: privacy --
    # (end of section: privacy)
