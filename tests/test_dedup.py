"""Near-duplicates on real photos: mirror, resolution variants, byte-identical chips, UTKFace groups."""

import csv
import hashlib
import json
from collections import defaultdict

from conftest import read_labels
from faceset import open_workspace
from faceset.curate import find_duplicates


def _image_of(ws, path):
    return ws.catalog.scalar("SELECT image_id FROM files WHERE path=? AND image_id IS NOT NULL", (path,))


def _group_of(ws):
    """image id -> kept image id (itself when kept or not a duplicate)."""
    return {r[0]: (r[1] or r[0]) for r in ws.catalog.q("SELECT id, dup_of FROM images")}


def test_known_duplicates_grouped_best_kept(curated_ws, data_dir):
    ws = open_workspace(curated_ws)
    rows = read_labels(data_dir / "identities")
    g = _group_of(ws)
    mirror = [r["file"] for r in rows if "mirror" in r["note"].lower()]
    assert mirror
    for f in mirror:
        assert g[_image_of(ws, f)] == g[_image_of(ws, f.replace("_reflection", ""))]
    variants = [r["file"] for r in rows if r["file"].startswith("barack_obama/obama-") and r["file"].endswith("p.jpg")]
    assert len(variants) == 4
    kept = {g[_image_of(ws, f)] for f in variants}
    assert len(kept) == 1
    # the kept member is the largest copy
    sizes = {f: ws.catalog.one("SELECT width*height FROM images WHERE id=?", (_image_of(ws, f),))[0] for f in variants}
    assert kept == {_image_of(ws, max(sizes, key=sizes.get))}
    # byte-identical chips are one image with two original paths
    by_sha = defaultdict(list)
    for r in rows:
        by_sha[hashlib.sha256((data_dir / "identities" / r["file"]).read_bytes()).hexdigest()].append(r["file"])
    same = [fs for fs in by_sha.values() if len(fs) > 1]
    assert same  # the README's john_shimkus pair
    for fs in same:
        assert len({_image_of(ws, f) for f in fs}) == 1
    ws.close()


def test_duplicate_groups_never_mix_identities(curated_ws, data_dir):
    ws = open_workspace(curated_ws)
    ident = {}
    for r in read_labels(data_dir / "identities"):
        ident[_image_of(ws, r["file"])] = r["identity"]
    members = defaultdict(set)
    for i, k in _group_of(ws).items():
        if i in ident:
            members[k].add(ident[i])
    assert all(len(v) == 1 for v in members.values())
    n_dups = ws.catalog.scalar("SELECT COUNT(*) FROM images WHERE dup_of IS NOT NULL")
    # every duplicate the README names is found, and not much else is swallowed
    assert 4 <= n_dups <= 0.1 * len(ident)
    ws.close()


def test_group_shots_are_never_dropped_for_a_single_face_copy(curated_ws, data_dir):
    """A crop of one person from a group photo must not take the group photo's other people with it."""
    ws = open_workspace(curated_ws)
    groups = {r["file"]: int(r["n_faces"]) for r in read_labels(data_dir / "groups")}
    nfaces = dict(ws.catalog.q("SELECT image_id, COUNT(*) FROM faces GROUP BY image_id"))
    for f in groups:
        iid = _image_of(ws, f)
        dup_of = ws.catalog.scalar("SELECT dup_of FROM images WHERE id=?", (iid,))
        if dup_of is not None:
            assert nfaces.get(dup_of, 0) >= nfaces.get(iid, 0), f"{f} dropped for a copy with fewer faces"
    ws.close()


