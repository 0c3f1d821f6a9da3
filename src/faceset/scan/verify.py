"""Is a detected face a photographed human face? A tiny head over features scan already has.

Every face detector also fires on drawn, painted, rendered and sculpted faces, dolls, masks and
animals. This module answers the second question per detected face:

    feats = face_features(chip, crop, embedding)          # float32[n_features]
    real, kind, score = is_real_face(feats)                # (bool, 'real' | 'cartoon' | ..., P(real))

Features (``FEATURES`` lists the blocks; the shipped weight file says which it uses):

- ``embedding``: the 128-D dlib identity embedding (already computed for every face);
- ``stats``: colour and texture statistics of the 150 px chip (skin-colour fraction, saturation,
  colour count / entropy, gradient and Laplacian statistics, sensor-noise residual, an LBP histogram);
  ~1 ms per face with numpy;
- ``mobilenet``: MobileNetV2 ImageNet features (1280-D, pooled) of the 224 px crop
  (``faceset.train.backbones``; weights ship in a package); torch needed, ~10-20 ms per face on CPU;
  ``mobilenet_flip`` / ``mobilenet_tta``: of the mirrored crop / the mean of both;
- ``effnet``: EfficientNet-Lite0 features of the crop;
- ``mobilenet_ctx``: MobileNetV2 of a square 2.5x the detector box around the face (canvas, frame, plinth,
  a drawn body), ``mobilenet_img``: of the whole image squashed to 224 px (once per image).
  Context blocks need the image and the box (``cnn_blocks(blocks, crops, rgb, boxes)``).

Shipped (bench/results/face_verifier.md): ``face_verifier.npz`` = embedding+stats+effnet+mobilenet_ctx+
mobilenet_img stacked with the fast head (``Verifier.stack``: the two heads' logits averaged),
``face_verifier_fast.npz`` = embedding+stats.

The head is a multinomial logistic regression (classes: real + the non-real kinds), trained by
``bench/train_face_verifier.py`` with source- and person-disjoint cross-validation on ../shared/data and
shipped as ``weights/face_verifier.npz`` (standardisation + coefficients, a few tens of KB).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

WEIGHTS = Path(__file__).with_name("weights") / "face_verifier.npz"            # embedding+stats+mobilenet
WEIGHTS_FAST = Path(__file__).with_name("weights") / "face_verifier_fast.npz"  # embedding+stats (no torch)
BLOCK_DIMS = {"embedding": 128, "stats": 40, "mobilenet": 1280, "mobilenet_flip": 1280, "mobilenet_tta": 1280,
              "mobilenet_ctx": 1280, "mobilenet_img": 1280, "effnet": 1280}
FEATURES = ("embedding", "stats", "mobilenet")
KINDS = ("real", "cartoon", "painting", "render", "sculpture", "object", "animal")
STATS_NAMES = (
    "r_mean g_mean b_mean r_std g_std b_std cb_mean cb_std cr_mean cr_std sat_mean sat_std sat_hi "
    "skin_frac grey_dev colours_log colour_entropy grad_mean grad_std grad_p50 grad_p90 grad_p99_ratio "
    "flat_frac edge_frac lap_logvar lap_kurt_log noise_std noise_flat_std bright_mean bright_std "
    "lbp0 lbp1 lbp2 lbp3 lbp4 lbp5 lbp6 lbp7 lbp8 lbp9"
).split()


class VerifierUnavailable(RuntimeError):
    """The weight file is missing or needs a feature block that cannot be computed here."""


# -- features ---------------------------------------------------------------------------------
def _lbp_riu2(g: np.ndarray) -> np.ndarray:
    """Rotation-invariant uniform LBP (P=8, R=1) histogram, 10 bins, normalised."""
    c = g[1:-1, 1:-1]
    nb = [g[:-2, :-2], g[:-2, 1:-1], g[:-2, 2:], g[1:-1, 2:], g[2:, 2:], g[2:, 1:-1], g[2:, :-2], g[1:-1, :-2]]
    bits = np.stack([(n >= c) for n in nb]).astype(np.int8)
    trans = np.abs(np.diff(np.concatenate([bits, bits[:1]]), axis=0)).sum(0)
    ones = bits.sum(0)
    code = np.where(trans <= 2, ones, 9)
    h = np.bincount(code.ravel(), minlength=10).astype(np.float64)
    return h / max(h.sum(), 1.0)


def chip_stats(chip: np.ndarray) -> np.ndarray:
    """Colour / texture statistics of the face region of a 150 px aligned chip (float32[40])."""
    a = np.asarray(chip, dtype=np.float32)
    n = a.shape[0]
    m = n // 6
    a = a[m:n - m, m:n - m]  # the face, not the (often black) padding
    r, g_, b = a[..., 0], a[..., 1], a[..., 2]
    y = 0.299 * r + 0.587 * g_ + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g_ + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g_ - 0.081312 * b
    mx, mn = a.max(2), a.min(2)
    sat = (mx - mn) / np.maximum(mx, 1.0)
    skin = ((cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)).mean()
    grey_dev = (np.abs(r - g_) + np.abs(g_ - b)).mean() / 255.0
    q = (a.astype(np.int32) >> 3)
    codes = (q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]
    colours = np.unique(codes).size / codes.size
    q4 = (a.astype(np.int32) >> 4)
    h = np.bincount(((q4[..., 0] << 8) | (q4[..., 1] << 4) | q4[..., 2]).ravel(), minlength=4096).astype(np.float64)
    p = h[h > 0] / h.sum()
    entropy = float(-(p * np.log2(p)).sum())
    gx, gy = np.diff(y, axis=1)[:-1], np.diff(y, axis=0)[:, :-1]
    gm = np.hypot(gx, gy)
    lap = -4 * y[1:-1, 1:-1] + y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:]
    lv = float(lap.var())
    kurt = float(((lap - lap.mean()) ** 4).mean() / max(lv, 1e-6) ** 2)
    blur = (y[:-2, :-2] + y[:-2, 1:-1] + y[:-2, 2:] + y[1:-1, :-2] + y[1:-1, 1:-1] + y[1:-1, 2:]
            + y[2:, :-2] + y[2:, 1:-1] + y[2:, 2:]) / 9.0
    res = y[1:-1, 1:-1] - blur
    flat = gm[:res.shape[0], :res.shape[1]] < 4
    p50, p90, p99 = np.percentile(gm, [50, 90, 99])
    feats = [r.mean() / 255, g_.mean() / 255, b.mean() / 255, r.std() / 255, g_.std() / 255, b.std() / 255,
             cb.mean() / 255, cb.std() / 255, cr.mean() / 255, cr.std() / 255, sat.mean(), sat.std(),
             (sat > 0.6).mean(), skin, grey_dev, np.log(colours + 1e-4), entropy / 12.0,
             np.log1p(gm.mean()), np.log1p(gm.std()), np.log1p(p50), np.log1p(p90),
             np.log1p(p99 / max(gm.mean(), 1e-3)),
             (gm < 2).mean(), (gm > 40).mean(), np.log1p(lv), np.log(kurt + 1e-3), np.log1p(res.std()),
             np.log1p(res[flat].std()) if flat.sum() > 20 else 0.0, y.mean() / 255, y.std() / 255]
    return np.concatenate([np.asarray(feats, np.float64), _lbp_riu2(y)]).astype(np.float32)


@lru_cache(maxsize=None)
def _backbone(name: str = "mobilenet_v2"):
    import torch

    from ..train.backbones import create

    bb = create(name)
    mean = torch.tensor(bb.mean).view(1, 3, 1, 1)
    std = torch.tensor(bb.std).view(1, 3, 1, 1)
    return bb.net.eval(), mean, std


def _mobilenet():
    return _backbone("mobilenet_v2")


def backbone_features(images: list[np.ndarray], name: str = "mobilenet_v2") -> np.ndarray:
    """float32[n, 1280] ImageNet features (``faceset.train.backbones``) of 224 px RGB images (batched)."""
    import torch

    if not len(images):
        return np.zeros((0, 1280), np.float32)
    net, mean, std = _backbone(name)
    x = torch.from_numpy(np.stack([np.asarray(c, np.uint8) for c in images])).permute(0, 3, 1, 2).float() / 255.0
    with torch.inference_mode():
        return net((x - mean) / std).numpy().astype(np.float32)


def mobilenet_features(crops: list[np.ndarray]) -> np.ndarray:
    """float32[n, 1280] MobileNetV2 ImageNet features of 224 px face crops (batched)."""
    return backbone_features(crops, "mobilenet_v2")


def context_crop(rgb: np.ndarray, box, scale: float = 2.5, size: int = 224) -> np.ndarray:
    """A square ``scale`` x the (l, t, r, b) box around its centre, resized to ``size`` (outside: black).

    What surrounds a face (canvas, frame, plinth, a drawn body, fur) tells photos from art better than
    the aligned face alone.
    """
    from PIL import Image

    l, t, r, b = (float(v) for v in box)
    cx, cy = (l + r) / 2, (t + b) / 2
    half = scale * max(r - l, b - t, 1.0) / 2
    im = Image.fromarray(np.ascontiguousarray(rgb))
    c = im.crop((int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half))))
    return np.asarray(c.resize((size, size), Image.BILINEAR))


def image_thumb(rgb: np.ndarray, size: int = 224) -> np.ndarray:
    """The whole image squashed to ``size`` x ``size`` (its look as a whole: photo, drawing, render)."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((size, size), Image.BILINEAR))


