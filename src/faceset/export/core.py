"""`export` and `refresh`: catalog -> dataset folder (+ manifest, datasheet), recorded for erasure.

An export is built in a hidden sibling folder and swapped in at the end, so a
kill leaves either the previous export or the new one, never a mix. The
``exports`` row keeps every parameter (including the id salt), so ``refresh``
rebuilds the same layout with the same ids once ``forget`` marks it stale.

Ownership: every export folder holds ``.faceset-export.json`` (this workspace's id and the export id).
A refresh or a re-export replaces a folder only when that marker matches; anything else at a
recorded path (a folder someone made there, another workspace's export) is refused, untouched.
The workspace id lives in the catalog (settings ``workspace``, with the folder it was made in) and
in ``faceset.json``; a copy (``cp -a``) is seen at its first export (its catalog names another folder
that still holds a workspace) and gets a new id, so it never rewrites the original's exports. A
moved workspace (the old folder is gone) keeps its id.

Races with erasure: the partial folder is journalled (``pending_shred``) before anything is
written, so forget / verify shred it if the export is killed. At its commit, inside the catalog
transaction that serialises it with erasure, the export checks that every record still holds the
bytes it wrote (nothing erased, redacted or blocked since it selected them) and swaps the folder in
within that transaction; otherwise it retries once, then fails, publishing nothing.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import time
from collections import Counter, deque
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..catalog.schema import EXPORT_FORMATS, EXPORT_WHAT
from ..catalog.selection import check_max_yaw
from ..curate.splits import split_params
from ..privacy import redact
from ..progress import bar
from ..store import StoreError
from ..workspace import Workspace
from .datasheet import render_datasheet
from .encode import payload, payloads
from .result import BadExportRequest, ExportError, ExportNotFound, ExportReport
from .select import Selection, select_items, split_order
from .writers import FORMATS, make_writer

WHATS = EXPORT_WHAT
assert set(FORMATS) == set(EXPORT_FORMATS), "writers and the catalog's CHECK must agree on export formats"

__all__ = ["WHATS", "BadExportRequest", "ExportError", "ExportNotFound", "ExportReport", "export", "refresh",
           "MARKER", "workspace_id"]

MARKER = redact.EXPORT_MARKER  # in every export folder: who owns it


def export(
    ws: Workspace,
    out: str | Path,
    *,
    format: str = "imagefolder",
    what: str = "crops",
    label: str | None = None,
    faces: str = "main",
    shard_size: int = 1000,
    sample: int = 500,
    blur_bystanders: bool = False,
    include_unknown_consent: bool = False,
    include_low_quality: bool = False,
    seed: int = 0,
    progress: bool = True,
    max_yaw: float | None = None,
    engine: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
) -> ExportReport:
    """Write the curated dataset to ``out`` in ``format`` and record it in ``exports``.

    Re-exporting to the same folder replaces that export (same id, same id salt).
    """
    if format not in FORMATS:
        raise BadExportRequest(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    if what not in WHATS:
        raise BadExportRequest(f"--what must be one of {', '.join(WHATS)}, not {what!r}")
    if blur_bystanders and what != "images":
        raise BadExportRequest("--blur-bystanders applies to --what images (chips and crops hold one face each)")
    out = Path(out).expanduser().resolve()
    if faces not in ("main", "all"):
        raise BadExportRequest(f"--faces must be main or all, not {faces!r}")
    prev = ws.catalog.exports.latest_at(str(out))
    salt = prev.params.get("salt") if prev else None
    params = dict(format=format, what=what, label=label, faces=faces, shard_size=int(shard_size), sample=int(sample),
                  blur_bystanders=blur_bystanders, include_unknown_consent=include_unknown_consent,
                  include_low_quality=include_low_quality, seed=int(seed), salt=salt or secrets.token_hex(8),
                  max_yaw=check_max_yaw(max_yaw if max_yaw is not None else split_params(ws).get("max_yaw")))
    with _engine(engine, workers, ray_address) as eng:
        return _build(ws, out, params, prev.id if prev else None, progress=progress, engine=eng)


def refresh(ws: Workspace, export_id: int | None = None, *, progress: bool = True, engine: str = "local",
            workers: int | None = None, ray_address: str | None = None) -> list[ExportReport]:
    """Rebuild stale exports in place (or the one ``export_id``, stale or not) from their recorded params."""
    if export_id is not None:
        one = ws.catalog.exports.get(export_id)
        if one is None:
            raise ExportNotFound(f"no export with id {export_id}")
        rows = [one]
    else:
        rows = ws.catalog.exports.stale()
    reports, refused = [], []
    with _engine(engine, workers, ray_address, needed=bool(rows)) as eng:
        for r in rows:
            params = {**_DEFAULTS, **r.params}  # exports recorded by an older faceset lack new keys
            # allow_empty: if erasure took every record, the old files must still go.
            try:
                rep = _build(ws, Path(r.path), params, r.id, progress=progress, allow_empty=True, engine=eng)
            except NotOwned as e:
                if export_id is not None:
                    raise
                refused.append(f"#{r.id}: {e}")
                continue
            rep.refreshed = True
            reports.append(rep)
    if refused:
        done = f"rebuilt {len(reports)} export(s); " if reports else ""
        raise NotOwned(f"{done}refused {len(refused)}: " + "; ".join(refused))
    return reports


_DEFAULTS = dict(format="imagefolder", what="crops", label=None, faces="main", shard_size=1000, sample=500,
                 blur_bystanders=False, include_unknown_consent=False, include_low_quality=False, seed=0,
                 max_yaw=None)


class NotOwned(ExportError):
    """A recorded export path holds something this export does not own: refused, nothing touched."""


class _Changed(Exception):
    """Records were erased or redacted between selection and commit (internal: the export retries)."""

    def __init__(self, n: int):
        super().__init__(n)
        self.n = n


def workspace_id(ws: Workspace) -> str:
    """This workspace's id, made on first use (old workspaces are backfilled) and kept in the catalog
    with the folder it belongs to, and in ``faceset.json``.

    A catalog that names another folder is a copy when that folder still holds a workspace
    (``cp -a``: the copy gets a new id, so it never rewrites the original's exports) and a move
    otherwise (the id stays, the folder is updated)."""
    root = ws.root.resolve()
    rec = ws.catalog.settings.get_json("workspace") or {}
    wid = rec.get("id")
    if wid and rec.get("root") == str(root):
        return wid
    if wid and rec.get("root"):
        orig = Path(rec["root"])
        try:
            same = orig.exists() and os.path.samefile(orig, root)
        except OSError:
            same = False
        if not same and (orig / "faceset.json").exists():
            wid = None  # a copy: the original is still there and keeps its id
    wid = wid or secrets.token_hex(16)
    with ws.catalog.tx():
        ws.catalog.settings.put_json("workspace", {"id": wid, "root": str(root)})
        ws.catalog.audit("workspace_id", root=str(root), forked=bool(rec.get("id")) and rec.get("id") != wid)
    try:  # also in faceset.json, for people and tools; the catalog's copy is the one compared
        mpath = ws.root / "faceset.json"
        meta = json.loads(mpath.read_text() or "{}")
        meta["id"] = wid
        tmp = mpath.with_name(f".faceset.json.{os.getpid()}")
        tmp.write_text(json.dumps(meta) + "\n")
        os.replace(tmp, mpath)
    except (OSError, ValueError):
        pass
    return wid


read_marker = redact.export_marker


def _write_marker(folder: Path, wid: str, export_id: int | None, state: str) -> None:
    (folder / MARKER).write_text(json.dumps({"faceset_export": 1, "workspace_id": wid, "export_id": export_id,
                                             "state": state}, sort_keys=True) + "\n", encoding="utf-8")


def _check_target(ws: Workspace, out: Path, export_id: int | None, wid: str) -> None:
    """Refuse (one line, nothing touched) unless ``out`` is missing, empty, or this export's own folder."""
    root = ws.root.resolve()
    if out == root or out in root.parents or root in out.parents:
        raise ExportError(f"{out}: an export must live outside the workspace (exports leave; the workspace stays)")
    if out.is_symlink():
        raise NotOwned(f"{out} is a symbolic link, not an export folder: not replaced")
    if out.exists() and not out.is_dir():
        raise NotOwned(f"{out} exists and is not a folder: not replaced")
    if not out.exists() or not any(out.iterdir()):
        return
    m = read_marker(out)
    if m is None:
        if export_id is None:
            raise ExportError(f"{out} exists, is not empty and is not a faceset export: choose a new folder")
        raise NotOwned(f"{out} is not empty and has no faceset export marker ({MARKER}): not replaced; "
                       "move it away (or delete it) and rerun")
    if m.get("workspace_id") != wid:
        raise NotOwned(f"{out} is an export of another workspace (a copy never rewrites the original's exports): "
                       "not replaced")
    if export_id is None or m.get("export_id") != export_id:
        raise NotOwned(f"{out} holds export #{m.get('export_id')} of this workspace, not "
                       f"{'a new one' if export_id is None else f'#{export_id}'}: not replaced")


def _clear_leftovers(ws: Workspace, out: Path, wid: str) -> None:
    """Finish the journal (abandoned partial folders, replaced exports), then shred untracked
    ``.OUT.partial-*`` / ``.OUT.old-*`` folders that carry this workspace's marker (older runs)."""
    redact.finish_erasures(ws)
    if not out.parent.is_dir():
        return
    live = {t.target for t in ws.catalog.erasures.pending("partial_export")}
    for left in [*out.parent.glob(f".{out.name}.partial-*"), *out.parent.glob(f".{out.name}.old-*")]:
        if str(left) in live or left.is_symlink() or not left.is_dir():
            continue
        m = read_marker(left)
        if m is not None and m.get("workspace_id") == wid:
            redact.shred_tree(left)


@contextmanager
def _engine(name: str, workers: int | None, ray_address: str | None, *, needed: bool = True) -> Iterator:
    """None for ``local`` (payloads made in this process, as always) or when nothing is ``needed``; a started
    (or joined) Ray otherwise, shut down after. Bad options are refused either way."""
    from ..engines import check_options, get_engine

    check_options(name, workers, ray_address, error=BadExportRequest)
    if name == "local" or not needed:
        yield None
        return
    eng = get_engine(name, workers, ray_address)
    try:
        yield eng
    finally:
        eng.close()


RAY_TASK_ITEMS, RAY_TASK_BYTES = 64, 8 << 20  # records / stored bytes per Ray task of an export


def _payloads(ws: Workspace, items: list, engine) -> Iterator[tuple[bytes, str]]:
    """The bytes to publish for each item, in item order. On an engine the driver reads the store and ships
    the bytes (no shared filesystem), tasks clean / blur-and-re-encode them (:func:`encode.payloads`) with
    2 tasks per worker in flight, and this generator hands them to the writer in order: the same bytes as
    :func:`_payload` gives locally, so the files, shards and catalog rows are the same."""
    if engine is None:
        for it in items:
            yield _payload(ws, it)
        return
    from ..engines import WorkerLost

    window: deque = deque()

    def take(handle, chunk, jobs):
        try:
            got = engine.result(handle)
        except WorkerLost:  # its worker died (after the engine's retries): the same function, here
            got = payloads(jobs)
        for it, (data, ext) in zip(chunk, got):
            if data is None:
                raise _damaged(it.key, ext)
            yield data, ext

    def tasks():  # (items, their (bytes, blur boxes)) per task, read from the store as the window moves on
        chunk, jobs, size = [], [], 0
        for it in items:
            data = ws.store.get(it.key)
            chunk.append(it)
            jobs.append((data, it.blur_boxes))
            size += len(data)
            if len(jobs) >= RAY_TASK_ITEMS or size >= RAY_TASK_BYTES:
                yield chunk, jobs
                chunk, jobs, size = [], [], 0
        if jobs:
            yield chunk, jobs

    for chunk, jobs in tasks():
        window.append((engine.submit(payloads, jobs), chunk, jobs))
        if len(window) >= 2 * engine.workers:
            yield from take(*window.popleft())
    while window:
        yield from take(*window.popleft())


def _damaged(key: str, why: str) -> StoreError:
    return StoreError(f"store object {key[:12]} is damaged ({why}): run `faceset verify`")


def _payload(ws: Workspace, item) -> tuple[bytes, str]:
    """The bytes to publish; a stored object that no longer decodes is a workspace problem (exit 2)."""
    data = ws.store.get(item.key)
    try:
        return payload(data, item.blur_boxes)
    except (OSError, ValueError, SyntaxError) as e:  # what Pillow raises for damaged bytes
        raise _damaged(item.key, type(e).__name__) from None


def _before_commit(ws: Workspace, sel: Selection) -> None:
    """Test seam: runs after the files are written, just before the commit (races are simulated here)."""


def _build(ws: Workspace, out: Path, params: dict, export_id: int | None, *, progress: bool,
           allow_empty: bool = False, engine=None) -> ExportReport:
    wid = workspace_id(ws)
    _check_target(ws, out, export_id, wid)
    _clear_leftovers(ws, out, wid)
    for attempt in (1, 2):
        try:
            return _attempt(ws, out, params, export_id, wid, progress=progress, allow_empty=allow_empty,
                            engine=engine)
        except _Changed as e:
            if attempt == 2:
                raise ExportError(f"{e.n} records were erased or redacted while this export was written (twice in a "
                                  "row): nothing was published; run it again") from None
    raise AssertionError("unreachable")


def _attempt(ws: Workspace, out: Path, params: dict, export_id: int | None, wid: str, *, progress: bool,
             allow_empty: bool, engine=None) -> ExportReport:
    t0 = time.perf_counter()
    sel: Selection = select_items(
        ws, what=params["what"], salt=params["salt"], label=params["label"], faces=params["faces"],
        include_unknown_consent=params["include_unknown_consent"],
        include_low_quality=params["include_low_quality"], blur_bystanders=params["blur_bystanders"],
        max_yaw=params.get("max_yaw"),
    )
    if not sel.items and not allow_empty:
        why = ", ".join(f"{k} {v}" for k, v in sel.skipped.most_common()) or "the catalog has no faces"
        raise ExportError(f"nothing to export: {why} (run scan/curate first, or see --include-* options)")
    label_names = sorted({k for it in sel.items for k in it.labels})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(3)}"
    with ws.catalog.tx():  # tracked before anything is written: forget / verify shred it if we are killed
        ws.catalog.erasures.plan("partial_export", [str(tmp)], "export", pid=os.getpid(), export_id=export_id)
    old: Path | None = None
    try:
        tmp.mkdir()
        _write_marker(tmp, wid, export_id, "partial")
        writer = make_writer(params["format"], tmp, sel.items, label_names, shard_size=params["shard_size"],
                             sample=params["sample"], seed=params["seed"])
        rows = []
        with bar(f"export {params['format']}", len(sel.items), progress) as b:
            for it, (data, ext) in zip(sel.items, _payloads(ws, sel.items, engine)):
                rows.append(it.manifest_row(writer.add(it, data, ext)))
                b.advance()
        writer.close()
        _write_manifest(tmp, rows)
        rep = _report(out, params, sel, export_id or 0, t0)
        _before_commit(ws, sel)
        c = ws.catalog
        with c.tx():
            # Serialised with erasure (BEGIN IMMEDIATE): nothing we wrote may have been erased meanwhile.
            n = c.exports.changed_items(params["what"], [(it.image_id, it.face_id, it.key) for it in sel.items])
            if n:
                raise _Changed(n)
            _check_target(ws, out, export_id, wid)  # the folder may have been replaced while we wrote
            # the export row and every (image, face) it holds, with the datasheet and audit entry: one unit
            export_id = c.exports.record(
                path=str(out), format=params["format"], what=params["what"], params=params,
                items=[(it.image_id, it.face_id) for it in sel.items], export_id=export_id)
            rep.export_id = export_id
            (tmp / "datasheet.md").write_text(render_datasheet(ws, rep, sel, params), encoding="utf-8")
            _write_marker(tmp, wid, export_id, "complete")
            c.audit("export", export_id=export_id, format=params["format"], what=params["what"],
                    label=params["label"], items=len(sel.items), skipped=dict(sel.skipped),
                    included_unknown_consent=sel.included_unknown_consent)
            c.erasures.done_target("partial_export", str(tmp))
            if out.exists():
                old = out.parent / f".{out.name}.old-{os.getpid()}-{secrets.token_hex(3)}"
                c.erasures.plan("export_folder", [str(old)], "export")
            # inside the transaction: no erasure can commit between this check and the swap
            _swap(tmp, out, old)
    except BaseException:
        if tmp.exists():
            redact.shred_tree(tmp)
        with ws.catalog.tx():
            ws.catalog.erasures.done_target("partial_export", str(tmp))
        raise
    if old is not None:  # the previous export (it may show an erased person): shredded, then unjournalled
        redact.shred_tree(old)
        with ws.catalog.tx():
            ws.catalog.erasures.done_target("export_folder", str(old))
    files = [p for p in out.rglob("*") if p.is_file() and p.name != MARKER]
    rep.files, rep.bytes = len(files), sum(p.stat().st_size for p in files)
    rep.seconds = round(time.perf_counter() - t0, 3)
    return rep


