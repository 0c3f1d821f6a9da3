"""Blocklist: templates of forgotten people (a float16 unit centroid + radius, nothing else)."""

from __future__ import annotations

from .db import Repo


class Blocklist(Repo):
    """Rows of `blocklist`."""

    # -- section: privacy --
    # (end of section: privacy)
    # -- section: ingest --
    # (end of section: ingest)
    # -- section: curate --
    # (end of section: curate)
    # -- section: export --
    # (end of section: export)
