"""Perceptual hash + multi-index search on real photos and on random hashes (vs brute force)."""

import csv
import random

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from faceset.curate.dedup import PHASH_ALONE, PHASH_RADIUS
from faceset.curate.phash import MultiIndex, hamming, near_pairs, phash


def _rgb(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _dist(a, b):
    return min(hamming(a[0], b[0]), hamming(a[1], b[0]))


def test_mirror_and_resolution_variants_hash_close(data_dir):
    d = data_dir / "identities"
    rows = {r["file"]: r for r in csv.DictReader(open(d / "labels.csv", newline=""))}
    mirror = [f for f, r in rows.items() if "mirror" in r["note"].lower()]
    assert mirror, "labels.csv should mark the mirrored copy"
    for f in mirror:
        orig = f.replace("_reflection", "")
        a, b = phash(_rgb(d / orig)), phash(_rgb(d / f))
        assert hamming(a[0], b[0]) > PHASH_RADIUS  # plain hash does not see the mirror ...
        assert hamming(a[1], b[0]) <= PHASH_ALONE  # ... the mirrored hash does
    res = sorted(f for f in rows if f.startswith("barack_obama/obama-") and f.endswith("p.jpg"))
    assert len(res) == 4
    hs = [phash(_rgb(d / f)) for f in res]
    assert max(_dist(a, b) for a in hs for b in hs) <= PHASH_ALONE
    # photos of different people are far apart
    others = [f for f in rows if f.split("/")[0] in ("katy_perry", "jack_dorsey", "elon_musk")]
    ho = [phash(_rgb(d / f)) for f in others]
    assert min(_dist(hs[0], h) for h in ho) > PHASH_RADIUS


def test_recolour_and_rescale_keep_hash(data_dir):
    katy = data_dir / "identities" / "katy_perry"
    im = Image.open(katy / sorted(p.name for p in katy.iterdir())[0]).convert("RGB")
    h0 = phash(np.asarray(im))
    for v in (ImageOps.colorize(im.convert("L"), "#402000", "#ffe0c0"), ImageEnhance.Color(im).enhance(2.0),
              im.resize((im.width // 3, im.height // 3))):
        assert _dist(h0, phash(np.asarray(v))) <= 4


def test_multi_index_finds_exactly_the_brute_force_pairs():
    rng = random.Random(7)
    base = [rng.getrandbits(64) for _ in range(60)]
    items = []
    for i in range(400):
        h = base[i % 60]
        for _ in range(rng.randrange(0, 14)):
            h ^= 1 << rng.randrange(64)
        items.append((i, h, rng.getrandbits(64)))
    got = {(a, b): d for a, b, d, m in near_pairs(items, 10)}
    want = {}
    for i in range(len(items)):
        for j in range(i):
            d = min(hamming(items[i][1], items[j][1]), hamming(items[i][2], items[j][1]))
            if d <= 10:
                want[(j, i)] = d
    assert got == want and len(want) > 100


def test_multi_index_query_radius():
    idx = MultiIndex(radius=6)
    idx.add(1, 0)
    idx.add(2, (1 << 6) - 1)  # 6 bits set
    idx.add(3, (1 << 7) - 1)  # 7 bits set
    assert sorted(idx.query(0)) == [(1, 0), (2, 6)]
