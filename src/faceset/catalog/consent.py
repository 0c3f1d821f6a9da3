"""Consent: the effective basis and expiry of an image, face or person (person > image > source)."""

from __future__ import annotations

from .db import Repo


class Consent(Repo):
    """Reads over sources, images and people."""

    # -- section: privacy --
    # (end of section: privacy)
    # -- section: ingest --
    # (end of section: ingest)
    # -- section: curate --
    # (end of section: curate)
    # -- section: export --
    # (end of section: export)
