"""Forget me by selfie: find every face of a person from their photo(s) and erase every trace.

Three steps, so people can look before anything is deleted:

* find: :func:`find_matches` embeds the selfie(s) and returns each workspace face within
  ``threshold`` (distance between unit-normalised embeddings), plus the faces of any
  person cluster whose centroid is within the tighter ``cluster_radius`` (recall from the
  curated clusters without letting a loose cluster drag strangers in).
* plan: :func:`plan` turns the matches into an :class:`ErasurePlan` (pure data, what
  ``--dry-run`` prints): whole photos to erase where the person is the main subject or the
  only face (or every group shot, with ``drop_group_photos``), and in the other group shots
  the faces to pixelate.
* apply: :func:`apply` does it in one catalog transaction (rows, files rows with the original
  paths, labels, chips, crops, stored copies; redacted copies of group shots with the
  neighbours' chips and crops cut again; stale exports; the person's clusters; the blocklist;
  an audit entry with counts only), then shreds the store objects and derived artefacts
  (caches, contact sheets, the report) and vacuums the catalog so no page keeps the old rows.
  The redaction itself is :mod:`faceset.privacy.redact`, shared with scan's blocklist.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import imageio
from ..errors import NotFound, UsageError
from ..workspace import Workspace
from . import blocklist, redact
from .blocklist import distances, unit
from .redact import blur_boxes, purge_blocked, wipe_derived  # noqa: F401  (the API they had here)

# Chosen on ../shared/data/identities by bench/forget.py (identity-disjoint 2-fold, UTKFace
# distractors): see docs/privacy.md for the curve and the held-out numbers.
DEFAULT_THRESHOLD = 0.36
# A cluster is only followed when its centroid is this close to the selfie: tighter than
# the face threshold because one bad merge would otherwise erase a stranger.
DEFAULT_CLUSTER_RADIUS = 0.30


class ForgetError(UsageError):
    """A selfie or setting that cannot be used (unreadable, no face, distance out of range):
    the CLI exits 2 with this message."""


class SelfieNotFound(ForgetError, NotFound):
    """A selfie file that does not exist."""


@dataclass
class Match:
    face_id: int
    image_id: int
    distance: float  # to the nearest selfie face (unit-normalised embeddings)
    via: str  # embedding | cluster
    person_id: int | None
    is_main: bool
    faces_in_image: int
    action: str  # erase_image | blur_face | drop_group_photo
    source_paths: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ErasurePlan:
    """What :func:`apply` will do, decided from the matches alone (no workspace: testable, printable)."""

    erase_images: tuple[int, ...] = ()  # whole photos go
    hide_faces: dict[int, tuple[int, ...]] = field(default_factory=dict)  # group shot -> faces to pixelate
    faces: tuple[int, ...] = ()  # every matched face (their rows go in both cases)

    @property
    def touched_images(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.erase_images) | set(self.hide_faces)))

    def to_dict(self) -> dict:
        return {"erase_images": list(self.erase_images),
                "hide_faces": {str(k): list(v) for k, v in self.hide_faces.items()},
                "faces": list(self.faces)}


@dataclass
class ForgetReport:
    selfies: int
    threshold: float
    cluster_radius: float
    matches: list[Match]
    dry_run: bool
    images_erased: int = 0
    faces_erased: int = 0
    faces_blurred: int = 0
    files_rows_deleted: int = 0
    people_deleted: int = 0
    exports_stale: int = 0
    store_objects_deleted: int = 0
    cache_files_deleted: int = 0
    unscanned_images: int = 0  # not embedded yet: the blocklist catches them at scan
    blocklist_id: int | None = None
    contact_sheet: str | None = None  # wiped by the erasure itself (it shows the face)
    cancelled: bool = False
    plan: ErasurePlan | None = None

    @property
    def images(self) -> list[int]:
        return sorted({m.image_id for m in self.matches})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["plan"] = self.plan.to_dict() if self.plan is not None else None
        d["matched_faces"] = len(self.matches)
        d["matched_images"] = len(self.images)
        return d


def _check_distance(name: str, v: float) -> float:
    v = float(v)
    if not 0.0 < v <= 2.0:
        raise ForgetError(f"{name} must be in (0, 2] (distance between unit-normalised embeddings), not {v}")
    return v


# -- finding ------------------------------------------------------------------


def selfie_embeddings(selfies: list) -> np.ndarray:
    """One embedding per selfie: its main (largest) face. Paths, bytes or HxWx3 arrays."""
    from ..scan import analyze

    if not len(selfies):
        raise ForgetError("give at least one photo of the person")
    out = []
    for s in selfies:
        name = str(s) if isinstance(s, (str, Path)) else "selfie"
        rgb = _load_rgb(s, name)
        faces = [f for f in analyze(rgb, embed=True, crops=False) if f.embedding is not None]
        if not faces:
            raise ForgetError(f"{name}: no face found (use a clear, frontal photo of the person)")
        main = max(faces, key=lambda f: (bool(f.is_main), f.box[2] * f.box[3]))
        out.append(np.asarray(main.embedding, np.float32))
    return np.stack(out)


def _load_rgb(s, name: str) -> np.ndarray:
    if isinstance(s, np.ndarray):
        return s
    try:
        data = s if isinstance(s, bytes) else Path(s).read_bytes()
    except FileNotFoundError:
        raise SelfieNotFound(f"{name}: no such file") from None
    except OSError as e:
        raise ForgetError(f"{name}: cannot read ({e.strerror or e})") from None
    try:
        return imageio.decode(data, clean=False).rgb
    except imageio.Rejected as e:
        raise ForgetError(f"{name}: {e.reason}") from None


def find_matches(
    ws: Workspace,
    selfies: list,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    cluster_radius: float = DEFAULT_CLUSTER_RADIUS,
    drop_group_photos: bool = False,
    selfie_emb: np.ndarray | None = None,
) -> list[Match]:
    """Every face of the selfie's person in the workspace, with what erasure will do to it."""
    threshold = _check_distance("threshold", threshold)
    cluster_radius = _check_distance("cluster_radius", cluster_radius)
    q = unit(selfie_emb if selfie_emb is not None else selfie_embeddings(selfies))
    c = ws.catalog
    ids, emb = c.faces.embeddings()
    if len(ids) == 0:
        return []
    u = unit(emb)
    d = distances(u, q).min(axis=1)
    direct = np.flatnonzero(d <= threshold)
    hit = {int(ids[k]): float(d[k]) for k in direct}
    via = {i: "embedding" for i in hit}

    # Cluster expansion, guarded twice: only through person clusters a direct match belongs to
    # whose centroid sits within the tighter radius, and only to faces of that cluster within
    # ``threshold`` of a direct match (one hop). Clusters chain look-alikes (bench: strangers
    # 0.38-0.50 away sat in one person's cluster), so "the whole cluster" would erase them.
    person = c.faces.persons_of_embedded()
    pid = np.array([person.get(int(i)) or 0 for i in ids])
    touched = sorted({int(p) for p in pid[direct] if p})
    for person_id, centroid in sorted(c.people.centroids(touched).items()):
        if float(distances(unit(np.frombuffer(centroid, np.float32)), q).min()) > cluster_radius:
            continue
        members = np.flatnonzero(pid == person_id)
        near = distances(u[members], u[direct]).min(axis=1) <= threshold
        for k in members[near]:
            if int(ids[k]) not in hit:
                hit[int(ids[k])] = float(d[k])
                via[int(ids[k])] = "cluster"
    if not hit:
        return []

    rows = c.faces.in_images(hit)
    paths = {iid: [original_path(f.kind, f.uri, f.path) for f in files]
             for iid, files in c.images.original_files({r.image_id for r in rows}).items()}
    # Subject when the person is the main face or every face in the photo is theirs.
    matched_per_image: dict[int, int] = {}
    main_in_image: set[int] = set()
    for r in rows:
        matched_per_image[r.image_id] = matched_per_image.get(r.image_id, 0) + 1
        if r.is_main:
            main_in_image.add(r.image_id)
    out = []
    for r in rows:
        iid = r.image_id
        if iid in main_in_image or matched_per_image[iid] >= r.faces_in_image:
            action = "erase_image"
        else:
            action = "drop_group_photo" if drop_group_photos else "blur_face"
        out.append(Match(
            face_id=r.face_id, image_id=iid, distance=round(hit[r.face_id], 4), via=via[r.face_id],
            person_id=r.person_id, is_main=r.is_main, faces_in_image=r.faces_in_image,
            action=action, source_paths=paths.get(iid, []),
        ))
    return out


