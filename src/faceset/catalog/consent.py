"""Consent: the effective basis and expiry of an image, face or person (person > image > source)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Iterable, NamedTuple

from .db import Repo, chunks, placeholders

LEVELS = ("source", "person", "image")


@dataclass(frozen=True)
class Effective:
    """The basis that governs an image or face, its expiry (ISO date or None) and where it was set."""

    basis: str
    expires: str | None
    level: str  # person | image | source

    def expired(self, today: date | None = None) -> bool:
        return self.expires is not None and date.fromisoformat(self.expires[:10]) < (today or date.today())

    def usable(self, today: date | None = None) -> bool:
        """May this go into an export by default? Not when unknown or past its expiry."""
        return self.basis != "unknown" and not self.expired(today)

    def to_dict(self) -> dict:
        return asdict(self)


class SourceBasis(NamedTuple):
    name: str
    license: str
    basis: str
    expires: str | None
    images: int


class Override(NamedTuple):
    """A per-person or per-image basis (``faces`` is the person's face count, None for an image)."""

    id: int
    basis: str
    expires: str | None
    faces: int | None


_IMAGE_SQL = """
SELECT i.id,
       CASE WHEN i.consent IS NOT NULL THEN i.consent ELSE s.consent END AS basis,
       CASE WHEN i.consent IS NOT NULL THEN i.consent_expires ELSE s.consent_expires END AS expires,
       CASE WHEN i.consent IS NOT NULL THEN 'image' ELSE 'source' END AS level
FROM images i JOIN sources s ON s.id = i.source_id
"""

_FACE_SQL = """
SELECT f.id, f.image_id, p.consent AS p_basis, p.consent_expires AS p_expires
FROM faces f LEFT JOIN people p ON p.id = f.person_id
"""

_SET_SQL = {
    "source": "UPDATE sources SET consent=?, consent_expires=? WHERE name=?",
    "person": "UPDATE people SET consent=?, consent_expires=? WHERE id=?",
    "image": "UPDATE images SET consent=?, consent_expires=? WHERE id=?",
}


class Consent(Repo):
    """Reads over sources, images and people."""

    def effective_images(self, image_ids: Iterable[int] | None = None) -> dict[int, Effective]:
        """image id -> its effective basis: the image's own, else its source's (with that level's expiry)."""
        if image_ids is None:
            return {r["id"]: Effective(r["basis"], r["expires"], r["level"]) for r in self.db.q(_IMAGE_SQL)}
        out: dict[int, Effective] = {}
        for part in chunks(sorted({int(i) for i in image_ids})):
            for r in self.db.q(_IMAGE_SQL + f" WHERE i.id IN ({placeholders(len(part))})", part):
                out[r["id"]] = Effective(r["basis"], r["expires"], r["level"])
        return out

    def effective(self, face_ids: Iterable[int] | None = None) -> dict[int, Effective]:
        """face id -> the one effective consent of a face: person > image > source, expiry with its basis.

        Every reader (export selection, the ledger, the datasheet) asks this, so the rule lives once.
        ``None``: every face.
        """
        if face_ids is None:
            rows = self.db.q(_FACE_SQL)
        else:
            rows = []
            for part in chunks(sorted({int(i) for i in face_ids})):
                rows += self.db.q(_FACE_SQL + f" WHERE f.id IN ({placeholders(len(part))})", part)
        images = self.effective_images(None if face_ids is None else {r["image_id"] for r in rows})
        return {r["id"]: (Effective(r["p_basis"], r["p_expires"], "person") if r["p_basis"] is not None
                          else images[r["image_id"]]) for r in rows}

    effective_faces = effective

    def set_basis(self, level: str, target: str | int, basis: str, expires: str | None) -> int:
        """Record ``basis`` (+ expiry) on one source (by name), person or image (by id); rows changed."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
        key = target if level == "source" else int(target)
        return self.db.execute(_SET_SQL[level], (basis, expires, key)).rowcount

    def sources(self) -> list[SourceBasis]:
        """Every source's declared licence and basis with its image count (the ledger's first table)."""
        return [SourceBasis(*r) for r in self.db.q(
            """SELECT s.name, s.license, s.consent, s.consent_expires,
                      (SELECT COUNT(*) FROM images i WHERE i.source_id = s.id)
               FROM sources s ORDER BY s.id""")]

    def person_overrides(self) -> list[Override]:
        """People with their own basis (it overrides their images')."""
        return [Override(*r) for r in self.db.q(
            "SELECT id, consent, consent_expires, n_faces FROM people WHERE consent IS NOT NULL ORDER BY id")]

    def image_overrides(self) -> list[Override]:
        """Images with their own basis (it overrides their source's)."""
        return [Override(r[0], r[1], r[2], None) for r in self.db.q(
            "SELECT id, consent, consent_expires FROM images WHERE consent IS NOT NULL ORDER BY id")]

    # -- section: privacy --
    # (end of section: privacy)
    # -- section: ingest --
    # (end of section: ingest)
    # -- section: curate --
    # (end of section: curate)
    # -- section: export --
    # (end of section: export)
