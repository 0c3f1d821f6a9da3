"""Per-image work shared by ``analyze`` (in memory) and the scan workers (stored copies).

Workers return plain data (numbers, lists, encoded bytes) so any engine can ship it back;
only the parent process touches the catalog.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..imageio import encode_jpeg, encode_png
from . import align, cascade, quality
from .embed import embed_chips, worker_threads

DECODE_SIDE = 1600   # JPEG draft decoding keeps at least this long side (chips need face resolution)


@dataclass
class FaceResult:
    box: tuple[float, float, float, float]       # x, y, w, h in image pixels
    score: float
    landmarks: np.ndarray                        # 5x2 float, image pixels
    embedding: np.ndarray | None                 # float32[128]
    chip: np.ndarray | None                      # 150x150x3 uint8, embedding alignment
    crop: np.ndarray | None                      # 224x224x3 uint8, more margin, for classifiers
    quality: dict
    is_main: bool = False
    detector: str = ""
    status: str = "ok"                           # ok | low_quality

    def to_dict(self) -> dict:
        return {"box": [round(v, 1) for v in self.box], "score": round(self.score, 4),
                "landmarks": np.round(self.landmarks, 1).tolist(), "quality": self.quality,
                "is_main": self.is_main, "detector": self.detector, "status": self.status}


def prominence(box_xywh, shape) -> float:
    """Main-subject rule: sqrt(area) discounted by distance from the image centre (up to 50% off)."""
    x, y, w, h = box_xywh
    H, W = shape[:2]
    dx = (x + w / 2 - W / 2) / (W / 2)
    dy = (y + h / 2 - H / 2) / (H / 2)
    d = min(1.0, math.hypot(dx, dy) / math.sqrt(2))
    return math.sqrt(max(w * h, 0.0)) * (1.0 - 0.5 * d)


def analyze_rgb(rgb: np.ndarray, *, embed: bool = True, crops: bool = True,
                timings: dict | None = None) -> list[FaceResult]:
    t0 = time.perf_counter()
    dets = cascade.find_faces(rgb)
    t1 = time.perf_counter()
    if not dets:
        _add(timings, detect=t1 - t0)
        return []
    shapes = [align.shape_of(d.landmarks, d.box) for d in dets]
    chips = align.chips(rgb, shapes, align.CHIP_SIZE, align.CHIP_PADDING)
    big = align.chips(rgb, shapes, align.CROP_SIZE, align.CROP_PADDING) if crops else [None] * len(dets)
    t2 = time.perf_counter()
    embs = embed_chips(chips) if embed else None
    t3 = time.perf_counter()
    out = []
    for i, (d, chip, crop) in enumerate(zip(dets, chips, big)):
        l, t, r, b = (float(v) for v in d.box)
        q = quality.measure(chip, (r - l, b - t), d.landmarks)
        out.append(FaceResult((l, t, r - l, b - t), float(d.score), d.landmarks.astype(np.float64),
                              None if embs is None else embs[i], chip, crop, q,
                              detector=d.detector, status=quality.status(q)))
    # main subject: most prominent face, preferring faces that are not low quality
    best = max(range(len(out)), key=lambda i: (out[i].status == "ok", prominence(out[i].box, rgb.shape)))
    out[best].is_main = True
    out.sort(key=lambda f: (not f.is_main, -prominence(f.box, rgb.shape)))
    _add(timings, detect=t1 - t0, align=t2 - t1, embed=t3 - t2, quality=time.perf_counter() - t3)
    return out


def _add(timings: dict | None, **kw) -> None:
    if timings is not None:
        for k, v in kw.items():
            timings[k] = timings.get(k, 0.0) + v


def decode(src: bytes | str | Path, max_side: int = DECODE_SIDE) -> tuple[np.ndarray, float]:
    """Decode once to RGB; big JPEGs use draft mode (DCT scaling). Returns (rgb, original/decoded scale)."""
    f = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else open(src, "rb")
    with f, Image.open(f) as im:
        W, H = im.size
        if im.format == "JPEG" and max(W, H) > max_side:
            k = max_side / max(W, H)
            im.draft("RGB", (math.ceil(W * k), math.ceil(H * k)))
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgb = np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"))
        else:
            rgb = np.asarray(im.convert("RGB"))
    return rgb, W / rgb.shape[1]


_WORKER_READY = False


def process(task: tuple) -> dict:
    """Worker entry point: (image_id, path-or-bytes) -> plain result dict (never raises)."""
    global _WORKER_READY
    if not _WORKER_READY:
        worker_threads(1)
        _WORKER_READY = True
    image_id, src = task
    timings: dict = {}
    t0 = time.perf_counter()
    try:
        rgb, k = decode(src)
        timings["decode"] = time.perf_counter() - t0
        faces = analyze_rgb(rgb, timings=timings)
    except Exception as e:  # one bad image must not stop the batch
        return {"image_id": image_id, "status": "error", "reason": f"{type(e).__name__}: {e}"[:300],
                "faces": [], "timings": timings}
    t1 = time.perf_counter()
    recs = []
    for f in faces:
        x, y, w, h = (v * k for v in f.box)
        q = {**f.quality, "size": round(f.quality["size"] * k, 2)}  # size is judged in original pixels
        recs.append({
            "box": [x, y, w, h], "score": f.score, "detector": f.detector,
            "landmarks": json.dumps(np.round(f.landmarks * k, 2).tolist()),
            "quality": q, "status": quality.status(q),
            "is_main": f.is_main,
            "embedding": f.embedding.astype(np.float32).tobytes(),
            "chip": encode_png(f.chip), "crop": encode_jpeg(f.crop),
        })
    timings["encode"] = time.perf_counter() - t1
    return {"image_id": image_id, "status": "ok" if recs else "no_face",
            "reason": None if recs else "no human face found", "faces": recs, "timings": timings}
