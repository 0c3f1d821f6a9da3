"""Hiding a face for good: one implementation for erasure (stored copies) and exports (bystanders)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

# Pad the face box this much on every side before pixelating (hair, ears, jaw).
BLUR_PAD = 0.35


def pixelate_faces(rgb: np.ndarray, boxes, pad: float = BLUR_PAD) -> np.ndarray:
    """Pixelate (8 blocks across) then blur each padded (x, y, w, h) box.

    Eight blocks across a face leave no identity; the blur on top removes block edges that
    would otherwise draw the eye. Returns a new array; the input is not modified.
    """
    im = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    H, W = im.size[1], im.size[0]
    for x, y, w, h in boxes:
        px, py = w * pad, h * pad
        x0, y0 = max(0, int(x - px)), max(0, int(y - py))
        x1, y1 = min(W, int(np.ceil(x + w + px))), min(H, int(np.ceil(y + h + py)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        region = im.crop((x0, y0, x1, y1))
        block = max(1, (x1 - x0) // 8)
        small = region.resize((max(1, (x1 - x0) // block), max(1, (y1 - y0) // block)), Image.BILINEAR)
        region = small.resize(region.size, Image.NEAREST).filter(ImageFilter.GaussianBlur(max(2, block // 2)))
        im.paste(region, (x0, y0))
    return np.asarray(im)
