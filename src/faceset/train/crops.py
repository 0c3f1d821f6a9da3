"""The one place train/evaluate/predict get aligned face crops from a whole image.

Training features and prediction must see the same preprocessing, so both go
through :func:`face_crops`, which delegates to scan's ``analyze`` (the same
detector, 5-point alignment and 224 px margin crop scan stores as faces.crop_key).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CROP_SIZE = 224
# Bump when the crop source changes: cache keys of photos/chips include it, so stale crops are never reused.
CROP_VERSION = "scan-analyze-2"  # 2: CenterFace default detector (issue #11)


@dataclass
class FaceCrop:
    box: tuple[float, float, float, float]  # x, y, w, h in image pixels
    score: float
    crop: np.ndarray  # 224x224x3 uint8, aligned


def face_crops(rgb: np.ndarray) -> list[FaceCrop]:
    """Every face in ``rgb`` (HxWx3 uint8) as an aligned 224 px crop, main face first."""
    from ..scan import analyze

    return [FaceCrop(tuple(float(v) for v in f.box), float(f.score), f.crop) for f in analyze(rgb, embed=False)]


def chip_crops(rgb: np.ndarray) -> list[FaceCrop]:
    """Crops of an already cropped face chip (e.g. UTKFace 200x200).

    Frame-filling faces defeat detectors, so the chip is padded with its own edge
    pixels first; the box is then mapped back into chip coordinates.
    """
    h, w = rgb.shape[:2]
    pad = max(h, w) // 8
    big = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = face_crops(big)
    for f in out:
        x, y, bw, bh = f.box
        f.box = (x - pad, y - pad, bw, bh)
    return out
