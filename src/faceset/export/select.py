"""Which faces/images go into an export, and why the others stay out.

One function, :func:`select_items`, reads the catalog and applies the default
exclusions (consent unknown or expired, near-duplicates, no-face images,
low-quality faces, bystanders). Every excluded record is counted under a
reason code, because the datasheet must say what was left out and why.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from ..curate.splits import dataset_faces
from ..privacy.consent import effective_consent
from ..workspace import Workspace

ALL_CLASS = "all"  # class folder when no --label is chosen


def split_order(split: str) -> tuple[int, str]:
    """Sort key: train, val, test first, then anything else by name."""
    return ({"train": 0, "val": 1, "test": 2}.get(split, 3), split)


@dataclass
class Item:
    """One exported record: a face (chips/crops) or a whole image (images)."""

    uid: str  # salted sha256-derived id: never a filename
    image_id: int
    face_id: int | None
    key: str  # store key of the bytes to export
    split: str
    cls: str  # class (value of the chosen label) used for the folder/shard layout
    labels: dict[str, str]
    person: str | None  # salted hash of the person id
    person_id: int | None
    source: str
    license: str
    consent: str
    quality: float | None = None
    blur_boxes: list[tuple[float, float, float, float]] = field(default_factory=list)

    def manifest_row(self, file: str) -> dict:
        return {
            "id": self.uid,
            "file": file,
            "split": self.split,
            "label": self.cls,
            **{f"label_{k}": v for k, v in sorted(self.labels.items())},
            "person": self.person or "",
            "source": self.source,
            "license": self.license,
            "consent": self.consent,
        }


@dataclass
class Selection:
    items: list[Item]
    skipped: Counter  # reason code -> count of records left out
    included_unknown_consent: int  # records kept only because of include_unknown_consent


def public_source_names(ws: Workspace) -> dict[int, str]:
    """Source id -> the name an export may show.

    Ingest names a source after its folder or file when no ``--source-name`` is given, and
    such a name is an original path component ("Alice private photos", "IMG_0042"): exports
    show those as ``source-<id>``. Names the owner chose are shown as they are.
    """
    out = {}
    for r in ws.catalog.q("SELECT id, name, uri FROM sources"):
        base = re.sub(r"-\d+$", "", r["name"])  # ingest's de-duplicating suffix
        fname = Path(r["uri"]).name if r["uri"] else ""
        derived = bool(fname) and (base == fname or fname.startswith(base + "."))
        out[r["id"]] = f"source-{r['id']}" if derived else r["name"]
    return out


def _h(salt: str, *parts) -> str:
    return hashlib.sha256((salt + ":" + ":".join(str(p) for p in parts)).encode()).hexdigest()[:20]


_FACE_SQL = """
SELECT f.id AS face_id, f.image_id, f.idx, f.is_main, f.status AS f_status, f.chip_key, f.crop_key,
       f.person_id, f.quality, f.x, f.y, f.w, f.h,
       i.pixel_sha, i.status AS i_status, i.dup_of, i.store_key,
       COALESCE(i.license, s.license) AS license, s.id AS source_id, p.split
FROM faces f
JOIN images i ON i.id = f.image_id
JOIN sources s ON s.id = i.source_id
LEFT JOIN people p ON p.id = f.person_id
ORDER BY f.image_id, f.idx
"""

_IMAGE_SQL = """
SELECT i.id AS image_id, i.pixel_sha, i.status AS i_status, i.dup_of, i.store_key,
       COALESCE(i.license, s.license) AS license, s.id AS source_id,
       mf.id AS face_id, mf.person_id, mf.quality, mf.status AS f_status, p.split