def _swap(tmp: Path, out: Path, old: Path | None) -> None:
    """Replace ``out`` by ``tmp`` with two renames (``out`` moves to ``old`` first; removed by the caller)."""
    if old is not None:
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise


_MANIFEST_COLUMNS = ["id", "file", "split", "label", "person", "source", "license", "consent"]


def _write_manifest(root: Path, rows: list[dict]) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r)) or _MANIFEST_COLUMNS
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, restval="")
        w.writeheader()
        w.writerows(rows)
    with open(root / "manifest.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n")


def _report(out: Path, params: dict, sel: Selection, export_id: int, t0: float) -> ExportReport:
    splits: dict[str, Counter] = {}
    for it in sel.items:
        splits.setdefault(it.split, Counter())[it.cls] += 1
    return ExportReport(
        export_id=export_id, path=str(out), format=params["format"], what=params["what"], label=params["label"],
        items=len(sel.items), files=0, bytes=0, seconds=round(time.perf_counter() - t0, 3),
        classes=dict(sorted(Counter(it.cls for it in sel.items).items())),
        splits={s: dict(sorted(splits[s].items())) for s in sorted(splits, key=split_order)},
        skipped=dict(sel.skipped.most_common()), included_unknown_consent=sel.included_unknown_consent,
        people=len({it.person_id for it in sel.items if it.person_id is not None}),
        blurred_faces=sum(len(it.blur_boxes) for it in sel.items),
    )
