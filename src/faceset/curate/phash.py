"""64-bit DCT perceptual hashes and a multi-index Hamming search.

Why a multi-index: a BK-tree degrades to a near-linear scan at the radii
near-duplicate search needs (~10 of 64 bits). Splitting the hash into four
16-bit chunks guarantees (pigeonhole) that two hashes within ``radius`` bits
agree to within ``radius // 4`` bits on at least one chunk, so each query
probes a few hundred buckets instead of every stored hash.
"""

from __future__ import annotations

from itertools import combinations
from typing import Iterable, Iterator

import numpy as np
from PIL import Image
from scipy.fft import dctn

HASH_BITS = 64
CHUNKS = 4
CHUNK_BITS = HASH_BITS // CHUNKS


def phash(rgb: np.ndarray) -> tuple[int, int]:
    """(hash, hash of the mirrored image): grayscale -> 32x32 -> DCT -> 8x8 low band vs its median.

    Grayscale makes recolouring cheap to survive; the mirrored hash lets a
    flipped copy match by plain Hamming distance.
    """
    g = Image.fromarray(np.asarray(rgb, dtype=np.uint8)).convert("L").resize((32, 32), Image.Resampling.BOX)
    a = np.asarray(g, dtype=np.float64)
    return _bits(a), _bits(a[:, ::-1])


def _bits(a: np.ndarray) -> int:
    low = dctn(a, norm="ortho")[:8, :8].ravel()
    med = np.median(low[1:])  # the DC term only measures brightness
    v = 0
    for b in low > med:
        v = (v << 1) | int(b)
    return v


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def to_hex(h: int) -> str:
    return f"{h:016x}"


def from_hex(s: str) -> int:
    return int(s, 16)


def _chunks(h: int) -> list[int]:
    m = (1 << CHUNK_BITS) - 1
    return [(h >> (CHUNK_BITS * i)) & m for i in range(CHUNKS)]


def _flips(radius: int) -> list[int]:
    out = []
    for r in range(radius + 1):
        for bits in combinations(range(CHUNK_BITS), r):
            m = 0
            for b in bits:
                m |= 1 << b
            out.append(m)
    return out


class MultiIndex:
    """Exact Hamming range search over 64-bit hashes (no pair is missed within ``radius``)."""

    def __init__(self, radius: int):
        self.radius = radius
        self._masks = _flips(radius // CHUNKS)
        self._tables: list[dict[int, list[int]]] = [dict() for _ in range(CHUNKS)]
        self._hashes = np.zeros(1024, np.uint64)
        self._keys: list[int] = []

    def add(self, key: int, h: int) -> None:
        pos = len(self._keys)
        if pos == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros(pos, np.uint64)])
        self._hashes[pos] = h
        self._keys.append(key)
        for table, piece in zip(self._tables, _chunks(h)):
            table.setdefault(piece, []).append(pos)

    def query(self, h: int) -> Iterator[tuple[int, int]]:
        """(key, distance) of every stored hash within the radius."""
        cand: list[int] = []
        for table, piece in zip(self._tables, _chunks(h)):
            get = table.get
            for m in self._masks:
                hit = get(piece ^ m)
                if hit:
                    cand.extend(hit)
        if not cand:
            return
        pos = np.unique(np.array(cand, np.int64))
        d = np.bitwise_count(self._hashes[pos] ^ np.uint64(h))
        for p, dist in zip(pos[d <= self.radius].tolist(), d[d <= self.radius].tolist()):
            yield self._keys[p], dist


def near_pairs(items: Iterable[tuple[int, int, int]], radius: int) -> Iterator[tuple[int, int, int, bool]]:
    """All (key_a, key_b, distance, mirrored) with key_a < key_b within ``radius``.

    ``items`` are (key, hash, mirrored_hash); each item is queried against the
    ones before it, so every pair is reported once.
    """
    idx = MultiIndex(radius)
    for key, h, hf in items:
        best: dict[int, tuple[int, bool]] = {}
        for other, d in idx.query(h):
            best[other] = (d, False)
        for other, d in idx.query(hf):
            if other not in best or d < best[other][0]:
                best[other] = (d, True)
        for other, (d, mir) in best.items():
            yield min(key, other), max(key, other), d, mir
        idx.add(key, h)
