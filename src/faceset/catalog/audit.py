"""Audit log reader (writes go through `Database.audit`); the log is append-only by trigger."""

from __future__ import annotations

from .db import Repo


class Audit(Repo):
    """Rows of `audit`."""

    # -- section: privacy --
    # (end of section: privacy)
    # -- section: ingest --
    # (end of section: ingest)
    # -- section: curate --
    # (end of section: curate)
    # -- section: export --
    # (end of section: export)
