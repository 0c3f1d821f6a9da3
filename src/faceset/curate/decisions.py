"""Human review decisions: merge people, split faces off, "not a person", labels per person, duplicate keepers.

Each verb is one catalog transaction plus one audit entry (ids and counts only), and is what both
`faceset serve` and the CLI (`faceset people merge A B`, ...) call. Identity decisions are recorded per
face in the ``decisions`` table (must_link / cannot_link / not_a_person), because person ids change when
clustering reruns; the verbs also apply them to the people rows right away (a merge moves faces, a split
makes or fills a person). Clustering reads the table so a later `faceset people` never undoes them.
Exports holding a changed face turn stale (reason ``review``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

from ..catalog import now
from ..errors import NotFound, UsageError
from ..workspace import Workspace

REVIEW_STALE = "review"


@dataclass
class DecisionReport:
    """What one review verb did."""

    action: str
    person_id: int | None = None  # the person that results (merge target, split destination)
    people: list[int] = field(default_factory=list)  # every person touched
    faces: int = 0  # faces moved / marked / relabelled images
    decisions: int = 0  # new rows in ``decisions``
    deleted_people: list[int] = field(default_factory=list)
    exports_stale: int = 0
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _review(ws: Workspace):
    r = getattr(ws.catalog, "review", None)
    if r is None:  # until the catalog wires it (issue #12)
        from ..catalog.review import Review

        r = Review(ws.catalog)
    return r


def _ids(values: Iterable, what: str) -> list[int]:
    out = []
    for v in values:
        try:
            out.append(int(v))
        except (TypeError, ValueError):
            raise UsageError(f"{what} must be numbers, got {v!r}") from None
    if any(i <= 0 for i in out):
        raise UsageError(f"{what} must be positive ids")
    return sorted(set(out))


def _stale(ws: Workspace, face_ids: Iterable[int]) -> int:
    held = _review(ws).exports_holding_faces(face_ids)
    return ws.catalog.exports.mark_stale(held, REVIEW_STALE) if held else 0


def merge_people(ws: Workspace, keep: int, others: int | Sequence[int]) -> DecisionReport:
    """Merge ``others`` into person ``keep``: their faces move to ``keep``, the emptied people are deleted,
    and a must-link from ``keep``'s anchor face to every moved face records the decision."""
    others = _ids([others] if isinstance(others, int) else others, "people to merge")
    keep = _ids([keep], "person to keep")[0]
    others = [o for o in others if o != keep]
    if not others:
        raise UsageError("merge needs at least one other person than the one kept")
    rv = _review(ws)
    c = ws.catalog
    with c.tx():
        missing = [p for p in [keep, *others] if rv.person(p) is None]
        if missing:
            raise NotFound(f"no person {', '.join(map(str, missing))}")
        anchor = rv.anchor_face(keep)
        kept_faces = rv.face_ids_of_person(keep)
        moved: list[int] = []
        for o in others:
            moved += rv.face_ids_of_person(o)
        if anchor is None:  # a person without an embedded face: link to the first moved one instead
            anchor = rv.anchor_face(others[0])
        n_dec = 0
        if anchor is not None:
            n_dec = rv.add_decisions("must_link", [(anchor, f) for f in moved if f != anchor])
        rv.drop_links_between("cannot_link", kept_faces, moved)
        stale = _stale(ws, moved)
        rv.move_faces(moved, keep)
        c.people.refresh_centroids([keep, *others])
        c.people.delete_empty(others)
        deleted = [p for p in others if rv.person(p) is None]
        c.audit("people_merge", keep=keep, merged=others, faces_moved=len(moved), decisions=n_dec,
                exports_stale=stale)
    return DecisionReport("merge", person_id=keep, people=[keep, *others], faces=len(moved), decisions=n_dec,
                          deleted_people=deleted, exports_stale=stale)


def _persons_of(rv, face_ids: list[int]) -> dict:
    """face id -> its person (None if unassigned); NotFound naming the ids that do not exist."""
    person_of = rv.persons_of_faces(face_ids)
    missing = [f for f in face_ids if f not in person_of]
    if missing:
        raise NotFound(f"no face {', '.join(map(str, missing[:10]))}")
    return person_of


