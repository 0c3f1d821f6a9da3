"""The one dataset selection: an ordered rule table (reason_code, predicate) that filters and counts.

Every record (a face, or a photo with its main face) is checked against the rules in order; the
first rule whose predicate holds leaves it out and is counted under its reason code, so "what is
in the dataset" and "why the rest is not" can never disagree. ``dataset_faces`` (train, splits)
applies the rules marked ``dataset``; an export applies all of them (it adds the main-face,
stored-cut and consent rules). The per-person cap and class balance are the last dataset rule:
they are decided over the faces that pass every other dataset rule, the set curation defines.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Callable, NamedTuple

from ..errors import UsageError
from .consent import Consent, Effective
from .db import Repo

SPLIT_ORDER = ("train", "val", "test")


def seeded_hash(seed: int, n: int) -> str:
    """The seeded order splits and class balancing use (stable across runs and machines)."""
    return hashlib.sha256(f"{seed}:{n}".encode()).hexdigest()


class Candidate(NamedTuple):
    """One record before the rules: a face (unit 'face') or a photo with its main face (unit 'image').

    ``face_id`` is None for a photo without a face row (unit 'image'), and for the one record per
    unusable photo the face unit counts. ``label`` is the value of the chosen label that describes
    this face: the photo's value for its main face (or for the photo), None otherwise.
    """

    image_id: int
    face_id: int | None
    idx: int | None
    is_main: bool
    face_status: str | None
    person_id: int | None
    split: str | None
    quality: float | None
    box: tuple[float, float, float, float] | None  # x, y, w, h
    chip_key: str | None
    crop_key: str | None
    store_key: str
    pixel_sha: str
    image_status: str
    dup_of: int | None
    license: str
    source_id: int
    consent: Effective
    label: str | None
    yaw: float | None = None  # the face's head turn in degrees (scan/quality.py), None without a face


@dataclass(frozen=True)
class Spec:
    """What is being selected. Dataset options first, then what only an export asks."""

    unit: str = "face"  # face | image
    label: str | None = None
    split: str | None = None
    include_low_quality: bool = False
    max_yaw: float | None = None  # leave out faces turned further than this (degrees, either way)
    per_person_cap: int | None = None
    balance: bool = False
    seed: int = 0
    # export only
    faces: str = "all"  # main | all (unit 'face')
    cut: str | None = None  # chip | crop: the stored cut a face record needs
    include_unknown_consent: bool = True
    today: date = field(default_factory=date.today)


def check_max_yaw(max_yaw: float | None) -> float | None:
    """A ``--max-yaw`` value as a float (degrees, 0-90), or None for no pose filter."""
    if max_yaw is None:
        return None
    v = float(max_yaw)
    if not 0.0 <= v <= 90.0:
        raise UsageError(f"max_yaw must be between 0 and 90 degrees, not {max_yaw!r}")
    return v


Predicate = Callable[[Candidate, Spec, "frozenset[int]"], bool]


class Rule(NamedTuple):
    """``leaves_out(record, spec, dataset_ids)`` is True when this rule leaves the record out."""

    code: str
    leaves_out: Predicate
    dataset: bool  # part of what curation calls the dataset (dataset_faces); else export only


def _status(status: str) -> Predicate:
    return lambda c, s, ids: c.image_status == status


_R = {r.code: r for r in [
    Rule("not_scanned", _status("new"), True),
    Rule("no_face", _status("no_face"), True),
    Rule("error", _status("error"), True),
    Rule("blocked", _status("blocked"), True),
    Rule("near_duplicate", lambda c, s, ids: c.dup_of is not None, True),
    Rule("not_main_face", lambda c, s, ids: s.faces == "main" and not c.is_main, False),
    Rule("no_main_face", lambda c, s, ids: c.face_id is None, True),
    Rule("low_quality", lambda c, s, ids: c.face_status == "low_quality" and not s.include_low_quality, True),
    # a pose-filtered dataset: faces turned further than max_yaw (or with no yaw measured) stay out
    Rule("pose", lambda c, s, ids: s.max_yaw is not None and c.face_id is not None
         and (c.yaw is None or abs(c.yaw) > s.max_yaw), True),
    # W_detect: the real-human-face verifier rejected the face (drawn, painted, rendered, sculpted, animal...)
    Rule("not_real_face", lambda c, s, ids: c.face_status == "not_real_face", True),
    Rule("no_chip", lambda c, s, ids: s.cut == "chip" and not c.chip_key, False),
    Rule("no_crop", lambda c, s, ids: s.cut == "crop" and not c.crop_key, False),
    Rule("consent_expired", lambda c, s, ids: c.consent.expired(s.today), False),
    Rule("consent_unknown", lambda c, s, ids: c.consent.basis == "unknown" and not s.include_unknown_consent, False),
    Rule("no_label", lambda c, s, ids: s.label is not None and not c.label, True),
    Rule("no_split", lambda c, s, ids: c.person_id is None or c.split is None, True),
    Rule("other_split", lambda c, s, ids: s.split is not None and c.split != s.split, True),
    # last: decided over the records every other dataset rule keeps (see _cap_and_balance)
    Rule("per_person_cap_or_balance", lambda c, s, ids: c.face_id not in ids, True),
]}

# The order of precedence, per unit: the first rule that holds names the reason.
FACE_RULES: tuple[Rule, ...] = tuple(_R[k] for k in (
    "not_scanned", "no_face", "error", "blocked", "near_duplicate", "not_main_face", "not_real_face", "low_quality",
    "pose", "no_chip", "no_crop", "consent_expired", "consent_unknown", "no_label", "no_split", "other_split",
    "per_person_cap_or_balance"))
# A photo goes out when its main face is a dataset face; consent and label are the photo's.
IMAGE_RULES: tuple[Rule, ...] = tuple(_R[k] for k in (
    "not_scanned", "no_face", "error", "blocked", "near_duplicate", "consent_expired", "consent_unknown",
    "no_label", "no_main_face", "not_real_face", "low_quality", "pose", "no_split", "other_split",
    "per_person_cap_or_balance"))
REASON_CODES = tuple(_R)


@dataclass
class Result:
    """The records every rule keeps (in candidate order) and, per reason code, how many it left out."""

    kept: list[Candidate]
    left_out: Counter


def _cap_and_balance(rows: list[Candidate], spec: Spec) -> list[Candidate]:
    """Each person's best ``per_person_cap`` faces (quality, then id), then, with a label and
    ``balance``, every class downsampled to the rarest one within each split (seeded)."""
    if spec.per_person_cap:
        rows = sorted(rows, key=lambda c: (c.split, c.person_id, -(c.quality or 0), c.face_id))
        seen: Counter = Counter()
        kept = []
        for c in rows:
            seen[c.person_id] += 1
            if seen[c.person_id] <= spec.per_person_cap:
                kept.append(c)
        rows = kept
    if spec.balance and spec.label:
        by: dict[tuple[str, str], list[Candidate]] = defaultdict(list)
        for c in rows:
            by[(c.split, c.label)].append(c)
        out = []
        for s in {k[0] for k in by}:
            groups = [v for k, v in by.items() if k[0] == s]
            m = min(len(g) for g in groups)
            for g in groups:
                g.sort(key=lambda c: seeded_hash(spec.seed, c.face_id))
                out.extend(g[:m])
        rows = out
    return rows


_FACES_SQL = """
SELECT f.id, f.image_id, f.idx, f.is_main, f.status, f.person_id, p.split, f.quality, f.x, f.y, f.w, f.h,
       f.chip_key, f.crop_key, i.store_key, i.pixel_sha, i.status, i.dup_of,
       COALESCE(i.license, s.license), s.id, l.value, f.yaw