FROM images i
JOIN sources s ON s.id = i.source_id
LEFT JOIN faces mf ON mf.image_id = i.id AND mf.is_main = 1
LEFT JOIN people p ON p.id = mf.person_id
ORDER BY i.id
"""


def select_items(
    ws: Workspace,
    *,
    what: str,
    salt: str,
    label: str | None = None,
    faces: str = "main",
    include_unknown_consent: bool = False,
    include_low_quality: bool = False,
    blur_bystanders: bool = False,
    today: date | None = None,
) -> Selection:
    """Records to export for ``what`` in chips|crops (one per face) or images (one per photo).

    The faces come from curation's ``dataset_faces`` (the same set training reads: kept
    copies only, a person with a split, the recorded per-person cap and class balance);
    export adds the consent rule and ``faces``: ``"main"`` keeps only each photo's main
    subject, ``"all"`` also the other good faces (without image labels: those describe the
    main subject). Photos (``images``) go out when their main face is in that set.
    """
    if what not in ("chips", "crops", "images"):
        raise ValueError(f"what must be chips, crops or images, not {what!r}")
    if faces not in ("main", "all"):
        raise ValueError(f"faces must be main or all, not {faces!r}")
    today = today or date.today()
    consent = effective_consent(ws)  # person > image > source, shared with the privacy ledger
    sources = public_source_names(ws)
    c = ws.catalog
    labels: dict[int, dict[str, str]] = {}
    for r in c.q("SELECT image_id, name, value FROM labels WHERE value IS NOT NULL AND value != ''"):
        labels.setdefault(r["image_id"], {})[r["name"]] = r["value"]

    allowed = {r["face_id"] for r in dataset_faces(ws, label=label, include_low_quality=include_low_quality)}
    skipped: Counter = Counter()
    unknown_kept = 0
    items: list[Item] = []
    if what == "images":
        rows = c.q(_IMAGE_SQL)
        bystanders: dict[int, list] = {}
        if blur_bystanders:
            for r in c.q("SELECT image_id, x, y, w, h FROM faces WHERE is_main = 0"):
                bystanders.setdefault(r["image_id"], []).append((r["x"], r["y"], r["w"], r["h"]))
    else:
        rows = c.q(_FACE_SQL)
        # Photos without face rows never reach the loop: count them so the sheet says where they went.
        for r in c.q("SELECT status, COUNT(*) FROM images WHERE status != 'ok' GROUP BY status"):
            skipped["not_scanned" if r[0] == "new" else r[0]] += r[1]

    seen_images: set[int] = set()
    for r in rows:
        if what == "images":
            if r["image_id"] in seen_images:  # two faces flagged main: one record per photo
                continue
            seen_images.add(r["image_id"])
        if r["i_status"] != "ok":
            skipped["not_scanned" if r["i_status"] == "new" else r["i_status"]] += 1
            continue
        if r["dup_of"] is not None:
            skipped["near_duplicate"] += 1
            continue
        if what != "images":
            if not r["is_main"] and faces == "main":
                skipped["not_main_face"] += 1
                continue
            if r["f_status"] == "bystander_blurred":
                skipped["bystander"] += 1
                continue
            if r["f_status"] == "low_quality" and not include_low_quality:
                skipped["low_quality"] += 1
                continue
            key = r["chip_key"] if what == "chips" else r["crop_key"]
            if not key:
                skipped["no_" + ("chip" if what == "chips" else "crop")] += 1
                continue
        else:
            key = r["store_key"]
        eff = consent.faces.get(r["face_id"]) or consent.images[r["image_id"]]
        basis = eff.basis
        if eff.expired(today):
            skipped["consent_expired"] += 1
            continue
        if basis == "unknown":
            if not include_unknown_consent:
                skipped["consent_unknown"] += 1
                continue
            unknown_kept += 1
        img_labels = labels.get(r["image_id"], {}) if (what == "images" or r["is_main"]) else {}
        if label is not None:
            if label not in img_labels:
                skipped["no_label"] += 1
                continue
            cls = img_labels[label]
        else:
            cls = ALL_CLASS
        if r["face_id"] not in allowed:
            skipped[_why_not(r, include_low_quality)] += 1
            continue
        pid = r["person_id"]
        items.append(
            Item(
                uid=_h(salt, r["pixel_sha"], r["idx"] if what != "images" else "image"),
                image_id=r["image_id"],
                face_id=r["face_id"],
                key=key,
                split=r["split"],
                cls=cls,
                labels=img_labels,
                person=_h(salt, "person", pid) if pid is not None else None,
                person_id=pid,
                source=sources[r["source_id"]],
                license=r["license"],
                consent=basis,
                quality=r["quality"],
                blur_boxes=bystanders.get(r["image_id"], []) if what == "images" and blur_bystanders else [],
            )
        )
    items.sort(key=lambda it: (it.cls, it.split, it.uid))
    return Selection(items=items, skipped=skipped, included_unknown_consent=unknown_kept)


def _why_not(r, include_low_quality: bool) -> str:
    """Reason a face passed export's own checks but is not among curation's dataset faces."""
    if r["face_id"] is None:
        return "no_main_face"
    if r["f_status"] == "low_quality" and not include_low_quality:
        return "low_quality"
    if r["f_status"] not in ("ok", "low_quality"):
        return "bystander"
    if r["split"] is None:
        return "no_split"
    return "per_person_cap_or_balance"
