"""Aligned face images from 5-point landmarks (dlib's similarity alignment).

Two outputs per face: the 150 px chip with padding 0.25 that the ResNet embedding
expects, and a 224 px crop with more margin (hair, chin, ears) for attribute classifiers.
"""

from __future__ import annotations

import numpy as np

CHIP_SIZE, CHIP_PADDING = 150, 0.25
CROP_SIZE, CROP_PADDING = 224, 0.55


def shape_of(landmarks: np.ndarray, box: tuple[float, float, float, float]):
    """A dlib full_object_detection from float landmarks (image coords) and an (l, t, r, b) box."""
    import dlib

    rect = dlib.rectangle(*(int(round(v)) for v in box))
    pts = dlib.points()
    for x, y in landmarks:
        pts.append(dlib.point(int(round(x)), int(round(y))))
    return dlib.full_object_detection(rect, pts)


def chips(rgb: np.ndarray, shapes: list, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> list[np.ndarray]:
    """Upright, scaled face images for each shape (regions outside the image are black)."""
    import dlib

    if not shapes:
        return []
    objs = dlib.full_object_detections()
    for s in shapes:
        objs.append(s)
    return [np.asarray(c, dtype=np.uint8) for c in dlib.get_face_chips(np.ascontiguousarray(rgb), objs, size, padding)]
