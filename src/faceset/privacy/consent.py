"""Consent ledger: the basis for using each source, image and person, with optional expiry.

The most specific level wins: a person's basis (people.consent) overrides the image's
(images.consent), which overrides the source's (sources.consent). The expiry travels with
the basis it belongs to. Exports leave out faces/images whose effective basis is
``unknown`` or expired (see :meth:`Effective.usable`); the datasheet reports the bases.
The rule itself lives once, in ``ws.catalog.consent.effective(face_ids)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from ..catalog import CONSENT_BASES
from ..catalog.consent import Effective
from ..errors import NotFound, UsageError
from ..workspace import Workspace

__all__ = ["ConsentError", "ConsentTargetNotFound", "Effective", "EffectiveConsent", "effective_consent",
           "set_consent", "ledger"]


class ConsentError(UsageError):
    """Bad basis, date or target (the CLI prints it and exits 2)."""


class ConsentTargetNotFound(ConsentError, NotFound):
    """The source, person or image named does not exist."""


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


def effective_consent(ws: Workspace) -> EffectiveConsent:
    """Each image's and face's effective basis + expiry (person > image > source)."""
    c = ws.catalog.consent
    return EffectiveConsent(images=c.effective_images(), faces=c.effective())


def normalize_basis(basis: str) -> str:
    """The stored spelling of a basis: the same aliases ingest accepts (``licence``, ``research-exemption``,
    any case), else a ConsentError naming the closest valid one."""
    from ..ingest.sources import IngestError, normalize_consent  # one alias table for both entry points

    try:
        return normalize_consent(basis, "--basis")
    except IngestError as e:
        msg = str(e)
        hint = msg[msg.index(" (did you mean"):] if " (did you mean" in msg else ""
        raise ConsentError(f"unknown basis {basis!r}: use one of {', '.join(CONSENT_BASES)}{hint}") from None


def _check(basis: str, expires: str | None) -> str | None:
    if basis not in CONSENT_BASES:
        raise ConsentError(f"unknown basis {basis!r}: use one of {', '.join(CONSENT_BASES)}")
    if expires is None:
        return None
    try:
        return date.fromisoformat(expires).isoformat()
    except (TypeError, ValueError):
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
    basis = normalize_basis(basis)
    expires = _check(basis, expires)
    targets = [t for t in (source, person, image) if t is not None]
    if len(targets) != 1:
        raise ConsentError("give exactly one of --source, --person, --image")
    if source is not None:
        key, level = source, "source"
    elif person is not None:
        key, level = int(person), "person"
    else:
        key, level = int(image), "image"
    with ws.catalog.tx():
        n = ws.catalog.consent.set_basis(level, key, basis, expires)
        if n == 0:
            raise ConsentTargetNotFound(f"no {level} {key!r} in this workspace")
        # Sources are named by the user and not biometric; persons/images are logged by id only.
        ws.catalog.audit("consent_set", level=level, target=key, basis=basis, expires=expires)
    return n


def ledger(ws: Workspace) -> dict:
    """What `faceset consent list` shows: every source, every per-person/per-image override, totals."""
    c = ws.catalog.consent
    sources = [s._asdict() for s in c.sources()]
    people = [{"person": o.id, "basis": o.basis, "expires": o.expires, "faces": o.faces} for o in c.person_overrides()]
    images = [{"image": o.id, "basis": o.basis, "expires": o.expires} for o in c.image_overrides()]
    return {"sources": sources, "people": people, "images": images,
            "effective": effective_consent(ws).summary()}
