"""Per-image work shared by ``analyze`` (in memory) and the scan workers (stored copies).

Workers return plain data (numbers, lists, encoded bytes) so any engine can ship it back;
only the parent process touches the catalog.
"""

from __future__ import annotations

import io
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import imageio
from ..imageio import encode_jpeg, encode_png
from . import align, cascade, quality
from .embed import _torch_ok, embed_chips, worker_threads

DECODE_SIDE = 1600   # JPEG draft decoding keeps at least this long side (chips need face resolution)

# -- detection (issue #11) --------------------------------------------------------------------
# ``centerface`` / ``yunet``: CNN detectors (scan/cnn_detectors.py) with dlib-convention landmarks
# from dlib's predictor in the CNN box (chips stay compatible with the dlib ResNet); ``cascade``: the
# dlib HOG/MMOD cascade (scan/cascade.py). Numbers behind the default: bench/results/detect_cv.md.
DETECTORS = ("centerface", "yunet", "cascade")
DEFAULT_DETECTOR = "centerface"
CNN_THRESHOLD = 0.5
# The real-human-face verifier (scan/verify.py): 'full' = embedding + chip statistics + EfficientNet-Lite0 of
# the crop + MobileNetV2 of a 2.5x context square and of the whole image (2 CNN passes per face + 1 per image),
# 'fast' = embedding + chip statistics (~1 ms/face, no torch), 'auto' = 'fast' first, 'full' only for faces
# 'fast' gives P(real) < AUTO_SURE; 'off'. Without torch, full/auto run 'fast'. 'auto' is the default.
# Held-out CV (bench/results/face_verifier.md, det. 0.5): auto = full (the full head's logit averaged with the
# fast head's) rejects 93.0% of no-face images (before: 91.9%), finds 92.7% of real faces in pets/memes/hard
# photos and 99.8% of portraits.
VERIFIERS = ("auto", "full", "fast", "off")
DEFAULT_VERIFIER = "auto"
AUTO_SURE = 0.5
NOT_REAL = "not_real_face"
# No real face upright: look again a quarter turn left and right (sideways photos whose orientation tag was lost).
# bench/results/robustness.md: faces turned 90 degrees 80.7% found upright only, 98.7% with the turns; off by
# default because no-face images pay two more detector passes (bench/results/quarter_turns.md: 1.8x CPU there).
QUARTER_TURNS = False
UPRIGHT_MIN = 0.5   # a turn is kept only when its best real face has P(upright) >= this (scan/verify.p_upright)


def check_options(detector: str, verifier: str) -> None:
    from ..errors import UsageError

    if detector not in DETECTORS:
        raise UsageError(f"unknown detector {detector!r}: choose one of {', '.join(DETECTORS)}")
    if verifier not in VERIFIERS:
        raise UsageError(f"unknown verifier {verifier!r}: choose one of {', '.join(VERIFIERS)}")


def find(rgb: np.ndarray, detector: str = DEFAULT_DETECTOR) -> list[cascade.Det]:
    """Faces with dlib-convention landmarks, by the named detector."""
    if detector == "cascade":
        return cascade.find_faces(rgb)
    from .cnn_detectors import find_faces_cnn

    return find_faces_cnn(rgb, detector=detector, threshold=CNN_THRESHOLD)


