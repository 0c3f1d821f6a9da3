"""Campaigns: consented collection (the portal). Campaigns, the consent texts people agreed to
(versioned, with their sha256), contributions (a withdrawal-code hash, the person, the scopes ticked)."""

from __future__ import annotations

import json
from typing import Iterable, NamedTuple

from .db import Repo, chunks, now, placeholders


class CampaignRecord(NamedTuple):
    """One campaign with its current consent version."""

    id: int
    slug: str
    title: str
    purpose: str
    scopes: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]  # (name, kind): kind 'choice:a|b|c' or 'self_described'
    max_photos: int
    bystanders: str
    expires: str | None
    status: str
    source_id: int | None
    created_at: str
    consent_version: int
    consent_version_id: int
    consent_text: str
    consent_sha256: str


class CampaignSummary(NamedTuple):
    """A campaign as ``campaign list`` and the datasheet show it: counts only, nobody named."""

    slug: str
    title: str
    status: str
    scopes: tuple[str, ...]
    expires: str | None
    consent_version: int
    consent_sha256: str
    active: int
    withdrawn: int
    photos: int
    self_reported: tuple[str, ...]


class ContributionRecord(NamedTuple):
    """One contribution, as withdrawal needs it."""

    id: int
    campaign_id: int
    person_id: int | None
    status: str
    ended_at: str | None


def _campaign(r) -> CampaignRecord:
    return CampaignRecord(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), tuple(tuple(x) for x in json.loads(r[5])),
                          *r[6:])