CNN_BLOCKS = ("mobilenet", "mobilenet_flip", "mobilenet_tta", "mobilenet_ctx", "mobilenet_img", "effnet")


def cnn_blocks(blocks, crops: list, rgb: np.ndarray | None = None, boxes: list | None = None) -> dict:
    """The CNN feature blocks in ``blocks`` for n faces at once: {block: float32[n, 1280]}.

    ``crops``: the 224 px aligned crops; ``rgb`` + ``boxes`` ((l, t, r, b) per face): the image, for the
    context crop (``mobilenet_ctx``) and the whole-image block (``mobilenet_img``, computed once).
    """
    need = [b for b in blocks if b in CNN_BLOCKS]
    out: dict = {}
    n = len(crops)
    if not need or not n:
        return out
    if any(b in ("mobilenet_ctx", "mobilenet_img") for b in need) and (rgb is None or boxes is None):
        raise VerifierUnavailable("the verifier needs the image and the face boxes (context features)")
    if any(b in ("mobilenet", "mobilenet_flip", "mobilenet_tta", "effnet") for b in need) and any(
            c is None for c in crops):
        raise VerifierUnavailable("the verifier needs the 224 px crop")
    if any(b in ("mobilenet", "mobilenet_tta") for b in need):
        out["mobilenet"] = backbone_features(crops)
    if any(b in ("mobilenet_flip", "mobilenet_tta") for b in need):
        out["mobilenet_flip"] = backbone_features([np.ascontiguousarray(c[:, ::-1]) for c in crops])
    if "mobilenet_tta" in need:
        out["mobilenet_tta"] = (out["mobilenet"] + out["mobilenet_flip"]) / 2
    if "mobilenet_ctx" in need:
        out["mobilenet_ctx"] = backbone_features([context_crop(rgb, b) for b in boxes])
    if "mobilenet_img" in need:
        out["mobilenet_img"] = np.repeat(backbone_features([image_thumb(rgb)]), n, 0)
    if "effnet" in need:
        out["effnet"] = backbone_features(crops, "efficientnet_lite0")
    return out


