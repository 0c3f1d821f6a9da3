"""`export` and `refresh`: catalog -> dataset folder (+ manifest, datasheet), recorded for erasure.

An export is built in a hidden sibling folder and swapped in at the end, so a
kill leaves either the previous export or the new one, never a mix. The
``exports`` row keeps every parameter (including the id salt), so ``refresh``
rebuilds the same layout with the same ids once ``forget`` marks it stale.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from ..catalog.schema import EXPORT_FORMATS, EXPORT_WHAT
from ..privacy.blur import pixelate_faces
from ..progress import bar
from ..workspace import Workspace
from .datasheet import render_datasheet
from .encode import clean, encode
from .result import BadExportRequest, ExportError, ExportNotFound, ExportReport
from .select import Selection, select_items, split_order
from .writers import FORMATS, make_writer

WHATS = EXPORT_WHAT
assert set(FORMATS) == set(EXPORT_FORMATS), "writers and the catalog's CHECK must agree on export formats"

__all__ = ["WHATS", "BadExportRequest", "ExportError", "ExportNotFound", "ExportReport", "export", "refresh"]


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
                  include_low_quality=include_low_quality, seed=int(seed), salt=salt or secrets.token_hex(8))
    return _build(ws, out, params, prev.id if prev else None, progress=progress)


def refresh(ws: Workspace, export_id: int | None = None, *, progress: bool = True) -> list[ExportReport]:
    """Rebuild stale exports in place (or the one ``export_id``, stale or not) from their recorded params."""
    if export_id is not None:
        one = ws.catalog.exports.get(export_id)
        if one is None:
            raise ExportNotFound(f"no export with id {export_id}")
        rows = [one]
    else:
        rows = ws.catalog.exports.stale()
    reports = []
    for r in rows:
        params = {**_DEFAULTS, **r.params}  # exports recorded by an older faceset lack new keys
        # allow_empty: if erasure took every record, the old files must still go.
        rep = _build(ws, Path(r.path), params, r.id, progress=progress, allow_empty=True)
        rep.refreshed = True
        reports.append(rep)
    return reports


_DEFAULTS = dict(format="imagefolder", what="crops", label=None, faces="main", shard_size=1000, sample=500,
                 blur_bystanders=False, include_unknown_consent=False, include_low_quality=False, seed=0)


def _check_target(ws: Workspace, out: Path, recorded: bool) -> None:
    root = ws.root.resolve()
    if out == root or out in root.parents or root in out.parents:
        raise ExportError(f"{out}: an export must live outside the workspace (exports leave; the workspace stays)")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not recorded:
        raise ExportError(f"{out} exists, is not empty and is not a faceset export: choose a new folder")


def _payload(ws: Workspace, item) -> tuple[bytes, str]:
    data = ws.store.get(item.key)
    if item.blur_boxes:
        with Image.open(io.BytesIO(data)) as im:
            rgb = np.asarray(im.convert("RGB"))
        return encode(pixelate_faces(rgb, item.blur_boxes))
    return clean(data)


def _build(ws: Workspace, out: Path, params: dict, export_id: int | None, *, progress: bool,
           allow_empty: bool = False) -> ExportReport:
    t0 = time.perf_counter()
    _check_target(ws, out, recorded=export_id is not None)
    sel: Selection = select_items(
        ws, what=params["what"], salt=params["salt"], label=params["label"], faces=params["faces"],
        include_unknown_consent=params["include_unknown_consent"],
        include_low_quality=params["include_low_quality"], blur_bystanders=params["blur_bystanders"],
    )
    if not sel.items and not allow_empty:
        why = ", ".join(f"{k} {v}" for k, v in sel.skipped.most_common()) or "the catalog has no faces"
        raise ExportError(f"nothing to export: {why} (run scan/curate first, or see --include-* options)")
    label_names = sorted({k for it in sel.items for k in it.labels})
    out.parent.mkdir(parents=True, exist_ok=True)
    for left in [*out.parent.glob(f".{out.name}.partial-*"), *out.parent.glob(f".{out.name}.old-*")]:
        shutil.rmtree(left, ignore_errors=True)  # left by a killed run
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    tmp.mkdir()
    try:
        writer = make_writer(params["format"], tmp, sel.items, label_names, shard_size=params["shard_size"],
                             sample=params["sample"], seed=params["seed"])
        rows = []
        with bar(f"export {params['format']}", len(sel.items), progress) as b:
            for it in sel.items:
                data, ext = _payload(ws, it)
                rows.append(it.manifest_row(writer.add(it, data, ext)))
                b.advance()
        writer.close()
        _write_manifest(tmp, rows)
        rep = _report(out, params, sel, export_id or 0, t0)
        with ws.catalog.tx():
            # the export row and every (image, face) it holds, with the datasheet and audit entry: one unit
            export_id = ws.catalog.exports.record(
                path=str(out), format=params["format"], what=params["what"], params=params,
                items=[(it.image_id, it.face_id) for it in sel.items], export_id=export_id)
            rep.export_id = export_id
            (tmp / "datasheet.md").write_text(render_datasheet(ws, rep, sel, params), encoding="utf-8")
            ws.catalog.audit("export", export_id=export_id, format=params["format"], what=params["what"],
                             label=params["label"], items=len(sel.items), skipped=dict(sel.skipped),
                             included_unknown_consent=sel.included_unknown_consent)
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = [p for p in out.rglob("*") if p.is_file()]
    rep.files, rep.bytes = len(files), sum(p.stat().st_size for p in files)
    rep.seconds = round(time.perf_counter() - t0, 3)
    return rep


def _swap(tmp: Path, out: Path) -> None:
    """Replace ``out`` by ``tmp`` with two renames; the old export is removed only after."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
