"""Redaction: the one implementation of "this face must not be seen any more".

Used by forget's erasure, by scan when the blocklist drops a face, and (through
:func:`~faceset.privacy.blur.pixelate_faces`, the one pixelation) by export's bystander blur.

The pieces, in the order a unit of work uses them:

* :func:`redacted_copy` (before the transaction): a new clean stored copy of a photo with some
  faces pixelated, and the other faces' chips and crops cut again from those pixels (a
  neighbour's crop has margin enough to show the hidden face beside it). Only new store
  objects are written: a crash here leaves unreferenced objects, nothing else.
* inside one catalog transaction: :func:`apply_copy` points the catalog at the new copy,
  :func:`erase_images` deletes whole photos (rows, original paths, faces, labels, export items),
  :func:`mark_stale` flags the exports that published any of it.
* after the commit: :func:`shred` overwrites and unlinks the store objects nothing references
  any more, :func:`wipe_derived` the derived artefacts (caches, including the training feature
  cache, contact sheets, the report), then the caller vacuums the catalog.

This module does not import ``faceset.scan`` (scan imports it); it uses the leaf
``faceset.scan.align`` to cut chips the way scan does.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import imageio
from ..workspace import Workspace
from .blur import pixelate_faces

Box = tuple[float, float, float, float]  # x, y, w, h in stored-copy pixels


@dataclass
class RedactedCopy:
    """A redacted copy already in the store, waiting for :func:`apply_copy`."""

    image_id: int
    store_key: str
    pixel_sha: str
    nbytes: int
    recut: dict[int, tuple[str, str]] = field(default_factory=dict)  # face id -> (chip key, crop key)
    old_keys: set[str] = field(default_factory=set)  # old copy + neighbours' old chips/crops: shred after commit


def redacted_copy(ws: Workspace, image_id: int, *, boxes: Iterable[Box] = (),
                  hide_faces: Iterable[int] = ()) -> RedactedCopy:
    """Store a copy of ``image_id`` with ``boxes`` and the faces ``hide_faces`` pixelated; the other
    faces get chips and crops cut again from the new pixels."""
    from ..scan import align  # the leaf module (dlib chips); never scan's entry point

    hidden = {int(i) for i in hide_faces}
    faces = ws.catalog.faces.geometry(image_id)
    boxes = list(boxes) + [f.box for f in faces if f.id in hidden]
    keep = [f for f in faces if f.id not in hidden and f.landmarks]
    old_key = ws.catalog.images.store_key(image_id)
    if old_key is None:
        raise KeyError(f"no image {image_id}")
    data = ws.store.get(old_key)
    lossy = data[:3] == b"\xff\xd8\xff"
    blurred = pixelate_faces(imageio.decode(data, clean=False).rgb, boxes)
    blob, _ = imageio.encode_clean(blurred, lossy)
    rgb = imageio.decode(blob, clean=False).rgb  # exactly what the store will hold
    out = RedactedCopy(image_id, "", imageio.pixel_sha(rgb), len(blob), old_keys={old_key})
    if keep:
        shapes = [align.shape_of(np.array(json.loads(f.landmarks)), (f.box[0], f.box[1], f.box[0] + f.box[2],
                                                                      f.box[1] + f.box[3])) for f in keep]
        chips = align.chips(rgb, shapes, align.CHIP_SIZE, align.CHIP_PADDING)
        crops = align.chips(rgb, shapes, align.CROP_SIZE, align.CROP_PADDING)
        for f, chip, crop in zip(keep, chips, crops):
            out.recut[f.id] = (ws.store.put(imageio.encode_png(chip)), ws.store.put(imageio.encode_jpeg(crop)))
            out.old_keys.update(k for k in (f.chip_key, f.crop_key) if k)
    out.store_key = ws.store.put(blob)
    return out


def apply_copy(ws: Workspace, copy: RedactedCopy) -> None:
    """Inside the caller's transaction: the image and its remaining faces now point at the new objects."""
    ws.catalog.images.replace_copy(copy.image_id, copy.store_key, copy.pixel_sha, copy.nbytes)
    ws.catalog.faces.set_cuts(copy.recut)


@dataclass
class Erased:
    """What :func:`erase_images` removed: counts, and the store keys to shred after commit."""

    images: int = 0
    faces: int = 0
    files_rows: int = 0
    source_ids: set[int] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)


