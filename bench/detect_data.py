"""The labelled image sets the detector benches read (all from ../shared/data, nothing copied).

One loading rule for every detector: EXIF orientation applied, alpha flattened on white (as
``scan.pipeline.decode`` does), RGB uint8. Each item is a dict with ``subset``, ``path``, ``group``
(the unit cross-validation keeps on one side: identity / source repository / file) and labels.
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACESET_DATA", ROOT.parent / "shared" / "data"))


def labels(sub: str) -> list[dict]:
    with open(DATA / sub / "labels.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def load_rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"))
        return np.asarray(im.convert("RGB"))


def _repo(source: str) -> str:
    return source.split("@")[0] if source else ""


def portraits(wild: int | None = None, utk: int = 0, seed: int = 0) -> list[dict]:
    """identities (all), identities_wild (``wild`` people-spread sample or all), utkface sample."""
    items = [{"subset": "identities", "path": str(DATA / "identities" / r["file"]), "identity": r["identity"],
              "group": "id:" + r["identity"], "note": r["note"]} for r in labels("identities")]
    w = labels("identities_wild")
    if wild is not None and wild < len(w):
        # whole people, evenly spread over the name-sorted list, until ``wild`` photos (verification needs pairs)
        people = sorted({r["identity"] for r in w})
        order = [people[(i * 7919) % len(people)] for i in range(len(people))]  # a fixed stride through the names
        keep, n = set(), 0
        by = {}
        for r in w:
            by.setdefault(r["identity"], []).append(r)
        for p in order:
            if n >= wild:
                break
            keep.add(p)
            n += len(by[p])
        w = [r for r in w if r["identity"] in keep]
    items += [{"subset": "identities_wild", "path": str(DATA / "identities_wild" / r["file"]),
               "identity": r["identity"], "group": "wild:" + r["identity"], "note": r["note"]} for r in w]
    if utk:
        u = labels("utkface")
        random.Random(seed).shuffle(u)
        items += [{"subset": "utkface", "path": str(DATA / "utkface" / r["file"]), "identity": "",
                   "group": f"utk:{i % 50}", "note": ""} for i, r in enumerate(u[:utk])]
    return items


def groups() -> list[dict]:
    out = []
    for r in labels("groups"):
        boxes = []
        for b in filter(None, r["boxes"].split(";")):
            x, y, w, h = (float(v) for v in b.split(","))
            boxes.append((x, y, x + w, y + h))
        out.append({"subset": "groups", "path": str(DATA / "groups" / r["file"]), "n_faces": int(r["n_faces"]),
                    "boxes": boxes, "group": "groups:" + r["file"], "note": r["note"]})
    return out


def nonfaces() -> list[dict]:
    """nonface + nonface_hard with has_face (bool), kind, source repository (the CV group)."""
    out = []
    for r in labels("nonface"):
        folder = r["file"].split("/")[0]
        out.append({"subset": "nonface", "path": str(DATA / "nonface" / r["file"]), "has_face": r["has_face"] == "yes",
                    "kind": r["kind"], "group": "nonface:" + folder, "note": r["note"], "folder": folder})
    for r in labels("nonface_hard"):
        out.append({"subset": "nonface_hard", "path": str(DATA / "nonface_hard" / r["file"]),
                    "has_face": r["has_face"] == "yes", "kind": r["kind"], "group": "src:" + _repo(r["source"]),
                    "note": r["note"], "folder": r["file"].split("/")[0]})
    return out
