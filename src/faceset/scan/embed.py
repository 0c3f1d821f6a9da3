"""Identity embeddings behind one function, so the backend can change without touching callers.

Backend: the torch port of dlib's ResNet (``dlib_resnet``; same descriptors to ~1e-6, ~10x faster
on CPU and batched on a GPU). If torch is unavailable, dlib's own ``face_recognition_model_v1``.
"""

from __future__ import annotations

import numpy as np

from . import detectors

DIM = 128

# Representations of a face built from the dlib descriptor ``e`` of its chip and ``f`` of the mirrored chip
# (flip test-time augmentation). ``raw`` is what scan stores today; the others are measured by the identity
# benches (bench/identity_cv.py ``load_product(kind=)``). ``unit`` kinds are rescaled to NORM (the median norm
# of dlib descriptors on identities_wild and utkface, 1.42-1.43) so distances keep their usual range.
KINDS = ("raw", "flip_mean", "unit", "flip_unit")
NORM = 1.43
# Measured, not adopted (issue #10 item 5; bench/results/tta.md): flip_unit lifts held-out clustering F by
# +0.004 / +0.003 and 1-selfie forget recall 0.986 -> 0.991, but 2-selfie certain precision fell to 0.992 and
# scan throughput to 0.83x (3.51x face_recognition's -> ~2.9x), so scan stores "raw". Adopting a kind means
# every path that embeds for a workspace (scan, forget selfies, portal selfie match, blocklist) uses it, the
# kind is recorded per workspace, and every threshold is re-chosen for it.


def represent(e: np.ndarray, f: np.ndarray | None, kind: str = "raw") -> np.ndarray:
    """float32[n, 128] representation ``kind`` (one of KINDS) from descriptors ``e`` and mirrored ``f``."""
    if kind not in KINDS:
        raise ValueError(f"unknown embedding kind {kind!r} (one of {', '.join(KINDS)})")
    e = np.asarray(e, np.float64)
    if kind.startswith("flip"):
        if f is None:
            raise ValueError(f"embedding kind {kind!r} needs the mirrored chip's descriptor")
        e = (e + np.asarray(f, np.float64)) / 2.0
    if kind in ("unit", "flip_unit"):
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12) * NORM
    return e.astype(np.float32)


def _torch_ok() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def embed_chips(chips: list[np.ndarray]) -> np.ndarray:
    """float32[n, 128] descriptors of 150x150 RGB chips aligned like ``dlib.get_face_chip``."""
    if not len(chips):
        return np.zeros((0, DIM), np.float32)
    chips = [np.ascontiguousarray(c, dtype=np.uint8) for c in chips]
    if _torch_ok():
        from .dlib_resnet import embed_chips_torch

        return embed_chips_torch(chips)
    out = detectors.resnet().compute_face_descriptor(chips)
    return np.asarray([np.asarray(v, dtype=np.float32) for v in out], dtype=np.float32).reshape(-1, DIM)


def worker_threads(n: int = 1) -> None:
    """One intra-op thread per worker process: the engine already runs one process per core."""
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def needs_flip(kind: str) -> bool:
    return kind.startswith("flip")


def embed_faces(chips: list[np.ndarray], kind: str = "raw") -> tuple[np.ndarray, np.ndarray]:
    """(identity embeddings of ``kind``, raw descriptors), float32[n, 128] each, for 150x150 aligned chips.

    The raw descriptor is what the face verifier was trained on; the identity embedding is what a workspace
    stores and compares. Flip kinds embed the mirrored chips in the same batch (twice the ResNet work)."""
    if kind not in KINDS:
        raise ValueError(f"unknown embedding kind {kind!r} (one of {', '.join(KINDS)})")
    if not len(chips):
        z = np.zeros((0, DIM), np.float32)
        return z, z
    if not needs_flip(kind):
        raw = embed_chips(chips)
        return (raw if kind == "raw" else represent(raw, None, kind)), raw
    n = len(chips)
    both = embed_chips(list(chips) + [np.ascontiguousarray(np.asarray(c)[:, ::-1]) for c in chips])
    return represent(both[:n], both[n:], kind), both[:n]