def erase_images(ws: Workspace, image_ids: Iterable[int], *, face_ids: Iterable[int] = ()) -> Erased:
    """Inside the caller's transaction: delete whole photos and, in other photos, ``face_ids``.

    Photos go with their files rows (every original path, and other copies of the same original
    bytes), faces, labels and export items; the store keys they referenced are returned.
    """
    c = ws.catalog
    image_ids = sorted({int(i) for i in image_ids})
    faces = sorted({int(i) for i in face_ids} | set(c.faces.ids_in_images(image_ids)))
    out = Erased()
    out.keys = c.faces.store_keys_of(faces)
    for img in c.images.stored(image_ids):
        out.keys.add(img.store_key)
        out.source_ids.add(img.source_id)
    out.faces = c.faces.delete(faces)
    out.files_rows = c.images.erase(image_ids)
    out.images = len(image_ids)
    return out


def mark_stale(ws: Workspace, reason: str, *, image_ids: Iterable[int] = (), face_ids: Iterable[int] = ()) -> int:
    """Inside the caller's transaction, before rows are deleted: flag exports holding these images/faces."""
    stale = ws.catalog.exports.holding(image_ids=image_ids, face_ids=face_ids)
    ws.catalog.exports.mark_stale(stale, reason)
    return len(stale)


def shred(ws: Workspace, keys: Iterable[str], *, gc: bool = False) -> int:
    """After commit: overwrite and unlink those ``keys`` the catalog no longer references (with ``gc``,
    every unreferenced store object too, e.g. what an interrupted run left). Returns objects deleted.
    Also finishes whatever the erasure journal still holds (:func:`finish_erasures`)."""
    live = ws.catalog.images.referenced_keys()
    n = sum(ws.store.delete(k) for k in set(keys) if k not in live)
    n += finish_erasures(ws).store_objects
    if gc:
        n += ws.store.gc(ws.catalog.images.referenced_keys())
    return n


def journal(ws: Workspace, reason: str, *, keys: Iterable[str] = (), derived: bool = False) -> None:
    """Inside the erasing transaction: record what must be shredded once it commits (the store keys,
    and with ``derived`` the workspace's derived files), so a kill after the commit cannot leave it."""
    ws.catalog.erasures.plan("store", keys, reason)
    if derived:
        ws.catalog.erasures.plan("derived", ["workspace"], reason)


@dataclass
class Finished:
    """What :func:`finish_erasures` shredded."""

    store_objects: int = 0
    derived_files: int = 0
    folders: int = 0
    pending: int = 0  # left for later (an export still being written by a live process)


def alive(pid: int | None) -> bool:
    if not pid or pid == os.getpid():
        return bool(pid)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def finish_erasures(ws: Workspace) -> Finished:
    """Carry out the erasure journal (idempotent: each row is removed only once its target is gone).

    Store objects are shredded unless the catalog references them again; derived files are wiped;
    export folders (a replaced export, an abandoned partial one) are shredded if they are real folders
    (links are only unlinked). A partial export of a process that is still running is left to it.
    """
    c = ws.catalog
    out = Finished()
    tasks = c.erasures.pending()
    if not tasks:
        return out
    done: list[int] = []
    live = None
    for t in tasks:
        if t.kind == "store" and alive(t.pid):  # a contribution still being stored (collect._store)
            out.pending += 1
            continue
        if t.kind == "store":
            live = c.images.referenced_keys() if live is None else live
            if t.target not in live and ws.store.delete(t.target):
                out.store_objects += 1
        elif t.kind == "derived":
            out.derived_files += wipe_derived(ws)
        elif t.kind == "partial_export" and alive(t.pid):
            out.pending += 1
            continue
        else:  # export_folder | partial_export of a dead process
            p = Path(t.target)
            if p.is_symlink():
                p.unlink()
            elif p.is_dir():
                if own_export_folder(ws, p):
                    shred_tree(p)
                    out.folders += 1
            elif t.kind == "partial_export" and t.export_id is not None:
                # killed between its swap and its commit: the folder's content is not what the catalog
                # records, so the export must be rebuilt (refresh) before anyone trusts it
                with c.tx():
                    c.exports.mark_stale([t.export_id], "interrupted export")
        done.append(t.id)
    with c.tx():
        c.erasures.done(done)
    return out


EXPORT_MARKER = ".faceset-export.json"  # in every export folder (see faceset.export.core): who owns it
_EXPORT_SIBLING = re.compile(r"^\..+\.(partial|old)-\d+(-[0-9a-f]+)?$")