def _verify(verifier: str, chips: list, crops: list, embs, rgb: np.ndarray | None = None,
            boxes: list | None = None) -> list[tuple[bool, str, float]]:
    """(real, kind, P(real)) per face; everything real when the verifier is off.

    ``rgb`` + ``boxes`` ((l, t, r, b) per face) are for weights with context blocks (verify.cnn_blocks).
    """
    if verifier == "off" or embs is None or not len(chips):
        return [(True, "real", 1.0)] * len(chips)
    from . import verify

    if verifier in ("full", "auto") and not _torch_ok():
        verifier = "fast"
    todo = list(range(len(chips)))
    out: list = [None] * len(chips)
    if verifier in ("fast", "auto"):
        v = verify.load(str(verify.WEIGHTS_FAST))
        X = np.stack([verify.face_features(c, None, e, v.blocks) for c, e in zip(chips, embs)])
        for i, r in enumerate(v.predict(X)):
            out[i] = r
        if verifier == "fast":
            return out
        todo = [i for i in todo if out[i][2] < AUTO_SURE]  # only faces 'fast' is unsure about
        if not todo:
            return out
    v = verify.load()
    if any(b in verify.CNN_BLOCKS for b in v.blocks) and any(crops[i] is None for i in todo):
        raise ValueError("the full verifier needs the 224 px crops")
    cnn = verify.cnn_blocks(v.blocks, [crops[i] for i in todo], rgb,
                            None if boxes is None else [boxes[i] for i in todo])
    X = np.stack([verify.face_features(chips[i], crops[i], embs[i], v.blocks,
                                       extra={b: f[j] for b, f in cnn.items()})
                  for j, i in enumerate(todo)])
    for i, r in zip(todo, v.predict(X)):
        out[i] = r
    return out


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
    status: str = "ok"                           # ok | low_quality | not_real_face
    kind: str = "real"                           # verifier's verdict: real | cartoon | painting | ...
    p_real: float = 1.0                          # verifier's P(real) (1.0 when it is off)
    turned: int = 0                              # degrees the image was turned (counter-clockwise) to find it

    def to_dict(self) -> dict:
        return {"box": [round(v, 1) for v in self.box], "score": round(self.score, 4),
                "landmarks": np.round(self.landmarks, 1).tolist(), "quality": self.quality,
                "is_main": self.is_main, "detector": self.detector, "status": self.status,
                "kind": self.kind, "p_real": round(self.p_real, 4), "turned": self.turned}


def prominence(box_xywh, shape) -> float:
    """Main-subject rule: sqrt(area) discounted by distance from the image centre (up to 50% off)."""
    x, y, w, h = box_xywh
    H, W = shape[:2]
    dx = (x + w / 2 - W / 2) / (W / 2)
    dy = (y + h / 2 - H / 2) / (H / 2)
    d = min(1.0, math.hypot(dx, dy) / math.sqrt(2))
    return math.sqrt(max(w * h, 0.0)) * (1.0 - 0.5 * d)


def analyze_rgb(rgb: np.ndarray, *, embed: bool = True, crops: bool = True, timings: dict | None = None,
                detector: str = DEFAULT_DETECTOR, verifier: str = DEFAULT_VERIFIER,
                quarter_turns: bool = QUARTER_TURNS) -> list[FaceResult]:
    """Every face, main subject first. Faces the verifier calls not real keep status 'not_real_face'.

    The verifier needs the embedding (and, for 'full', the crops): with ``embed=False`` it is off.
    ``quarter_turns``: when no real face is found upright, look again with the image turned a quarter either
    way (sideways photos whose orientation tag was lost); boxes and landmarks come back in this image's
    pixels, the chips upright.
    """
    out = _analyze_upright(rgb, embed, crops, timings, detector, verifier)
    if quarter_turns and embed and detector != "cascade" and not any(f.status != NOT_REAL for f in out):
        turned = _quarter_turns(rgb, out, embed, crops, timings, detector, verifier)
        if turned:
            for f in out:
                f.is_main = False
            return turned + out
    return out


