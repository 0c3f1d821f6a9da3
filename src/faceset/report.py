"""`faceset report`: one self-contained HTML page about a workspace, for its owner.

Everything is inlined (thumbnails as base64 JPEG, plots as base64 PNG) so the
file can be opened offline and mailed around the owner's own team without a
folder of assets. It shows rejected files by their catalog names, so it is
local to the owner and never written into an export.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .catalog import now
from .export.select import split_order
from .status import workspace_status
from .workspace import Workspace

THUMB = 96
MAX_DUP_GROUPS = 40
MAX_REJECTED_THUMBS = 80


@dataclass
class ReportResult:
    path: str
    bytes: int
    images: int
    faces: int
    people: int
    duplicate_groups: int
    rejected_images: int
    rejected_files: int
    plots: int
    thumbnails: int
    counts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _b64(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _thumb(ws: Workspace, image_id: int | None = None, key: str | None = None) -> str | None:
    """A stored image (by id) or store object (by key, e.g. a face chip) as an inline JPEG thumbnail."""
    from PIL import Image

    try:
        data = ws.image_bytes(image_id) if key is None else ws.store.get(key)
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMB, THUMB))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
    except Exception:  # a broken stored copy must not sink the whole report
        return None
    return _b64(buf.getvalue(), "image/jpeg")


def _plot(draw, w: float = 5.0, h: float = 3.0) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(w, h), dpi=90)
    try:
        draw(ax)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
    return _b64(buf.getvalue(), "image/png")


def _table(head: list[str], rows: list[list]) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{trs}</table>"


def _hist(values, title: str, xlabel: str, bins: int = 30):
    def draw(ax):
        ax.hist(values, bins=bins, color="#4c72b0")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
    return draw


def _balance(counts: dict[str, Counter], name: str):
    splits = sorted(counts, key=split_order)
    values = sorted({v for c in counts.values() for v in c})[:30]

    def draw(ax):
        bottom = np.zeros(len(splits))
        for v in values:
            ys = np.array([counts[s][v] for s in splits], dtype=float)
            ax.bar(splits, ys, bottom=bottom, label=str(v))
            bottom += ys
        ax.set_title(f"{name} per split (main faces)")
        ax.set_ylabel("faces")
        if len(values) <= 12:
            ax.legend(fontsize=7, loc="upper right")
    return draw


def report(ws: Workspace, out: str | Path | None = None) -> ReportResult:
    """Write the HTML report (default ``<workspace>/report.html``) and return what it counted."""
    out = Path(out) if out else ws.root / "report.html"
    c = ws.catalog
    st = workspace_status(ws)
    plots: list[tuple[str, str]] = []
    parts: list[str] = []
    n_thumbs = 0

    parts.append("<h2>Counts</h2>" + _table(
        ["images", "faces", "people", "rejected files"] + [f"status {k}" for k in st["images_by_status"]],
        [[st["images"], st["faces"], st["people"], st["rejected_files"], *st["images_by_status"].values()]]))

    # Class balance per split: main faces, their person's split, their photo's labels.
    by_label: dict[str, dict[str, Counter]] = {}
    for name, value, split, n in c.labels.main_face_balance():
        by_label.setdefault(name, {}).setdefault(split, Counter())[value] = n
    parts.append("<h2>Class balance per split</h2>")
    if not by_label:
        parts.append("<p>No labels yet.</p>")
    for name, counts in by_label.items():
        plots.append((f"{name} per split", _plot(_balance(counts, name))))
        splits = sorted(counts, key=split_order)
        values = sorted({v for cc in counts.values() for v in cc})
        parts.append(f"<h3>{html.escape(name)}</h3><img src='{plots[-1][1]}' alt='{html.escape(name)} balance'>")
        if len(values) <= 40:
            parts.append(_table([name, *splits], [[v, *[counts[s][v] for s in splits]] for v in values]))

    parts.append("<h2>Sources and licences</h2>" + _table(
        ["source", "kind", "licence", "consent", "images", "rejected"],
        [[s["name"], s["kind"], s["license"], s["consent"], s["images"], s["rejected"]] for s in st["sources"]]))

    faces = c.faces.sizes()
    parts.append("<h2>Faces</h2>")
    if faces:
        sizes = [max(r.w, r.h) for r in faces]
        qual = [r.quality for r in faces if r.quality is not None]
        plots.append(("face size", _plot(_hist(sizes, "face size", "box side (px)"))))
        parts.append(f"<img src='{plots[-1][1]}' alt='face size histogram'>")
        if qual:
            plots.append(("quality", _plot(_hist(qual, "face quality", "quality score"))))
            parts.append(f"<img src='{plots[-1][1]}' alt='quality histogram'>")
        parts.append(_table(["face status", "count"], sorted(c.faces.count_by_status().items())))
        low = c.faces.low_quality()
        if low:
            parts.append(f"<h3>Low-quality faces ({len(low)}), left out of exports by default</h3><div class='row'>")
            for r in low[:MAX_REJECTED_THUMBS]:
                t = _thumb(ws, key=r.chip_key)
                n_thumbs += t is not None
                why = ", ".join(f"{k} {getattr(r, k):.3g}" for k in ("quality", "size", "blur", "yaw")
                                if getattr(r, k) is not None)
                parts.append(f"<figure><img src='{t or ''}' alt='face {r.id}'><figcaption>{html.escape(why)}"
                             "</figcaption></figure>")
            parts.append("</div>")
    else:
        parts.append("<p>No faces yet (run <code>faceset scan</code>).</p>")

    per_person = c.people.photo_counts()
    parts.append("<h2>Photos per person</h2>")
    if per_person:
        plots.append(("photos per person", _plot(_hist(per_person, "photos per person", "photos",
                                                       bins=min(30, max(per_person))))))
        splits = {k or "unsplit": n for k, n in c.people.count_by_split().items()}
        splits = {k: splits[k] for k in sorted(splits, key=split_order)}
        parts.append(f"<img src='{plots[-1][1]}' alt='photos per person'>"
                     + _table(["people", "median photos", "max photos", *[f"split {k}" for k in splits]],
                              [[len(per_person), int(np.median(per_person)), max(per_person), *splits.values()]]))
    else:
        parts.append("<p>No people yet (run <code>faceset people</code>).</p>")

    groups = c.images.duplicate_groups()
    parts.append(f"<h2>Duplicate groups ({len(groups)})</h2><p>First image kept, the others left out of exports.</p>")
    for kept, dups in list(groups.items())[:MAX_DUP_GROUPS]:
        cells = []
        for iid, tag in [(kept, "kept"), *[(d, "duplicate") for d in dups]]:
            t = _thumb(ws, iid)
            n_thumbs += t is not None
            cells.append(f"<figure><img src='{t or ''}' alt='image {iid}'>"
                         f"<figcaption>#{iid} {tag}</figcaption></figure>")
        parts.append("<div class='row'>" + "".join(cells) + "</div>")

    rejected = c.images.unusable(-1)
    parts.append(f"<h2>Rejected images ({len(rejected)})</h2><div class='row'>")
    for r in rejected[:MAX_REJECTED_THUMBS]:
        t = _thumb(ws, r.id)
        n_thumbs += t is not None
        why = r.status_reason or r.status
        parts.append(f"<figure><img src='{t or ''}' alt='image {r.id}'><figcaption>#{r.id} "
                     f"{html.escape(str(why))}</figcaption></figure>")
    parts.append("</div>")
    files = c.images.rejected_files()
    if files:
        parts.append(f"<h3>Files rejected at ingest ({len(files)})</h3>" + _table(
            ["file", "reason", "detail"], [[Path(r.path).name, r.reason_code, r.reason] for r in files[:500]]))

    exports = c.exports.all()
    if exports:
        parts.append("<h2>Exports</h2>" + _table(
            ["id", "path", "format", "what", "created", "stale"],
            [[r.id, r.path, r.format, r.what, r.created_at, (r.stale_reason or "yes") if r.stale else "no"]
             for r in exports]))

    page = _PAGE.format(title=html.escape(f"faceset report: {ws.root.name}"), when=now(), body="\n".join(parts))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return ReportResult(
        path=str(out), bytes=out.stat().st_size, images=st["images"], faces=st["faces"], people=st["people"],
        duplicate_groups=len(groups), rejected_images=len(rejected), rejected_files=st["rejected_files"],
        plots=len(plots), thumbnails=n_thumbs,
        counts={"images_by_status": st["images_by_status"], "rejected_by_reason": st["rejected_by_reason"]},
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }}
table {{ border-collapse: collapse; margin: .5em 0 1em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; font-size: 90%; }}
.row {{ display: flex; flex-wrap: wrap; gap: 6px; margin-bottom: 8px; }}
figure {{ margin: 0; width: {thumb}px; font-size: 75%; }}
figcaption {{ overflow-wrap: anywhere; }}
</style></head><body>
<h1>{title}</h1><p>Generated {when}. Local to the workspace owner: do not publish or put into an export.</p>
{body}
</body></html>
""".replace("{thumb}", str(THUMB))
