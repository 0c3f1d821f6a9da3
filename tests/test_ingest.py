"""ingest(): provenance, labels, exact duplicates, safe archives, privacy of stored copies, CLI."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import read_labels
from faceset import init_workspace
from faceset.ingest import IngestError, ingest

CLI = [sys.executable, "-c", "from faceset.cli import main; main()"]


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def counts(ws) -> dict:
    c = ws.catalog
    return {t: c.scalar(f"SELECT COUNT(*) FROM {t}") for t in ("sources", "images", "files", "labels")}


# -- a real UTKFace subset: 150 files plus every member of 15 byte-identical groups -----------------
@pytest.fixture(scope="session")
def utk_subset(data_dir, tmp_path_factory):
    utk = data_dir / "utkface"
    rows = {r["file"]: r for r in read_labels(utk)}
    groups = defaultdict(list)
    with open(utk / "exact_duplicates.csv", newline="") as f:
        for r in csv.DictReader(f):
            groups[r["group"]].append(r["file"])
    chosen = sorted(rows)[:150]
    for g in sorted(groups, key=int)[:15]:
        chosen += groups[g]
    chosen = sorted(set(chosen))
    folder = tmp_path_factory.mktemp("utk") / "utk"
    folder.mkdir()
    for f in chosen:
        shutil.copy2(utk / f, folder / Path(f).name)
    before = {p.name: (sha(p), p.stat().st_mtime_ns) for p in folder.iterdir()}
    return folder, {Path(f).name: rows[f] for f in chosen}, before


@pytest.fixture(scope="session")
def utk_ws(utk_subset, tmp_path_factory):
    folder, _, _ = utk_subset
    ws = init_workspace(tmp_path_factory.mktemp("w") / "ws")
    rep = ingest(ws, [folder], license="UTKFace research-only", consent="research_exemption",
                 labels="utkface", progress=False)
    return ws, rep


def test_utkface_added_duplicates_and_labels(utk_subset, utk_ws):
    folder, rows, _ = utk_subset
    ws, rep = utk_ws
    by_sha = defaultdict(list)
    for name in sorted(rows):
        by_sha[sha(folder / name)].append(name)
    assert rep.added == len(by_sha) and rep.duplicates == len(rows) - len(by_sha)
    assert rep.n_rejected == 0 and rep.duplicate_kinds == {"same_bytes": rep.duplicates}
    c = ws.catalog
    assert c.scalar("SELECT COUNT(*) FROM images WHERE status='new'") == len(by_sha)
    # every original path is recorded, duplicates point at the kept image
    files = {r["path"]: dict(r) for r in c.q("SELECT * FROM files")}
    assert set(files) == set(rows)
    for names in by_sha.values():
        img = {files[n]["image_id"] for n in names}
        assert len(img) == 1 and None not in img
        assert [files[n]["outcome"] for n in names] == ["added"] + ["duplicate"] * (len(names) - 1)
        # labels: the first file's (sorted order), as in labels.csv
        want = {k: rows[names[0]][k] for k in ("age", "gender", "race") if rows[names[0]][k]}
        got = {r["name"]: r["value"] for r in c.q("SELECT name, value FROM labels WHERE image_id=?", (img.pop(),))}
        assert got == want
    # conflicting labels of duplicates are reported, not silently merged
    n_conflicting = sum(1 for names in by_sha.values() if len(
        {tuple(rows[n][k] for k in ("age", "gender", "race")) for n in names}) > 1)
    assert n_conflicting > 0 and rep.label_conflicts >= n_conflicting


def test_stored_copies_are_clean_and_match_pixels(utk_subset, utk_ws):
    folder, rows, before = utk_subset
    ws, _ = utk_ws
    for r in ws.catalog.q("SELECT id, store_key, pixel_sha, width, height FROM images"):
        blob = ws.store.get(r["store_key"])
        assert b"Exif" not in blob and b"http://ns.adobe.com/xap" not in blob
        rgb = ws.image_rgb(r["id"])
        assert rgb.shape == (r["height"], r["width"], 3)
        # JPEG identity = sha256 of the stripped bytes, which are exactly the stored copy
        assert hashlib.sha256(b"jpeg-stripped:" + blob).hexdigest() == r["pixel_sha"]
    for name in list(rows)[:20]:  # and the stored copy decodes to the original's pixels (lossless strip)
        iid = ws.catalog.scalar("SELECT image_id FROM files WHERE path=?", (name,))
        with Image.open(folder / name) as im:
            assert np.array_equal(ws.image_rgb(iid), np.asarray(im.convert("RGB")))
    # originals untouched, and their names live only in the catalog (never inside the store)
    assert {p.name: (sha(p), p.stat().st_mtime_ns) for p in folder.iterdir()} == before
    names = [n.encode() for n in list(rows)[:30]]
    for p in ws.store.root.rglob("*"):
        assert p.name.encode() not in names
    for d in ws.catalog.q("SELECT details FROM audit"):
        assert not any(n.decode() in d[0] for n in names)


def test_second_identical_ingest_adds_nothing(utk_subset, utk_ws):
    folder, rows, _ = utk_subset
    ws, _ = utk_ws
    snap = counts(ws), ws.catalog.q("SELECT * FROM images ORDER BY id")
    keys = set(ws.store.keys())
    rep = ingest(ws, [folder], license="UTKFace research-only", consent="research_exemption",
                 labels="utkface", progress=False)
    assert (rep.added, rep.duplicates, rep.n_rejected, rep.skipped) == (0, 0, 0, len(rows))
    assert (counts(ws), ws.catalog.q("SELECT * FROM images ORDER BY id")) == snap and set(ws.store.keys()) == keys


def test_reencoded_copy_is_one_image(ws, data_dir, tmp_path):
    src = data_dir / "nonface" / "skimage" / "coffee.png"
    d = tmp_path / "p"
    d.mkdir()
    shutil.copy(src, d / "a.png")
    shutil.copy(src, d / "b_same_bytes.png")
    with Image.open(src) as im:
        im.convert("RGB").save(d / "c_reencoded.bmp")
        im.convert("RGB").save(d / "d_reencoded.webp", lossless=True)
    rep = ingest(ws, [d], license="BSD-3-Clause", consent="public_domain", progress=False, workers=1)
    assert rep.added == 1 and rep.duplicate_kinds == {"same_bytes": 1, "same_pixels": 2}
    assert ws.catalog.scalar("SELECT COUNT(DISTINCT image_id) FROM files") == 1
    assert ws.catalog.scalar("SELECT COUNT(*) FROM files") == 4
    assert list(ws.store.keys()) == [ws.catalog.scalar("SELECT store_key FROM images")]  # no orphan copies


def test_jpeg_with_other_metadata_is_one_image_and_its_png_a_near_duplicate(ws, data_dir, tmp_path):
    """JPEG identity is its stripped compressed data (no full decode at ingest); a lossless PNG of the
    same pixels is then a second image at ingest, and curate's find_duplicates links the two."""
    from faceset.curate import find_duplicates

    src = sorted((data_dir / "utkface" / "images").iterdir())[0]
    raw = src.read_bytes()
    d = tmp_path / "p"
    d.mkdir()
    (d / "a.jpg").write_bytes(raw)
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc"
    app1 = b"Exif\0\0" + exif.tobytes()
    (d / "b_with_exif.jpg").write_bytes(raw[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + raw[2:])
    with Image.open(src) as im:
        im.convert("RGB").save(d / "c_lossless.png")
    rep = ingest(ws, [d], license="UTKFace research-only", consent="research_exemption", progress=False, workers=1)
    assert rep.added == 2 and rep.duplicate_kinds == {"same_pixels": 1}
    ids = dict(ws.catalog.q("SELECT path, image_id FROM files"))
    assert ids["a.jpg"] == ids["b_with_exif.jpg"] != ids["c_lossless.png"]
    assert b"SpyCam" not in ws.store.get(ws.catalog.scalar("SELECT store_key FROM images WHERE id=?", (ids["a.jpg"],)))
    assert np.array_equal(ws.image_rgb(ids["a.jpg"]), ws.image_rgb(ids["c_lossless.png"]))
    find_duplicates(ws, progress=False)
    dup_of = dict(ws.catalog.q("SELECT id, dup_of FROM images"))
    assert {dup_of[ids["a.jpg"]], dup_of[ids["c_lossless.png"]]} - {None} in ({ids["a.jpg"]}, {ids["c_lossless.png"]})


def test_refuses_without_licence_or_consent_and_touches_nothing(ws, utk_subset):
    folder = utk_subset[0]
    for kw, msg in ((dict(license=None, consent="consent"), "licence"),
                    (dict(license="CC-BY-4.0", consent=None), "consent"),
                    (dict(license="CC-BY-4.0", consent="because"), "not one of")):
        with pytest.raises(IngestError, match=msg):
            ingest(ws, [folder], progress=False, **kw)
    assert counts(ws) == {"sources": 0, "images": 0, "files": 0, "labels": 0}
    assert list(ws.store.keys()) == []


def test_cli_refusal_exit_2_one_clear_message(tmp_path, utk_subset):
    r = cli("ingest", utk_subset[0], "-w", tmp_path / "ws", "--consent", "consent")
    assert r.returncode == 2 and "refusing to ingest" in r.stderr and "--license" in r.stderr
    assert "Traceback" not in r.stderr
    r = cli("ingest", tmp_path / "nope", "-w", tmp_path / "ws", "--license", "x", "--consent", "consent")
    assert r.returncode == 2 and "no such file" in r.stderr


def _png(color=(10, 200, 30), size=(64, 64)) -> bytes:
    b = io.BytesIO()
    Image.new("RGB", size, color).save(b, "PNG")
    return b.getvalue()


def test_zip_slip_absolute_and_symlink_members_rejected(ws, tmp_path):
    z = tmp_path / "in" / "photos.zip"
    z.parent.mkdir()
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok/one.png", _png((1, 2, 3)))
        zf.writestr("ok/two.png", _png((4, 5, 6)))
        zf.writestr("../../evil.png", _png((7, 8, 9)))
        zf.writestr("/abs/evil2.png", _png((9, 8, 7)))
        link = zipfile.ZipInfo("ok/link.png")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
        zf.writestr("__MACOSX/ok/._one.png", b"\0\5\26\7junk")
    t = tmp_path / "in" / "photos.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        for name, data in (("a/good.png", _png((11, 12, 13))), ("../escape.png", _png((14, 15, 16)))):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for name, typ in (("a/sym.png", tarfile.SYMTYPE), ("a/hard.png", tarfile.LNKTYPE), ("a/dev", tarfile.CHRTYPE)):
            ti = tarfile.TarInfo(name)
            ti.type = typ
            ti.linkname = "/etc/passwd"
            tf.addfile(ti)
    rep = ingest(ws, [z, t], license="own photos", consent="consent", labels="folder", progress=False)
    assert rep.added == 3
    assert rep.rejected == {"unsafe_path": 7} and rep.ignored == 1
    reasons = dict(rep.rejects)
    assert "escapes" in reasons["../../evil.png"] and "absolute" in reasons["/abs/evil2.png"]
    assert "symlink" in reasons["ok/link.png"] and "hard-link" in reasons["a/hard.png"]
    assert not (tmp_path / "evil.png").exists() and not Path("/abs").exists()
    names = [r["name"] for r in ws.catalog.q("SELECT name FROM sources ORDER BY id")]
    assert names == ["photos", "photos-2"]  # two SRCs with the same stem stay two sources
    assert {r[0] for r in ws.catalog.q("SELECT value FROM labels")} == {"ok", "a"}


def test_manifest_rows_carry_licence_consent_and_labels(ws, data_dir, tmp_path):
    utk = data_dir / "utkface"
    rows = read_labels(utk)[:12]
    m = tmp_path / "m.csv"
    with open(m, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "gender", "license", "consent"])
        for i, r in enumerate(rows):
            w.writerow([str(utk / r["file"]), r["gender"], "CC0" if i % 2 else "", "consent" if i % 3 == 0 else ""])
        w.writerow([str(tmp_path / "gone.jpg"), "male", "", ""])
    with pytest.raises(IngestError, match="licence"):  # rows without a licence and no default
        ingest(ws, [m], license=None, consent="license", labels="column:gender", progress=False)
    with pytest.raises(IngestError, match="no column age"):
        ingest(ws, [m], license="x", consent="license", labels="column:age", progress=False)
    assert counts(ws)["files"] == 0
    rep = ingest(ws, [m], license="research-only", consent="license", labels="column:gender", progress=False)
    assert rep.added == len({sha(utk / r["file"]) for r in rows}) and rep.rejected == {"missing": 1}
    q = ws.catalog.q("""SELECT f.path, COALESCE(i.license, s.license) lic, COALESCE(i.consent, s.consent) con, l.value
                        FROM files f JOIN images i ON i.id=f.image_id JOIN sources s ON s.id=i.source_id
                        JOIN labels l ON l.image_id=i.id AND l.name='gender' WHERE f.outcome='added'""")
    want = {str(utk / r["file"]): ("CC0" if i % 2 else "research-only", "consent" if i % 3 == 0 else "license",
                                   r["gender"]) for i, r in enumerate(rows)}
    assert {r["path"]: (r["lic"], r["con"], r["value"]) for r in q} == {k: want[k] for k in (r["path"] for r in q)}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"file": str(utk / rows[0]["file"]), "consent": "maybe"}) + "\n")
    with pytest.raises(IngestError, match="not one of"):
        ingest(ws, [bad], license="x", consent="consent", progress=False)


