"""Near-duplicate images: resized, re-encoded, cropped, mirrored or recoloured copies.

Exact copies (same pixels) already collapse into one ``images`` row at ingest
(``pixel_sha``); every original path stays in ``files``. This finds the rest
and records ``images.dup_of`` = the kept member of each group.

Two ways to be linked, both measured on ``identities/`` (docs/curate.md):
- perceptual hash (64-bit DCT, plus the mirrored image's hash) within
  ``PHASH_RADIUS`` bits, confirmed by the main faces' embeddings when both
  images have one: aligned face chips of *different* people can be 4-6 bits
  apart, so a hash match alone is trusted only at ``PHASH_ALONE`` bits;
- main-face embeddings closer than ``EMB_DUP`` (crops, which move the hash a
  lot but the face little). Distinct photos of one person measured >= 0.18.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..index import knn_graph
from ..progress import bar
from ..workspace import Workspace
from .graph import UnionFind
from .phash import from_hex, near_pairs, phash, to_hex

PHASH_RADIUS = 10  # candidate pairs
PHASH_CLOSE = 4  # hash this close: faces may differ as much as a mirror or a recolour does
PHASH_ALONE = 2  # trusted without faces to confirm (UTKFace chips of different people reach 4)
EMB_CONFIRM_CLOSE = 0.35  # hash <= PHASH_CLOSE (mirrors measured 0.11-0.23, recolours <= 0.25)
EMB_CONFIRM_FAR = 0.25  # hash 5..PHASH_RADIUS: faces must be nearly the same shot
EMB_DUP = 0.15  # embedding alone (crops)
BATCH = 500  # hashes per transaction


@dataclass
class DupGroup:
    keep: int
    members: list[int]  # image ids, keep first
    how: list[str]  # methods that linked this group: phash|mirror|embedding
    files: list[str] = field(default_factory=list)  # one original path per member (for the person reviewing)


@dataclass
class DedupReport:
    images: int = 0
    hashed: int = 0
    hash_errors: list[str] = field(default_factory=list)  # one line per unreadable stored copy
    groups: int = 0
    duplicates: int = 0  # images marked dup_of (not kept)
    by_method: dict[str, int] = field(default_factory=dict)  # linked pairs per method
    exact_groups: int = 0  # files with identical pixels collapsed at ingest
    exact_files: int = 0
    sheet: str | None = None
    items: list[DupGroup] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def find_duplicates(ws: Workspace, *, sheet: bool = False, progress: bool = True) -> DedupReport:
    """Group near-duplicates, keep the best (most faces, resolution, face quality), set dup_of on the rest.

    Recomputes every group from the stored hashes, so reruns and new images
    give the same answer as one run over everything.
    """
    c = ws.catalog
    rep = DedupReport()
    _hash_missing(ws, rep, progress)
    hashed = c.images.hashed()
    rep.images = len(hashed)
    main = c.faces.main_embeddings()  # image id -> (main face embedding, face quality)
    uf = UnionFind()
    how: dict[tuple[int, int], str] = {}
    items = [(image_id, from_hex(h), from_hex(hf)) for image_id, _, h, hf in hashed]
    for a, b, d, mirrored in near_pairs(items, PHASH_RADIUS):
        ea, eb = main.get(a), main.get(b)
        if ea is not None and eb is not None:
            limit = EMB_CONFIRM_CLOSE if d <= PHASH_CLOSE else EMB_CONFIRM_FAR
            ok = float(np.linalg.norm(ea[0] - eb[0])) < limit
        else:
            ok = d <= PHASH_ALONE
        if ok:
            uf.union(a, b)
            how[(a, b)] = "mirror" if mirrored else "phash"
    if main:
        ids = np.array(sorted(main), np.int64)
        emb = np.stack([main[i][0] for i in ids])
        nn, dist = knn_graph(emb, 10)  # exact below index.EXACT_BELOW images, HNSW above
        for i, j in zip(*np.nonzero(dist < EMB_DUP)):  # row by row, as before; pads are inf
            a, b = sorted((int(ids[i]), int(ids[nn[i, j]])))
            uf.union(a, b)
            how.setdefault((a, b), "embedding")
    size = {image_id: pixels for image_id, pixels, _, _ in hashed}
    # A crop of a group shot matches the group's main face: keep the photo with more faces, or its
    # other people would leave the dataset with it.
    nfaces = c.faces.count_by_image()
    groups = [g for g in uf.groups() if len(g) > 1]
    for m in how.values():
        rep.by_method[m] = rep.by_method.get(m, 0) + 1
    methods: dict[int, set[str]] = {}
    for (a, _), m in how.items():
        methods.setdefault(uf.find(a), set()).add(m)
    paths = c.images.first_paths(sorted({i for g in groups for i in g}))
    dup_of: dict[int, int] = {}
    for g in groups:
        keep = max(g, key=lambda i: (nfaces.get(i, 0), size.get(i, 0), main.get(i, (None, -1.0))[1], -i))
        members = [keep] + [i for i in g if i != keep]
        rep.items.append(DupGroup(keep=keep, members=members, how=sorted(methods.get(uf.find(keep), ())),
                                  files=[paths.get(i, "") for i in members]))
        for i in members[1:]:
            dup_of[i] = keep
    rep.items.sort(key=lambda g: g.keep)
    rep.groups = len(groups)
    rep.duplicates = len(dup_of)
    rep.exact_groups, rep.exact_files = c.images.exact_copies()
    with c.tx():
        c.images.set_dup_of(dup_of)
        c.audit("dedup", images=rep.images, groups=rep.groups, duplicates=rep.duplicates,
                exact_groups=rep.exact_groups, by_method=rep.by_method)
    if sheet and rep.items:
        rep.sheet = str(contact_sheet(ws, rep.items))
    return rep


def _hash_missing(ws: Workspace, rep: DedupReport, progress: bool) -> None:
    """Hash stored copies not hashed yet; one transaction per batch so an interrupt keeps finished work."""
    c = ws.catalog
    todo = c.images.unhashed()
    batch: list[tuple[int, str, str]] = []

    def flush():
        with c.tx():
            c.images.set_phashes(batch)
        batch.clear()

    with bar("hash images", len(todo), progress) as b:
        for image_id in todo:
            try:
                h, hf = phash(ws.image_rgb(image_id))
            except Exception as e:  # unreadable stored copy: say why, go on
                rep.hash_errors.append(f"image {image_id}: {type(e).__name__}: {e}")
            else:
                batch.append((image_id, to_hex(h), to_hex(hf)))
                rep.hashed += 1
            if len(batch) >= BATCH:
                flush()
            b.advance()
    if batch:
        flush()


def contact_sheet(ws: Workspace, groups: list[DupGroup], *, thumb: int = 112, max_groups: int = 60):
    """One row per group, kept image first with a green frame, the duplicates framed red."""
    from PIL import Image, ImageDraw

    groups = groups[:max_groups]
    cols = max(len(g.members) for g in groups)
    pad = 6
    W, H = pad + cols * (thumb + pad), pad + len(groups) * (thumb + 16 + pad)
    sheet = Image.new("RGB", (W, H), (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    for r, g in enumerate(groups):
        y = pad + r * (thumb + 16 + pad)
        for col, image_id in enumerate(g.members):
            x = pad + col * (thumb + pad)
            im = Image.fromarray(ws.image_rgb(image_id))
            im.thumbnail((thumb - 6, thumb - 6))
            colour = (30, 160, 60) if col == 0 else (200, 40, 40)
            draw.rectangle([x, y, x + thumb - 1, y + thumb - 1], outline=colour, width=3)
            sheet.paste(im, (x + (thumb - im.width) // 2, y + (thumb - im.height) // 2))
            draw.text((x + 2, y + thumb + 2), f"#{image_id}" + (" keep" if col == 0 else ""), fill=(0, 0, 0))
    out = ws.sheets_dir / "duplicates.png"
    sheet.save(out)
    return out