class Campaigns(Repo):
    """Rows of `campaigns`, `consent_versions`, `contributions`, `scopes`."""

    # -- section: portal --
    _CAMPAIGN = """SELECT c.id, c.slug, c.title, c.purpose, c.scopes, c.labels, c.max_photos, c.bystanders,
                          c.expires, c.status, c.source_id, c.created_at, v.version, v.id, v.text, v.sha256
                   FROM campaigns c JOIN consent_versions v ON v.campaign_id=c.id
                   WHERE v.version=(SELECT MAX(version) FROM consent_versions WHERE campaign_id=c.id)"""

    def by_slug(self, slug: str) -> CampaignRecord | None:
        """The campaign at ``/c/<slug>`` with its newest consent text (what a new participant reads)."""
        r = self.db.one(self._CAMPAIGN + " AND c.slug=?", (slug,))
        return _campaign(r) if r else None

    def by_id(self, campaign_id: int) -> CampaignRecord | None:
        """The campaign a contribution belongs to."""
        r = self.db.one(self._CAMPAIGN + " AND c.id=?", (int(campaign_id),))
        return _campaign(r) if r else None

    def create(self, *, slug: str, title: str, purpose: str, scopes: Iterable[str], labels, max_photos: int,
               bystanders: str, expires: str | None, source_id: int, consent_text: str, consent_sha256: str) -> int:
        """A new open campaign with consent version 1. Returns its id."""
        at = now()
        cid = int(self.db.execute(
            """INSERT INTO campaigns(slug, title, purpose, scopes, labels, max_photos, bystanders, expires,
                                     source_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)""",
            (slug, title, purpose, json.dumps(list(scopes)), json.dumps([list(x) for x in labels]), int(max_photos),
             bystanders, expires, source_id, at)).lastrowid)
        self.add_consent_version(cid, consent_text, consent_sha256)
        return cid

    def add_consent_version(self, campaign_id: int, text: str, sha256: str) -> int:
        """Append the next consent version (a changed text); returns its version number."""
        v = int(self.db.scalar("SELECT COALESCE(MAX(version), 0) FROM consent_versions WHERE campaign_id=?",
                               (campaign_id,))) + 1
        self.db.execute("INSERT INTO consent_versions(campaign_id, version, text, sha256, created_at) "
                        "VALUES (?,?,?,?,?)", (campaign_id, v, text, sha256, now()))
        return v

    def set_status(self, campaign_id: int, status: str) -> None:
        """Open or close a campaign (closed: the portal accepts no more contributions)."""
        self.db.execute("UPDATE campaigns SET status=?, closed_at=? WHERE id=?",
                        (status, now() if status == "closed" else None, campaign_id))

    def summaries(self) -> list[CampaignSummary]:
        """Every campaign, by id, with counts of active / withdrawn contributions and photos held."""
        out = []
        for r in self.db.q(self._CAMPAIGN + " ORDER BY c.id"):
            c = _campaign(r)
            n = self.db.one("""SELECT SUM(status='active'), SUM(status='withdrawn'),
                                      SUM(CASE WHEN status='active' THEN photos ELSE 0 END)
                               FROM contributions WHERE campaign_id=?""", (c.id,))
            names = () if c.source_id is None else tuple(x[0] for x in self.db.q(
                "SELECT DISTINCT l.name FROM labels l JOIN images i ON i.id=l.image_id "
                "WHERE i.source_id=? AND l.origin='self_reported' ORDER BY l.name", (c.source_id,)))
            out.append(CampaignSummary(c.slug, c.title, c.status, c.scopes, c.expires, c.consent_version,
                                       c.consent_sha256, int(n[0] or 0), int(n[1] or 0), int(n[2] or 0), names))
        return out

    def add_contribution(self, campaign_id: int, consent_version_id: int, code_hash: str, person_id: int,
                         photos: int, scopes: Iterable[str]) -> int:
        """Record one participant's contribution and the scopes they ticked. Returns its id."""
        cid = int(self.db.execute(
            "INSERT INTO contributions(campaign_id, consent_version_id, code_hash, person_id, photos, created_at) "
            "VALUES (?,?,?,?,?,?)", (campaign_id, consent_version_id, code_hash, person_id, photos, now())).lastrowid)
        self.db.executemany("INSERT INTO scopes(contribution_id, scope) VALUES (?,?)",
                            [(cid, s) for s in sorted(set(scopes))])
        return cid

    def contribution_by_code(self, code_hash: str) -> ContributionRecord | None:
        """The contribution a withdrawal code (hashed) belongs to, or None."""
        r = self.db.one("SELECT id, campaign_id, person_id, status, ended_at FROM contributions WHERE code_hash=?",
                        (code_hash,))
        return ContributionRecord(*r) if r else None

    def contribution_by_id(self, contribution_id: int) -> ContributionRecord | None:
        """One contribution by id (expiry walks these)."""
        r = self.db.one("SELECT id, campaign_id, person_id, status, ended_at FROM contributions WHERE id=?",
                        (int(contribution_id),))
        return ContributionRecord(*r) if r else None

    def active_people(self, campaign_id: int | None = None) -> dict[int, int]:
        """person id -> contribution id of active contributions (withdrawal by selfie matches these)."""
        sql = "SELECT person_id, id FROM contributions WHERE status='active' AND person_id IS NOT NULL"
        rows = self.db.q(sql + " AND campaign_id=?", (campaign_id,)) if campaign_id else self.db.q(sql)
        return {int(p): int(i) for p, i in rows}

    def end_contribution(self, contribution_id: int, status: str) -> None:
        """Withdrawn / expired: nothing of the person stays (no person link, no scopes, no counts);
        the row stays so a second withdrawal can say it was already done."""
        self.db.execute("DELETE FROM scopes WHERE contribution_id=?", (contribution_id,))
        self.db.execute("UPDATE contributions SET status=?, person_id=NULL, photos=0, ended_at=? WHERE id=?",
                        (status, now()[:10], contribution_id))

    def new_person(self, *, consent_expires: str | None) -> int:
        """The contributor as a person: consent basis 'consent' (their own), with the campaign's expiry."""
        return int(self.db.execute("INSERT INTO people(created_at, consent, consent_expires) VALUES (?,?,?)",
                                   (now(), "consent", consent_expires)).lastrowid)

    def contribution_path_prefix(self, contribution_id: int) -> str:
        """Files rows of a contribution's photos are ``c<id>/<n>`` in the campaign's source."""
        return f"c{int(contribution_id)}/"

    def images_of_contribution(self, source_id: int, contribution_id: int) -> list[int]:
        """The stored photos of one contribution (via its files rows in the campaign's source)."""
        prefix = self.contribution_path_prefix(contribution_id)
        return [int(r[0]) for r in self.db.q(
            "SELECT DISTINCT image_id FROM files WHERE source_id=? AND substr(path, 1, ?)=? AND image_id IS NOT NULL",
            (source_id, len(prefix), prefix))]

    def scopes_of_faces(self, face_ids: Iterable[int]) -> dict[int, frozenset[str]]:
        """face id -> scopes its contributor ticked, for faces of campaign contributors only (others
        are absent: their terms are the source's licence and consent basis)."""
        out: dict[int, set[str]] = {}
        for part in chunks(face_ids):
            for fid, scope in self.db.q(
                    f"""SELECT f.id, s.scope FROM faces f JOIN contributions c ON c.person_id=f.person_id
                        LEFT JOIN scopes s ON s.contribution_id=c.id
                        WHERE c.status='active' AND f.id IN ({placeholders(len(part))})""", part):
                out.setdefault(int(fid), set())
                if scope:
                    out[int(fid)].add(scope)
        return {k: frozenset(v) for k, v in out.items()}

    def count_by_scope(self) -> dict[str, int]:
        """scope -> active contributions that ticked it (datasheet)."""
        return {r[0]: int(r[1]) for r in self.db.q(
            "SELECT s.scope, COUNT(*) FROM scopes s JOIN contributions c ON c.id=s.contribution_id "
            "WHERE c.status='active' GROUP BY s.scope ORDER BY s.scope")}

    def expired_active(self, today: str) -> list[tuple[int, int]]:
        """(contribution id, campaign id) of active contributions whose campaign consent expired before ``today``."""
        return [(int(a), int(b)) for a, b in self.db.q(
            "SELECT k.id, k.campaign_id FROM contributions k JOIN campaigns c ON c.id=k.campaign_id "
            "WHERE k.status='active' AND c.expires IS NOT NULL AND c.expires < ?", (today,))]
    # (end of section: portal)
