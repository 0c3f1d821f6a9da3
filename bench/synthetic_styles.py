"""Synthetic training images for the face verifier, made from real portraits with PIL + numpy only.

Negatives: painted (oil, airbrushed digital painting), drawn (pencil), cartoon (flat colours + ink lines) and
carved/rendered (height-field relief shading) versions of a real photo. Positives: the same photo made old
(sepia / grey, vignette, grain) or low quality (down-up sampled, sometimes dark). Used by
bench/verifier_ablation.py to measure whether such images teach the verifier anything about real art.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from scipy import ndimage as ndi


def rng_for(key: str) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.md5(key.encode()).hexdigest()[:8], 16))

def oil(im, r):
    w, h = im.size
    s = im.resize((max(w // 2, 32), max(h // 2, 32)), Image.LANCZOS)
    s = s.filter(ImageFilter.ModeFilter(7)).filter(ImageFilter.MedianFilter(5))
    s = s.resize((w, h), Image.BICUBIC)
    s = ImageEnhance.Color(s).enhance(1.3 + 0.3 * r.random())
    a = np.asarray(s).astype(np.float32)
    # canvas weave + brush-direction streaks
    yy, xx = np.mgrid[0:h, 0:w]
    weave = 6 * np.sin(xx * 1.7) * np.sin(yy * 1.7)
    streak = ndi.uniform_filter1d(r.normal(0, 10, (h, w)).astype(np.float32), 9, axis=int(r.integers(0, 2)))
    a = a + (weave + streak)[..., None]
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))

def pencil(im, r):
    g = np.asarray(im.convert("L")).astype(np.float32)
    b = ndi.gaussian_filter(255 - g, 4 + 4 * r.random())
    d = np.clip(g * 255 / np.maximum(255 - b, 1), 0, 255)
    h, w = d.shape
    paper = ndi.gaussian_filter(r.normal(0, 6, (h, w)), 1)
    d = np.clip(d + paper, 0, 255)
    tint = np.array([1.0, 0.97, 0.9]) if r.random() < 0.5 else np.array([1.0, 1.0, 1.0])
    return Image.fromarray(np.clip(d[..., None] * tint, 0, 255).astype(np.uint8))

def cartoon(im, r):
    s = im.filter(ImageFilter.MedianFilter(7)).filter(ImageFilter.MedianFilter(5))
    q = s.quantize(colors=int(r.integers(5, 10)), method=Image.Quantize.MEDIANCUT).convert("RGB")
    q = ImageEnhance.Color(q).enhance(1.5)
    g = np.asarray(im.convert("L").filter(ImageFilter.GaussianBlur(1.5))).astype(np.float32)
    e = np.hypot(ndi.sobel(g, 0), ndi.sobel(g, 1))
    lines = e > np.percentile(e, 88)
    a = np.asarray(q).copy()
    a[lines] = (a[lines] * 0.15).astype(np.uint8)
    return Image.fromarray(a)

def airbrush(im, r):
    w, h = im.size
    s = im.resize((max(w // 2, 32), max(h // 2, 32)), Image.LANCZOS).filter(ImageFilter.MedianFilter(7))
    s = s.filter(ImageFilter.MedianFilter(5)).resize((w, h), Image.BICUBIC)
    s = s.filter(ImageFilter.UnsharpMask(3, 120, 2))
    return ImageEnhance.Color(s).enhance(1.25 + 0.25 * r.random())

def relief(im, r):
    g = np.asarray(im.convert("L")).astype(np.float32) / 255
    hgt = ndi.gaussian_filter(g, 2.5) * (25 + 15 * r.random())
    gy, gx = np.gradient(hgt)
    n = np.stack([-gx, -gy, np.ones_like(gx)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    light = np.array([0.4 * r.normal(), -0.5, 0.8])
    light /= np.linalg.norm(light)
    shade = np.clip(n @ light, 0, 1) * 0.8 + 0.15
    col = [np.array([0.95, 0.93, 0.88]), np.array([0.8, 0.6, 0.4]), np.array([0.75, 0.78, 0.8])][int(r.integers(0, 3))]
    return Image.fromarray(np.clip(255 * shade[..., None] * col, 0, 255).astype(np.uint8))

def old(im, r):
    g = np.asarray(im.convert("L")).astype(np.float32)
    sep = np.stack([g * 1.07, g * 0.9, g * 0.7], -1) if r.random() < 0.6 else np.stack([g] * 3, -1)
    h, w = g.shape
    yy, xx = np.mgrid[0:h, 0:w]
    vig = 1 - 0.5 * (((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2)
    sep = sep * vig[..., None] + r.normal(0, 9, (h, w, 1))
    out = Image.fromarray(np.clip(sep, 0, 255).astype(np.uint8))
    return out.filter(ImageFilter.GaussianBlur(0.8))

def lowq(im, r):
    w, h = im.size
    f = 0.35 + 0.2 * r.random()
    s = im.resize((max(int(w * f), 24), max(int(h * f), 24)), Image.BILINEAR).resize((w, h), Image.BILINEAR)
    a = np.asarray(s).astype(np.float32)
    if r.random() < 0.5:  # dark / low light
        a = 255 * (a / 255) ** (1.8 + r.random()) + r.normal(0, 6, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))

NEG = {"oil": ("painting", oil), "pencil": ("painting", pencil), "cartoon": ("cartoon", cartoon),
       "relief": ("sculpture", relief), "airbrush": ("painting", airbrush)}
POS = {"old": ("real", old), "lowq": ("real", lowq)}
