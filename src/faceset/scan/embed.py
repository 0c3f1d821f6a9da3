"""Identity embeddings: one function so the backend (dlib today, a torch port later) can be swapped."""

from __future__ import annotations

import numpy as np

from . import models

DIM = 128


def embed_chips(chips: list[np.ndarray]) -> np.ndarray:
    """float32[n, 128] dlib ResNet descriptors of 150x150 RGB chips aligned like ``dlib.get_face_chip``."""
    if not chips:
        return np.zeros((0, DIM), np.float32)
    net = models.resnet()
    out = net.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
    return np.asarray([np.asarray(v, dtype=np.float32) for v in out], dtype=np.float32).reshape(-1, DIM)