def split_faces(ws: Workspace, face_ids: Sequence[int], *, into: int | None = None) -> DecisionReport:
    """Move faces off their person(s): into a new person (``into`` None) or person ``into``. Records a
    cannot-link between each moved face and the anchor of the person it left, and a must-link tying the
    moved faces together (to ``into``'s anchor when given)."""
    face_ids = _ids(face_ids, "face ids")
    if not face_ids:
        raise UsageError("split needs at least one face id")
    rv = _review(ws)
    c = ws.catalog
    with c.tx():
        person_of = _persons_of(rv, face_ids)
        if into is not None:
            into = _ids([into], "target person")[0]
            if rv.person(into) is None:
                raise NotFound(f"no person {into}")
        old_people = sorted({p for p in person_of.values() if p is not None and p != into})
        if into is None:
            target = c.people.create()
            head = face_ids[0]
        else:
            target = into
            head = rv.anchor_face(into, excluding=face_ids) or face_ids[0]
        pairs_cannot = []
        for p in old_people:
            anchor = rv.anchor_face(p, excluding=face_ids)
            if anchor is not None:
                pairs_cannot += [(anchor, f) for f in face_ids if person_of[f] == p]
            rv.drop_links_between("must_link", [f for f in face_ids if person_of[f] == p],
                                  [g for g in rv.face_ids_of_person(p) if g not in set(face_ids)])
        n_dec = rv.add_decisions("cannot_link", pairs_cannot)
        n_dec += rv.add_decisions("must_link", [(head, f) for f in face_ids if f != head])
        stale = _stale(ws, face_ids)
        rv.move_faces(face_ids, target)
        c.people.refresh_centroids([target, *old_people])
        c.people.delete_empty(old_people)
        deleted = [p for p in old_people if rv.person(p) is None]
        c.audit("people_split", faces=len(face_ids), into=target, new_person=into is None, from_people=old_people,
                decisions=n_dec, exports_stale=stale)
    return DecisionReport("split", person_id=target, people=[target, *old_people], faces=len(face_ids),
                          decisions=n_dec, deleted_people=deleted, exports_stale=stale,
                          details={"new_person": into is None})


def mark_not_a_person(ws: Workspace, face_ids: Sequence[int]) -> DecisionReport:
    """Faces that are no person (poster, painting, screen): recorded, and taken off their person."""
    face_ids = _ids(face_ids, "face ids")
    if not face_ids:
        raise UsageError("give at least one face id")
    rv = _review(ws)
    c = ws.catalog
    with c.tx():
        person_of = _persons_of(rv, face_ids)
        people = sorted({p for p in person_of.values() if p is not None})
        n_dec = rv.add_decisions("not_a_person", [(f, None) for f in face_ids])
        stale = _stale(ws, face_ids)
        rv.move_faces(face_ids, None)
        c.people.refresh_centroids(people)
        c.people.delete_empty(people)
        deleted = [p for p in people if rv.person(p) is None]
        c.audit("not_a_person", faces=len(face_ids), people=people, decisions=n_dec, exports_stale=stale)
    return DecisionReport("not_a_person", people=people, faces=len(face_ids), decisions=n_dec,
                          deleted_people=deleted, exports_stale=stale)


def _label_args(name: str, value: str) -> tuple[str, str]:
    name, value = (name or "").strip(), (value or "").strip()
    if not name:
        raise UsageError("label name must not be empty")
    if len(name) > 64 or len(value) > 256:
        raise UsageError("label name (64) or value (256 characters) too long")
    return name, value


def set_person_label(ws: Workspace, person_id: int, name: str, value: str) -> DecisionReport:
    """Set label ``name`` = ``value`` (origin 'user') on every image whose main face is this person."""
    name, value = _label_args(name, value)
    pid = _ids([person_id], "person id")[0]
    rv = _review(ws)
    c = ws.catalog
    with c.tx():
        if rv.person(pid) is None:
            raise NotFound(f"no person {pid}")
        images = rv.main_images_of(pid)
        if not images:
            raise UsageError(f"person {pid} is the main face of no image: nothing to label")
        ts = now()
        for i in images:
            c.labels.set_by_user(i, name, value, at=ts)
        c.audit("person_label", person_id=pid, label=name, images=len(images))
    return DecisionReport("person_label", person_id=pid, people=[pid], faces=len(images),
                          details={"label": name, "value": value})


def set_image_label(ws: Workspace, image_id: int, name: str, value: str) -> DecisionReport:
    """Confirm or fix one image's label (origin 'user'): what the label suspects page's buttons do."""
    name, value = _label_args(name, value)
    iid = _ids([image_id], "image id")[0]
    rv = _review(ws)
    c = ws.catalog
    with c.tx():
        if rv.image(iid) is None:
            raise NotFound(f"no image {iid}")
        c.labels.set_by_user(iid, name, value)
        c.audit("image_label", image_id=iid, label=name)
    return DecisionReport("image_label", faces=1, details={"image_id": iid, "label": name, "value": value})


def choose_keeper(ws: Workspace, image_id: int) -> DecisionReport:
    """Make this image the kept member of its near-duplicate group (the others point at it)."""
    iid = _ids([image_id], "image id")[0]
    rv = _review(ws)
    c = ws.catalog
    with c.tx():
        if rv.image(iid) is None:
            raise NotFound(f"no image {iid}")
        group = rv.dup_group_of(iid)
        if group is None:
            raise UsageError(f"image {iid} is in no near-duplicate group")
        before = group.keeper
        if before != iid:
            rv.set_keeper(group, iid)
        c.audit("dup_keeper", image_id=iid, previous=before, members=len(group.members) + 1)
    return DecisionReport("dup_keeper", faces=len(group.members) + 1,
                          details={"keeper": iid, "previous": before,
                                   "members": sorted({group.keeper, *group.members})})