def face_features(chip: np.ndarray, crop: np.ndarray | None, embedding: np.ndarray | None,
                  blocks: tuple[str, ...] | None = None, mobilenet: np.ndarray | None = None, *,
                  rgb: np.ndarray | None = None, box=None, extra: dict | None = None) -> np.ndarray:
    """Concatenated feature vector of one face in the order of ``blocks`` (default: the shipped model's).

    CNN blocks come from ``extra`` ({block: vector}, e.g. one row of :func:`cnn_blocks`), ``mobilenet``,
    or are computed here from ``crop`` (and ``rgb`` + the face's (l, t, r, b) ``box`` for context blocks).
    """
    blocks = tuple(blocks or load().blocks)
    extra = dict(extra or {})
    if mobilenet is not None:
        extra.setdefault("mobilenet", mobilenet)
    missing = [b for b in blocks if b in CNN_BLOCKS and b not in extra]
    if missing:
        got = cnn_blocks(missing, [crop], rgb, None if box is None else [box])
        extra.update({k: v[0] for k, v in got.items()})
    parts = []
    for b in blocks:
        if b == "embedding":
            if embedding is None:
                raise VerifierUnavailable("the verifier needs the face's 128-D embedding")
            parts.append(np.asarray(embedding, np.float32).ravel())
        elif b == "stats":
            parts.append(chip_stats(chip))
        elif b in CNN_BLOCKS:
            parts.append(np.asarray(extra[b], np.float32).ravel())
        else:
            raise ValueError(f"unknown feature block {b!r}")
    return np.concatenate(parts)


# -- the head --------------------------------------------------------------------------------
def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


