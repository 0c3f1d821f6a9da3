"""Forget me by selfie: find every face of a person from their photo(s) and erase every trace.

Three steps, so people can look before anything is deleted:

* find: :func:`find_matches` embeds the selfie(s) (one or more) and sorts every workspace face with
  :func:`faceset.curate.match.match` at the operating point for that number of selfies (chosen by
  person-disjoint CV on identities_wild): ``certain`` (face-level and cluster-level evidence agree; erased
  on ``--yes``) or ``review`` (close enough that a human must look: listed with its distances and on the
  contact sheet, erased only when confirmed or with ``include_uncertain``).
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
from ..curate import match as M
from ..errors import NotFound, UsageError
from ..workspace import Workspace
from . import blocklist, redact
from .redact import blur_boxes, purge_blocked, wipe_derived  # noqa: F401  (the API they had here)

# The blocklist radius (unit-normalised embeddings) of the template an erasure leaves behind.
DEFAULT_THRESHOLD = 0.36
# Kept for callers of the previous find step; matching now uses curate.match's operating points.
DEFAULT_CLUSTER_RADIUS = 0.30
CERTAIN, REVIEW = M.CERTAIN, M.REVIEW


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
    certainty: str = CERTAIN  # certain (erased on --yes) | review (erased only when confirmed)
    rms: float | None = None  # RMS distance to all selfies
    person_distance: float | None = None  # RMS distance from the selfies to every face of its person

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
    include_uncertain: bool = False  # the 'review' matches are erased too (confirmed, or --include-uncertain)
    operating_point: dict = field(default_factory=dict)  # curate.match.MatchParams used

    @property
    def certain(self) -> list[Match]:
        return [m for m in self.matches if m.certainty == CERTAIN]

    @property
    def review(self) -> list[Match]:
        return [m for m in self.matches if m.certainty != CERTAIN]

    @property
    def to_erase(self) -> list[Match]:
        return self.matches if self.include_uncertain else self.certain

    @property
    def images(self) -> list[int]:
        return sorted({m.image_id for m in self.matches})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["plan"] = self.plan.to_dict() if self.plan is not None else None
        d["matched_faces"] = len(self.matches)
        d["matched_images"] = len(self.images)
        d["certain_faces"] = len(self.certain)
        d["review_faces"] = len(self.review)
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
    try:  # the guarded reader (regular files only, size cap: a FIFO or /dev/zero link cannot hang or OOM us)
        data = s if isinstance(s, bytes) else imageio.read_file(s)
    except imageio.Rejected as e:
        if e.code == "missing":
            raise SelfieNotFound(f"{name}: no such file") from None
        raise ForgetError(f"{name}: {e.reason}") from None
    try:
        rgb = imageio.decode(data, clean=False).rgb  # the shared pixel / aspect budget
    except imageio.Rejected as e:
        raise ForgetError(f"{name}: {e.reason}") from None
    return imageio.work_copy(rgb)


def _match_params(n_selfies: int, threshold: float | None, cluster_radius: float | None) -> M.MatchParams:
    """The operating point for this many selfies; ``threshold`` / ``cluster_radius`` (when given) override its
    face-level and cluster-level certain distances."""
    p = M.params_for(n_selfies)
    if threshold is not None:
        p = p.with_(certain_face=_check_distance("threshold", threshold))
    if cluster_radius is not None:
        p = p.with_(certain_person=_check_distance("cluster_radius", cluster_radius))
    return p


def find_matches(
    ws: Workspace,
    selfies: list,
    threshold: float | None = None,
    *,
    cluster_radius: float | None = None,
    drop_group_photos: bool = False,
    selfie_emb: np.ndarray | None = None,
    params: M.MatchParams | None = None,
) -> list[Match]:
    """Every face that may be the selfies' person, ``certainty`` certain or review, with what erasure will
    do to it. Evidence per face (curate/match.py): distance to the nearest selfie, RMS distance to all of
    them, and the RMS distance from the selfies to the face's whole person cluster."""
    if threshold is not None:
        _check_distance("threshold", threshold)
    if cluster_radius is not None:
        _check_distance("cluster_radius", cluster_radius)
    q = np.atleast_2d(selfie_emb if selfie_emb is not None else selfie_embeddings(selfies)).astype(np.float32)
    p = params or _match_params(len(q), threshold, cluster_radius)
    c = ws.catalog
    ids, emb, person = _candidates(ws, q, p)
    if len(ids) == 0:
        return []
    # unclustered faces are their own cluster (a negative label each), so they only carry face evidence
    labels = np.array([person.get(int(i)) or -int(i) for i in ids], np.int64)
    res = M.match(q, emb, labels, params=p)
    picked = np.flatnonzero(res.cls != M.NONE)
    if len(picked) == 0:
        return []
    hit = {int(ids[k]): float(res.distance[k]) for k in picked}
    ev = {int(ids[k]): (str(res.cls[k]), float(res.rms[k]), float(res.person[k])) for k in picked}
    face_alone = {int(ids[k]) for k in picked if res.rms[k] <= (p.certain_face if res.cls[k] == M.CERTAIN
                                                                  else p.review_face)}
    via = {f: "embedding" if f in face_alone else "cluster" for f in hit}
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
            action=action, source_paths=paths.get(iid, []), certainty=ev[r.face_id][0],
            rms=round(ev[r.face_id][1], 4), person_distance=round(ev[r.face_id][2], 4),
        ))
    return out


