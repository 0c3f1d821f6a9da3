"""People: who is who (clusters of faces), their centroids and per-person consent."""

from __future__ import annotations

from .db import Repo


class People(Repo):
    """Rows of `people`."""

    # -- section: curate --
    # (end of section: curate)
    # -- section: ingest --
    # (end of section: ingest)
    # -- section: export --
    # (end of section: export)
    # -- section: privacy --
    # (end of section: privacy)
