"""Identity-disjoint train/val/test splits that never move an assigned person.

A person's split is written once to ``people.split``. New people are taken in
the order of a seeded hash of their id and each goes to the split furthest
below its target share *within its label stratum* (the person's majority
label), counted in faces after the per-person cap. So splits are stratified,
reproducible for a seed, and adding photos only ever assigns the new people.

Near-duplicate groups are tied to one side: people linked by a duplicate
group (images.dup_of) are assigned together, and ``dataset_faces`` drops the
non-kept copies anyway.

``dataset_faces`` is what exporters and trainers read: one row per usable
face with its label and split, honouring dup_of, face status, the cap and
class balancing recorded by the last ``assign_splits``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Iterator

from ..catalog.selection import check_max_yaw, seeded_hash
from ..errors import UsageError
from ..workspace import Workspace
from .graph import UnionFind

SPLITS = ("train", "val", "test")
SETTINGS_KEY = "split"


@dataclass
class SplitReport:
    ratios: tuple[float, float, float]
    seed: int
    label: str | None
    per_person_cap: int | None
    balance: bool
    max_yaw: float | None = None  # pose filter recorded for dataset_faces / export (degrees)
    assigned_now: int = 0  # people given a split in this run
    already_assigned: int = 0
    people: dict[str, int] = field(default_factory=dict)  # split -> people
    faces: dict[str, int] = field(default_factory=dict)  # split -> usable faces (after cap, dups dropped)
    by_label: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> label value -> faces
    dup_conflicts: int = 0  # duplicate groups already spanning two splits (kept copy decides; copies dropped)

    def to_dict(self) -> dict:
        return asdict(self)


_hash = seeded_hash  # the seeded order of new people (and of class balancing in the selection)


def person_labels(ws: Workspace, label: str) -> dict[int, str]:
    """Majority value of ``label`` over each person's main faces (ties: smallest value)."""
    votes: dict[int, Counter] = defaultdict(Counter)
    for r in ws.catalog.labels.per_person(label):
        votes[r.person_id][r.value] += 1
    return {p: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for p, c in votes.items()}


def assign_splits(
    ws: Workspace,
    *,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    label: str | None = None,
    per_person_cap: int | None = None,
    balance: bool = False,
    max_yaw: float | None = None,
) -> SplitReport:
    """Give every person without a split one; never change an existing split.

    ``max_yaw`` (degrees) is recorded with the cap and balance: datasets then leave out faces turned further."""
    if len(ratios) != 3 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise UsageError(f"ratios must be three non-negative numbers, got {ratios}")
    if balance and not label:
        raise UsageError("--balance needs --label")
    tot = float(sum(ratios))
    ratios = tuple(r / tot for r in ratios)
    if per_person_cap is not None and per_person_cap < 1:
        raise UsageError("per_person_cap must be >= 1")
    max_yaw = check_max_yaw(max_yaw)
    c = ws.catalog
    rep = SplitReport(ratios=ratios, seed=seed, label=label, per_person_cap=per_person_cap, balance=balance,
                      max_yaw=max_yaw)
    people = c.people.splits()
    weight = {p: min(n, per_person_cap or n) for p, n in c.people.usable_face_counts().items()}
    stratum = person_labels(ws, label) if label else {}
    units = _units(ws, people)
    # shares already taken per stratum, in faces
    load: dict[str | None, Counter] = defaultdict(Counter)
    for p, s in people.items():
        if s:
            load[stratum.get(p)][s] += weight.get(p, 0)
    todo = []
    assign: dict[int, str] = {}
    for unit in units:
        have = sorted({people[p] for p in unit if people[p]})
        if len(have) > 1:
            rep.dup_conflicts += 1
        if have:
            # the oldest assigned person's split wins for the unassigned rest
            first = min(p for p in unit if people[p])
            for p in unit:
                if not people[p]:
                    assign[p] = people[first]
        else:
            todo.append(unit)
    todo.sort(key=lambda u: _hash(seed, min(u)))
    for unit in todo:
        w = sum(weight.get(p, 0) for p in unit)
        key = Counter(stratum.get(p) for p in unit).most_common(1)[0][0]
        cur = load[key]
        total = sum(cur.values()) + w
        # the split most below its target after adding this unit (ties: train, val, test order)
        s = max(SPLITS, key=lambda sp: (ratios[SPLITS.index(sp)] * total - cur[sp], -SPLITS.index(sp)))
        for p in unit:
            assign[p] = s
        cur[s] += w
    rep.assigned_now = len(assign)
    rep.already_assigned = sum(1 for s in people.values() if s)
    params = {"ratios": list(ratios), "seed": seed, "label": label, "per_person_cap": per_person_cap,
              "balance": balance, "max_yaw": max_yaw}
    with c.tx():
        c.people.set_splits(assign)
        c.settings.put_json(SETTINGS_KEY, params)
        c.audit("split", assigned=rep.assigned_now, already_assigned=rep.already_assigned,
                dup_conflicts=rep.dup_conflicts, **params)
    have = Counter(c.people.splits().values())
    for s in SPLITS:
        rep.people[s] = have[s]
    for row in dataset_faces(ws, label=label):
        rep.faces[row["split"]] = rep.faces.get(row["split"], 0) + 1
        if label:
            d = rep.by_label.setdefault(row["split"], {})
            d[row["label"]] = d.get(row["label"], 0) + 1
    return rep


def _units(ws: Workspace, people: dict[int, str | None]) -> list[list[int]]:
    """People grouped so that everyone sharing a duplicate group lands on one side."""
    uf = UnionFind()
    for p in people:
        uf.find(p)
    first: dict[int, int] = {}
    for g, person_id in ws.catalog.people.in_duplicate_groups():
        if person_id not in people:
            continue
        if g in first:
            uf.union(first[g], person_id)
        else:
            first[g] = person_id
    return uf.groups()


def split_params(ws: Workspace) -> dict:
    """Parameters of the last assign_splits (cap, balance, label, ...); {} if never run."""
    return ws.catalog.settings.get_json(SETTINGS_KEY) or {}


def dataset_faces(
    ws: Workspace,
    *,
    label: str | None = None,
    split: str | None = None,
    per_person_cap: int | None = None,
    balance: bool | None = None,
    include_low_quality: bool = False,
    max_yaw: float | None = None,
) -> Iterator[dict]:
    """Faces that belong in a dataset, one dict per face (sorted by split, person, face id).

    Keys: face_id, image_id, person_id, split, label (value or None), chip_key, crop_key, quality.
    Only faces of kept images (dup_of NULL) with status 'ok' (and 'low_quality' if asked), a person
    and a split. With ``label``, only main faces whose image carries that label (group shots label
    their main subject). ``per_person_cap`` and ``balance`` default to the values recorded by the
    last assign_splits; the cap keeps each person's best faces (quality, then id), and balancing
    downsamples every class to the rarest one within each split (seeded, deterministic). ``max_yaw``
    (degrees; default: the value recorded by assign_splits, if any) leaves out faces turned further.
    These are the dataset rules of the one rule table in ``catalog/selection.py``; export runs the
    same table (plus its own rules) and counts what each rule leaves out.
    """
    params = split_params(ws)
    cap = per_person_cap if per_person_cap is not None else params.get("per_person_cap")
    bal = balance if balance is not None else params.get("balance", False)
    yaw = check_max_yaw(max_yaw if max_yaw is not None else params.get("max_yaw"))
    yield from ws.catalog.selection.dataset_faces(
        label=label, split=split, per_person_cap=cap, balance=bool(bal), seed=params.get("seed", 0),
        include_low_quality=include_low_quality, max_yaw=yaw)
