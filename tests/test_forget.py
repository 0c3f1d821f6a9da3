"""Forget-me-by-selfie on real photos: find, erase, blur, block, and prove nothing is left.

One of Angelina Jolie's photos from identities/ is the selfie. Expected photos come from
identities/labels.csv; group shots are judged by re-detecting faces in the stored copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import read_labels

WHO = "angelina_jolie"
GROUPS_WITH_HER = ("couple.jpg", "selfie-many-people.jpg")  # from ../shared/data/README.md


def _copy_ws(src: Path, dst: Path):
    from faceset import open_workspace

    shutil.copytree(src, dst)
    return open_workspace(dst)


def _image_ids_by_path(ws) -> dict[str, int]:
    """'identities/<file>' or 'groups/<file>' -> image id, via files rows and their source folder."""
    out = {}
    for r in ws.catalog.q("""SELECT f.image_id, f.path, s.uri FROM files f JOIN sources s ON s.id=f.source_id
                             WHERE f.image_id IS NOT NULL"""):
        out[f"{Path(r['uri']).name}/{r['path']}"] = r["image_id"]
    return out


def _snapshot(ws, erased, blurred, face_ids) -> dict:
    """Everything that identifies her images and faces, as bytes to search for later."""
    c = ws.catalog
    pats: dict[str, bytes] = {}
    image_ids = set(erased) | set(blurred)
    for r in c.q(f"SELECT * FROM images WHERE id IN ({','.join('?' * len(image_ids))})", list(image_ids)):
        if r["id"] in erased:
            pats[f"image {r['id']} sha256"] = r["sha256"].encode()
        if r["id"] in erased or r["store_key"] != r["sha256"]:
            # A blurred group photo keeps its original file's hash (so re-ingesting the folder does not
            # bring the unblurred photo back); that hash can equal the old stored copy's key.
            pats[f"image {r['id']} store_key"] = r["store_key"].encode()
        pats[f"image {r['id']} pixel_sha"] = r["pixel_sha"].encode()
        pats[f"image {r['id']} bytes"] = ws.store.get(r["store_key"])
    for r in c.q(f"SELECT * FROM faces WHERE id IN ({','.join('?' * len(face_ids))})", list(face_ids)):
        pats[f"face {r['id']} embedding"] = bytes(r["embedding"])
        pats[f"face {r['id']} embedding prefix"] = bytes(r["embedding"])[:64]
        for k in ("chip_key", "crop_key"):
            pats[f"face {r['id']} {k}"] = r[k].encode()
            pats[f"face {r['id']} {k} bytes"] = ws.store.get(r[k])
    return pats


@pytest.fixture(scope="module")
def world(curated_ws, tmp_path_factory, data_dir):
    """A copy of the curated workspace, exported twice, with a feature cache; then forget."""
    from faceset.export import export
    from faceset.privacy import forget
    from faceset.privacy.consent import set_consent

    tmp = tmp_path_factory.mktemp("forget")
    ws = _copy_ws(curated_ws, tmp / "ws")
    for (name,) in ws.catalog.q("SELECT name FROM sources"):
        set_consent(ws, "research_exemption", source=name)

    labels = read_labels(data_dir / "identities")
    by_path = _image_ids_by_path(ws)
    hers = {by_path[f"identities/{r['file']}"] for r in labels if r["identity"] == WHO
            and f"identities/{r['file']}" in by_path}
    others = {by_path[f"identities/{r['file']}"] for r in labels if r["identity"] != WHO
              and f"identities/{r['file']}" in by_path}
    hers_with_face = {i for i in hers if ws.catalog.scalar("SELECT COUNT(*) FROM faces WHERE image_id=?", (i,))}
    groups = {g: by_path[f"groups/{g}"] for g in GROUPS_WITH_HER if f"groups/{g}" in by_path}
    assert len(hers_with_face) >= 0.8 * len(hers) and groups, "scanned_ws lacks her photos"

    exports = {w: tmp / f"export-{w}" for w in ("crops", "images")}
    for what, out in exports.items():
        export(ws, out, format="imagefolder", what=what, faces="all", progress=False)
    # A cache file like the training helper's feature caches, holding every embedding.
    _, emb = ws.catalog.faces.embeddings()
    (ws.cache_dir / "features").mkdir(exist_ok=True)
    (ws.cache_dir / "features" / "train.npy").write_bytes(emb.tobytes())
    from faceset.report import report

    report(ws)  # <workspace>/report.html inlines face thumbnails

    selfie = data_dir / "identities" / sorted(r["file"] for r in labels if r["identity"] == WHO)[0]
    counts = {t: ws.catalog.scalar(f"SELECT COUNT(*) FROM {t}") for t in ("images", "faces", "files", "people")}
    dry = forget(ws, [selfie], dry_run=True)
    assert counts == {t: ws.catalog.scalar(f"SELECT COUNT(*) FROM {t}") for t in counts}, "dry run changed the catalog"

    matched_faces = [m.face_id for m in dry.matches]
    group_faces = {m.face_id: m for m in dry.matches if m.image_id in groups.values()}
    snap = _snapshot(ws, {m.image_id for m in dry.matches if m.action == "erase_image"},
                     {m.image_id for m in dry.matches if m.action == "blur_face"}, matched_faces)
    paths = [p for m in dry.matches if m.action == "erase_image" for p in m.source_paths]
    blurred = [m.image_id for m in dry.matches if m.action == "blur_face"]
    neighbours = {r["id"]: (r["chip_key"], r["crop_key"]) for r in ws.catalog.q(
        f"SELECT id, chip_key, crop_key FROM faces WHERE image_id IN ({','.join('?' * len(blurred))})", blurred)
        if r["id"] not in matched_faces}
    before_exports = {w: sorted(p.relative_to(o) for p in o.rglob("*") if p.is_file()) for w, o in exports.items()}
    # one selfie is certain of only her closest photos (curate/match: certain is face-only, chosen for precision
    # on unseen people); the rest of her photos are review matches, erased when the request confirms them
    rep = forget(ws, [selfie], include_uncertain=True)
    yield dict(ws=ws, tmp=tmp, dry=dry, rep=rep, hers=hers, hers_with_face=hers_with_face, others=others,
               groups=groups, group_faces=group_faces, snap=snap, paths=paths, exports=exports, selfie=selfie,
               counts=counts, before_exports=before_exports, neighbours=neighbours)
    ws.close()


def test_finds_all_her_photos_and_no_one_elses(world):
    dry = world["dry"]
    found = {m.image_id for m in dry.matches}
    assert world["hers_with_face"] <= found, f"missed {world['hers_with_face'] - found}"
    assert not found & world["others"], "another identity's photo matched"
    assert found - world["hers"] <= set(world["groups"].values())
    assert set(world["groups"].values()) <= found, "not found in the group shots she is in"
    for iid in world["groups"].values():
        assert sum(m.image_id == iid for m in dry.matches) == 1  # she appears once per group shot
    for m in dry.matches:
        assert m.source_paths and all(Path(p).name for p in m.source_paths)
        assert m.action == ("erase_image" if m.image_id in world["hers"] else m.action)


def test_her_images_and_faces_are_gone_and_others_kept(world):
    ws, rep = world["ws"], world["rep"]
    c = ws.catalog
    erased = {m.image_id for m in rep.matches if m.action == "erase_image"}
    assert world["hers_with_face"] <= erased
    assert not c.q(f"SELECT id FROM images WHERE id IN ({','.join('?' * len(erased))})", list(erased))
    assert not c.q(f"SELECT id FROM faces WHERE id IN ({','.join('?' * len(rep.matches))})",
                   [m.face_id for m in rep.matches])
    assert not c.q(f"SELECT id FROM files WHERE image_id IN ({','.join('?' * len(erased))})", list(erased))
    remaining_others = c.scalar(f"SELECT COUNT(*) FROM images WHERE id IN ({','.join('?' * len(world['others']))})",
                                list(world["others"]))
    assert remaining_others == len(world["others"])
    assert rep.images_erased == len(erased) and rep.faces_erased >= len(rep.matches) - rep.faces_blurred
    assert world["counts"]["images"] - c.scalar("SELECT COUNT(*) FROM images") == len(erased)
    a = [e for e in c.q("SELECT details FROM audit WHERE action='forget'")]
    assert len(a) == 1
    d = json.loads(a[0]["details"])
    assert d["images_erased"] == len(erased) and WHO not in a[0]["details"]


def test_blurred_where_she_is_a_bystander(world):
    from faceset.privacy.blocklist import distances, unit
    from faceset.privacy.forget import DEFAULT_THRESHOLD, selfie_embeddings
    from faceset.scan import analyze

    ws, rep = world["ws"], world["rep"]
    q = unit(selfie_embeddings([world["selfie"]]))
    for m in world["group_faces"].values():
        row = ws.catalog.one("SELECT * FROM images WHERE id=?", (m.image_id,))
        if m.action == "erase_image":
            assert row is None
            continue
        assert row is not None and row["pixel_sha"] != world["snap"][f"image {m.image_id} pixel_sha"].decode()
        left = ws.catalog.scalar("SELECT COUNT(*) FROM faces WHERE image_id=?", (m.image_id,))
        assert left == m.faces_in_image - 1
        faces = analyze(ws.image_rgb(m.image_id), embed=True, crops=False)
        emb = np.stack([f.embedding for f in faces]) if faces else np.zeros((0, 128), np.float32)
        assert not (distances(unit(emb), q) <= DEFAULT_THRESHOLD).any(), "her face is still recognisable"
    assert rep.faces_blurred == sum(m.action == "blur_face" for m in rep.matches)
    # The faces beside her keep their rows but get chips/crops cut again from the blurred copy.
    assert world["neighbours"], "expected other people in her group shots"
    for fid, (chip, crop) in world["neighbours"].items():
        now = ws.catalog.one("SELECT chip_key, crop_key FROM faces WHERE id=?", (fid,))
        assert now is not None and now["chip_key"] != chip and now["crop_key"] != crop
        assert ws.store.exists(now["chip_key"]) and not ws.store.exists(crop)


def test_nothing_recoverable_anywhere(world):
    """Every file under the workspace and the refreshed exports, searched for every trace of her."""
    from faceset.export import refresh

    ws, rep = world["ws"], world["rep"]
    assert rep.exports_stale == 2
    assert ws.catalog.scalar("SELECT COUNT(*) FROM exports WHERE stale=1") == 2
    # The stale exports still hold her (what refresh is for): proves the search below can find her.
    blobs_before = b"".join(p.read_bytes() for o in world["exports"].values() for p in o.rglob("*") if p.is_file())
    assert any(v in blobs_before for k, v in world["snap"].items() if k.endswith("bytes"))
    refresh(ws, progress=False)
    assert ws.catalog.scalar("SELECT COUNT(*) FROM exports WHERE stale=1") == 0

    pats = dict(world["snap"])
    for p in world["paths"]:
        pats[f"path {p}"] = p.encode()
        pats[f"relpath {p}"] = "/".join(Path(p).parts[-2:]).encode()
    pats["her name"] = WHO.encode()
    roots = [ws.root, *world["exports"].values()]
    files = [p for r in roots for p in r.rglob("*") if p.is_file()]
    assert any(p.name == "catalog.db" for p in files)
    hits = []
    for f in files:
        raw = f.read_bytes()
        hits += [f"{k} in {f.relative_to(world['tmp'])}" for k, v in pats.items() if v in raw]
    assert not hits, hits[:10]
    assert not (ws.cache_dir / "features" / "train.npy").exists()
    assert not (ws.root / "report.html").exists() and not list(ws.sheets_dir.iterdir())
    for w, o in world["exports"].items():
        after = sorted(p.relative_to(o) for p in o.rglob("*") if p.is_file())
        assert len(after) < len(world["before_exports"][w])


def test_blocklist_drops_her_on_reingest(world, tmp_path, data_dir):
    """Later ingests + scans honour the blocklist: her photos are erased, her bystander face is pixelated."""
    from faceset.ingest import ingest
    from faceset.scan import analyze, scan

    ws = world["ws"]
    labels = read_labels(data_dir / "identities")
    again = tmp_path / "again"
    again.mkdir()
    hers = sorted({p for m in world["dry"].matches if m.action == "erase_image" for p in m.source_paths
                   if f"/{WHO}/" in p})
    for p in hers[-2:]:  # photos scan found her face in before
        shutil.copy(p, again / Path(p).name)
    other = next(r for r in labels if r["identity"] == "barack_obama")  # mirrored: new to the workspace
    Image.open(data_dir / "identities" / other["file"]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        again / "someone.png")
    # A new group shot with her in it: the selfie-many-people photo, re-encoded (new bytes and pixels).
    group = Image.open(data_dir / "groups" / "selfie-many-people.jpg").convert("RGB")
    group.save(again / "party.jpg", quality=92)
    irep = ingest(ws, [again], license="test-only", consent="consent", progress=False, workers=1)
    # #15: ingest consults the blocklist: her own photos are stopped there (nothing stored, no original path),
    # and her face in the group shot is pixelated before its copy is stored.
    assert irep.added == 2 and irep.rejected == {"blocked": 2}
    faces_before = ws.catalog.scalar("SELECT COUNT(*) FROM faces")
    scan(ws, progress=False)
    left = ws.catalog.q("SELECT f.path, f.image_id FROM files f JOIN sources s ON s.id=f.source_id "
                        "WHERE s.name='again' AND f.outcome != 'rejected'")
    assert sorted(r["path"] for r in left) == ["party.jpg", "someone.png"]
    blocked = ws.catalog.q("SELECT f.path, f.sha256 FROM files f JOIN sources s ON s.id=f.source_id "
                           "WHERE s.name='again' AND f.reason_code='blocked'")
    assert len(blocked) == 2 and all(r["path"].startswith("(blocked ") and r["sha256"] is None for r in blocked)
    assert ws.catalog.scalar("SELECT COUNT(*) FROM images WHERE status_reason='blocked'") == 0
    assert ws.catalog.scalar("SELECT COUNT(*) FROM faces") - faces_before >= 2  # Obama + other party faces
    # In the group shot her face is pixelated in the stored copy: nothing there matches her any more.
    party = next(r["image_id"] for r in left if r["path"] == "party.jpg")
    assert ws.catalog.scalar("SELECT COUNT(*) FROM faces WHERE image_id=?", (party,)) >= 1
    from faceset.privacy.blocklist import blocked_mask

    found = analyze(ws.image_rgb(party))
    assert found, "the other people in the group shot are still there"
    assert not blocked_mask(ws, np.stack([f.embedding for f in found])).any()


def test_cli_refuses_without_tty_and_lists_json(world, scanned_ws, tmp_path):
    from faceset.cli import app

    ws = _copy_ws(scanned_ws, tmp_path / "ws2")
    r = CliRunner()
    out = r.invoke(app, ["forget", str(world["selfie"]), "-w", str(ws.root)], input="y\n")
    assert out.exit_code == 2 and "not a terminal" in out.output
    out = r.invoke(app, ["forget", str(world["selfie"]), "-w", str(ws.root), "--dry-run", "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert d["dry_run"] and d["matched_faces"] == len(d["matches"]) > 0
    assert all(m["source_paths"] and "distance" in m for m in d["matches"])
    assert Path(d["contact_sheet"]).exists()
    bad = tmp_path / "not-a-photo.jpg"
    bad.write_bytes(b"hello")
    out = r.invoke(app, ["forget", str(bad), "-w", str(ws.root), "--dry-run"])
    assert out.exit_code == 2 and "not-a-photo.jpg" in out.output
    ws.close()


def test_crash_after_commit_then_rerun_finishes(curated_ws, tmp_path, data_dir, monkeypatch):
    """Killed between the catalog commit and the store deletes: a rerun removes what was left.
    (include_uncertain: this test is about resuming, so the request covers every match, review ones too.)"""
    from faceset.privacy import forget
    from faceset.store import Store

    ws = _copy_ws(curated_ws, tmp_path / "ws")
    who = "jennifer_aniston"
    labels = [r for r in read_labels(data_dir / "identities") if r["identity"] == who]
    selfie = data_dir / "identities" / labels[0]["file"]
    dry = forget(ws, [selfie], dry_run=True, include_uncertain=True)
    keys = [r["store_key"] for r in ws.catalog.q(
        f"SELECT store_key FROM images WHERE id IN ({','.join('?' * len(dry.images))})", dry.images)]
    assert keys

    def crash(self, key):
        raise KeyboardInterrupt  # what a kill looks like from here: nothing after this line runs

    monkeypatch.setattr(Store, "delete", crash)
    with pytest.raises(KeyboardInterrupt):
        forget(ws, [selfie], include_uncertain=True)
    monkeypatch.undo()
    assert not ws.catalog.q(f"SELECT id FROM images WHERE id IN ({','.join('?' * len(dry.images))})", dry.images)
    assert all(ws.store.exists(k) for k in keys)  # committed, but the old copies are still on disk

    again = forget(ws, [selfie], include_uncertain=True)
    assert again.matches == [] and again.store_objects_deleted >= len(keys)
    assert not any(ws.store.exists(k) for k in keys)
    assert ws.catalog.scalar("SELECT COUNT(*) FROM blocklist") == 1  # the rerun did not block them twice
    ws.close()


def test_audit_log_covers_the_pipeline_without_names_or_faces(world, data_dir):
    from faceset.privacy.audit import entries

    log = entries(world["ws"])
    actions = {e["action"] for e in log}
    assert {"ingest", "scan", "people", "split", "export", "forget", "blocklist_add"} <= actions, actions
    blob = json.dumps([e["details"] for e in log])
    for r in read_labels(data_dir / "identities") + read_labels(data_dir / "groups"):
        assert r["file"] not in blob and Path(r["file"]).name not in blob
        assert not r.get("identity") or r["identity"] not in blob
    assert str(data_dir) not in blob

    def longest_list(v):
        if isinstance(v, dict):
            return max([longest_list(x) for x in v.values()] or [0])
        if isinstance(v, list):
            return max([len(v), *[longest_list(x) for x in v]])
        return 0

    assert max(longest_list(e["details"]) for e in log) < 32  # nothing like a 128-number embedding
    forgot = next(e for e in log if e["action"] == "forget")["details"]
    assert forgot["images_erased"] == world["rep"].images_erased and forgot["faces_blurred"] >= 1


def test_blur_boxes_for_faces_without_a_row(curated_ws, tmp_path, data_dir):
    """The hook for faces scan's blocklist dropped from a group photo: pixelated in the stored copy."""
    from faceset.privacy.blocklist import distances, unit
    from faceset.privacy.forget import blur_boxes
    from faceset.scan import analyze

    ws = _copy_ws(curated_ws, tmp_path / "ws")
    img = ws.catalog.scalar("SELECT image_id FROM faces GROUP BY image_id HAVING COUNT(*) >= 3 ORDER BY image_id")
    faces = ws.catalog.q("SELECT * FROM faces WHERE image_id=? ORDER BY idx", (img,))
    gone = max(faces, key=lambda f: f["w"] * f["h"])
    old_key = ws.catalog.scalar("SELECT store_key FROM images WHERE id=?", (img,))
    with ws.catalog.tx() as c:  # as if scan had dropped it
        c.execute("DELETE FROM faces WHERE id=?", (gone["id"],))
    blur_boxes(ws, img, [(gone["x"], gone["y"], gone["w"], gone["h"])])
    assert not ws.store.exists(old_key)
    assert not any(ws.store.exists(f[k]) for f in faces if f["id"] != gone["id"] for k in ("chip_key", "crop_key"))
    assert all(ws.store.exists(f[k]) for f in ws.catalog.q("SELECT * FROM faces WHERE image_id=?", (img,))
               for k in ("chip_key", "crop_key"))
    found = analyze(ws.image_rgb(img), crops=False)
    assert len(found) >= len(faces) - 2  # the others are still there
    gx, gy, gw, gh = gone["x"], gone["y"], gone["w"], gone["h"]
    for f in found:  # nothing detected where the face was, and nothing that is that person
        x, y, w, h = f.box
        inter = max(0, min(x + w, gx + gw) - max(x, gx)) * max(0, min(y + h, gy + gh) - max(y, gy))
        assert inter / (w * h + gw * gh - inter) < 0.3
    target = unit(np.frombuffer(gone["embedding"], np.float32))
    assert distances(unit(np.stack([f.embedding for f in found])), target).min() > 0.3
    assert ws.catalog.scalar("SELECT COUNT(*) FROM audit WHERE action='blur'") == 1
    ws.close()
