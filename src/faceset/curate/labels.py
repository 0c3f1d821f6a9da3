"""Labels checked per person: conflicts, likely label noise, bulk fixes through CSV.

Labels live per image (``labels``); a label describes the image's main face,
so per-person checks join labels to main faces. A person is one human, so two
genders (or races) within one person is a conflict; numeric labels such as
age legitimately vary across photos, so they conflict only beyond a tolerance.
"""

from __future__ import annotations

import csv
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..catalog import now
from ..errors import NotFound, UsageError
from ..workspace import Workspace


@dataclass
class Conflict:
    person_id: int
    label: str
    values: dict[str, int]  # value -> images
    majority: str
    minority_images: list[int]  # images whose value is not the majority (numeric: furthest from the median)


@dataclass
class ConflictReport:
    people_checked: int = 0
    conflicts: list[Conflict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def label_conflicts(ws: Workspace, *, label: str | None = None, numeric_tolerance: float = 10.0) -> ConflictReport:
    """People whose main faces carry disagreeing values of one label (``label``: only that one)."""
    if label:
        _known_label(ws, label)
    if not numeric_tolerance >= 0:
        raise UsageError(f"numeric tolerance must be >= 0, got {numeric_tolerance:g}")
    by: dict[tuple[int, str], list[tuple[str, int]]] = defaultdict(list)
    for r in ws.catalog.labels.per_person(label or None):
        by[(r.person_id, r.name)].append((r.value, r.image_id))
    rep = ConflictReport(people_checked=len({p for p, _ in by}))
    numeric = {n: all(_is_number(v) for (_, n2), vals in by.items() if n2 == n for v, _ in vals) for _, n in by}
    for (pid, name), vals in sorted(by.items()):
        counts = Counter(v for v, _ in vals)
        if len(counts) < 2:
            continue
        if numeric[name]:
            xs = np.array([float(v) for v, _ in vals])
            if xs.max() - xs.min() <= numeric_tolerance:
                continue
            med = float(np.median(xs))
            majority = f"{med:g}"
            minority = sorted(i for v, i in vals if abs(float(v) - med) > numeric_tolerance / 2)
        else:
            majority = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
            minority = sorted(i for v, i in vals if v != majority)
        rep.conflicts.append(Conflict(pid, name, dict(sorted(counts.items())), majority, minority))
    return rep


@dataclass
class Suspect:
    image_id: int
    face_id: int
    person_id: int | None
    given: str
    predicted: str
    p_given: float  # cross-validated probability of the given label
    path: str


@dataclass
class NoiseReport:
    label: str
    faces: int = 0
    folds: int = 0
    cv_accuracy: float = 0.0
    skipped_classes: list[str] = field(default_factory=list)  # too few faces to cross-validate
    note: str = ""
    suspects: list[Suspect] = field(default_factory=list)  # most suspicious first

    def to_dict(self) -> dict:
        return asdict(self)


def label_noise(ws: Workspace, label: str, *, top: int = 50, folds: int = 5, seed: int = 0) -> NoiseReport:
    """Rank main faces by how little cross-validated predictions on embeddings believe their label.

    Folds are grouped by person, so a face is judged by a model that never saw
    that person: otherwise a person's own other photos would vouch for a
    consistently wrong label.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _known_label(ws, label)
    if top < 1:
        raise UsageError(f"top must be at least 1, got {top}")
    if folds < 2:
        raise UsageError(f"folds must be at least 2, got {folds}")
    rows = ws.catalog.labels.on_main_faces(label)
    rep = NoiseReport(label=label, faces=len(rows))
    # a class needs faces of >= 2 people (folds are grouped by person) and >= 3 faces to be judged;
    # a label that names the person (identity) has neither and is checked by label_conflicts instead
    people_of: dict[str, set] = defaultdict(set)
    for r in rows:
        people_of[r.value].add(r.person_id if r.person_id is not None else -r.face_id)
    n_of = Counter(r.value for r in rows)
    rare = {v for v in n_of if n_of[v] < 3 or len(people_of[v]) < 2}
    rep.skipped_classes = sorted(rare)
    rows = [r for r in rows if r.value not in rare]
    y = np.array([r.value for r in rows])
    classes, counts = np.unique(y, return_counts=True)
    k = int(min(folds, counts.min())) if len(classes) > 1 else 0
    if k < 2:
        rep.note = ("fewer than two classes with >= 3 faces of >= 2 people: nothing to judge against "
                    "(a label that names the person is checked by `faceset label conflicts`)")
        return rep
    X = np.stack([r.embedding for r in rows])
    groups = np.array([r.person_id if r.person_id is not None else -r.face_id for r in rows])
    if len(np.unique(groups)) >= k:
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        cv, groups = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed), None
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
    with warnings.catch_warnings():  # a fold may miss a class: its probability is then 0, which is the point
        warnings.simplefilter("ignore", RuntimeWarning)
        proba = cross_val_predict(model, X, y, cv=cv, groups=groups, method="predict_proba")
    column = {cls: i for i, cls in enumerate(classes)}
    p_given = proba[np.arange(len(y)), [column[v] for v in y]]
    pred = classes[proba.argmax(1)]
    rep.folds, rep.cv_accuracy = k, round(float((pred == y).mean()), 4)
    doubted = [int(i) for i in np.argsort(p_given, kind="stable")[:top] if pred[i] != y[i]]
    paths = ws.catalog.images.first_paths([rows[i].image_id for i in doubted])
    for i in doubted:
        r = rows[i]
        rep.suspects.append(Suspect(r.image_id, r.face_id, r.person_id, str(y[i]), str(pred[i]),
                                    round(float(p_given[i]), 4), paths.get(r.image_id, "")))
    return rep


def _known_label(ws: Workspace, label: str) -> None:
    """A label name no image carries is a typo, not an empty result."""
    if label not in ws.catalog.labels.names():
        known = ", ".join(sorted(ws.catalog.labels.names())) or "none"
        raise UsageError(f"no image has a label {label!r} (labels: {known})")


EXPORT_COLUMNS = ["image_id", "person_id", "label", "value", "origin", "path"]


def export_labels(ws: Workspace, out: str | Path, *, label: str | None = None) -> int:
    """Write one row per (image, label) for review in a spreadsheet; returns rows written."""
    if label:
        _known_label(ws, label)
    rows = ws.catalog.labels.for_review(label or None)
    paths = ws.catalog.images.first_paths({r.image_id for r in rows})
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(EXPORT_COLUMNS)
        for r in rows:
            w.writerow([r.image_id, r.person_id if r.person_id is not None else "", r.label, r.value,
                        r.origin, paths.get(r.image_id, "")])
    return len(rows)


@dataclass
class ImportReport:
    rows: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    rejected: list[str] = field(default_factory=list)  # "line N: reason"

    def to_dict(self) -> dict:
        return asdict(self)


def import_labels(ws: Workspace, src: str | Path) -> ImportReport:
    """Apply a reviewed CSV (columns image_id or person_id, label, value; origin becomes 'user').

    A row with a blank image_id and a person_id sets the label on every image whose
    main face is that person (bulk fix). An empty value removes the label. Bad rows
    are reported by line and skipped; the rest is applied in one transaction.
    """
    c = ws.catalog
    rep = ImportReport()
    if not Path(src).is_file():
        raise NotFound(f"{src}: no such file")
    person_images = c.people.main_images()
    current = c.labels.values()
    with open(src, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = {"label", "value"} - set(reader.fieldnames or [])
        if missing or not ({"image_id", "person_id"} & set(reader.fieldnames or [])):
            raise UsageError(f"{src}: need columns image_id or person_id, label, value (got {reader.fieldnames})")
        updates: dict[tuple[int, str], str] = {}
        for line, row in enumerate(reader, start=2):
            rep.rows += 1
            name, value = (row.get("label") or "").strip(), (row.get("value") or "").strip()
            if not name:
                rep.rejected.append(f"line {line}: empty label name")
                continue
            try:
                if (row.get("image_id") or "").strip():
                    targets = [int(row["image_id"])]
                    if not c.images.exists(targets[0]):
                        rep.rejected.append(f"line {line}: no image {targets[0]}")
                        continue
                else:
                    pid = int(row.get("person_id") or "")
                    targets = person_images.get(pid, [])
                    if not targets:
                        rep.rejected.append(f"line {line}: no person {pid} with labelled faces")
                        continue
            except ValueError:
                rep.rejected.append(f"line {line}: image_id/person_id is not a number")
                continue
            for t in targets:
                updates[(t, name)] = value
    ts = now()
    with c.tx():
        for (image_id, name), value in updates.items():
            old = current.get((image_id, name))
            if value == "":
                if old is not None:
                    c.labels.remove(image_id, name)
                    rep.removed += 1
                else:
                    rep.unchanged += 1
            elif old == value:
                rep.unchanged += 1
            else:
                c.labels.set_by_user(image_id, name, value, at=ts)
                rep.changed += 1
        c.audit("label_import", rows=rep.rows, changed=rep.changed, removed=rep.removed, rejected=len(rep.rejected))
    return rep
