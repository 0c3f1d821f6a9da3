"""The one dataset selection: an ordered rule table (reason_code, predicate) that filters and counts."""

from __future__ import annotations

from .db import Repo


class Selection(Repo):
    """What export, train and the datasheet read."""

    # -- section: export --
    # (end of section: export)
    # -- section: ingest --
    # (end of section: ingest)
    # -- section: curate --
    # (end of section: curate)
    # -- section: privacy --
    # (end of section: privacy)