def _candidates(ws: Workspace, q: np.ndarray, p: M.MatchParams) -> tuple[np.ndarray, np.ndarray, dict]:
    """(face ids, embeddings, face id -> person) that the match has to look at.

    Small workspaces: every embedded face (one query). From ``vectors.SIDECAR_FROM`` faces: only faces a
    selfie could match plus their whole clusters. No class of curate/match.py takes a face farther than
    ``reach`` from every selfie (its distance is at most its RMS, and each rule bounds one of them), so an
    exact range search over the memory-mapped sidecar (``index.within``) finds every possible match; the
    candidates' people come in whole, so the person-level evidence is the same as over all faces."""
    from .. import vectors as V
    from ..index import within

    c = ws.catalog
    if c.faces.embedding_fingerprint().count < V.SIDECAR_FROM:
        ids, emb = c.faces.embeddings()
        return ids, emb, c.faces.persons_of_embedded() if len(ids) else {}
    reach = max(p.certain_face, p.certain_face_in_person, p.review_face, p.review_face_in_person)
    v = V.sync(ws)
    near = v.ids[within(q, v.vectors, reach)]
    person = c.faces.persons_of(near)
    ids = np.union1d(near, c.faces.embedded_of_people({x for x in person.values() if x is not None}))
    person.update(c.faces.persons_of(np.setdiff1d(ids, near)))
    return ids, V.read_vectors(ws, ids), person


def original_path(kind: str, uri: str | None, path: str) -> str:
    """Where the user's own file is: folder/path, the file itself, or archive:member."""
    if kind == "folder" and uri:
        return str(Path(uri) / path)
    if kind == "file" and uri:
        return uri
    return f"{uri}:{path}" if uri else path


# -- showing --------------------------------------------------------------------


def contact_sheet(ws: Workspace, matches: list[Match], out: Path, cols: int = 8, cell: int = 150) -> Path | None:
    """The matched faces' chips in a grid, each with its distance and what erasure will do; faces that need
    review are framed red and marked "?"."""
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
        if m.certainty != CERTAIN:  # needs review: a red frame, and "?" before the distance
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], outline="red", width=3)
        draw.text((x + 3, y + cell + 2),
                  f"#{m.image_id} {'?' if m.certainty != CERTAIN else ''}{m.distance:.2f}"
                  f"{'c' if m.via == 'cluster' else ''} {tag}", fill="red" if m.certainty != CERTAIN else "black")
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
        # the shredding plan commits with the deletes: a kill after this commit leaves it journalled,
        # and the next forget / export / verify --repair (or scan) finishes it; `status` shows it meanwhile
        redact.journal(ws, "forget", keys=doomed, derived=True)
        c.audit("forget", images_erased=gone.images, faces_erased=gone.faces, faces_blurred=n_blurred,
                exports_stale=n_stale, people_deleted=n_people, blocklist_id=rep.blocklist_id)

    rep.images_erased = gone.images
    rep.faces_erased = gone.faces
    rep.faces_blurred = n_blurred
    rep.files_rows_deleted = gone.files_rows
    rep.people_deleted = n_people
    rep.exports_stale = n_stale
    done = redact.finish_erasures(ws)  # the journal: this erasure's plan and any an earlier run left
    rep.store_objects_deleted = done.store_objects + redact.shred(ws, (), gc=True)
    rep.cache_files_deleted = done.derived_files
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
    threshold: float | None = None,
    cluster_radius: float | None = None,
    include_uncertain: bool = False,
    confirm: Callable[[ForgetReport], bool] | None = None,
    sheet: bool = True,
) -> ForgetReport:
    """Find the selfies' person and (unless ``dry_run``) erase them everywhere and block them.

    Matches are ``certain`` or ``review`` (see :func:`find_matches`); only the certain ones are erased unless
    ``include_uncertain`` (or ``confirm`` sets ``report.include_uncertain``). ``confirm`` sees the matches
    (and the contact sheet, which shows both kinds) before anything is deleted; when it returns False
    nothing changes and the report says ``cancelled``. The plan is made from ``report.matches`` after
    ``confirm``, so a confirm step may also narrow the matches down to what a person ticked.
    ``threshold`` / ``cluster_radius`` override the operating point's certain distances (curate/match.py).
    """
    selfies = list(selfies)
    q = selfie_embeddings(selfies)
    p = _match_params(len(q), threshold, cluster_radius)
    resumed = 0
    if not dry_run:
        resumed = redact.finish_erasures(ws).store_objects  # what an interrupted erasure left: counted here
        purge_blocked(ws)
    matches = find_matches(ws, selfies, drop_group_photos=drop_group_photos, selfie_emb=q, params=p)
    radius = DEFAULT_THRESHOLD
    rep = ForgetReport(selfies=len(selfies), threshold=p.certain_face, cluster_radius=p.certain_person,
                       matches=matches, dry_run=dry_run, include_uncertain=include_uncertain,
                       operating_point=asdict(p), unscanned_images=ws.catalog.images.count_with_status("new"))
    rep.plan = plan(rep.to_erase)
    if sheet and matches and (dry_run or confirm is not None):
        out = ws.sheets_dir / f"forget-{time.strftime('%Y%m%d-%H%M%S')}.png"
        rep.contact_sheet = str(contact_sheet(ws, matches, out))
    if dry_run:
        return rep
    if confirm is not None and not confirm(rep):
        rep.cancelled = True
        return rep
    rep.plan = plan(rep.to_erase)
    rep = apply(ws, rep.plan, radius=radius, selfie_emb=q, report=rep)
    rep.store_objects_deleted += resumed
    return rep
