"""Which faces/images go into an export, and why the others stay out.

One function, :func:`select_items`, runs the catalog's selection rule table
(``catalog/selection.py``: the same rules ``dataset_faces`` applies, plus the
export's own: main face, stored cut, consent unknown or expired) and turns the
records it keeps into items. Every record a rule leaves out is counted under
that rule's reason code, because the datasheet must say what was left out and why.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from ..catalog.schema import EXPORT_WHAT as WHATS
from ..catalog.selection import Spec as SelectionSpec
from ..catalog.selection import check_max_yaw
from ..curate.splits import split_params
from ..errors import UsageError
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
    self_reported: tuple[str, ...] = ()  # label names the person reported themselves (consented collection)

    def manifest_row(self, file: str) -> dict:
        extra = {"self_reported": ",".join(self.self_reported)} if self.self_reported else {}
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
            **extra,
        }


@dataclass
class Selection:
    items: list[Item]
    skipped: Counter  # reason code -> count of records left out
    included_unknown_consent: int  # exported records whose basis is 'unknown' (include_unknown_consent)


def public_source_names(ws: Workspace) -> dict[int, str]:
    """Source id -> the name an export may show.

    Ingest names a source after its folder or file when no ``--source-name`` is given, and
    such a name is an original path component ("Alice private photos", "IMG_0042"): exports
    show those as ``source-<id>``. Names the owner chose are shown as they are.
    """
    out = {}
    for r in ws.catalog.sources.records():
        base = re.sub(r"-\d+$", "", r.name)  # ingest's de-duplicating suffix
        fname = Path(r.uri).name if r.uri else ""
        derived = bool(fname) and (base == fname or fname.startswith(base + "."))
        out[r.id] = f"source-{r.id}" if derived else r.name
    return out


def _h(salt: str, *parts) -> str:
    return hashlib.sha256((salt + ":" + ":".join(str(p) for p in parts)).encode()).hexdigest()[:20]


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
    max_yaw: float | None = None,
) -> Selection:
    """Records to export for ``what`` in chips|crops (one per face) or images (one per photo).

    The faces are curation's dataset faces (the same set training reads: kept copies only, a
    person with a split, the recorded per-person cap and class balance); export adds the
    consent rules and ``faces``: ``"main"`` keeps only each photo's main subject, ``"all"``
    also the other good faces (without image labels: those describe the main subject).
    Photos (``images``) go out when their main face is in that set. ``max_yaw`` (degrees): leave out
    faces turned further (rule ``pose``); None: the value the last assign_splits recorded, if any.
    """
    if what not in WHATS:
        raise UsageError(f"what must be chips, crops or images, not {what!r}")
    if faces not in ("main", "all"):
        raise UsageError(f"faces must be main or all, not {faces!r}")
    c = ws.catalog
    params = split_params(ws)  # the cap and balance the last assign_splits recorded
    spec = SelectionSpec(
        unit="image" if what == "images" else "face", label=label, include_low_quality=include_low_quality,
        max_yaw=check_max_yaw(max_yaw if max_yaw is not None else params.get("max_yaw")),
        per_person_cap=params.get("per_person_cap"), balance=bool(params.get("balance", False)),
        seed=params.get("seed", 0), faces=faces, cut={"chips": "chip", "crops": "crop"}.get(what),
        include_unknown_consent=include_unknown_consent, today=today or date.today())
    result = c.selection.apply(spec)
    sources = public_source_names(ws)
    labels = {i: {k: v for k, v in d.items() if v} for i, d in c.labels.of_images().items()}
    bystanders = c.faces.bystander_boxes() if what == "images" and blur_bystanders else {}
    items: list[Item] = []
    # campaign contributors' own ticks (collect/): an export is the dataset, so it needs 'dataset'
    scopes = c.campaigns.scopes_of_faces(r.face_id for r in result.kept if r.face_id is not None)
    no_scope = sum(1 for r in result.kept if "dataset" not in scopes.get(r.face_id, ("dataset",)))
    if no_scope:
        result.kept[:] = [r for r in result.kept if "dataset" in scopes.get(r.face_id, ("dataset",))]
        result.left_out["scope_not_given"] += no_scope
    reported = c.labels.self_reported(r.image_id for r in result.kept)
    for r in result.kept:
        img_labels = labels.get(r.image_id, {}) if (what == "images" or r.is_main) else {}
        key = {"chips": r.chip_key, "crops": r.crop_key}.get(what, r.store_key)
        pid = r.person_id
        items.append(
            Item(
                uid=_h(salt, r.pixel_sha, r.idx if what != "images" else "image"),
                image_id=r.image_id,
                face_id=r.face_id,
                key=key,
                split=r.split,
                cls=img_labels[label] if label is not None else ALL_CLASS,
                labels=img_labels,
                person=_h(salt, "person", pid) if pid is not None else None,
                person_id=pid,
                source=sources[r.source_id],
                license=r.license,
                consent=r.consent.basis,
                quality=r.quality,
                blur_boxes=bystanders.get(r.image_id, []),
                self_reported=tuple(n for n in reported.get(r.image_id, ()) if n in img_labels),
            )
        )
    unknown_kept = sum(1 for r in result.kept if r.consent.basis == "unknown")
    items.sort(key=lambda it: (it.cls, it.split, it.uid))
    return Selection(items=items, skipped=result.left_out, included_unknown_consent=unknown_kept)
