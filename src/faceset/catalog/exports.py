"""Exports: what was published where, item by item, and whether it is stale."""

from __future__ import annotations

from .db import Repo


class Exports(Repo):
    """Rows of `exports` and `export_items`."""

    # -- section: export --
    # (end of section: export)
    # -- section: ingest --
    # (end of section: ingest)
    # -- section: curate --
    # (end of section: curate)
    # -- section: privacy --
    # (end of section: privacy)