def original_path(kind: str, uri: str | None, path: str) -> str:
    """Where the user's own file is: folder/path, the file itself, or archive:member."""
    if kind == "folder" and uri:
        return str(Path(uri) / path)
    if kind == "file" and uri:
        return uri
    return f"{uri}:{path}" if uri else path


# -- showing --------------------------------------------------------------------


def contact_sheet(ws: Workspace, matches: list[Match], out: Path, cols: int = 8, cell: int = 150) -> Path | None:
    """The matched faces' chips in a grid, each with its distance and what erasure will do."""
    from PIL import Image, ImageDraw

    if not matches:
        return None
    keys = ws.catalog.faces.chip_keys(m.face_id for m in matches)
    rows = (len(matches) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * cell, rows * (cell + 16)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, m in enumerate(matches):
        x, y = (k % cols) * cell, (k // cols) * (cell + 16)
        key = keys.get(m.face_id)
        if key and ws.store.exists(key):
            with Image.open(io.BytesIO(ws.store.get(key))) as im:
                sheet.paste(im.convert("RGB").resize((cell, cell)), (x, y))
        tag = {"erase_image": "erase", "blur_face": "blur", "drop_group_photo": "drop"}[m.action]
        draw.text((x + 3, y + cell + 2), f"#{m.image_id} {m.distance:.2f}{'c' if m.via == 'cluster' else ''} {tag}",
                  fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, "PNG")
    return out


# -- planning -------------------------------------------------------------------


def plan(matches: list[Match]) -> ErasurePlan:
    """What erasure will do with these matches: pure, so ``--dry-run`` can print exactly it."""
    hide: dict[int, list[int]] = {}
    for m in matches:
        if m.action == "blur_face":
            hide.setdefault(m.image_id, []).append(m.face_id)
    return ErasurePlan(
        erase_images=tuple(sorted({m.image_id for m in matches if m.action in ("erase_image", "drop_group_photo")})),
        hide_faces={iid: tuple(sorted(f)) for iid, f in sorted(hide.items())},
        faces=tuple(sorted({m.face_id for m in matches})),
    )


# -- applying -------------------------------------------------------------------


def apply(ws: Workspace, erasure: ErasurePlan, *, radius: float = DEFAULT_THRESHOLD,
          selfie_emb: np.ndarray | None = None, report: ForgetReport | None = None) -> ForgetReport:
    """Carry out ``erasure`` (see the module doc): one transaction, then shredding, then VACUUM.

    Safe to rerun after a crash: a rerun finds nothing left to match and collects what the
    interrupted run left in the store.
    """
    rep = report or ForgetReport(selfies=0, threshold=radius, cluster_radius=DEFAULT_CLUSTER_RADIUS,
                                 matches=[], dry_run=False)
    rep.plan = erasure
    c = ws.catalog

    # The blocklist template comes from the person's own embeddings (selfies + matched faces).
    parts = [selfie_emb] if selfie_emb is not None and len(selfie_emb) else []
    if erasure.faces:
        parts.append(c.faces.embeddings(face_ids=erasure.faces).vectors)
    tmpl = np.concatenate(parts) if parts and sum(map(len, parts)) else None

    # Redacted copies go into the store before the transaction; a crash leaves only unreferenced objects.
    copies = [redact.redacted_copy(ws, iid, hide_faces=fids) for iid, fids in erasure.hide_faces.items()]

    with c.tx():
        n_stale = redact.mark_stale(ws, "forget", image_ids=erasure.touched_images, face_ids=erasure.faces)
        people = c.faces.people_of(set(erasure.faces) | set(c.faces.ids_in_images(erasure.erase_images)))
        gone = redact.erase_images(ws, erasure.erase_images, face_ids=erasure.faces)
        doomed = set(gone.keys)
        for copy in copies:
            redact.apply_copy(ws, copy)
            doomed |= copy.old_keys
        c.people.refresh_centroids(people)
        n_people = c.people.delete_empty(people)
        # a source that only ever held this person (e.g. one file) names them
        c.sources.delete_unused(gone.source_ids)
        if tmpl is not None and not (selfie_emb is not None and len(selfie_emb)
                                     and blocklist.blocked_mask(ws, selfie_emb).all()):
            rep.blocklist_id = blocklist.add_template(ws, tmpl, radius)  # not again on a rerun
        n_blurred = sum(len(v) for v in erasure.hide_faces.values())
        c.audit("forget", images_erased=gone.images, faces_erased=gone.faces, faces_blurred=n_blurred,
                exports_stale=n_stale, people_deleted=n_people, blocklist_id=rep.blocklist_id)

    rep.images_erased = gone.images
    rep.faces_erased = gone.faces
    rep.faces_blurred = n_blurred
    rep.files_rows_deleted = gone.files_rows
    rep.people_deleted = n_people
    rep.exports_stale = n_stale
    rep.store_objects_deleted = redact.shred(ws, doomed, gc=True)
    rep.cache_files_deleted = redact.wipe_derived(ws)
    c.vacuum()
    return rep


def erase(ws: Workspace, matches: list[Match], *, radius: float = DEFAULT_THRESHOLD,
          selfie_emb: np.ndarray | None = None, report: ForgetReport | None = None) -> ForgetReport:
    """Erase what ``matches`` found: :func:`apply` of :func:`plan`."""
    rep = report or ForgetReport(selfies=0, threshold=radius, cluster_radius=DEFAULT_CLUSTER_RADIUS,
                                 matches=matches, dry_run=False)
    return apply(ws, plan(matches), radius=radius, selfie_emb=selfie_emb, report=rep)


def referenced_keys(ws: Workspace) -> set[str]:
    """Store keys the catalog still references (the columns ``catalog.schema.STORE_KEY_COLUMNS`` lists)."""
    return ws.catalog.images.referenced_keys()

# -- the entry point --------------------------------------------------------------


def forget(
    ws: Workspace,
    selfies: list,
    *,
    dry_run: bool = False,
    drop_group_photos: bool = False,
    threshold: float = DEFAULT_THRESHOLD,
    cluster_radius: float = DEFAULT_CLUSTER_RADIUS,
    confirm: Callable[[ForgetReport], bool] | None = None,
    sheet: bool = True,
) -> ForgetReport:
    """Find the selfies' person and (unless ``dry_run``) erase them everywhere and block them.

    ``confirm`` sees the matches (and the contact sheet) before anything is deleted; when it
    returns False nothing changes and the report says ``cancelled``.
    """
    selfies = list(selfies)
    threshold = _check_distance("threshold", threshold)
    cluster_radius = _check_distance("cluster_radius", cluster_radius)
    q = selfie_embeddings(selfies)
    if not dry_run:
        purge_blocked(ws)
    matches = find_matches(ws, selfies, threshold, cluster_radius=cluster_radius,
                           drop_group_photos=drop_group_photos, selfie_emb=q)
    rep = ForgetReport(selfies=len(selfies), threshold=threshold, cluster_radius=cluster_radius,
                       matches=matches, dry_run=dry_run, plan=plan(matches),
                       unscanned_images=ws.catalog.images.count_with_status("new"))
    if sheet and matches and (dry_run or confirm is not None):
        out = ws.sheets_dir / f"forget-{time.strftime('%Y%m%d-%H%M%S')}.png"
        rep.contact_sheet = str(contact_sheet(ws, matches, out))
    if dry_run:
        return rep
    if confirm is not None and not confirm(rep):
        rep.cancelled = True
        return rep
    return apply(ws, rep.plan, radius=threshold, selfie_emb=q, report=rep)
