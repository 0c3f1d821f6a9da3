"""Labels of images (name -> value, with where each came from)."""

from __future__ import annotations

from .db import Repo


class Labels(Repo):
    """Rows of `labels`."""

    # -- section: curate --
    # (end of section: curate)
    # -- section: ingest --
    # (end of section: ingest)
    # -- section: export --
    # (end of section: export)
    # -- section: privacy --
    # (end of section: privacy)
