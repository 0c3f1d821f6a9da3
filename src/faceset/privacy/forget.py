"""Forget me by selfie: find every face of a person from their photo(s) and erase every trace.

Two steps so people can look before anything is deleted:

* :func:`find_matches` embeds the selfie(s) and returns each workspace face within
  ``threshold`` (distance between unit-normalised embeddings), plus the faces of any
  person cluster whose centroid is within the tighter ``cluster_radius`` (recall from the
  curated clusters without letting a loose cluster drag strangers in).
* :func:`erase` deletes, in one catalog transaction: whole images where the person is
  the main subject or the only face (rows, files rows with the original paths, labels,
  chips, crops, stored copy); in group shots where they are a bystander, their face is
  pixelated in a new stored copy (or the photo dropped with ``drop_group_photos``).
  Exports that held them turn stale, the person goes on the blocklist, and the audit log
  gets counts only. After commit: store objects are overwritten and unlinked, caches and
  contact sheets (derived, rebuildable, may show the face) are wiped, unreferenced store
  objects are collected and the catalog is vacuumed so no page keeps the old rows.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import imageio
from ..workspace import Workspace
from . import blocklist
from .blur import pixelate_faces
from .blocklist import distances, unit

# Chosen on ../shared/data/identities by bench/forget.py (identity-disjoint 2-fold, UTKFace
# distractors): see docs/privacy.md for the curve and the held-out numbers.
DEFAULT_THRESHOLD = 0.36
# A cluster is only followed when its centroid is this close to the selfie: tighter than
# the face threshold because one bad merge would otherwise erase a stranger.
DEFAULT_CLUSTER_RADIUS = 0.30


class ForgetError(Exception):
    """A selfie that cannot be used (unreadable, no face): the CLI exits 2 with this message."""


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

    @property
    def images(self) -> list[int]:
        return sorted({m.image_id for m in self.matches})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["matched_faces"] = len(self.matches)
        d["matched_images"] = len(self.images)
        return d


# -- finding ------------------------------------------------------------------


def selfie_embeddings(selfies: list) -> np.ndarray:
    """One embedding per selfie: its main (largest) face. Paths, bytes or HxWx3 arrays."""
    from ..scan import analyze

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
    q = unit(selfie_emb if selfie_emb is not None else selfie_embeddings(selfies))
    ids, emb = ws.face_embeddings()
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
    person = dict(ws.catalog.q("SELECT id, person_id FROM faces WHERE embedding IS NOT NULL"))
    pid = np.array([person.get(int(i)) or 0 for i in ids])
    touched = sorted({int(p) for p in pid[direct] if p})
    for r in ws.catalog.q(f"SELECT id, centroid FROM people WHERE id IN ({_qs(touched)})", touched):
        if r["centroid"] is None:
            continue
        if float(distances(unit(np.frombuffer(r["centroid"], np.float32)), q).min()) > cluster_radius:
            continue
        members = np.flatnonzero(pid == r["id"])
        near = distances(u[members], u[direct]).min(axis=1) <= threshold
        for k in members[near]:
            if int(ids[k]) not in hit:
                hit[int(ids[k])] = float(d[k])
                via[int(ids[k])] = "cluster"
    if not hit:
        return []

    rows = ws.catalog.q(
        f"""SELECT f.id, f.image_id, f.person_id, f.is_main,
                   (SELECT COUNT(*) FROM faces g WHERE g.image_id = f.image_id) AS n
            FROM faces f WHERE f.id IN ({_qs(hit)}) ORDER BY f.image_id, f.idx""",
        list(hit),
    )
    paths: dict[int, list[str]] = {}
    img_ids = sorted({r["image_id"] for r in rows})
    for r in ws.catalog.q(
            f"""SELECT f.image_id, f.path, s.kind, s.uri FROM files f JOIN sources s ON s.id = f.source_id
                WHERE f.image_id IN ({_qs(img_ids)}) ORDER BY f.id""", img_ids):
        paths.setdefault(r["image_id"], []).append(original_path(r["kind"], r["uri"], r["path"]))
    # Subject when the person is the main face or every face in the photo is theirs.
    matched_per_image: dict[int, int] = {}
    main_in_image: set[int] = set()
    for r in rows:
        matched_per_image[r["image_id"]] = matched_per_image.get(r["image_id"], 0) + 1
        if r["is_main"]:
            main_in_image.add(r["image_id"])
    out = []
    for r in rows:
        iid = r["image_id"]
        if iid in main_in_image or matched_per_image[iid] >= r["n"]:
            action = "erase_image"
        else:
            action = "drop_group_photo" if drop_group_photos else "blur_face"
        out.append(Match(
            face_id=r["id"], image_id=iid, distance=round(hit[r["id"]], 4), via=via[r["id"]],
            person_id=r["person_id"], is_main=bool(r["is_main"]), faces_in_image=r["n"],
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


def _qs(xs) -> str:
    return ",".join("?" * len(xs))


# -- showing --------------------------------------------------------------------


def contact_sheet(ws: Workspace, matches: list[Match], out: Path, cols: int = 8, cell: int = 150) -> Path | None:
    """The matched faces' chips in a grid, each with its distance and what erasure will do."""
    from PIL import Image, ImageDraw

    if not matches:
        return None
    keys = {r["id"]: r["chip_key"] for r in ws.catalog.q(
        f"SELECT id, chip_key FROM faces WHERE id IN ({_qs(matches)})", [m.face_id for m in matches])}
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


