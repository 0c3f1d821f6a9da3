"""The "never again" list: people who asked to be forgotten are dropped by later scans.

What one entry keeps, and why it is the least that works:

* ``template``: the unit-normalised mean of the person's embeddings (selfies plus the
  faces that matched them), stored as float16 (256 bytes). Averaging removes the
  per-photo detail (pose, light, expression) and float16 drops precision; no image,
  chip, name, source path or face id is kept. A 128-number identity vector cannot be
  turned back into a photo by anything faceset ships, but it IS still biometric data of
  the person who asked to be forgotten. It is kept at their request, only to honour the
  opt-out, and ``faceset consent unblock ID`` removes it.
* ``radius``: the distance (between unit-normalised embeddings) within which a new
  face counts as that person.

A salted hash would be safer to keep but cannot answer "is this face within a distance
of that one", which is the only question the blocklist must answer.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..workspace import Workspace

TEMPLATE_DTYPE = np.float16
DIM = 128


def unit(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (float32): every privacy distance is measured between unit vectors."""
    e = np.asarray(embeddings, dtype=np.float32).reshape(-1, DIM)
    n = np.linalg.norm(e, axis=1, keepdims=True)
    return e / np.maximum(n, 1e-12)


def make_template(embeddings: np.ndarray) -> bytes:
    """The stored form: unit mean of unit rows, float16 bytes. Nothing per-photo survives the mean."""
    e = unit(embeddings)
    if len(e) == 0:
        raise UsageError("a blocklist template needs at least one embedding")
    return unit(e.mean(axis=0))[0].astype(TEMPLATE_DTYPE).tobytes()


def add_template(ws: Workspace, embeddings: np.ndarray, radius: float) -> int:
    """Block the person these embeddings belong to; returns the blocklist id (for `consent unblock`)."""
    if not 0.0 < float(radius) <= 2.0:
        raise UsageError(f"radius must be in (0, 2] (distance between unit vectors), not {radius}")
    with ws.catalog.tx():
        bid = ws.catalog.blocklist.add(make_template(embeddings), radius)
        ws.catalog.audit("blocklist_add", blocklist_id=bid, radius=round(float(radius), 4))
    return bid


def remove(ws: Workspace, blocklist_id: int) -> bool:
    """Unblock: the person's template is deleted (secure_delete zeroes the page); later scans keep them."""
    with ws.catalog.tx():
        n = ws.catalog.blocklist.remove(blocklist_id)
        if n:
            ws.catalog.audit("blocklist_remove", blocklist_id=int(blocklist_id))
    if n:
        ws.catalog.vacuum()
    return bool(n)


def entries(ws: Workspace) -> list[dict]:
    """What `faceset consent blocklist` shows: ids, dates and radii, never the templates."""
    return [e._asdict() for e in ws.catalog.blocklist.entries()]


def templates(ws: Workspace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, float32[k,128] unit templates, radii)."""
    rows = ws.catalog.blocklist.templates()
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, DIM), np.float32), np.zeros(0, np.float32)
    ids = np.array([r.id for r in rows], np.int64)
    t = np.stack([np.frombuffer(r.template, TEMPLATE_DTYPE).astype(np.float32) for r in rows])
    radii = np.array([r.radius for r in rows], np.float32)
    return ids, unit(t), radii


def blocked_mask(ws: Workspace, embeddings: np.ndarray) -> np.ndarray:
    """True for each embedding within some blocked person's radius (scan drops those faces)."""
    e = np.asarray(embeddings, dtype=np.float32)
    n = 0 if e.size == 0 else len(e.reshape(-1, DIM))
    if n == 0:
        return np.zeros(0, bool)
    _, t, radii = templates(ws)
    if len(t) == 0:
        return np.zeros(n, bool)
    d = distances(unit(e), t)
    return (d <= radii[None, :]).any(axis=1)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows of two unit-vector matrices, [len(a), len(b)]."""
    sq = 2.0 - 2.0 * (a @ b.T)
    return np.sqrt(np.clip(sq, 0.0, None))
