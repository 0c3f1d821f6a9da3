"""Settings: small stage parameters later stages must honour (e.g. the split parameters)."""

from __future__ import annotations

from .db import Repo


class Settings(Repo):
    """Rows of `settings`."""

    # -- section: ingest --
    # (end of section: ingest)
    # -- section: curate --
    # (end of section: curate)
    # -- section: export --
    # (end of section: export)
    # -- section: privacy --
    # (end of section: privacy)
