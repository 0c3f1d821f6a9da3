"""The detector cascade: find every human face, accept only what survives verification.

Why a cascade: dlib HOG is fast (~45 ms at 640 px) but misses small, tilted, turned and
frame-filling faces; MMOD CNN finds those but costs seconds at full size. So:

1. HOG (upsampled once) on a working copy (long side <= ``WORK_SIDE``) -- finds most faces fast.
   Strong HOG hits are accepted; weak ones must be confirmed by MMOD on a small crop.
2. Only if nothing was accepted (most images stop at 1): cheap rescues first -- HOG on a padded,
   downscaled copy (faces that fill or touch the frame) and on small copies rotated by
   +-``ROT_ANGLE`` (tilted heads) -- then, only if one of those HOG passes saw a candidate, MMOD on a
   tiny (``MMOD_SIDE``) padded copy (frame-filling and turned faces). Rescue hits need MMOD's
   agreement (on a small crop, or MMOD's own confident detection). The rescue runs on every no-face
   image, so each of its passes is sized for the big faces it is there to find.
3. Landmarks (5-point) are fitted on the full-resolution image; a face whose landmarks are not
   face-like (eye distance, nose off the eye line) is dropped.

Large photos: the working copy is at most ``WORK_SIDE`` px. When a photo was shrunk a lot and the
faces found are small (a crowd, a group far away), HOG also runs on overlapping 800 px tiles of a
copy of up to ``TILE_IMAGE_SIDE`` px, which finds faces ~3x smaller. A large photo whose faces are
*all* too small for the working copy is not tiled (that would cost every big landscape ~2 s).

All boxes and landmarks come back in the coordinates of the image passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from . import detectors

WORK_SIDE = 800          # long side of the main HOG pass
HOG_UPSAMPLE = 1         # finds faces down to ~40 px in the working copy
HOG_CANDIDATE = -0.4     # HOG hits above this are candidates (dlib's own cut is 0)
HOG_ACCEPT = 0.35        # ... and above this are accepted without a second opinion
RESCUE_SIDE = 224        # long side of the padded copy for the HOG rescue
MMOD_SIDE = 128          # long side of the padded copy for the MMOD rescue (MMOD's cost grows with area)
RESCUE_PAD = 0.12        # border added on each side (fraction of the long side)
MMOD_ACCEPT = 0.6        # MMOD confidence accepted on its own in the rescue pass
MMOD_VERIFY = 0.0        # MMOD confidence that confirms a weak HOG hit on its crop
MMOD_AGREE = 0.0         # ... or this, where a HOG hit >= HOG_AGREE overlaps it (two detectors agree)
HOG_AGREE = -0.2
ROT_ANGLE = 25.0
ROT_SIDE = 400           # long side of the rotated copies (HOG without upsampling: faces >= ~80 px)
VERIFY_FACE_PX = 80      # crop scale for MMOD verification (face ~ this many px: MMOD's smallest)
VERIFY_MARGIN = 0.35     # context around the box in the verification crop
MAX_VERIFY = 4           # weak candidates verified per pass (best scores first): bounds the cost
NMS_IOU = 0.35
TILE_TRIGGER_SCALE = 0.67  # tiling only for photos downscaled more than this for the main pass ...
TILE_TRIGGER_FACE = 80     # ... in which the smallest accepted face is under this (working-copy px)
TILE_IMAGE_SIDE = 2400     # tiles are cut from a copy at most this large
TILE_SIDE, TILE_OVERLAP = 800, 160


@dataclass
class Det:
    box: np.ndarray                  # l, t, r, b (float) in input-image coordinates
    score: float
    detector: str                    # hog | hog-rot+25 | mmod | hog-pad ...
    angle: float = 0.0               # rotation of the copy it was found in (deg, CCW)
    landmarks: np.ndarray | None = None   # 5x2, input-image coordinates
    verified: str = ""               # how it was accepted
    extra: dict = field(default_factory=dict)


# -- image helpers ---------------------------------------------------------------
def resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    if abs(scale - 1.0) < 1e-3:
        return rgb
    h, w = rgb.shape[:2]
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    im = Image.fromarray(rgb)
    return np.asarray(im.resize((nw, nh), Image.BILINEAR if scale > 1 else Image.BOX))


def pad(rgb: np.ndarray, p: int) -> np.ndarray:
    """Border of ``p`` px in the image's mean colour (black borders make HOG/MMOD see edges)."""
    fill = rgb.reshape(-1, 3).mean(0).astype(np.uint8)
    h, w = rgb.shape[:2]
    out = np.empty((h + 2 * p, w + 2 * p, 3), np.uint8)
    out[:] = fill
    out[p:p + h, p:p + w] = rgb
    return out


