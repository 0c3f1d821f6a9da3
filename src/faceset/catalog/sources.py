"""Sources: where photos were read from, with their declared licence and consent basis."""

from __future__ import annotations

from .db import Repo


class Sources(Repo):
    """Rows of `sources`."""

    # -- section: ingest --
    # (end of section: ingest)
    # -- section: curate --
    # (end of section: curate)
    # -- section: export --
    # (end of section: export)
    # -- section: privacy --
    # (end of section: privacy)