# -- erasing --------------------------------------------------------------------


def _blurred_copy(ws: Workspace, image_id: int, boxes, keep: list) -> tuple[str, str, int, dict]:
    """A new clean stored copy with ``boxes`` pixelated: (store key, pixel_sha, bytes, new face keys).

    The faces that stay (``keep`` rows) get their chip and crop cut again from the blurred
    pixels: a neighbour's crop has margin enough to show the erased face beside it.
    """
    from ..scan import align
    from ..scan.pipeline import encode_jpeg, encode_png

    data = ws.image_bytes(image_id)
    lossy = data[:3] == b"\xff\xd8\xff"
    blurred = pixelate_faces(imageio.decode(data, clean=False).rgb, boxes)
    blob, _ = imageio.encode_clean(blurred, lossy)
    rgb = imageio.decode(blob, clean=False).rgb  # exactly what the store will hold
    recut = {}
    if keep:
        shapes = [align.shape_of(np.array(json.loads(f["landmarks"])), (f["x"], f["y"], f["x"] + f["w"], f["y"] + f["h"]))
                  for f in keep]
        chips = align.chips(rgb, shapes, align.CHIP_SIZE, align.CHIP_PADDING)
        crops = align.chips(rgb, shapes, align.CROP_SIZE, align.CROP_PADDING)
        for f, chip, crop in zip(keep, chips, crops):
            recut[f["id"]] = (ws.store.put(encode_png(chip)), ws.store.put(encode_jpeg(crop)))
    return ws.store.put(blob), imageio.pixel_sha(rgb), len(blob), recut