def _quarter_turns(rgb, upright: list[FaceResult], *args) -> list[FaceResult]:
    """The faces of the better quarter turn, main subject first, in ``rgb``'s pixels; [] when neither helps.

    In a sideways photo one turn is upright and the other upside down, and detector and verifier accept
    upside-down faces too, so the turn whose best real face looks most upright wins, if it does. Only faces
    lying sideways in the photo count, and only where the turn sees them more upright than the upright pass
    did: a face upright in the photo was already judged as it is (a turn is no second try at the verifier,
    which an upright painting seen sideways, through a frontal landmark fit, can fool).
    """
    from .cascade import iou
    from .verify import p_upright

    def ltrb(f):
        x, y, w, h = f.box
        return (x, y, x + w, y + h)

    def up(faces):
        return p_upright([f.embedding for f in faces]) if faces else np.zeros(0)

    seen = list(zip(map(ltrb, upright), up(upright)))
    best, best_p = [], UPRIGHT_MIN
    for k in (1, -1):
        faces = [_turned_back(f, k, rgb.shape)
                 for f in _analyze_upright(np.ascontiguousarray(np.rot90(rgb, k)), *args)]
        faces = [f for f, p in zip(faces, up(faces)) if _sideways(f.landmarks)
                 and not any(iou(ltrb(f), b) >= 0.3 and q >= p for b, q in seen)]
        real = [f for f in faces if f.status != NOT_REAL]
        p = float(up(real).max()) if real else 0.0
        if p >= best_p:
            best, best_p = faces, p
    if best:
        main = max((f for f in best if f.status != NOT_REAL), key=lambda f: prominence(f.box, rgb.shape))
        for f in best:
            f.is_main = f is main
        best.sort(key=lambda f: not f.is_main)
    return best


def _sideways(landmarks) -> bool:
    """The eye line (dlib 5 points: 0-1 one eye, 2-3 the other) is steeper than 45 degrees."""
    lm = np.asarray(landmarks, np.float64)
    dx, dy = lm[2:4].mean(0) - lm[0:2].mean(0)
    return abs(dy) > abs(dx)


def _turned_back(f: FaceResult, k: int, shape) -> FaceResult:
    """A face found in ``np.rot90(image, k)`` (k = 1: turned left, -1: right) in the image's own pixels."""
    H, W = shape[:2]
    x, y, w, h = f.box
    lm = np.asarray(f.landmarks, np.float64)
    if k == 1:  # rot90 left: (x, y) -> (y, W - 1 - x)
        f.box = (W - y - h, x, h, w)
        f.landmarks = np.stack([W - 1 - lm[:, 1], lm[:, 0]], 1)
    else:       # rot90 right: (x, y) -> (H - 1 - y, x)
        f.box = (y, H - x - w, h, w)
        f.landmarks = np.stack([lm[:, 1], H - 1 - lm[:, 0]], 1)
    f.turned = 90 * k
    return f


def _analyze_upright(rgb: np.ndarray, embed: bool, crops: bool, timings: dict | None, detector: str,
                     verifier: str) -> list[FaceResult]:
    t0 = time.perf_counter()
    dets = find(rgb, detector)
    t1 = time.perf_counter()
    if not dets:
        _add(timings, detect=t1 - t0)
        return []
    shapes = [align.shape_of(d.landmarks, d.box) for d in dets]
    chips = align.chips(rgb, shapes, align.CHIP_SIZE, align.CHIP_PADDING)
    need_crops = crops or (embed and verifier in ("full", "auto"))
    big = align.chips(rgb, shapes, align.CROP_SIZE, align.CROP_PADDING) if need_crops else [None] * len(dets)
    t2 = time.perf_counter()
    embs = embed_chips(chips) if embed else None
    t3 = time.perf_counter()
    verdicts = _verify(verifier if embed else "off", chips, big, embs, rgb, [d.box for d in dets])
    t4 = time.perf_counter()
    out = []
    for i, (d, chip, crop) in enumerate(zip(dets, chips, big)):
        l, t, r, b = (float(v) for v in d.box)
        q = quality.measure(chip, (r - l, b - t), d.landmarks, d.extra.get("cnn_landmarks"))
        real, kind, p = verdicts[i]
        out.append(FaceResult((l, t, r - l, b - t), float(d.score), d.landmarks.astype(np.float64),
                              None if embs is None else embs[i], chip, crop if crops else None, q,
                              detector=d.detector, status=quality.status(q) if real else NOT_REAL,
                              kind=kind, p_real=p))
    # main subject: most prominent face, preferring real faces, then faces that are not low quality
    best = max(range(len(out)), key=lambda i: (out[i].status != NOT_REAL, out[i].status == "ok",
                                               prominence(out[i].box, rgb.shape)))
    out[best].is_main = True
    out.sort(key=lambda f: (not f.is_main, -prominence(f.box, rgb.shape)))
    _add(timings, detect=t1 - t0, align=t2 - t1, embed=t3 - t2, verify=t4 - t3,
         quality=time.perf_counter() - t4)
    return out