def test_identities_folder_labels(ws, data_dir):
    ids = data_dir / "identities"
    rows = read_labels(ids)
    rep = ingest(ws, [ids], license="test-only", consent="research_exemption", labels="folder:identity",
                 progress=False)
    files = {r["path"]: r["image_id"]
             for r in ws.catalog.q("SELECT path, image_id FROM files WHERE image_id IS NOT NULL")}
    others = {p.relative_to(ids).as_posix() for p in ids.rglob("*") if p.is_file()} - {r["file"] for r in rows}
    assert {p for p, _ in rep.rejects} == others  # labels.csv and the like: "not an image", not a crash
    assert set(files) == {r["file"] for r in rows}
    lab = {r["image_id"]: r["value"] for r in ws.catalog.q("SELECT image_id, value FROM labels WHERE name='identity'")}
    for r in rows:
        assert lab[files[r["file"]]] == r["identity"]
    # the RGBA PNG is stored as RGB
    i = files[next(r["file"] for r in rows if r["file"].endswith("32bit.png"))]
    assert ws.image_rgb(i).shape[2] == 3


def test_cli_messy_folder_json_and_status(tmp_path, data_dir):
    d = tmp_path / "messy"
    (d / "sub dir").mkdir(parents=True)
    shutil.copy(data_dir / "nonface" / "skimage" / "rocket.jpg", d / "sub dir" / "🚀 fusée.jpg")
    shutil.copy(data_dir / "nonface" / "skimage" / "chelsea.png", d / "naïve name\twith tab.png")
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.txt").write_text("not an image")
    (d / "cut.jpg").write_bytes((data_dir / "nonface" / "skimage" / "rocket.jpg").read_bytes()[:3000])
    (d / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (d / os.fsdecode(b"bad-\xff-name.png")).write_bytes(_png())
    r = cli("ingest", d, "-w", tmp_path / "ws", "--license", "own", "--consent", "consent", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["added"] == 3 and out["ignored"] == 1
    assert out["rejected"] == {"zero_byte": 1, "not_image": 1, "truncated": 1}
    assert {x["path"] for x in out["rejects"]} == {"empty.jpg", "notes.txt", "cut.jpg"}
    r2 = cli("ingest", d, "-w", tmp_path / "ws", "--license", "own", "--consent", "consent")
    assert r2.returncode == 0 and "already recorded" in r2.stdout
    s = json.loads(cli("status", "-w", tmp_path / "ws", "--json").stdout)
    assert s["images"] == 3 and s["rejected_by_reason"] == out["rejected"]


def test_cli_refusal_creates_no_workspace(tmp_path, utk_subset):
    r = cli("ingest", utk_subset[0], "-w", tmp_path / "fresh", "--license", "x")
    assert r.returncode == 2 and "consent" in r.stderr and not (tmp_path / "fresh").exists()


def _die_on_crash_png(path, fs_path, data, known_sha, _real=None):
    import faceset.ingest as ing

    if "crash" in path:
        os._exit(1)  # what a decoder segfault or the OOM killer looks like from the parent
    return ing._real_process(path, fs_path, data, known_sha)


def test_worker_crash_rejects_that_file_and_batch_goes_on(ws, tmp_path, monkeypatch):
    import faceset.ingest as ing

    d = tmp_path / "c"
    d.mkdir()
    for i in range(6):
        (d / f"ok_{i}.png").write_bytes(_png((i * 40, 10, 10)))
    (d / "crash.png").write_bytes(_png((0, 0, 200)))
    monkeypatch.setattr(ing, "_real_process", ing._process, raising=False)
    monkeypatch.setattr(ing, "_process", _die_on_crash_png)
    rep = ingest(ws, [d], license="own", consent="consent", progress=False, workers=2)
    assert rep.added == 6 and rep.rejected == {"corrupt": 1}
    assert rep.rejects == [("crash.png", "corrupt: the image decoder crashed on this file")]


def test_cli_regex_labels_with_value_maps(tmp_path, utk_subset):
    folder, rows, _ = utk_subset
    r = cli("ingest", folder, "-w", tmp_path / "ws", "--license", "x", "--consent", "research_exemption",
            "--labels", r"regex:^(?P<age>\d+)_(?P<gender>[01])_", "--label-map", "gender=0:male,1:female", "--json")
    assert r.returncode == 0, r.stderr
    from faceset import open_workspace

    ws = open_workspace(tmp_path / "ws")
    got = {r["path"]: (r["age"], r["gender"]) for r in ws.catalog.q(
        """SELECT f.path, a.value age, g.value gender FROM files f
           JOIN labels a ON a.image_id=f.image_id AND a.name='age'
           JOIN labels g ON g.image_id=f.image_id AND g.name='gender' WHERE f.outcome='added'""")}
    assert got and all(got[p] == (rows[p]["age"], rows[p]["gender"]) for p in got)
    ws.close()
    bad = cli("ingest", folder, "-w", tmp_path / "ws", "--license", "x", "--consent", "consent",
              "--labels", "regex:^(\\d+)_")
    assert bad.returncode == 2 and "named groups" in bad.stderr


def test_truncated_tar_and_unicode_member_names(ws, tmp_path):
    t = tmp_path / "photos.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        for i, name in enumerate(("été/ü-1.png", "日本/写真.png", "z/3.png")):
            data = _png((i * 80, 50, 50))
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    whole = t.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    rep = ingest(ws, [t], license="own", consent="consent", labels="folder:place", progress=False)
    assert rep.added == 3
    assert {r[0] for r in ws.catalog.q("SELECT value FROM labels")} == {"été", "日本", "z"}
    rep2 = ingest(ws, [cut], license="own", consent="consent", progress=False)
    assert rep2.rejected.get("truncated") == 1 and rep2.added == 0  # members before the cut are duplicates
    assert "later members unread" in rep2.rejects[-1][1]


def test_limits_are_configurable(ws, tmp_path):
    d = tmp_path / "l"
    d.mkdir()
    (d / "small.png").write_bytes(_png(size=(40, 40)))
    (d / "big.png").write_bytes(_png(size=(300, 200)))
    (d / "mid.png").write_bytes(_png((1, 1, 1), size=(120, 120)))
    rep = ingest(ws, [d], license="own", consent="consent", progress=False, workers=1,
                 min_side=64, max_pixels=50_000, max_file_bytes=10_000)
    assert dict(rep.rejects) == {"small.png": "too_small: 40x40 is smaller than 64 px on a side",
                                 "big.png": "bomb: 300x200 = 60,000 pixels, over the --max-pixels 50,000 limit"}
    assert rep.added == 1
    (d / "noise.bmp").write_bytes(b"BM" + bytes(20_000))
    rep = ingest(ws, [d], license="own", consent="consent", progress=False, workers=1, max_file_bytes=10_000)
    assert rep.rejected == {"too_large_file": 1} and rep.skipped == 3


def test_same_path_twice_in_one_manifest_counts_once(ws, data_dir, tmp_path):
    f = data_dir / "utkface" / read_labels(data_dir / "utkface")[0]["file"]
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps({"path": str(p)}) + "\n" for p in (f, f, tmp_path / "x.jpg", tmp_path / "x.jpg")))
    rep = ingest(ws, [m], license="x", consent="research_exemption", progress=False)
    assert (rep.added, rep.duplicates, rep.n_rejected, rep.skipped) == (1, 0, 1, 2)
    assert [r[0] for r in ws.catalog.q("SELECT outcome FROM files ORDER BY id")] == ["added", "rejected"]