def erase(ws: Workspace, matches: list[Match], *, radius: float = DEFAULT_THRESHOLD,
          selfie_emb: np.ndarray | None = None, report: ForgetReport | None = None) -> ForgetReport:
    """Erase what ``matches`` found (see module doc). Safe to rerun after a crash."""
    rep = report or ForgetReport(selfies=0, threshold=radius, cluster_radius=DEFAULT_CLUSTER_RADIUS,
                                 matches=matches, dry_run=False)
    c = ws.catalog
    erase_imgs = sorted({m.image_id for m in matches if m.action in ("erase_image", "drop_group_photo")})
    blur: dict[int, list[Match]] = {}
    for m in matches:
        if m.action == "blur_face":
            blur.setdefault(m.image_id, []).append(m)
    face_ids = [m.face_id for m in matches]

    # The blocklist template comes from the person's own embeddings (selfies + matched faces).
    parts = [selfie_emb] if selfie_emb is not None and len(selfie_emb) else []
    if face_ids:
        parts.append(ws.face_embeddings(f"id IN ({_qs(face_ids)})", face_ids)[1])
    tmpl = np.concatenate(parts) if parts and sum(map(len, parts)) else None

    # New blurred copies go into the store before the transaction; a crash leaves only unreferenced objects.
    old_keys: set[str] = set()
    new_copies = {}
    for iid, ms in blur.items():
        gone = {m.face_id for m in ms}
        faces = c.q("SELECT id, x, y, w, h, landmarks, chip_key, crop_key FROM faces WHERE image_id=?", (iid,))
        boxes = [(f["x"], f["y"], f["w"], f["h"]) for f in faces if f["id"] in gone]
        keep = [f for f in faces if f["id"] not in gone and f["landmarks"]]
        new_copies[iid] = _blurred_copy(ws, iid, boxes, keep)
        for f in keep:  # the neighbours' old chips/crops may show the erased face
            old_keys.update(k for k in (f["chip_key"], f["crop_key"]) if k)

    all_erased_faces = face_ids + [r["id"] for r in c.q(
        f"SELECT id FROM faces WHERE image_id IN ({_qs(erase_imgs)})", erase_imgs)]
    with c.tx() as tx:
        doomed_keys: set[str] = set()
        for r in tx.execute(f"SELECT chip_key, crop_key FROM faces WHERE id IN ({_qs(all_erased_faces)})",
                            all_erased_faces):
            doomed_keys.update(k for k in (r["chip_key"], r["crop_key"]) if k)
        img_rows = tx.execute(f"SELECT id, store_key, sha256, source_id FROM images WHERE id IN "
                              f"({_qs(erase_imgs + list(blur))})", erase_imgs + list(blur)).fetchall()
        doomed_keys.update(r["store_key"] for r in img_rows)
        shas = [r["sha256"] for r in img_rows if r["id"] in set(erase_imgs)]
        sources = {r["source_id"] for r in img_rows if r["id"] in set(erase_imgs)}
        people = {r["person_id"] for r in tx.execute(
            f"SELECT DISTINCT person_id FROM faces WHERE person_id IS NOT NULL AND id IN ({_qs(all_erased_faces)})",
            all_erased_faces)}

        touched_imgs = erase_imgs + list(blur)
        stale = [r[0] for r in tx.execute(
            f"SELECT DISTINCT export_id FROM export_items WHERE image_id IN ({_qs(touched_imgs)}) "
            f"OR face_id IN ({_qs(all_erased_faces)})", touched_imgs + all_erased_faces)]
        tx.execute(f"UPDATE exports SET stale=1, stale_reason='forget' WHERE id IN ({_qs(stale)})", stale)
        tx.execute(f"DELETE FROM export_items WHERE image_id IN ({_qs(erase_imgs)}) "
                   f"OR face_id IN ({_qs(all_erased_faces)})", erase_imgs + all_erased_faces)

        tx.execute(f"DELETE FROM faces WHERE id IN ({_qs(all_erased_faces)})", all_erased_faces)
        n_files = tx.execute(
            f"DELETE FROM files WHERE image_id IN ({_qs(erase_imgs)}) OR sha256 IN ({_qs(shas)})",
            erase_imgs + shas).rowcount
        tx.execute(f"DELETE FROM images WHERE id IN ({_qs(erase_imgs)})", erase_imgs)
        for iid, (key, sha, nbytes, recut) in new_copies.items():
            tx.execute("UPDATE images SET store_key=?, pixel_sha=?, bytes=? WHERE id=?", (key, sha, nbytes, iid))
            for fid, (chip_key, crop_key) in recut.items():
                tx.execute("UPDATE faces SET chip_key=?, crop_key=? WHERE id=?", (chip_key, crop_key, fid))
        doomed_keys |= old_keys

        n_people = 0
        for pid in people:  # centroid as curate keeps it: mean of 'ok' faces, of all if none is ok
            n = tx.execute("SELECT COUNT(*) FROM faces WHERE person_id=?", (pid,)).fetchone()[0]
            if n == 0:
                tx.execute("DELETE FROM people WHERE id=?", (pid,))
                n_people += 1
                continue
            ok_ids, ok = ws.face_embeddings("person_id=? AND status='ok' AND embedding IS NOT NULL", (pid,))
            all_ids, e = ws.face_embeddings("person_id=? AND embedding IS NOT NULL", (pid,))
            cen = (ok if len(ok_ids) else e).mean(axis=0).astype(np.float32).tobytes() if len(all_ids) else None
            tx.execute("UPDATE people SET n_faces=?, centroid=? WHERE id=?", (n, cen, pid))
        for sid in sources:  # a source that only ever held this person (e.g. one file) names them
            if not tx.execute("SELECT 1 FROM images WHERE source_id=? UNION SELECT 1 FROM files WHERE source_id=?",
                              (sid, sid)).fetchone():
                tx.execute("DELETE FROM sources WHERE id=?", (sid,))

        if tmpl is not None and not (selfie_emb is not None and len(selfie_emb)
                                     and blocklist.blocked_mask(ws, selfie_emb).all()):
            rep.blocklist_id = blocklist.add_template(ws, tmpl, radius)  # not again on a rerun
        ws.catalog.audit("forget", images_erased=len(erase_imgs), faces_erased=len(all_erased_faces),
                         faces_blurred=sum(len(v) for v in blur.values()), exports_stale=len(stale),
                         people_deleted=n_people, blocklist_id=rep.blocklist_id)

    rep.images_erased = len(erase_imgs)
    rep.faces_erased = len(all_erased_faces)
    rep.faces_blurred = sum(len(v) for v in blur.values())
    rep.files_rows_deleted = n_files
    rep.people_deleted = n_people
    rep.exports_stale = len(stale)
    live = referenced_keys(ws)
    rep.store_objects_deleted = sum(ws.store.delete(k) for k in doomed_keys if k not in live)
    rep.store_objects_deleted += ws.store.gc(live)
    rep.cache_files_deleted = wipe_derived(ws)
    c.vacuum()
    return rep