def export_marker(folder: Path) -> dict | None:
    """The ownership marker of an export folder (None if absent or not a plain file: never followed)."""
    p = folder / EXPORT_MARKER
    try:
        st = os.lstat(p)
        if not stat.S_ISREG(st.st_mode) or st.st_size > 65536:
            return None
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            d = json.loads(f.read().decode("utf-8"))
        return d if isinstance(d, dict) else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def own_export_folder(ws: Workspace, p: Path) -> bool:
    """Whether a journalled folder outside the workspace may be shredded: named like an export's hidden
    sibling (``.NAME.partial-*`` / ``.NAME.old-*``) and either empty or marked with this workspace's id.
    A journal row pointing anywhere else (a damaged or hostile catalog) never shreds a user's folder."""
    if not _EXPORT_SIBLING.match(p.name) or p.is_symlink() or not p.is_dir():
        return False
    m = export_marker(p)
    if m is None:
        try:
            return not any(p.iterdir())
        except OSError:
            return False
    wid = (ws.catalog.settings.get_json("workspace") or {}).get("id")
    return bool(wid) and m.get("workspace_id") == wid


def shred_tree(root: Path) -> int:
    """Overwrite then remove every regular file below ``root``; links are only unlinked (their
    targets are not ours), nothing is followed. Returns files shredded."""
    n = 0
    for dirpath, dirnames, filenames in os.walk(root, topdown=False, followlinks=False):
        for f in filenames:
            p = Path(dirpath) / f
            try:
                _shred_file(p)
                n += 1
            except OSError:
                continue
        for d in dirnames:
            q = Path(dirpath) / d
            try:
                if q.is_symlink():
                    q.unlink()
                else:
                    q.rmdir()
            except OSError:
                pass
    try:
        root.rmdir()
    except OSError:
        pass
    return n


def wipe_derived(ws: Workspace) -> int:
    """Overwrite and unlink every file under cache/ (the training feature cache included) and sheets/,
    and the workspace's report.html (inline face thumbnails): all rebuildable, and any may hold the face."""
    n = 0
    report = ws.root / "report.html"
    if report.is_file():
        _shred_file(report)
        n += 1
    for root in (ws.cache_dir, ws.sheets_dir):
        for dirpath, dirnames, filenames in os.walk(root, topdown=False):
            for f in filenames:
                try:
                    _shred_file(Path(dirpath) / f)
                    n += 1
                except OSError:
                    continue
            for d in dirnames:
                q = Path(dirpath) / d
                try:
                    q.unlink() if q.is_symlink() else q.rmdir()  # a linked folder is not entered, only unlinked
                except OSError:
                    pass
    return n


def _shred_file(p: Path) -> None:
    """Overwrite with zeros, then unlink. Only a regular file with one link is overwritten (opened
    without following links); a symlink, a hard-linked file or a device is only unlinked."""
    st = os.lstat(p)
    if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
        fd = os.open(p, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "r+b") as fh:
            fst = os.fstat(fh.fileno())
            if stat.S_ISREG(fst.st_mode) and fst.st_nlink == 1:
                left = fst.st_size
                while left > 0:
                    k = min(left, 1 << 20)
                    fh.write(b"\0" * k)
                    left -= k
                fh.flush()
                os.fsync(fh.fileno())
    p.unlink()


# -- whole units of work ------------------------------------------------------------


def blur_boxes(ws: Workspace, image_id: int, boxes: list[Box]) -> None:
    """Pixelate ``boxes`` (x, y, w, h) in one image's stored copy, for good.

    For faces that must not be seen but have no face row, e.g. the ones scan's blocklist hook
    dropped from a group photo. The stored copy, its pixel_sha and the other faces' chips/crops
    are replaced, the old objects shredded, and exports holding the image marked stale.
    """
    copy = redacted_copy(ws, image_id, boxes=boxes)
    with ws.catalog.tx():
        apply_copy(ws, copy)
        n = mark_stale(ws, "blur", image_ids=[image_id])
        journal(ws, "blur", keys=copy.old_keys)
        ws.catalog.audit("blur", faces=len(boxes), exports_stale=n)
    shred(ws, copy.old_keys)
    ws.catalog.vacuum()


def purge_blocked(ws: Workspace) -> int:
    """Erase images scan marked ``blocked`` (every face in them belongs to a forgotten person).

    Scan does not store a blocked face, but the stored copy still shows it; for such a photo
    the person was the subject, so the whole image goes (rows, original paths, stored copy).
    Also finishes the erasure journal (scan and forget run this, so they resume an interrupted erasure).
    """
    ids = ws.catalog.images.ids_with_status("blocked")
    if not ids:
        finish_erasures(ws)  # scan and forget call this: an erasure a kill interrupted is finished here too
        return 0
    with ws.catalog.tx():
        gone = erase_images(ws, ids)
        journal(ws, "purge", keys=gone.keys)
        ws.catalog.audit("blocklist_purge", images_erased=len(ids))
    shred(ws, gone.keys)
    ws.catalog.vacuum()
    return len(ids)