def test_report_counts_sheet_and_audit(curated_ws, tmp_path):
    import shutil

    shutil.copytree(curated_ws, tmp_path / "ws")
    ws = open_workspace(tmp_path / "ws")
    before = {r[0]: r[1] for r in ws.catalog.q("SELECT id, dup_of FROM images")}
    rep = find_duplicates(ws, sheet=True, progress=False)
    assert rep.hashed == 0  # hashes are stored, a rerun only groups
    assert rep.duplicates == sum(len(g.members) - 1 for g in rep.items) == sum(1 for v in before.values() if v)
    assert {r[0]: r[1] for r in ws.catalog.q("SELECT id, dup_of FROM images")} == before  # idempotent
    assert rep.exact_groups >= 1 and rep.exact_files >= 2
    from PIL import Image

    with Image.open(rep.sheet) as im:
        assert im.width > 100 and im.height > 100
    last = ws.catalog.one("SELECT details FROM audit WHERE action='dedup' ORDER BY id DESC LIMIT 1")
    d = json.loads(last[0])
    assert d["groups"] == rep.groups and "path" not in last[0]
    ws.close()


def test_utkface_exact_duplicate_groups_collapse(utk_ws, data_dir):
    ws = open_workspace(utk_ws)
    groups = defaultdict(set)
    with open(data_dir / "utkface" / "exact_duplicates.csv", newline="") as f:
        for r in csv.DictReader(f):
            groups[r["group"]].add(r["file"].split("/")[-1])
    present = {g: fs for g, fs in groups.items() if all(_image_of(ws, f) for f in fs)}
    assert len(present) >= 10
    rep = find_duplicates(ws, progress=False)
    g = _group_of(ws)
    for fs in present.values():
        assert len({g[_image_of(ws, f)] for f in fs}) == 1
    assert rep.exact_groups >= len(present)
    ws.close()


def test_unreadable_stored_copy_is_reported_and_the_rest_goes_on(tmp_path, data_dir):
    from faceset import init_workspace
    from faceset.ingest import ingest

    ws = init_workspace(tmp_path / "ws")
    ingest(ws, [data_dir / "identities" / "barack_obama"], license="t", consent="consent", progress=False)
    victim = ws.catalog.scalar("SELECT MIN(id) FROM images")
    ws.store.path(ws.catalog.scalar("SELECT store_key FROM images WHERE id=?", (victim,))).write_bytes(b"junk")
    rep = find_duplicates(ws, progress=False)
    assert len(rep.hash_errors) == 1 and f"image {victim}" in rep.hash_errors[0]
    assert rep.hashed == ws.catalog.scalar("SELECT COUNT(*) FROM images") - 1
    assert rep.groups >= 1  # the resolution variants still group (hash alone, no faces scanned)
    ws.close()


def test_interrupted_run_leaves_catalog_consistent_and_rerun_matches(curated_ws, tmp_path, monkeypatch):
    import shutil

    from faceset.curate import dedup

    shutil.copytree(curated_ws, tmp_path / "ws")
    ws = open_workspace(tmp_path / "ws")
    want = _group_of(ws)
    with ws.catalog.tx() as c:
        c.execute("UPDATE images SET phash=NULL, phash_flip=NULL, dup_of=NULL")
    monkeypatch.setattr(dedup, "BATCH", 20)
    real, calls = dedup.phash, [0]

    def dying(rgb):
        calls[0] += 1
        if calls[0] == 70:
            raise KeyboardInterrupt
        return real(rgb)

    monkeypatch.setattr(dedup, "phash", dying)
    try:
        find_duplicates(ws, progress=False)
    except KeyboardInterrupt:
        pass
    # finished batches are kept, nothing half-grouped
    assert ws.catalog.scalar("SELECT COUNT(*) FROM images WHERE phash IS NOT NULL") == 60
    assert ws.catalog.scalar("SELECT COUNT(*) FROM images WHERE dup_of IS NOT NULL") == 0
    monkeypatch.setattr(dedup, "phash", real)
    rep = find_duplicates(ws, progress=False)
    assert rep.hashed == ws.catalog.scalar("SELECT COUNT(*) FROM images") - 60
    assert _group_of(ws) == want
    ws.close()
