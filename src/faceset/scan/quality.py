"""Per-face quality measures, cheap enough to compute for every face.

- ``size``: sqrt(box area) in original image pixels (what a face "is" in resolution).
- ``blur``: variance of the Laplacian of the grey 150 px chip (low = soft/out of focus).
- ``brightness``: mean grey level of the chip, 0-255.
- ``yaw``: head turn in degrees from the detector's 5 points (eye centres, nose tip, mouth corners):
  the nose tip's offset from the eye-mouth midline against the eye span (see :func:`yaw_cnn`); from
  dlib's 5 points (eye corners, nose base) only when the detector gives no points of its own (cascade).
- ``quality``: 0-1 summary (product of soft scores) used for ranking and the low-quality cut.
"""

from __future__ import annotations

import math

import numpy as np

MIN_SIZE = 40.0          # faces smaller than this (px) are 'low_quality'
MIN_BLUR = 12.0          # Laplacian variance on the 150 px chip below this is 'low_quality'
MIN_QUALITY = 0.15


def _gray(chip: np.ndarray) -> np.ndarray:
    c = chip.astype(np.float32)
    return 0.299 * c[..., 0] + 0.587 * c[..., 1] + 0.114 * c[..., 2]


def laplacian_var(gray: np.ndarray) -> float:
    g = gray
    lap = -4 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(lap.var())


def yaw_degrees(landmarks: np.ndarray) -> float:
    """Signed rough yaw from dlib's 5 points: the nose's offset from the eye midpoint along the eye line.

    dlib's 5 points are two corners per eye (0-1, 2-3) and the nose base (4). A frontal face has the
    nose on the perpendicular bisector of the eyes; the offset grows like sin(yaw). dlib's points are
    fitted by a frontal shape model, so profiles read 0-50 degrees: used only without CNN points.
    """
    p = np.asarray(landmarks, dtype=np.float64)
    e1, e2, nose = p[0:2].mean(0), p[2:4].mean(0), p[4]
    axis = e2 - e1
    d2 = float(axis @ axis)
    if d2 < 1e-6:
        return 0.0
    t = float((nose - (e1 + e2) / 2) @ axis) / d2  # -0.5..0.5 of the eye distance
    return math.degrees(math.asin(max(-1.0, min(1.0, t / 0.5))))


# Nose-tip depth in front of the eye/mouth plane over the distance between the eye centres, from the
# generic 3D head model of 5-point pose estimation (eye centres +-150, nose tip 130 in front of eyes and
# mouth): a constant of head shape, not fitted to any data set (bench/pose.py measures it).
NOSE_DEPTH = 130.0 / 300.0


def yaw_cnn(points: np.ndarray) -> float:
    """Signed yaw (degrees, nose toward image-left positive) from a CNN detector's 5 points.

    ``points``: eye centres, nose tip, mouth corners, image-left first (CenterFace / YuNet order). A head
    turned by ``yaw`` shows the eye span as ``cos(yaw)`` and moves the nose tip off the eye-mouth midline
    by ``NOSE_DEPTH * sin(yaw)`` (both in eye spans), so ``yaw = atan2(offset / NOSE_DEPTH, span)``.
    Unlike the nose offset alone it does not saturate: profiles (nose outside the eyes) read 60-90.
    Both are measured across the eye-mouth midline, so roll and pitch change neither much.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (5, 2):
        return 0.0
    eyes, mouth = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
    mid = mouth - eyes
    height = float(np.hypot(*mid))
    if height < 1e-6:
        return 0.0
    across = np.array([mid[1], -mid[0]]) / height  # unit vector across the face, toward image-right
    offset = float((p[2] - (eyes + mouth) / 2) @ across)
    span = float((p[1] - p[0]) @ across)
    yaw = math.degrees(math.atan2(offset / NOSE_DEPTH, abs(span)))
    return -yaw if span >= 0 else yaw


def measure(chip: np.ndarray, box_wh: tuple[float, float], landmarks: np.ndarray,
            cnn_landmarks: np.ndarray | None = None) -> dict:
    """Size, blur, brightness, yaw and quality of one face (``cnn_landmarks``: the detector's own 5 points)."""
    g = _gray(chip)
    size = math.sqrt(max(box_wh[0], 1.0) * max(box_wh[1], 1.0))
    blur = laplacian_var(g[20:-20, 20:-20])  # the face, not the padding (often black at borders)
    bright = float(g.mean())
    yaw = yaw_cnn(cnn_landmarks) if cnn_landmarks is not None else yaw_degrees(landmarks)
    q_size = min(1.0, max(0.0, (size - 24.0) / (112.0 - 24.0)))
    q_blur = min(1.0, blur / 150.0)
    q_bright = min(1.0, max(0.0, min(bright - 20.0, 235.0 - bright) / 50.0))
    q_yaw = max(0.0, math.cos(math.radians(yaw)))
    quality = q_size * (0.3 + 0.7 * q_blur) * (0.5 + 0.5 * q_bright) * (0.5 + 0.5 * q_yaw)
    return {"size": round(size, 2), "blur": round(blur, 2), "brightness": round(bright, 2),
            "yaw": round(yaw, 2), "quality": round(quality, 4)}


def status(q: dict) -> str:
    """'ok' or 'low_quality' (kept in the catalog, excluded by default from datasets)."""
    if q["size"] < MIN_SIZE or q["blur"] < MIN_BLUR or q["quality"] < MIN_QUALITY:
        return "low_quality"
    return "ok"