def blur_boxes(ws: Workspace, image_id: int, boxes: list[tuple[float, float, float, float]]) -> None:
    """Pixelate ``boxes`` (x, y, w, h) in one image's stored copy, for good.

    For faces that must not be seen but have no face row, e.g. the ones scan's blocklist hook
    dropped from a group photo. The stored copy, its pixel_sha and the other faces' chips/crops
    are replaced, the old objects shredded, and exports holding the image marked stale.
    """
    c = ws.catalog
    keep = [f for f in c.q("SELECT id, x, y, w, h, landmarks, chip_key, crop_key FROM faces WHERE image_id=?",
                           (image_id,)) if f["landmarks"]]
    old = {c.scalar("SELECT store_key FROM images WHERE id=?", (image_id,))}
    old |= {k for f in keep for k in (f["chip_key"], f["crop_key"]) if k}
    key, sha, nbytes, recut = _blurred_copy(ws, image_id, boxes, keep)
    with c.tx() as tx:
        tx.execute("UPDATE images SET store_key=?, pixel_sha=?, bytes=? WHERE id=?", (key, sha, nbytes, image_id))
        for fid, (chip_key, crop_key) in recut.items():
            tx.execute("UPDATE faces SET chip_key=?, crop_key=? WHERE id=?", (chip_key, crop_key, fid))
        n = tx.execute("UPDATE exports SET stale=1, stale_reason='blur' WHERE id IN "
                       "(SELECT export_id FROM export_items WHERE image_id=?)", (image_id,)).rowcount
        c.audit("blur", faces=len(boxes), exports_stale=n)
    live = referenced_keys(ws)
    for k in old - live:
        ws.store.delete(k)
    c.vacuum()


