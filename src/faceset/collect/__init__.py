"""Consented collection: campaigns people contribute their own photos to, and can withdraw from.

* :func:`create_campaign` / :func:`list_campaigns` / :func:`close_campaign` / :func:`update_consent`:
  a campaign has a purpose, a consent text (versioned; each version stored with its sha256), the
  scopes a participant may tick one by one, the labels they may self-report, an expiry, a photo cap
  and a bystander policy (``blur`` other faces in stored copies, or ``reject`` such photos).
* :func:`contribute`: confirmations, then every upload through ingest's guards (``imageio.decode``:
  the same one-line reasons), metadata stripped; the selfie's face must be the main face of each
  photo (else the photo is rejected with a reason); other faces are pixelated or the photo rejected;
  then the photos are stored, scanned, and their main faces become one person with consent basis
  ``consent``, the campaign's expiry, the campaign as source and the self-reported labels (origin
  ``self_reported``). The receipt's withdrawal code is returned once; only its sha256 is stored.
* :func:`withdraw`: by code (or by selfie) erases everything of that contributor with the forget
  machinery (plan + apply: rows, store objects, caches, stale exports, blocklist) and records the
  contribution as withdrawn, so a second attempt says so. A wrong code gets one refusal that does
  not say whether anyone exists.
* :func:`expire`: contributions whose campaign consent expired, treated as withdrawals (dry run first).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import date

import numpy as np

from .. import imageio
from ..catalog.schema import BYSTANDER_POLICIES, CAMPAIGN_SCOPES
from ..errors import NotFound, UsageError
from ..workspace import Workspace

__all__ = ["CollectError", "CampaignInfo", "ContributionReport", "WithdrawReport", "create_campaign",
           "list_campaigns", "close_campaign", "update_consent", "contribute", "withdraw", "expire",
           "parse_labels", "PREFER_NOT"]

PREFER_NOT = "prefer_not_to_say"
MATCH_THRESHOLD = 0.42  # photo's main face vs the selfie (unit embeddings): same person <= 0.38 on identities/
WITHDRAW_THRESHOLD = 0.36  # a withdrawal selfie must match as closely as `faceset forget` demands
MAX_FILE_BYTES = 15 * 1024 * 1024  # one upload
MAX_PHOTOS_CAP = 50
DEFAULT_CHOICES = {
    "age_range": ("18-24", "25-34", "35-44", "45-54", "55-64", "65+"),
    "gender": ("woman", "man", "non-binary"),
}
REFUSED = "that withdrawal could not be carried out: check the code (or use a clear selfie) and try again"


class CollectError(UsageError):
    """A request the campaign cannot accept (the message is safe to show the participant)."""


class CampaignNotFound(CollectError, NotFound):
    """No open campaign at that address."""


@dataclass
class CampaignInfo:
    slug: str
    title: str
    status: str
    scopes: list[str]
    labels: list[list[str]]
    expires: str | None
    max_photos: int
    bystanders: str
    consent_version: int
    consent_sha256: str
    active: int = 0
    withdrawn: int = 0
    photos: int = 0
    self_reported: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ContributionReport:
    accepted: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file name, one-line reason)
    blurred_faces: int = 0
    scopes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    consent_version: int = 0
    consent_sha256: str = ""
    code: str | None = None  # the withdrawal code: shown once, never stored
    campaign: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rejected"] = [{"file": f, "reason": r} for f, r in self.rejected]
        return d


@dataclass
class WithdrawReport:
    already: bool = False
    ended_at: str | None = None
    images_erased: int = 0
    faces_erased: int = 0
    faces_blurred: int = 0
    exports_stale: int = 0
    store_objects_deleted: int = 0
    cache_files_deleted: int = 0
    labels_erased: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


# -- campaigns ---------------------------------------------------------------------------------------


def slugify(title: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:48]
    if not s:
        raise CollectError("the title needs at least one letter or digit (it makes the campaign's address)")
    return s


def parse_labels(spec: str | list | None) -> list[tuple[str, str]]:
    """``gender:self_described,age_range`` -> [(name, kind)]: kind ``self_described`` (free text) or
    ``choice:a|b|c`` (a name alone gets the default choices when there are any, else free text)."""
    if not spec:
        return []
    items = spec if isinstance(spec, list) else [s for s in str(spec).split(",") if s.strip()]
    out: list[tuple[str, str]] = []
    for it in items:
        name, _, kind = str(it).strip().partition(":")
        name = name.strip().lower()
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
            raise CollectError(f"label name {name!r}: use letters, digits and _ (start with a letter)")
        kind = kind.strip()
        if not kind:
            kind = "choice:" + "|".join(DEFAULT_CHOICES[name]) if name in DEFAULT_CHOICES else "self_described"
        elif kind.startswith("choice="):
            kind = "choice:" + kind[len("choice="):]
        if kind != "self_described" and not (kind.startswith("choice:") and len(kind) > 7):
            raise CollectError(f"label {name}: kind is self_described or choice=a|b|c, not {kind!r}")
        if name in {n for n, _ in out}:
            raise CollectError(f"label {name} given twice")
        out.append((name, kind))
    return out


def _check_date(v: str | None, what: str) -> str | None:
    if not v:
        return None
    try:
        return date.fromisoformat(str(v)).isoformat()
    except ValueError:
        raise CollectError(f"{what} must be a date YYYY-MM-DD, not {v!r}") from None


def _info(s) -> CampaignInfo:
    return CampaignInfo(s.slug, s.title, s.status, list(s.scopes), [], s.expires, 0, "", s.consent_version,
                        s.consent_sha256, s.active, s.withdrawn, s.photos, list(s.self_reported))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def create_campaign(ws: Workspace, *, title: str, purpose: str, consent: str, scopes=CAMPAIGN_SCOPES,
                    labels=None, expires: str | None = None, max_photos: int = 10, bystanders: str = "blur",
                    slug: str | None = None) -> CampaignInfo:
    """A new open campaign at ``/c/<slug>`` (consent version 1). Raises CollectError for bad settings."""
    title = (title or "").strip()
    if not title:
        raise CollectError("give the campaign a --title")
    if not (purpose or "").strip() or not (consent or "").strip():
        raise CollectError("the purpose and the consent text must not be empty")
    slug = slugify(slug or title)
    scopes = [s.strip() for s in (scopes.split(",") if isinstance(scopes, str) else scopes) if s.strip()]
    bad = [s for s in scopes if s not in CAMPAIGN_SCOPES]
    if bad or not scopes:
        raise CollectError(f"scopes are one or more of {', '.join(CAMPAIGN_SCOPES)} (got {', '.join(bad) or 'none'})")
    if bystanders not in BYSTANDER_POLICIES:
        raise CollectError(f"bystanders is one of {', '.join(BYSTANDER_POLICIES)}")
    if not 1 <= int(max_photos) <= MAX_PHOTOS_CAP:
        raise CollectError(f"--max-photos must be 1..{MAX_PHOTOS_CAP}")
    expires = _check_date(expires, "--expires")
    labs = parse_labels(labels)
    c = ws.catalog
    if c.campaigns.by_slug(slug) is not None:
        raise CollectError(f"a campaign {slug!r} exists already (close it, or pick another --slug)")
    with c.tx():
        src = c.sources.ensure(f"campaign:{slug}", kind="campaign", uri=f"/c/{slug}",
                               license=f"contributor consent, campaign {slug}", consent="consent")
        c.campaigns.create(slug=slug, title=title, purpose=purpose, scopes=[s for s in CAMPAIGN_SCOPES if s in scopes],
                           labels=labs, max_photos=int(max_photos), bystanders=bystanders, expires=expires,
                           source_id=src, consent_text=consent, consent_sha256=sha256_text(consent))
        c.audit("campaign.create", slug=slug, scopes=scopes, labels=[n for n, _ in labs], expires=expires,
                max_photos=int(max_photos), bystanders=bystanders, consent_sha256=sha256_text(consent))
    return campaign_info(ws, slug)


def campaign_info(ws: Workspace, slug: str) -> CampaignInfo:
    r = ws.catalog.campaigns.by_slug(slug)
    if r is None:
        raise CampaignNotFound(f"no campaign {slug!r}")
    info = next((_info(s) for s in ws.catalog.campaigns.summaries() if s.slug == slug), None)
    info.labels = [list(x) for x in r.labels]
    info.max_photos, info.bystanders = r.max_photos, r.bystanders
    return info


def list_campaigns(ws: Workspace) -> list[CampaignInfo]:
    return [campaign_info(ws, s.slug) for s in ws.catalog.campaigns.summaries()]


def close_campaign(ws: Workspace, slug: str) -> CampaignInfo:
    r = ws.catalog.campaigns.by_slug(slug)
    if r is None:
        raise CampaignNotFound(f"no campaign {slug!r}")
    with ws.catalog.tx():
        ws.catalog.campaigns.set_status(r.id, "closed")
        ws.catalog.audit("campaign.close", slug=slug)
    return campaign_info(ws, slug)


def update_consent(ws: Workspace, slug: str, consent: str) -> CampaignInfo:
    """A changed consent text becomes the next version (earlier contributions keep theirs)."""
    r = ws.catalog.campaigns.by_slug(slug)
    if r is None:
        raise CampaignNotFound(f"no campaign {slug!r}")
    if not consent.strip():
        raise CollectError("the consent text must not be empty")
    if sha256_text(consent) != r.consent_sha256:
        with ws.catalog.tx():
            v = ws.catalog.campaigns.add_consent_version(r.id, consent, sha256_text(consent))
            ws.catalog.audit("campaign.consent", slug=slug, version=v, consent_sha256=sha256_text(consent))
    return campaign_info(ws, slug)


def open_campaign(ws: Workspace, slug: str):
    """The campaign a participant may contribute to now, or CampaignNotFound (closed / expired / none)."""
    r = ws.catalog.campaigns.by_slug(slug) if re.fullmatch(r"[a-z0-9-]{1,64}", slug or "") else None
    if r is None:
        raise CampaignNotFound("no such campaign")
    if r.status != "open" or (r.expires and r.expires < date.today().isoformat()):
        raise CampaignNotFound("this campaign is closed: it takes no more contributions")
    return r


# -- contributing -------------------------------------------------------------------------------------


def _faces(rgb: np.ndarray):
    from ..scan import analyze

    return [f for f in analyze(rgb, embed=True, crops=False) if f.embedding is not None]


def _decode(data: bytes, name: str):
    try:
        return imageio.decode(data, max_file_bytes=MAX_FILE_BYTES)
    except imageio.Rejected as e:
        raise CollectError(f"{name}: {e.code}: {e.reason}") from None


def _check_labels(campaign, given: dict | None) -> dict[str, str]:
    out = {}
    allowed = dict(campaign.labels)
    for name, value in (given or {}).items():
        value = " ".join(str(value or "").split())[:64]
        if name not in allowed:
            raise CollectError(f"this campaign does not ask for {name!r}")
        if not value or value == PREFER_NOT:
            continue  # prefer not to say: nothing is stored
        kind = allowed[name]
        if kind.startswith("choice:") and value not in kind[7:].split("|"):
            raise CollectError(f"{name}: choose one of the options (or prefer not to say)")
        out[name] = value
    return out


def contribute(ws: Workspace, slug: str, *, scopes, adult: bool, is_me: bool, selfie: bytes,
               photos: list[tuple[str, bytes]], labels: dict | None = None) -> ContributionReport:
    """One participant's contribution (see the module doc). Raises CollectError (nothing stored) for a
    request the campaign cannot accept; per-photo problems are rejections in the report. When no photo
    is accepted nothing is stored and the report has no code."""
    from ..privacy.blocklist import blocked_mask, distances, unit
    from ..privacy.blur import pixelate_faces

    camp = open_campaign(ws, slug)
    if not adult:
        raise CollectError("you must confirm that you are an adult (18 or over)")
    if not is_me:
        raise CollectError("you must confirm that you are the person in these photos")
    scopes = sorted({str(s) for s in scopes})
    if not scopes:
        raise CollectError("tick at least one use you agree to")
    if any(s not in camp.scopes for s in scopes):
        raise CollectError("a ticked use is not one this campaign asks for")
    labs = _check_labels(camp, labels)
    if not photos:
        raise CollectError("add at least one photo of yourself")
    if len(photos) > camp.max_photos:
        raise CollectError(f"this campaign takes at most {camp.max_photos} photos per person")
    if not selfie:
        raise CollectError("add a selfie: it is how we check that the photos show you")
    sd = _decode(selfie, "selfie")
    sfaces = _faces(sd.rgb)
    if not sfaces:
        raise CollectError("selfie: no face found (use a clear, frontal photo of yourself)")
    me = unit(np.asarray(max(sfaces, key=lambda f: (f.is_main, f.box[2] * f.box[3])).embedding, np.float32)[None])
    if ws.catalog.blocklist.count() and bool(np.asarray(blocked_mask(ws, me)).any()):
        raise CollectError("this contribution cannot be accepted")

    rep = ContributionReport(scopes=scopes, labels=labs, consent_version=camp.consent_version,
                             consent_sha256=camp.consent_sha256, campaign=camp.slug)
    keep: list[tuple[str, bytes, imageio.Decoded]] = []
    seen: set[str] = set()
    for k, (name, data) in enumerate(photos, 1):
        label = _safe_name(name, k)
        try:
            d = imageio.decode(data, max_file_bytes=MAX_FILE_BYTES)
        except imageio.Rejected as e:
            rep.rejected.append((label, f"{e.code}: {e.reason}"))
            continue
        faces = _faces(d.rgb)
        if not faces:
            rep.rejected.append((label, "no face found"))
            continue
        dist = distances(unit(np.stack([f.embedding for f in faces]).astype(np.float32)), me).min(axis=1)
        main = max(range(len(faces)), key=lambda i: (faces[i].is_main, faces[i].box[2] * faces[i].box[3]))
        if dist[main] > MATCH_THRESHOLD:
            why = ("you are not the main person in this photo" if (dist <= MATCH_THRESHOLD).any()
                   else "the person in this photo does not match your selfie")
            rep.rejected.append((label, why))
            continue
        others = [faces[i].box for i in range(len(faces)) if i != main]  # every other detection gets blurred
        people = sum(1 for i in range(len(faces)) if i != main and faces[i].status != "not_real_face")
        if people and camp.bystanders == "reject":
            rep.rejected.append((label, f"shows {people} other {'person' if people == 1 else 'people'} "
                                        "(they have not agreed): crop them out or choose another photo"))
            continue
        if others:
            blob, _ = imageio.encode_clean(pixelate_faces(d.rgb, others), d.clean_format == "jpeg")
            d = imageio.decode(blob)
            rep.blurred_faces += len(others)
        if d.pixel_sha in seen or ws.catalog.images.find_duplicate(hashlib.sha256(data).hexdigest(),
                                                                   d.pixel_sha) is not None:
            rep.rejected.append((label, "the same photo was given already"))
            continue
        seen.add(d.pixel_sha)
        keep.append((label, data, d))
    if not keep:
        return rep
    _store(ws, camp, rep, keep, scopes, labs)
    return rep


def _safe_name(name: str | None, k: int) -> str:
    base = re.sub(r"[^\w.\- ]+", "_", str(name or ""))[-60:].strip()
    return f"photo {k}" + (f" ({base})" if base else "")


def _store(ws: Workspace, camp, rep: ContributionReport, keep, scopes, labs) -> None:
    """Scan, then store the contribution, its images, faces and person in ONE transaction.

    Why one: the participant gets a receipt only when this returns. A crash (even kill -9) before the
    commit leaves no contribution, image or face row, and the objects already written are journalled for
    shredding, so a retry is accepted as new and nothing of a person without a receipt stays; a crash
    after it leaves a complete contribution. No half-scanned contribution without a person exists.
    """
    from ..privacy.redact import finish_erasures
    from ..scan.pipeline import process

    c = ws.catalog
    finish_erasures(ws)  # what a contribution killed before its commit left behind goes first
    # the stored, blurred copies go through scan's own worker first: pure computation, nothing written yet
    results = [process((None, d.clean)) for _, _, d in keep]
    # Journal every object this contribution will write (photos, chips, crops) before writing it: if the
    # process dies before the commit, the next finish_erasures shreds them (a person who got no receipt
    # cannot withdraw, so nothing of theirs may stay); the commit below takes them off the journal.
    mine = [hashlib.sha256(d.clean).hexdigest() for _, _, d in keep]
    mine += [hashlib.sha256(f[k]).hexdigest() for r in results for f in r["faces"] for k in ("chip", "crop")]
    with c.tx():
        c.erasures.plan("store", mine, "contribution in progress", pid=os.getpid())
    try:
        _commit(ws, camp, rep, keep, scopes, labs, results, mine)
    except BaseException:
        live = c.images.referenced_keys()
        for k in mine:
            if k not in live:
                ws.store.delete(k)
        with c.tx():
            for k in mine:
                c.erasures.done_target("store", k)
        raise


def _commit(ws: Workspace, camp, rep: ContributionReport, keep, scopes, labs, results, mine) -> None:
    from ..scan import ScanReport, _write

    c = ws.catalog
    keys = [ws.store.put(d.clean, sync=False) for _, _, d in keep]
    ws.store.sync()
    code = secrets.token_urlsafe(15)
    image_ids = []
    srep = ScanReport()
    with c.tx():
        pid = c.campaigns.new_person(consent_expires=camp.expires)
        cid = c.campaigns.add_contribution(camp.id, camp.consent_version_id, code_hash(code), pid, len(keep), scopes)
        prefix = c.campaigns.contribution_path_prefix(cid)
        for n, ((_, data, d), key, res) in enumerate(zip(keep, keys, results), 1):
            iid = c.images.add(pixel_sha=d.pixel_sha, sha256=hashlib.sha256(data).hexdigest(), store_key=key,
                               format=d.format, width=d.width, height=d.height, nbytes=len(d.clean),
                               source_id=camp.source_id, license=None, consent=None, consent_expires=camp.expires)
            c.images.record_file(camp.source_id, f"{prefix}{n}", sha256=hashlib.sha256(data).hexdigest(),
                                 size=len(data), image_id=iid, outcome="added")
            c.labels.add_missing(iid, labs, "self_reported")
            res["image_id"] = iid
            image_ids.append(iid)
        _write(ws, results, srep)  # joins this transaction (nested tx)
        mains = c.faces.main_of(image_ids)
        c.people.assign({fid: pid for fid in mains.values()})
        c.people.refresh_centroids([pid])
        c.audit("campaign.contribute", campaign=camp.slug, photos=len(keep), rejected=len(rep.rejected),
                scopes=scopes, consent_version=camp.consent_version, bystanders_blurred=rep.blurred_faces)
        for k in mine:
            c.erasures.done_target("store", k)
    rep.accepted = len(keep)
    rep.code = code


def code_hash(code: str) -> str:
    return hashlib.sha256(("faceset-withdrawal:" + "".join(str(code).split())).encode()).hexdigest()


# -- withdrawing --------------------------------------------------------------------------------------


def withdraw(ws: Workspace, slug: str | None = None, *, code: str | None = None, selfie: bytes | None = None,
             status: str = "withdrawn") -> WithdrawReport:
    """Erase everything of one contributor, found by withdrawal code or by selfie; see the module doc.

    A code that matches nothing (or another campaign), or a selfie that matches no active contributor,
    raises CollectError(REFUSED): the same words either way."""
    c = ws.catalog
    camp = c.campaigns.by_slug(slug) if slug else None
    if slug and camp is None:
        raise CollectError(REFUSED)
    if code:
        rec = c.campaigns.contribution_by_code(code_hash(code))
        if rec is None or (camp is not None and rec.campaign_id != camp.id):
            raise CollectError(REFUSED)
        if rec.status != "active":
            return WithdrawReport(already=True, ended_at=rec.ended_at)
        cid, pid, camp_id = rec.id, rec.person_id, rec.campaign_id
    elif selfie:
        cid, pid, camp_id = _by_selfie(ws, selfie, camp.id if camp else None)
    else:
        raise CollectError("give the withdrawal code from your receipt (or a selfie)")
    return _erase_contribution(ws, cid, pid, camp_id, status)


def _by_selfie(ws: Workspace, selfie: bytes, campaign_id: int | None) -> tuple[int, int, int]:
    from ..privacy.blocklist import distances, unit

    faces = _faces(_decode(selfie, "selfie").rgb)
    if not faces:
        raise CollectError(REFUSED)
    q = unit(np.stack([f.embedding for f in faces]).astype(np.float32))
    best = None
    for pid, cid in ws.catalog.campaigns.active_people(campaign_id).items():
        e = ws.catalog.faces.embeddings(person_id=pid).vectors
        if len(e):
            d = float(distances(unit(e), q).min())
            if d <= WITHDRAW_THRESHOLD and (best is None or d < best[0]):
                best = (d, cid, pid)
    if best is None:
        raise CollectError(REFUSED)
    return best[1], best[2], ws.catalog.campaigns.contribution_by_id(best[1]).campaign_id


def _erase_contribution(ws: Workspace, cid: int, pid: int | None, campaign_id: int, status: str) -> WithdrawReport:
    from ..privacy.forget import CERTAIN, ErasurePlan, apply, find_matches, plan

    c = ws.catalog
    camp = c.campaigns.by_id(campaign_id)
    src = camp.source_id if camp is not None else None
    images = set(c.campaigns.images_of_contribution(src, cid)) if src is not None else set()
    emb = c.faces.embeddings(person_id=pid).vectors if pid is not None else np.zeros((0, 128), np.float32)
    # Their own contribution goes whole; elsewhere only *certain* matches are erased without a person
    # looking (a 'review' match may be someone else: the curator handles those with `faceset forget`).
    matches = [m for m in (find_matches(ws, [], selfie_emb=emb) if len(emb) else []) if m.certainty == CERTAIN]
    p = plan(matches)
    erase_images = set(p.erase_images) | images
    faces = set(p.faces) | set(c.faces.ids_in_images(images))
    hide = {k: v for k, v in p.hide_faces.items() if k not in erase_images}
    todo = ErasurePlan(erase_images=tuple(sorted(erase_images)), hide_faces=hide, faces=tuple(sorted(faces)))
    n_labels = sum(len(v) for v in c.labels.of_images(sorted(erase_images)).values()) if erase_images else 0
    rep = WithdrawReport(labels_erased=n_labels)
    if todo.erase_images or todo.hide_faces:
        fr = apply(ws, todo, selfie_emb=emb if len(emb) else None)
        rep.images_erased, rep.faces_erased, rep.faces_blurred = fr.images_erased, fr.faces_erased, fr.faces_blurred
        rep.exports_stale, rep.store_objects_deleted = fr.exports_stale, fr.store_objects_deleted
        rep.cache_files_deleted = fr.cache_files_deleted
    with c.tx():
        c.campaigns.end_contribution(cid, status)
        c.audit(f"campaign.{status}", images_erased=rep.images_erased, faces_erased=rep.faces_erased)
    return rep


def expire(ws: Workspace, *, dry_run: bool = True, today: str | None = None) -> dict:
    """Contributions whose campaign consent expired before ``today``: counted (dry run) or erased."""
    today = _check_date(today, "today") or date.today().isoformat()
    due = ws.catalog.campaigns.expired_active(today)
    out = {"dry_run": dry_run, "contributions": len(due), "images_erased": 0, "faces_erased": 0}
    if dry_run:
        return out
    for cid, camp_id in due:
        r = ws.catalog.campaigns.contribution_by_id(cid)
        pid = r.person_id if r is not None else None
        rep = _erase_contribution(ws, cid, pid, camp_id, "expired")
        out["images_erased"] += rep.images_erased
        out["faces_erased"] += rep.faces_erased
    return out


# -- documentation --------------------------------------------------------------------------------------


def datasheet_lines(ws: Workspace) -> list[str]:
    """The datasheet's "Consented collection" part of its Collection section (nothing when no campaign)."""
    camps = ws.catalog.campaigns.summaries()
    if not camps:
        return []
    scopes = ws.catalog.campaigns.count_by_scope()
    rows = [[c.slug, c.status, f"v{c.consent_version}", f"`{c.consent_sha256}`", ", ".join(c.scopes),
             c.expires or "-", c.active, c.withdrawn, c.photos, ", ".join(c.self_reported) or "-"] for c in camps]
    head = ["campaign", "status", "consent", "consent text sha256", "scopes asked", "expires", "contributors",
            "withdrawn", "photos", "self-reported labels"]
    out = ["### Consented collection", "",
           "Campaign sources were contributed by the people shown, through the portal (`/c/<campaign>`): each read "
           "the purpose and the consent text (identified below by its sha256), ticked each use separately, "
           "confirmed being an adult and the person in the photos, and matched a selfie; other people's faces "
           "were blurred in the stored copies or the photo refused. Contributors can withdraw at any time; "
           "a withdrawal erases them and marks exports stale.", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    out += ["", "Uses agreed to by active contributors: "
            + (", ".join(f"`{k}` {v}" for k, v in scopes.items()) or "none")
            + ". Records of contributors who did not tick `dataset` are left out of exports, and of those who "
              "did not tick `training` out of training.",
            "Labels of origin `self_reported` were given by the contributors themselves (\"prefer not to say\" "
            "leaves them empty); other labels come from folders or manifests.", ""]
    return out


def model_card_lines(ws: Workspace) -> list[str]:
    """MODEL_CARD.md lines for a model trained on a workspace holding campaign contributions."""
    camps = ws.catalog.campaigns.summaries()
    if not camps:
        return []
    out = ["## Consented collection", ""]
    for c in camps:
        out.append(f"- campaign `{c.slug}`: consent v{c.consent_version} sha256 `{c.consent_sha256}`, scopes asked "
                   f"{', '.join(c.scopes)}, {c.active} contributors, self-reported labels: "
                   f"{', '.join(c.self_reported) or 'none'}")
    out += ["- only contributors who ticked `training` are in the training data; labels of origin `self_reported` "
            "were given by the contributors themselves", ""]
    return out


def card_lines_for(kind: str | None, path: str | None) -> list[str]:
    """The model card's collection lines for training data at ``path``: a workspace's campaigns, or the
    "Consented collection" block of an export's datasheet. Nothing for other data (or on any read error)."""
    from pathlib import Path

    try:
        if kind == "workspace" and path:
            from ..workspace import open_workspace

            ws = open_workspace(path)
            try:
                return model_card_lines(ws)
            finally:
                ws.close()
        if kind == "export" and path and (Path(path) / "datasheet.md").is_file():
            text = (Path(path) / "datasheet.md").read_text(encoding="utf-8")
            if "### Consented collection" in text:
                block = text.split("### Consented collection", 1)[1].split("\n## ", 1)[0].strip()
                return ["## Consented collection (from the dataset's datasheet)", "", block, ""]
    except Exception:  # the card must still be written
        return []
    return []