def rotate(rgb: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate CCW by ``angle`` degrees (canvas expanded); returns (image, 2x3 map rotated->input)."""
    h, w = rgb.shape[:2]
    im = Image.fromarray(rgb).rotate(angle, resample=Image.BILINEAR, expand=True)
    W, H = im.size
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    # input = C + R^-1 (rot - C'), with y pointing down
    A = np.array([[c, -s], [s, c]])
    cx, cy, cX, cY = w / 2, h / 2, W / 2, H / 2
    M = np.zeros((2, 3))
    M[:, :2] = A
    M[:, 2] = np.array([cx, cy]) - A @ np.array([cX, cY])
    return np.asarray(im), M


def iou(a, b) -> float:
    l, t = max(a[0], b[0]), max(a[1], b[1])
    r, bt = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, r - l) * max(0.0, bt - t)
    if inter <= 0:
        return 0.0
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua


def overlap_min(a, b) -> float:
    """Intersection over the smaller box: catches a box nested inside another."""
    l, t = max(a[0], b[0]), max(a[1], b[1])
    r, bt = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, r - l) * max(0.0, bt - t)
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return inter / small if small > 0 else 0.0


# -- raw detectors -------------------------------------------------------------------
def hog_raw(img: np.ndarray, upsample: int, threshold: float = HOG_CANDIDATE) -> list[tuple]:
    rects, scores, idx = detectors.hog().run(img, upsample, threshold)
    return [(r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(s), int(i)) for r, s, i in zip(rects, scores, idx)]


def mmod_raw(img: np.ndarray, upsample: int = 0) -> list[tuple]:
    out = []
    for d in detectors.mmod()(img, upsample):
        r = d.rect
        out.append((r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(d.confidence)))
    return out


def mmod_confirms(rgb: np.ndarray, box: np.ndarray) -> float:
    """Best MMOD confidence for a face overlapping ``box``, run on a small crop around it (cheap)."""
    l, t, r, b = box
    s = max(r - l, b - t)
    m = VERIFY_MARGIN * s
    L, T, R, B = int(l - m), int(t - m), int(r + m), int(b + m)
    h, w = rgb.shape[:2]
    cl, ct, cr, cb = max(L, 0), max(T, 0), min(R, w), min(B, h)
    if cr <= cl or cb <= ct:
        return -9.0
    crop = np.empty((B - T, R - L, 3), np.uint8)
    crop[:] = rgb[ct:cb, cl:cr].reshape(-1, 3).mean(0).astype(np.uint8)  # like pad(): no black edges
    crop[ct - T:cb - T, cl - L:cr - L] = rgb[ct:cb, cl:cr]
    k = VERIFY_FACE_PX / s
    small = resize(crop, k)
    rb = np.array([l - L, t - T, r - L, b - T]) * k
    best = -9.0
    for d in mmod_raw(small):
        if iou(d[:4], rb) >= 0.3:
            best = max(best, d[4])
    return best


# -- landmarks and sanity -----------------------------------------------------------------
def fit_landmarks(img: np.ndarray, box) -> np.ndarray:
    import dlib

    rect = dlib.rectangle(*(int(round(v)) for v in box))
    shp = detectors.landmarks5()(img, rect)
    return np.array([[shp.part(i).x, shp.part(i).y] for i in range(5)], dtype=np.float64)


def landmarks_plausible(lm: np.ndarray, box) -> bool:
    """Face-like 5-point geometry relative to the (upright) detection box."""
    w = box[2] - box[0]
    e1, e2, nose = lm[0:2].mean(0), lm[2:4].mean(0), lm[4]
    eye = np.linalg.norm(e2 - e1)
    if not (0.2 * w <= eye <= 0.75 * w):
        return False
    mid = (e1 + e2) / 2
    axis = (e2 - e1) / max(eye, 1e-6)
    normal = np.array([-axis[1], axis[0]])
    down = abs(float((nose - mid) @ normal))
    along = abs(float((nose - mid) @ axis)) / eye
    return down / eye >= 0.15 and along <= 0.75


def nms(dets: list[Det]) -> list[Det]:
    keep: list[Det] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if all(iou(d.box, k.box) < NMS_IOU and overlap_min(d.box, k.box) < 0.7 for k in keep):
            keep.append(d)
    return keep


# -- the cascade ------------------------------------------------------------------
def find_faces(rgb: np.ndarray, trace: dict | None = None) -> list[Det]:
    """All accepted faces in an HxWx3 uint8 image (boxes/landmarks in its coordinates)."""
    h, w = rgb.shape[:2]
    s = min(1.0, WORK_SIDE / max(h, w))
    work = resize(rgb, s)
    found: list[Det] = []
    for l, t, r, b, sc, i in hog_raw(work, HOG_UPSAMPLE):
        box = np.array([l, t, r, b], np.float64) / s
        d = Det(box, sc, "hog", extra={"sub": i})
        if trace is not None:
            trace.setdefault("hog", []).append(d)
        found.append(d)
    accepted = _verify(rgb, found, trace)
    if not accepted:
        accepted = _rescue(rgb, found, trace)
    elif s < TILE_TRIGGER_SCALE and min(d.box[2] - d.box[0] for d in accepted) * s < TILE_TRIGGER_FACE:
        # a large photo with small faces (a crowd, a group far away): look again at higher resolution
        accepted += _verify(rgb, _tiles(rgb), trace)
    accepted = nms(accepted)
    for d in accepted:
        if d.landmarks is None:
            d.landmarks = fit_landmarks(rgb, d.box)
    return accepted


def _tiles(rgb: np.ndarray) -> list[Det]:
    """HOG (upsampled once) over overlapping tiles of a copy at up to TILE_IMAGE_SIDE px."""
    h, w = rgb.shape[:2]
    k = min(1.0, TILE_IMAGE_SIDE / max(h, w))
    big = resize(rgb, k)
    H, W = big.shape[:2]
    step = TILE_SIDE - TILE_OVERLAP
    dets = []
    for y0 in range(0, max(H - TILE_OVERLAP, 1), step):
        for x0 in range(0, max(W - TILE_OVERLAP, 1), step):
            tile = np.ascontiguousarray(big[y0:y0 + TILE_SIDE, x0:x0 + TILE_SIDE])
            for l, t, r, b, sc, i in hog_raw(tile, 1):
                box = (np.array([l, t, r, b], np.float64) + [x0, y0, x0, y0]) / k
                dets.append(Det(box, sc, "hog-tile", extra={"sub": i}))
    return dets


def _verify(rgb: np.ndarray, dets: list[Det], trace, rescue: bool = False) -> list[Det]:
    out = []
    weak = 0
    for d in nms(dets):
        if d.detector.startswith("mmod"):
            d.verified = "mmod" if d.score >= MMOD_ACCEPT else "mmod+hog" if d.extra.get("agree") else ""
        elif d.score >= HOG_ACCEPT and not rescue:
            d.verified = "hog"
        else:
            weak += 1
            if weak > MAX_VERIFY:
                continue
            verify = d.extra.pop("verify", None)  # rotated hits are checked in their rotated copy
            conf = verify() if verify else mmod_confirms(rgb, d.box)
            d.extra["mmod"] = conf
            d.verified = "hog+mmod" if conf >= MMOD_VERIFY else ""
        if not d.verified:
            continue
        if d.landmarks is None:
            d.landmarks = fit_landmarks(rgb, d.box)
        if d.angle == 0 and not landmarks_plausible(d.landmarks, d.box):
            d.verified = ""
            continue
        out.append(d)
    return out


def _rescue(rgb: np.ndarray, main: list[Det], trace) -> list[Det]:
    """Second chance for images where the fast pass accepted nothing; cheap passes first, MMOD last."""
    h, w = rgb.shape[:2]
    p = int(RESCUE_PAD * max(h, w))
    k = RESCUE_SIDE / (max(h, w) + 2 * p)
    padded = pad(rgb, p)
    small = resize(padded, k)
    dets: list[Det] = []
    for l, t, r, b, sc, i in hog_raw(small, 0):
        dets.append(Det(np.array([l, t, r, b], np.float64) / k - p, sc, "hog-pad", extra={"sub": i}))
    dets += _rotated(rgb)
    accepted = _verify(rgb, dets, trace, rescue=True)
    if not accepted and (dets or main):
        # frame-filling or turned faces: MMOD on a small padded copy, only where some HOG pass saw a
        # face-like candidate (MMOD costs more than the main pass; on the shared data every MMOD
        # rescue had one, and no-face images mostly have none)
        km = MMOD_SIDE / (max(h, w) + 2 * p)
        tiny = resize(padded, km)
        mm = [Det(np.array([l, t, r, b], np.float64) / km - p, c, "mmod") for l, t, r, b, c in mmod_raw(tiny)]
        for d in mm:  # a weak MMOD hit where HOG also saw a face: both detectors agree
            if d.score >= MMOD_AGREE and any(h.score >= HOG_AGREE and iou(d.box, h.box) >= 0.3 for h in dets + main):
                d.extra["agree"] = True
        accepted = _verify(rgb, mm, trace, rescue=True)
        dets += mm
    if trace is not None:
        trace.setdefault("rescue", []).extend(dets)
    return accepted


def _rotated(rgb: np.ndarray) -> list[Det]:
    """Tilted heads: HOG on copies rotated by +-ROT_ANGLE (long side ROT_SIDE, no upsampling)."""
    h, w = rgb.shape[:2]
    s = ROT_SIDE / max(h, w)
    work = resize(rgb, s)
    dets = []
    for ang in (ROT_ANGLE, -ROT_ANGLE):
        rimg, M = rotate(work, ang)
        for l, t, r, b, sc, i in hog_raw(rimg, 0):
            rb = np.array([l, t, r, b], np.float64)
            lm_r = fit_landmarks(rimg, rb)
            if not landmarks_plausible(lm_r, rb):
                continue
            lm = (lm_r @ M[:, :2].T + M[:, 2]) / s
            cx, cy = (np.array([(l + r) / 2, (t + b) / 2]) @ M[:, :2].T + M[:, 2]) / s
            half = (r - l) / 2 / s
            box = np.array([cx - half, cy - half, cx + half, cy + half])
            d = Det(box, sc, f"hog-rot{ang:+.0f}", angle=ang, landmarks=lm, extra={"sub": i})
            d.extra["verify"] = lambda rimg=rimg, rb=rb: mmod_confirms(rimg, rb)  # checked upright
            dets.append(d)
    return dets
