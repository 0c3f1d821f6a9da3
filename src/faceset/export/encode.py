"""Bytes that may leave the workspace: metadata-free images, bystanders blurred.

The store should already hold clean copies, but an export is the last gate
before data leaves the owner's machine, so every image is checked again and
re-encoded from bare pixels if anything beyond harmless decoder hints is found.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

# Keys PIL puts in ``info`` that carry no personal data (decoder/format hints).
_HARMLESS = {
    "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "progressive", "progression",
    "adobe", "adobe_transform", "gamma", "aspect", "srgb", "transparency", "interlace",
}
_EXT = {"JPEG": "jpg", "PNG": "png"}


def clean(data: bytes) -> tuple[bytes, str]:
    """(bytes, extension) with no EXIF/XMP/ICC/comments; untouched when already clean."""
    with Image.open(io.BytesIO(data)) as im:
        fmt = im.format
        dirty = bool(set(im.info) - _HARMLESS) or len(im.getexif()) > 0
        if fmt in _EXT and not dirty:
            return data, _EXT[fmt]
        im.load()
        return encode(np.asarray(im.convert("RGB")), "PNG" if fmt == "PNG" else "JPEG")


def encode(rgb: np.ndarray, fmt: str = "JPEG") -> tuple[bytes, str]:
    """Encode bare pixels: a fresh Image has an empty ``info``, so nothing can leak through."""
    buf = io.BytesIO()
    im = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    if fmt == "PNG":
        im.save(buf, "PNG", optimize=False)
    else:
        im.save(buf, "JPEG", quality=95)
    return buf.getvalue(), _EXT[fmt]


def blur_boxes(rgb: np.ndarray, boxes, margin: float = 0.25) -> np.ndarray:
    """Irreversibly hide faces: pixelate then blur each (enlarged) box.

    Pixelation to ~8 cells destroys identity; the blur on top removes the block
    edges that would otherwise draw the eye. Boxes are (x, y, w, h) in pixels.
    """
    if not boxes:
        return rgb
    im = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    W, H = im.size
    for x, y, w, h in boxes:
        mx, my = w * margin, h * margin
        x0, y0 = max(0, int(x - mx)), max(0, int(y - my))
        x1, y1 = min(W, int(np.ceil(x + w + mx))), min(H, int(np.ceil(y + h + my)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        region = im.crop((x0, y0, x1, y1))
        cells = max(2, min(8, (x1 - x0) // 4))
        small = region.resize((cells, max(2, cells * (y1 - y0) // max(1, x1 - x0))), Image.BILINEAR)
        region = small.resize(region.size, Image.NEAREST).filter(
            ImageFilter.GaussianBlur(radius=max(2.0, (x1 - x0) / 10))
        )
        im.paste(region, (x0, y0))
    return np.asarray(im)