class Verifier:
    """Standardise, then a multinomial logistic regression; P(real) >= threshold means real.

    ``stack`` (optional): a second head over the first ``stack.n_features`` features (the fast head's
    embedding+stats, which lead the full feature vector) and a weight ``a``: P(real) is then
    sigmoid(a * logit(P_sub) + (1 - a) * logit(P_own)), the two heads' evidence added in logit space (the
    full head sees context and texture, the fast one identity and colour; they err on different faces).
    """

    def __init__(self, blocks, classes, mean, scale, coef, intercept, threshold, meta=None,
                 stack: "tuple[Verifier, float] | None" = None):
        self.blocks = tuple(blocks)
        self.classes = tuple(classes)
        self.mean, self.scale = np.asarray(mean, np.float64), np.asarray(scale, np.float64)
        self.coef, self.intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)
        self.threshold = float(threshold)
        self.meta = meta or {}
        self.stack = stack
        if stack is not None and self.blocks and tuple(self.blocks[:len(stack[0].blocks)]) != tuple(stack[0].blocks):
            raise ValueError(f"stacked head's blocks {stack[0].blocks} must lead {self.blocks}")

    @property
    def n_features(self) -> int:
        return self.mean.size

    def proba(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, np.float64))
        if X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features ({'+'.join(self.blocks)}), got {X.shape[1]}")
        z = ((X - self.mean) / self.scale) @ self.coef.T + self.intercept
        if z.shape[1] == 1:  # binary
            p = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1 - p, p], 1)
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def p_real(self, X: np.ndarray) -> np.ndarray:
        own = self.proba(X)[:, self.classes.index("real")]
        if self.stack is None:
            return own
        sub, a = self.stack
        X = np.atleast_2d(np.asarray(X, np.float64))
        z = a * _logit(sub.p_real(X[:, :sub.n_features])) + (1 - a) * _logit(own)
        return 1.0 / (1.0 + np.exp(-z))

    def predict(self, X: np.ndarray) -> list[tuple[bool, str, float]]:
        P = self.proba(X)
        ri = self.classes.index("real")
        pr = self.p_real(X)
        out = []
        for p, q in zip(P, pr):
            real = bool(q >= self.threshold)
            if real:
                kind = "real"
            else:
                others = [(p[i], c) for i, c in enumerate(self.classes) if i != ri]
                kind = max(others)[1] if others else "not_real"
            out.append((real, kind, float(q)))
        return out

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"blocks": list(self.blocks), "classes": list(self.classes), "threshold": self.threshold, **self.meta}
        arrays = {}
        if self.stack is not None:
            sub, a = self.stack
            meta["stack"] = {"a": float(a), "blocks": list(sub.blocks), "classes": list(sub.classes)}
            arrays = {"sub_mean": sub.mean.astype(np.float32), "sub_scale": sub.scale.astype(np.float32),
                      "sub_coef": sub.coef.astype(np.float32), "sub_intercept": sub.intercept.astype(np.float32)}
        np.savez_compressed(path, mean=self.mean.astype(np.float32), scale=self.scale.astype(np.float32),
                            coef=self.coef.astype(np.float32), intercept=self.intercept.astype(np.float32),
                            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)

    @classmethod
    def from_file(cls, path: Path) -> "Verifier":
        if not Path(path).exists():
            raise VerifierUnavailable(f"verifier weights missing: {path} (run bench/train_face_verifier.py)")
        z = np.load(path)
        meta = json.loads(bytes(z["meta"]).decode())
        stack = None
        if "stack" in meta:
            st = meta.pop("stack")
            stack = (cls(st["blocks"], st["classes"], z["sub_mean"], z["sub_scale"], z["sub_coef"], z["sub_intercept"],
                         0.5), float(st["a"]))
        return cls(meta.pop("blocks"), meta.pop("classes"), z["mean"], z["scale"], z["coef"], z["intercept"],
                   meta.pop("threshold"), meta, stack=stack)


@lru_cache(maxsize=None)
def load(path: str | None = None) -> Verifier:
    """The shipped verifier (cached)."""
    return Verifier.from_file(Path(path) if path else WEIGHTS)


def is_real_face(features: np.ndarray, *, threshold: float | None = None,
                 weights: str | Path | None = None) -> tuple[bool, str, float]:
    """(is a photographed human face, kind, P(real)) for one face's ``face_features`` vector.

    ``kind`` is ``'real'`` or the most likely non-real kind (cartoon, painting, render, sculpture,
    object, animal): what a ``not_real_face`` reason would name. ``weights``: another weight file
    (e.g. ``WEIGHTS_FAST``); its feature blocks must match how ``features`` was built.
    """
    v = load(str(weights) if weights else None)
    real, kind, p = v.predict(np.asarray(features)[None])[0]
    if threshold is not None and (p >= threshold) != real:
        real = p >= threshold
        kind = "real" if real else max((q, c) for q, c in zip(v.proba(np.asarray(features)[None])[0], v.classes)
                                       if c != "real")[1]
    return real, kind, p


UPRIGHT = Path(__file__).with_name("weights") / "upright.npz"  # bench/train_upright.py


@lru_cache(maxsize=None)
def _upright_weights() -> tuple[np.ndarray, float]:
    z = np.load(UPRIGHT)
    return z["coef"].astype(np.float64), float(z["intercept"])


def p_upright(embeddings) -> np.ndarray:
    """P(the chip is upright, not turned 90 / 180 / 270 degrees) per 128-D dlib embedding (bench/results/upright.md).

    The detector and the verifier both accept upside-down faces; the quarter-turn rescue asks this to tell
    the right turn of a sideways photo from the wrong one.
    """
    X = np.atleast_2d(np.asarray(embeddings, np.float64))
    w, b = _upright_weights()
    return 1.0 / (1.0 + np.exp(-(X @ w + b)))
