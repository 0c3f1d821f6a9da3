"""The catalog: the single source of truth, and the only code that speaks SQL.

``Catalog`` is the connection (``db.Database``: WAL, migrations, ``tx()``, ``audit()``) plus one
repository per aggregate, each a set of named queries with typed results::

    ws.catalog.images.first_paths(ids)      ws.catalog.faces.main_of(image_ids)
    ws.catalog.exports.mark_stale(ids, why) ws.catalog.consent.effective_faces(face_ids)

Stages never build SQL; they call these. ``schema.py`` holds the migrations and the enumerations
their CHECK constraints spell.
"""

from __future__ import annotations

from functools import cached_property

from .audit import Audit
from .blocklist import Blocklist
from .campaigns import Campaigns
from .consent import Consent
from .db import Database, SchemaTooNew, chunks, now, placeholders, split_sql
from .erasures import Erasures
from .exports import Exports
from .faces import Faces
from .images import Images
from .integrity import Integrity
from .labels import Labels
from .people import People
from .review import Review
from .schema import (
    CONSENT_BASES,
    FACE_STATUSES,
    FILE_OUTCOMES,
    IMAGE_STATUSES,
    LABEL_ORIGINS,
    MIGRATIONS,
    REJECT_CODES,
    SPLITS,
    STORE_KEY_COLUMNS,
)
from .selection import Selection
from .settings import Settings
from .sources import Sources

__all__ = [
    "Catalog", "SchemaTooNew", "now", "MIGRATIONS", "CONSENT_BASES", "IMAGE_STATUSES", "FACE_STATUSES",
    "FILE_OUTCOMES", "REJECT_CODES", "LABEL_ORIGINS", "SPLITS", "STORE_KEY_COLUMNS", "split_sql",
    "chunks", "placeholders",
]

_split_sql = split_sql  # the name tests of the v1 migration use


class Catalog(Database):
    """The connection plus one repository per aggregate (created on first use)."""

    @cached_property
    def sources(self) -> Sources:
        return Sources(self)

    @cached_property
    def images(self) -> Images:
        return Images(self)

    @cached_property
    def faces(self) -> Faces:
        return Faces(self)

    @cached_property
    def people(self) -> People:
        return People(self)

    @cached_property
    def labels(self) -> Labels:
        return Labels(self)

    @cached_property
    def exports(self) -> Exports:
        return Exports(self)

    @cached_property
    def erasures(self) -> Erasures:
        return Erasures(self)

    @cached_property
    def consent(self) -> Consent:
        return Consent(self)

    @cached_property
    def blocklist(self) -> Blocklist:
        return Blocklist(self)

    @cached_property
    def settings(self) -> Settings:
        return Settings(self)

    @cached_property
    def audit_log(self) -> Audit:
        return Audit(self)

    @cached_property
    def selection(self) -> Selection:
        return Selection(self)

    @cached_property
    def integrity(self) -> Integrity:
        return Integrity(self)

    @cached_property
    def review(self) -> Review:
        return Review(self)

    @cached_property
    def campaigns(self) -> Campaigns:
        return Campaigns(self)
