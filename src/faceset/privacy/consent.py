"""Consent ledger: the basis for using each source, image and person, with optional expiry.

The most specific level wins: a person's basis (people.consent) overrides the image's
(images.consent), which overrides the source's (sources.consent). The expiry travels with
the basis it belongs to. Exports leave out faces/images whose effective basis is
``unknown`` or expired (see :meth:`Effective.usable`); the datasheet reports the bases.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date

from ..catalog import CONSENT_BASES
from ..workspace import Workspace


class ConsentError(ValueError):
    """Bad basis, date or target (the CLI prints it and exits 2)."""


@dataclass(frozen=True)
class Effective:
    basis: str
    expires: str | None  # ISO date or None
    level: str  # person | image | source

    def expired(self, today: date | None = None) -> bool:
        return self.expires is not None and date.fromisoformat(self.expires[:10]) < (today or date.today())

    def usable(self, today: date | None = None) -> bool:
        """May this go into an export by default? Not when unknown or past its expiry."""
        return self.basis != "unknown" and not self.expired(today)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EffectiveConsent:
    images: dict[int, Effective] = field(default_factory=dict)
    faces: dict[int, Effective] = field(default_factory=dict)

    def summary(self, today: date | None = None) -> dict:
        """Counts of faces by basis (and how many are expired): what the datasheet reports."""
        by_basis: dict[str, int] = {}
        expired = 0
        for e in self.faces.values():
            by_basis[e.basis] = by_basis.get(e.basis, 0) + 1
            expired += e.expired(today)
        return {"faces_by_basis": dict(sorted(by_basis.items())), "faces_expired": expired,
                "faces_usable": sum(e.usable(today) for e in self.faces.values())}


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


def effective_consent(ws: Workspace) -> EffectiveConsent:
    """Each image's and face's effective basis + expiry (person > image > source)."""
    out = EffectiveConsent()
    for r in ws.catalog.q(_IMAGE_SQL):
        out.images[r["id"]] = Effective(r["basis"], r["expires"], r["level"])
    for r in ws.catalog.q(_FACE_SQL):
        if r["p_basis"] is not None:
            out.faces[r["id"]] = Effective(r["p_basis"], r["p_expires"], "person")
        else:
            out.faces[r["id"]] = out.images[r["image_id"]]
    return out


def _check(basis: str, expires: str | None) -> str | None:
    if basis not in CONSENT_BASES:
        raise ConsentError(f"unknown basis {basis!r}: use one of {', '.join(CONSENT_BASES)}")
    if expires is None:
        return None
    try:
        return date.fromisoformat(expires).isoformat()
    except ValueError:
        raise ConsentError(f"bad expiry date {expires!r}: use YYYY-MM-DD") from None


def set_consent(
    ws: Workspace,
    basis: str,
    *,
    source: str | None = None,
    person: int | None = None,
    image: int | None = None,
    expires: str | None = None,
) -> int:
    """Record a basis for exactly one source, person or image; returns rows changed. Audited."""
    expires = _check(basis, expires)
    targets = [t for t in (source, person, image) if t is not None]
    if len(targets) != 1:
        raise ConsentError("give exactly one of --source, --person, --image")
    if source is not None:
        sql, key, level = "UPDATE sources SET consent=?, consent_expires=? WHERE name=?", source, "source"
    elif person is not None:
        sql, key, level = "UPDATE people SET consent=?, consent_expires=? WHERE id=?", int(person), "person"
    else:
        sql, key, level = "UPDATE images SET consent=?, consent_expires=? WHERE id=?", int(image), "image"
    with ws.catalog.tx() as c:
        n = c.execute(sql, (basis, expires, key)).rowcount
        if n == 0:
            raise ConsentError(f"no {level} {key!r} in this workspace")
        # Sources are named by the user and not biometric; persons/images are logged by id only.
        ws.catalog.audit("consent_set", level=level, target=key, basis=basis, expires=expires)
    return n


def ledger(ws: Workspace) -> dict:
    """What `faceset consent list` shows: every source, every per-person/per-image override, totals."""
    c = ws.catalog
    sources = [
        dict(r)
        for r in c.q(
            """SELECT s.name, s.license, s.consent AS basis, s.consent_expires AS expires,
                      (SELECT COUNT(*) FROM images i WHERE i.source_id = s.id) AS images
               FROM sources s ORDER BY s.id"""
        )
    ]
    people = [dict(r) for r in c.q(
        "SELECT id AS person, consent AS basis, consent_expires AS expires, n_faces AS faces "
        "FROM people WHERE consent IS NOT NULL ORDER BY id")]
    images = [dict(r) for r in c.q(
        "SELECT id AS image, consent AS basis, consent_expires AS expires "
        "FROM images WHERE consent IS NOT NULL ORDER BY id")]
    return {"sources": sources, "people": people, "images": images,
            "effective": effective_consent(ws).summary()}