def purge_blocked(ws: Workspace) -> int:
    """Erase images that scan left with no face because every face in them was blocked.

    Scan does not store a blocked face, but the stored copy still shows it; for such a photo
    the person was the subject, so the whole image goes (rows, original paths, stored copy).
    """
    ids = [r[0] for r in ws.catalog.q("SELECT id FROM images WHERE status='no_face' AND status_reason='blocked'")]
    if not ids:
        return 0
    with ws.catalog.tx() as tx:
        rows = tx.execute(f"SELECT store_key, sha256 FROM images WHERE id IN ({_qs(ids)})", ids).fetchall()
        shas = [r["sha256"] for r in rows]
        tx.execute(f"DELETE FROM files WHERE image_id IN ({_qs(ids)}) OR sha256 IN ({_qs(shas)})", ids + shas)
        tx.execute(f"DELETE FROM images WHERE id IN ({_qs(ids)})", ids)
        ws.catalog.audit("blocklist_purge", images_erased=len(ids))
    live = referenced_keys(ws)
    for r in rows:
        if r["store_key"] not in live:
            ws.store.delete(r["store_key"])
    ws.catalog.vacuum()
    return len(ids)


def referenced_keys(ws: Workspace) -> set[str]:
    """Store keys the catalog still references: every 64-hex value in any ``*_key`` text column.

    Columns named like keys, not every hash: images.sha256 (the original file's hash) can equal
    the old stored copy's key when that copy was the original file verbatim, and must not keep
    the unblurred copy alive.
    """
    c = ws.catalog
    keys: set[str] = set()
    for (t,) in c.q("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"):
        for col in c.q(f'PRAGMA table_info("{t}")'):
            if not col["name"].endswith("_key"):
                continue
            for (v,) in c.q(f'SELECT "{col["name"]}" FROM "{t}" WHERE typeof("{col["name"]}")=\'text\' '
                            f'AND length("{col["name"]}")=64'):
                if _HEX64.fullmatch(v):
                    keys.add(v)
    return keys


_HEX64 = re.compile(r"[0-9a-f]{64}")


def wipe_derived(ws: Workspace) -> int:
    """Overwrite and unlink every file under cache/ and sheets/, and the workspace's report.html
    (inline face thumbnails): all rebuildable, and any may hold the face."""
    n = 0
    report = ws.root / "report.html"
    if report.is_file():
        _shred(report)
        n += 1
    for root in (ws.cache_dir, ws.sheets_dir):
        for dirpath, dirnames, filenames in os.walk(root, topdown=False):
            for f in filenames:
                try:
                    _shred(Path(dirpath) / f)
                    n += 1
                except OSError:
                    continue
            for d in dirnames:
                try:
                    (Path(dirpath) / d).rmdir()
                except OSError:
                    pass
    return n


def _shred(p: Path) -> None:
    """Overwrite with zeros, then unlink (a symlink is only unlinked: its target is not ours)."""
    if not p.is_symlink():
        size = p.stat().st_size
        with open(p, "r+b") as fh:
            fh.write(b"\0" * size)
            fh.flush()
            os.fsync(fh.fileno())
    p.unlink()


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
    q = selfie_embeddings(selfies)
    if not dry_run:
        purge_blocked(ws)
    matches = find_matches(ws, selfies, threshold, cluster_radius=cluster_radius,
                           drop_group_photos=drop_group_photos, selfie_emb=q)
    rep = ForgetReport(selfies=len(selfies), threshold=threshold, cluster_radius=cluster_radius,
                       matches=matches, dry_run=dry_run,
                       unscanned_images=ws.catalog.scalar("SELECT COUNT(*) FROM images WHERE status='new'"))
    if sheet and matches and (dry_run or confirm is not None):
        out = ws.sheets_dir / f"forget-{time.strftime('%Y%m%d-%H%M%S')}.png"
        rep.contact_sheet = str(contact_sheet(ws, matches, out))
    if dry_run:
        return rep
    if confirm is not None and not confirm(rep):
        rep.cancelled = True
        return rep
    return erase(ws, matches, radius=threshold, selfie_emb=q, report=rep)
