"""Contact sheets: a person checks a scan at a glance (accepted faces, rejected images, low quality).

Sheets show aligned chips / thumbnails of stored copies (never originals, never file names), with a
short caption (image id, face score or the reason). Written as PNG under ``ws.sheets_dir``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .errors import UsageError
from .workspace import Workspace

TILE = 128
CAPTION = 14
KINDS = ("faces", "rejected", "low_quality")


@dataclass
class SheetReport:
    sheets: dict = field(default_factory=dict)   # kind -> list of PNG paths
    counts: dict = field(default_factory=dict)   # kind -> items shown

    def to_dict(self) -> dict:
        return {"sheets": {k: [str(p) for p in v] for k, v in self.sheets.items()}, "counts": self.counts}


def _thumb(data: bytes, size: int = TILE) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        im.thumbnail((size, size))
        tile = Image.new("RGB", (size, size), (32, 32, 32))
        tile.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
        return tile


def _grid(tiles: list[tuple[Image.Image, str]], cols: int, title: str) -> Image.Image:
    rows = max(1, (len(tiles) + cols - 1) // cols)
    head = 24
    sheet = Image.new("RGB", (cols * TILE, head + rows * (TILE + CAPTION)), (16, 16, 16))
    d = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    d.text((4, 4), title, fill=(255, 255, 255), font=font)
    for i, (t, cap) in enumerate(tiles):
        x, y = (i % cols) * TILE, head + (i // cols) * (TILE + CAPTION)
        sheet.paste(t, (x, y))
        d.text((x + 2, y + TILE), cap[:22], fill=(220, 220, 220), font=font)
    return sheet


def _items(ws: Workspace, kind: str, limit: int):
    c = ws.catalog
    if kind == "faces":
        return [(ws.store.get(f.chip_key), f"#{f.image_id}{'*' if f.is_main else ''} s={f.score:.2f}")
                for f in c.faces.sheet_chips("ok", limit)]
    if kind == "low_quality":
        return [(ws.store.get(f.chip_key), f"#{f.image_id} {f.size:.0f}px b={f.blur:.0f}")
                for f in c.faces.sheet_chips("low_quality", limit)]
    items = [(ws.store.get(im.store_key), f"#{im.id} {im.status_reason or im.status}")
             for im in c.images.unusable(limit)]
    # faces the real-face verifier rejected (kept in the catalog, left out of datasets), with their kind
    items += [(ws.store.get(f.chip_key), f"#{f.image_id} not real: {f.kind}")
              for f in c.faces.not_real(max(0, limit - len(items)))]
    return items


def contact_sheets(ws: Workspace, *, out: str | Path | None = None, kinds=KINDS, limit: int = 200,
                   cols: int = 10, per_sheet: int = 100) -> SheetReport:
    """Write ``<kind>-<n>.png`` sheets; returns their paths. Empty kinds get no sheet."""
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise UsageError(f"unknown sheet kind {bad[0]!r}: choose from {', '.join(KINDS)}")
    if limit < 0:
        raise UsageError(f"--limit must be >= 0 (got {limit})")
    if cols < 1 or per_sheet < 1:
        raise UsageError("a sheet needs at least one column and one item")
    out = Path(out) if out else ws.sheets_dir
    out.mkdir(parents=True, exist_ok=True)
    rep = SheetReport()
    for kind in kinds:
        items = _items(ws, kind, limit)
        rep.counts[kind] = len(items)
        rep.sheets[kind] = []
        for n, start in enumerate(range(0, len(items), per_sheet)):
            part = items[start:start + per_sheet]
            tiles = []
            for data, cap in part:
                try:
                    tiles.append((_thumb(data), cap))
                except Exception:  # a missing/unreadable stored object still gets a tile
                    tiles.append((Image.new("RGB", (TILE, TILE), (90, 0, 0)), cap + " (unreadable)"))
            title = f"{kind.replace('_', ' ')}: {start + 1}-{start + len(part)} of {len(items)}"
            p = out / f"{kind}-{n + 1}.png"
            _grid(tiles, cols, title).save(p, "PNG")
            rep.sheets[kind].append(p)
    return rep


__all__ = ["contact_sheets", "SheetReport", "KINDS"]