def no_face_reason(faces: list[FaceResult] | list[dict]) -> str | None:
    """Why an image has no usable face (None when one is real): no detection, or only not-real ones."""
    if not faces:
        return "no human face found"
    kinds = [f.kind if isinstance(f, FaceResult) else f["kind"] for f in faces]
    stats = [f.status if isinstance(f, FaceResult) else f["status"] for f in faces]
    if all(s == NOT_REAL for s in stats):
        return "no real human face: " + ", ".join(sorted(set(kinds)))
    return None


def _add(timings: dict | None, **kw) -> None:
    if timings is not None:
        for k, v in kw.items():
            timings[k] = timings.get(k, 0.0) + v


def decode(src: bytes | str | Path, max_side: int = DECODE_SIDE, *,
           max_pixels: int | None = imageio.DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, float]:
    """Decode once to RGB; big JPEGs use draft mode (DCT scaling). Returns (rgb, original/decoded scale).

    The shared budget (``imageio.check_dims``: pixels and aspect ratio, from the header, before any pixel is
    decoded; raises ``imageio.Rejected``), then the copy is at most ``imageio.WORK_MAX_SIDE`` on its long side,
    so detection's working copies stay bounded whatever the input. ``max_pixels=None`` (scan's stored copies,
    which passed ingest's own ``--max-pixels``): only the aspect cap applies.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning: our budget decides, never printed raw
        f = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else open(src, "rb")
        with f, Image.open(f) as im:
            W, H = im.size
            imageio.check_dims(W, H, min_side=1, max_pixels=W * H if max_pixels is None else max_pixels)
            if im.format == "JPEG" and max(W, H) > max_side:
                k = max_side / max(W, H)
                im.draft("RGB", (math.ceil(W * k), math.ceil(H * k)))
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                out = Image.alpha_composite(bg, rgba).convert("RGB")
            else:
                out = im.convert("RGB")
            w, h = out.size
            s = imageio.work_scale(w, h)
            if s < 1.0:
                out = out.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BOX)
            rgb = np.asarray(out)
    return rgb, W / rgb.shape[1]


_WORKER_READY = False


def process(task: tuple) -> dict:
    """Worker entry point: (image_id, path-or-bytes[, options]) -> plain result dict (never raises).

    ``options`` (a dict shipped with each task, so every engine runs the same settings):
    ``detector``, ``verifier`` and ``quarter_turns`` as in :func:`analyze_rgb`.
    """
    global _WORKER_READY
    if not _WORKER_READY:
        worker_threads(1)
        _WORKER_READY = True
    image_id, src, *rest = task
    opts = rest[0] if rest else {}
    detector = opts.get("detector", DEFAULT_DETECTOR)
    verifier = opts.get("verifier", DEFAULT_VERIFIER)
    turns = bool(opts.get("quarter_turns", QUARTER_TURNS))
    timings: dict = {}
    t0 = time.perf_counter()
    try:
        rgb, k = decode(src, max_pixels=None)  # a stored copy: it passed ingest's --max-pixels already
        timings["decode"] = time.perf_counter() - t0
        faces = analyze_rgb(rgb, timings=timings, detector=detector, verifier=verifier, quarter_turns=turns)
    except imageio.Rejected as r:  # over the shared pixel / aspect budget (imageio.check_dims)
        return {"image_id": image_id, "status": "error", "reason": f"{r.code}: {r.reason}"[:300],
                "faces": [], "timings": timings}
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
            "quality": q, "status": quality.status(q) if f.status != NOT_REAL else NOT_REAL,
            "kind": f.kind, "p_real": f.p_real,
            "is_main": f.is_main,
            "embedding": f.embedding.astype(np.float32).tobytes(),
            "chip": encode_png(f.chip), "crop": encode_jpeg(f.crop),
        })
    timings["encode"] = time.perf_counter() - t1
    reason = no_face_reason(recs)
    return {"image_id": image_id, "status": "no_face" if reason else "ok",
            "reason": reason, "faces": recs, "timings": timings}