FROM faces f
JOIN images i ON i.id = f.image_id
JOIN sources s ON s.id = i.source_id
LEFT JOIN people p ON p.id = f.person_id
LEFT JOIN labels l ON l.image_id = f.image_id AND l.name = ?
ORDER BY f.image_id, f.idx
"""

# one record per photo: its main face (the first row of a photo wins if two are flagged main)
_IMAGES_SQL = """
SELECT mf.id, i.id, mf.idx, mf.is_main, mf.status, mf.person_id, p.split, mf.quality, mf.x, mf.y, mf.w, mf.h,
       mf.chip_key, mf.crop_key, i.store_key, i.pixel_sha, i.status, i.dup_of,
       COALESCE(i.license, s.license), s.id, l.value, mf.yaw
FROM images i
JOIN sources s ON s.id = i.source_id
LEFT JOIN faces mf ON mf.image_id = i.id AND mf.is_main = 1
LEFT JOIN people p ON p.id = mf.person_id
LEFT JOIN labels l ON l.image_id = i.id AND l.name = ?
ORDER BY i.id
"""


class Selection(Repo):
    """What export, train and the datasheet read."""

    # -- section: export --
    def candidates(self, unit: str, label: str | None) -> list[Candidate]:
        """Every record of ``unit`` with what the rules read. For unit 'face', each photo that is not
        'ok' also counts as one record (photos without face rows would otherwise go unreported)."""
        if unit not in ("face", "image"):
            raise UsageError(f"unit must be face or image, not {unit!r}")
        consent = Consent(self.db)
        faces = consent.effective()
        images = consent.effective_images()
        out: list[Candidate] = []
        if unit == "face":
            for r in self.db.q(
                    "SELECT i.id, i.store_key, i.pixel_sha, i.status, i.dup_of, COALESCE(i.license, s.license), s.id "
                    "FROM images i JOIN sources s ON s.id = i.source_id WHERE i.status != 'ok' ORDER BY i.id"):
                out.append(Candidate(r[0], None, None, False, None, None, None, None, None, None, None, r[1], r[2],
                                     r[3], r[4], r[5], r[6], images[r[0]], None))
        seen: set[int] = set()
        for r in self.db.q(_FACES_SQL if unit == "face" else _IMAGES_SQL, (label or "",)):
            fid, iid, is_main = r[0], r[1], bool(r[3])
            if unit == "image":
                if iid in seen:
                    continue
                seen.add(iid)
            value = r[20] if (unit == "image" or is_main) and label is not None else None
            out.append(Candidate(
                iid, fid, r[2], is_main, r[4], r[5], r[6], r[7],
                (r[8], r[9], r[10], r[11]) if fid is not None else None, r[12], r[13], r[14], r[15], r[16], r[17],
                r[18], r[19], faces.get(fid) or images[iid], value or None, r[21]))
        return out

    def apply(self, spec: Spec, *, export: bool = True) -> Result:
        """Run the rule table for ``spec``: the kept records and the count per reason of the rest.

        ``export=False`` runs only the dataset rules (what ``dataset_faces`` returns)."""
        face_spec = replace(spec, unit="face")
        face_rows = self.candidates("face", spec.label)
        base = [c for c in face_rows if c.face_id is not None
                and not any(r.leaves_out(c, face_spec, frozenset()) for r in FACE_RULES[:-1] if r.dataset)]
        ids = frozenset(c.face_id for c in _cap_and_balance(base, face_spec))
        rows = face_rows if spec.unit == "face" else self.candidates("image", spec.label)
        rules = [r for r in (FACE_RULES if spec.unit == "face" else IMAGE_RULES) if export or r.dataset]
        kept, left_out = [], Counter()
        for c in rows:
            for r in rules:
                if r.leaves_out(c, spec, ids):
                    left_out[r.code] += 1
                    break
            else:
                kept.append(c)
        return Result(kept, left_out)

    def dataset_faces(self, *, label: str | None = None, split: str | None = None, per_person_cap: int | None = None,
                      balance: bool = False, seed: int = 0, include_low_quality: bool = False,
                      max_yaw: float | None = None) -> list[dict]:
        """The dataset's faces (rows as ``curate.splits.dataset_faces`` documents them), by split,
        person, face id."""
        spec = Spec(unit="face", label=label, split=split, include_low_quality=include_low_quality,
                    max_yaw=max_yaw, per_person_cap=per_person_cap, balance=bool(balance), seed=seed)
        rows = [{"face_id": c.face_id, "image_id": c.image_id, "person_id": c.person_id, "split": c.split,
                 "chip_key": c.chip_key, "crop_key": c.crop_key, "quality": c.quality, "label": c.label}
                for c in self.apply(spec, export=False).kept]
        rows.sort(key=lambda r: (SPLIT_ORDER.index(r["split"]) if r["split"] in SPLIT_ORDER else 9,
                                 r["person_id"], r["face_id"]))
        return rows
    # (end of section: export)
    # -- section: ingest --
    # (end of section: ingest)
    # -- section: curate --
    # (end of section: curate)
    # -- section: privacy --
    # (end of section: privacy)
