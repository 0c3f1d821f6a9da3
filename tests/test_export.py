"""Export, datasheet, report and build on a small real workspace.

One session fixture runs the real pipeline (ingest -> scan -> curate) via
`faceset.build.build` on ~40 real photos: labelled UTKFace chips (one with EXIF
+ GPS added, one near-duplicate), identity photos with a folder gender label, a
group photo, two non-faces and a consent-'unknown' source. Every test reads
the exports it makes from that workspace; expectations come from labels.csv and
the catalog, never from hard-coded counts.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import read_labels

IDS = {"male": {"matt_damon": 4, "george_clooney": 3}, "female": {"angelina_jolie": 3, "jennifer_aniston": 3}}
N_UTK_PER_GENDER = 8


def _utk_rows(data_dir: Path, offset: int = 0) -> list[dict]:
    rows = [r for r in read_labels(data_dir / "utkface") if r["gender"] and 20 <= int(r["age"]) <= 60]
    dup_files = {r["file"] for r in csv.DictReader(open(data_dir / "utkface" / "exact_duplicates.csv"))}
    rows = [r for r in rows if r["file"] not in dup_files]
    pick = []
    for g in ("male", "female"):
        pick += [r for r in rows if r["gender"] == g][offset:offset + N_UTK_PER_GENDER]
    return pick


@pytest.fixture(scope="session")
def built(tmp_path_factory, data_dir):
    """A real workspace built end to end, plus where every original came from."""
    from faceset.build import build
    from faceset.ingest import ingest
    from faceset.workspace import init_workspace

    root = tmp_path_factory.mktemp("export")
    src = root / "photos"
    originals: list[Path] = []
    truth: dict[str, str] = {}  # original basename -> expected gender

    utk = src / "utk"
    utk.mkdir(parents=True)
    rows = _utk_rows(data_dir)
    for r in rows:
        p = data_dir / "utkface" / r["file"]
        shutil.copy(p, utk / p.name)
        originals.append(p)
        truth[p.name] = r["gender"]
    # An extra photo re-saved with EXIF (camera + GPS) and XMP: it must be exported, clean.
    rx = _utk_rows(data_dir, offset=N_UTK_PER_GENDER)[0]
    with Image.open(data_dir / "utkface" / rx["file"]) as im:
        exif = Image.Exif()
        exif[0x010F] = "FacesetTestCam"  # Make
        exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}  # GPS IFD
        name = f"{rx['age']}_{0 if rx['gender'] == 'male' else 1}_0_29990101000000001.jpg.chip.jpg"
        im.save(utk / name, "JPEG", quality=92, exif=exif, xmp=b"<x:xmpmeta>secret-xmp</x:xmpmeta>")
    with Image.open(utk / name) as im:
        assert im.getexif() and "xmp" in im.info  # the test input really carries metadata
    originals.append(utk / name)
    truth[name] = rx["gender"]
    exif_name = name
    # Near-duplicate of another image: smaller and re-encoded (curation sets images.dup_of).
    r1 = rows[N_UTK_PER_GENDER]
    with Image.open(data_dir / "utkface" / r1["file"]) as im:
        name = f"{r1['age']}_1_0_29990101000000002.jpg.chip.jpg"
        im.resize((180, 180), Image.LANCZOS).save(utk / name, "JPEG", quality=80)
        originals.append(utk / name)
        truth[name] = r1["gender"]

    ids = src / "ids"
    for gender, people in IDS.items():
        (ids / gender).mkdir(parents=True, exist_ok=True)
        for person, n in people.items():
            for p in sorted((data_dir / "identities" / person).glob("*.jpg"))[:n]:
                if "reflection" in p.name:
                    continue
                shutil.copy(p, ids / gender / p.name)
                originals.append(p)
                truth[p.name] = gender

    groups = src / "groups"
    groups.mkdir()
    shutil.copy(data_dir / "groups" / "couple.jpg", groups / "couple.jpg")
    originals.append(data_dir / "groups" / "couple.jpg")
    nonface = src / "nonface"
    nonface.mkdir()
    for n in ("chelsea.png", "hubble_deep_field.jpg"):
        shutil.copy(data_dir / "nonface" / "skimage" / n, nonface / n)
        originals.append(data_dir / "nonface" / "skimage" / n)
    unknown = src / "unknown"
    unknown.mkdir()
    extra = [r for r in read_labels(data_dir / "utkface") if r["gender"] and 25 <= int(r["age"]) <= 50][-3:]
    for r in extra:
        p = data_dir / "utkface" / r["file"]
        shutil.copy(p, unknown / p.name)
        originals.append(p)

    out = root / "out"
    ws = init_workspace(out / "workspace")
    ingest(ws, [ids], license="MIT-test-only", consent="research_exemption", labels="folder:gender", progress=False)
    ingest(ws, [groups], license="MIT-test-only", consent="consent", progress=False)
    ingest(ws, [nonface], license="CC0-1.0", consent="public_domain", progress=False)
    ingest(ws, [unknown], license="CC-BY-NC-4.0", consent="unknown", labels="utkface", progress=False)
    ws.close()
    rep = build([utk], out, license="CC-BY-NC-4.0", consent="research_exemption", labels="utkface",
                format="imagefolder", what="crops", label="gender", progress=False)
    from faceset.workspace import open_workspace

    w = open_workspace(rep.workspace)
    yield {"root": root, "rep": rep, "ws": w, "originals": originals, "truth": truth,
           "unknown_names": {p.name for p in unknown.iterdir()}, "exif_name": exif_name}
    w.close()


# -- helpers ---------------------------------------------------------------


def _images_in(export: Path):
    """Yield (where, bytes) for every image inside an export, archives and Parquet included."""
    import pyarrow.parquet as pq

    for p in sorted(export.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix in (".jpg", ".png"):
            yield str(p), p.read_bytes()
        elif p.suffix == ".zip":
            with zipfile.ZipFile(p) as z:
                for n in z.namelist():
                    yield f"{p.name}:{n}", z.read(n)
        elif p.suffix == ".tar":
            with tarfile.open(p) as t:
                for m in t.getmembers():
                    if m.name.endswith((".jpg", ".png")):
                        yield f"{p.name}:{m.name}", t.extractfile(m).read()
        elif p.suffix == ".parquet":
            for row in pq.read_table(p, columns=["image"]).column("image").to_pylist():
                yield f"{p.name}:{row['path']}", row["bytes"]


def _assert_clean(export: Path, originals: list[Path]) -> int:
    """No EXIF/XMP in any image; no original basename or stem in any file's bytes (or Parquet strings)."""
    import pyarrow.parquet as pq

    n = 0
    for where, data in _images_in(export):
        with Image.open(io.BytesIO(data)) as im:
            assert len(im.getexif()) == 0, f"EXIF in {where}"
            keys = {k.lower() for k in im.info}
            assert not any("exif" in k or "xmp" in k for k in keys), f"metadata {keys} in {where}"
        assert b"FacesetTestCam" not in data and b"secret-xmp" not in data
        n += 1
    needles = {s.encode() for p in originals for s in (p.name, p.stem, p.name.split(".")[0])}
    for p in export.rglob("*"):
        if not p.is_file():
            continue
        blobs = [p.read_bytes()]
        if p.suffix == ".parquet":  # compressed pages: check the decoded strings too
            t = pq.read_table(p)
            blobs.append(json.dumps([c for c in t.drop(["image"]).to_pylist()]).encode())
            blobs.append(" ".join(r["path"] for r in t.column("image").to_pylist()).encode())
        for b in blobs:
            for s in needles:
                assert s not in b, f"original name {s!r} found in {p.name}"
    return n


def _manifest(export: Path) -> list[dict]:
    with open(export / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _item_origins(ws, export_id: int) -> dict[int, tuple[str, str | None]]:
    """face_id -> (original basename, person split) for an export's items."""
    rows = ws.catalog.q(
        """SELECT ei.face_id, MIN(fl.path) AS path, p.split FROM export_items ei
           JOIN faces f ON f.id = ei.face_id JOIN files fl ON fl.image_id = f.image_id
           LEFT JOIN people p ON p.id = f.person_id WHERE ei.export_id = ? GROUP BY ei.face_id""", (export_id,))
    return {r["face_id"]: (Path(r["path"]).name, r["split"]) for r in rows}


# -- build + imagefolder ---------------------------------------------------------


def test_build_end_to_end(built):
    rep, ws = built["rep"], built["ws"]
    assert list(rep.steps) == ["ingest", "scan", "duplicates", "people", "splits", "export", "report"]
    assert Path(rep.dataset, "datasheet.md").exists() and Path(rep.report).exists()
    assert not Path(rep.report).is_relative_to(Path(rep.dataset)), "the owner's report must stay out of the export"
    assert Path(rep.report) == Path(rep.workspace) / "report.html", "in the workspace, where forget shreds it"
    exp = rep.steps["export"]
    assert rep.items == exp["items"] and rep.classes == exp["classes"]
    # Every exported record is a labelled face whose class is the truth for its original file.
    origins = _item_origins(ws, exp["export_id"])
    assert len(origins) == exp["items"] > 0
    for name, _ in origins.values():
        assert name in built["truth"], f"{name} should not be exported (unlabelled, unknown consent or non-face)"
    by_class = Counter(built["truth"][n] for n, _ in origins.values())
    assert by_class == Counter(exp["classes"])
    # Default exclusions are visible in the report: unknown consent, the near-duplicate.
    assert exp["skipped"].get("consent_unknown", 0) >= 1
    assert exp["skipped"].get("near_duplicate", 0) >= 1
    assert not {n for n, _ in origins.values()} & built["unknown_names"]
    assert built["exif_name"] in {n for n, _ in origins.values()}, "the EXIF+GPS photo should be exported (clean)"


def test_leak_checker_catches_leaks(built, tmp_path):
    """The cleanliness check used below must fail on a planted filename and on planted EXIF."""
    src = Path(built["rep"].dataset)
    leak = tmp_path / "leak"
    shutil.copytree(src, leak)
    (leak / "notes.txt").write_text("made from " + built["originals"][0].name)
    with pytest.raises(AssertionError, match="original name"):
        _assert_clean(leak, built["originals"])
    shutil.rmtree(leak)
    shutil.copytree(src, leak)
    victim = next(leak.rglob("*.jpg"))
    exif = Image.Exif()
    exif[0x010F] = "x"
    Image.open(victim).save(victim, "JPEG", exif=exif)
    with pytest.raises(AssertionError, match="EXIF"):
        _assert_clean(leak, built["originals"])


def test_imagefolder_layout_matches_people_split(built):
    rep, ws = built["rep"], built["ws"]
    out = Path(rep.dataset)
    man = {r["id"]: r for r in _manifest(out)}
    files = [p for p in out.rglob("*") if p.suffix in (".jpg", ".png")]
    assert len(files) == len(man) == rep.steps["export"]["items"]
    for p in files:
        split, cls = p.parent.parent.name, p.parent.name
        row = man[p.stem]
        assert (row["split"], row["label"]) == (split, cls)
        assert split in ("train", "val", "test")
    # Folder split == people.split in the catalog, and no person hash in two splits.
    origins = _item_origins(ws, rep.steps["export"]["export_id"])
    assert Counter(s for _, s in origins.values()) == Counter(r["split"] for r in man.values())
    person_splits: dict[str, set] = {}
    for r in man.values():
        person_splits.setdefault(r["person"], set()).add(r["split"])
    assert all(len(s) == 1 for s in person_splits.values())
    # Identity photos: several per person, so the clusterer must have kept each person on one side.
    assert max(Counter(r["person"] for r in man.values()).values()) >= 2
    assert _assert_clean(out, built["originals"]) == len(files)


def test_manifest_columns_and_hashed_ids(built):
    man = _manifest(Path(built["rep"].dataset))
    for col in ("id", "split", "label", "person", "source", "license", "consent"):
        assert col in man[0]
    assert all(len(r["id"]) == 20 and int(r["id"], 16) >= 0 for r in man)
    assert len({r["id"] for r in man}) == len(man)
    assert {r["consent"] for r in man} <= {"research_exemption", "consent", "public_domain", "license"}
    jl = [json.loads(x) for x in open(Path(built["rep"].dataset) / "manifest.jsonl")]
    assert [r["id"] for r in jl] == [r["id"] for r in man]


# -- other formats ---------------------------------------------------------


@pytest.fixture(scope="session")
def exports(built):
    from faceset.export import export

    ws, root = built["ws"], built["root"]
    return {
        "zip": export(ws, root / "x-zip", format="zip", what="chips", label="gender", shard_size=3, sample=2,
                      progress=False),
        "webdataset": export(ws, root / "x-wds", format="webdataset", what="crops", label="gender", shard_size=4,
                             progress=False),
        "parquet": export(ws, root / "x-pq", format="parquet", what="crops", label="gender", shard_size=5,
                          progress=False),
    }


def test_zip_shards_hold_n_each_plus_samples(built, exports):
    rep = exports["zip"]
    out = Path(rep.path)
    for cls, n in rep.classes.items():
        shards = sorted(out.glob(f"{cls}_[0-9][0-9][0-9][0-9].zip"))
        sizes = [len(zipfile.ZipFile(s).namelist()) for s in shards]
        assert sum(sizes) == n and len(shards) == -(-n // 3)
        assert all(s == 3 for s in sizes[:-1]) and 1 <= sizes[-1] <= 3
        with zipfile.ZipFile(out / f"{cls}_sample.zip") as z:
            names = z.namelist()
        assert len(names) == min(2, n)
        assert all(m.split("/")[1] == cls for m in names)
    man = _manifest(out)
    members = {m for s in out.glob("*_[0-9]*.zip") for m in zipfile.ZipFile(s).namelist()}
    assert {r["file"].split(":", 1)[1] for r in man} == members
    assert _assert_clean(out, built["originals"]) == len(man) + sum(min(2, n) for n in rep.classes.values())


def test_webdataset_reads_back(built, exports):
    import webdataset as wds

    rep = exports["webdataset"]
    out = Path(rep.path)
    shards = sorted(str(p) for p in out.glob("*.tar"))
    seen = Counter()
    classes = sorted(rep.classes)
    for s in wds.WebDataset(shards, shardshuffle=False).decode("pil"):
        meta = s["json"]
        assert meta["id"] == s["__key__"]
        assert s["jpg"].size == (224, 224)
        assert classes[int(s["cls"])] == meta["label"]
        assert Path(s["__url__"]).name.startswith(meta["split"] + "-")
        seen[(meta["split"], meta["label"])] += 1
    assert seen == Counter({(sp, c): n for sp, cc in rep.splits.items() for c, n in cc.items()})
    for s in shards:
        with tarfile.open(s) as t:
            assert len({m.name.split(".")[0] for m in t.getmembers()}) <= 4
    _assert_clean(out, built["originals"])


def test_parquet_loads_with_datasets_offline(built, exports, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    rep = exports["parquet"]
    out = Path(rep.path)
    files = {s: sorted(str(p) for p in (out / "data").glob(f"{s}-*.parquet")) for s in rep.splits}
    ds = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf"))
    assert {s: len(ds[s]) for s in ds} == {s: sum(c.values()) for s, c in rep.splits.items()}
    names = ds[next(iter(ds))].features["label"].names
    assert names == sorted(rep.classes)
    for s in ds:
        row = ds[s][0]
        assert isinstance(row["image"], Image.Image) and row["image"].size == (224, 224)
        assert row["split"] == s and names[row["label"]] == row["label_gender"]
    # The folder alone is enough too: the shard names follow the Hub's split-naming convention.
    whole = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf2"))
    assert sum(len(whole[s]) for s in whole) == rep.items
    _assert_clean(out, built["originals"])


# -- datasheet ---------------------------------------------------------------


def test_datasheet_sections_and_real_counts(built, exports):
    from faceset.export import SECTIONS

    for rep in [*exports.values()]:
        sheet = (Path(rep.path) / "datasheet.md").read_text()
        for sec in SECTIONS:
            assert f"## {sec}" in sheet, sec
        man = _manifest(Path(rep.path))
        for cls, n in Counter(r["label"] for r in man).items():
            counts = Counter((r["label"], r["split"]) for r in man)
            row = f"| {cls} | " + " | ".join(str(counts[(cls, s)]) for s in rep.splits) + f" | {n} |"
            assert row in sheet, row
        for src, _ in Counter(r["source"] for r in man).items():
            assert f"| {src} |" in sheet
        assert f"{rep.items} face records" in sheet
        assert "faceset forget" in sheet and "--refresh" in sheet
        assert f"{rep.skipped['consent_unknown']} unknown" in sheet
        assert "research_exemption" in sheet and "CC-BY-NC-4.0" in sheet


def test_include_unknown_consent_is_reported(built, tmp_path):
    from faceset.export import export

    ws = built["ws"]
    rep = export(ws, tmp_path / "u", what="crops", include_unknown_consent=True, progress=False)
    assert rep.included_unknown_consent >= 1 and "consent_unknown" not in rep.skipped
    man = _manifest(tmp_path / "u")
    assert sum(r["consent"] == "unknown" for r in man) == rep.included_unknown_consent
    sheet = (tmp_path / "u" / "datasheet.md").read_text()
    assert f"{rep.included_unknown_consent} records have consent basis `unknown`" in sheet
    assert "--include-unknown-consent" in sheet
    # No --label: one class, and the group photo's main face and the nonface images behave.
    assert set(rep.classes) == {"all"}
    assert rep.skipped.get("no_face", 0) >= 0


# -- whole images + bystander blurring -------------------------------------------


def test_images_blur_bystanders(built, tmp_path):
    from faceset.export import export

    ws = built["ws"]
    gid = ws.catalog.scalar("SELECT f.image_id FROM files f WHERE f.path LIKE '%couple.jpg'")
    faces = ws.catalog.q("SELECT id, is_main, x, y, w, h FROM faces WHERE image_id=? ORDER BY idx", (gid,))
    assert len(faces) >= 2 and sum(f["is_main"] for f in faces) == 1
    plain = export(ws, tmp_path / "plain", what="images", progress=False)
    blurred = export(ws, tmp_path / "blur", what="images", blur_bystanders=True, progress=False)
    assert blurred.blurred_faces >= len(faces) - 1 and plain.blurred_faces == 0

    def exported(root: Path) -> np.ndarray:
        eid = ws.catalog.scalar("SELECT id FROM exports WHERE path=?", (str(root.resolve()),))
        assert ws.catalog.scalar("SELECT COUNT(*) FROM export_items WHERE export_id=? AND image_id=?", (eid, gid))
        uids = {r["id"]: r for r in _manifest(root)}
        # the group photo is the only 'consent' record from the groups source
        row = next(r for r in uids.values() if r["consent"] == "consent")
        return np.asarray(Image.open(next(root.rglob(row["id"] + ".*"))).convert("RGB")).astype(float)

    a, b = exported(tmp_path / "plain"), exported(tmp_path / "blur")
    for f in faces:
        x, y, w, h = (int(f[k]) for k in ("x", "y", "w", "h"))
        pa, pb = a[y:y + h, x:x + w], b[y:y + h, x:x + w]
        if f["is_main"]:
            assert np.abs(pa - pb).mean() < 4, "the main face must stay sharp"
        else:
            detail = lambda im: np.abs(np.diff(im, axis=1)).mean()
            assert detail(pb) < 0.5 * detail(pa), "bystander face not blurred"
    _assert_clean(tmp_path / "blur", built["originals"])


# -- refresh after forget ---------------------------------------------------------


def test_refresh_rebuilds_stale_export(built, tmp_path):
    from faceset.export import export, refresh
    from faceset.privacy import forget
    from faceset.workspace import open_workspace

    shutil.copytree(built["ws"].root, tmp_path / "ws")
    ws = open_workspace(tmp_path / "ws")
    try:
        with ws.catalog.tx() as c:  # the copy must not rebuild the original's exports
            c.execute("DELETE FROM exports")
        rep = export(ws, tmp_path / "e", format="webdataset", what="crops", label="gender", progress=False)
        man = _manifest(tmp_path / "e")
        # Forget one identity person by a selfie not in the workspace.
        selfie = sorted((built["root"] / "photos" / "ids" / "male").glob("*.jpg"))[0]
        fr = forget(ws, [str(selfie)], sheet=False, include_uncertain=True)
        assert fr.exports_stale >= 1
        assert ws.catalog.scalar("SELECT stale FROM exports WHERE id=?", (rep.export_id,)) == 1
        again = refresh(ws, progress=False)
        assert [r.export_id for r in again] == [rep.export_id] and again[0].refreshed
        assert ws.catalog.scalar("SELECT stale FROM exports WHERE id=?", (rep.export_id,)) == 0
        man2 = _manifest(tmp_path / "e")
        assert len(man2) < len(man) and len(man2) == again[0].items
        assert ws.catalog.scalar("SELECT COUNT(*) FROM export_items WHERE export_id=?", (rep.export_id,)) == len(man2)
        kept = {r["id"] for r in man2}
        assert kept < {r["id"] for r in man}, "ids must stay stable across a refresh"
        assert refresh(ws, progress=False) == []  # nothing stale any more
        # If erasure leaves nothing, the refresh still removes every old record from disk.
        with ws.catalog.tx() as c:
            c.execute("DELETE FROM images")
            c.execute("UPDATE exports SET stale=1")
        [empty] = refresh(ws, progress=False)
        assert empty.items == 0 and not list((tmp_path / "e").glob("*.tar"))
        assert _manifest(tmp_path / "e") == [] and (tmp_path / "e" / "datasheet.md").exists()
    finally:
        ws.close()


# -- refusals and CLI ---------------------------------------------------------------


def test_refuses_foreign_folder_and_empty_selection(built, tmp_path):
    from faceset.export import ExportError, export

    ws = built["ws"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not a faceset export"):
        export(ws, tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ExportError, match="nothing to export"):
        export(ws, tmp_path / "none", label="no-such-label", progress=False)
    with pytest.raises(ExportError, match="outside the workspace"):
        export(ws, ws.root / "inside", progress=False)
    assert not list(tmp_path.glob(".*partial*"))


def test_cli_export_json_and_report(built, tmp_path):
    from typer.testing import CliRunner

    from faceset.cli import app

    ws = built["ws"]
    r = CliRunner().invoke(app, ["export", str(tmp_path / "c"), "-w", str(ws.root), "--format", "zip", "--what",
                                 "chips", "--label", "gender", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["items"] == len(_manifest(tmp_path / "c")) and d["format"] == "zip"
    r = CliRunner().invoke(app, ["export", str(tmp_path / "c"), "-w", str(ws.root), "--refresh", "--json"])
    assert r.exit_code == 0, r.output
    assert [x["export_id"] for x in json.loads(r.stdout)] == [d["export_id"]]
    assert len(_manifest(tmp_path / "c")) == d["items"]
    r = CliRunner().invoke(app, ["export", str(tmp_path / "c2"), "-w", str(ws.root), "--format", "tiff"])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["report", "-w", str(ws.root), "-o", str(tmp_path / "r.html"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["path"] == str(tmp_path / "r.html")


# -- report ---------------------------------------------------------------------


def test_report_is_self_contained_with_counts(built):
    import re

    rep, ws = built["rep"], built["ws"]
    page = Path(rep.report).read_text()
    r = rep.steps["report"]
    assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page.replace("data:", "")), "external URL"
    assert not re.search(r"<(script|link)\b", page)
    srcs = re.findall(r"src='([^']*)'", page)
    assert srcs and all(s.startswith("data:image/") for s in srcs)
    assert r["plots"] >= 4 and r["thumbnails"] >= r["duplicate_groups"] * 2
    c = ws.catalog
    n_img, n_faces = c.scalar("SELECT COUNT(*) FROM images"), c.scalar("SELECT COUNT(*) FROM faces")
    n_people = c.scalar("SELECT COUNT(*) FROM people")
    assert f"<td>{n_img}</td><td>{n_faces}</td><td>{n_people}</td>" in page
    assert r["duplicate_groups"] == c.scalar("SELECT COUNT(DISTINCT dup_of) FROM images WHERE dup_of IS NOT NULL") >= 1
    assert f"Duplicate groups ({r['duplicate_groups']})" in page
    n_rej = c.scalar("SELECT COUNT(*) FROM images WHERE status IN ('no_face','error')")
    assert n_rej >= 2 and f"Rejected images ({n_rej})" in page  # the two non-face images at least
    for name in ("research_exemption", "CC-BY-NC-4.0", "CC0-1.0", "unknown"):
        assert f"<td>{name}</td>" in page
    for split in ("train", "val", "test"):
        assert f"<th>{split}</th>" in page


def test_build_rerun_resumes_without_redoing(built):
    from faceset.build import build

    rep = built["rep"]
    out = Path(rep.out)
    again = build([built["root"] / "photos" / "utk"], out, license="CC-BY-NC-4.0", consent="research_exemption",
                  labels="utkface", label="gender", progress=False)
    assert again.steps["ingest"]["added"] == 0
    assert again.steps["export"]["items"] == rep.steps["export"]["items"]
    assert again.steps["export"]["export_id"] == rep.steps["export"]["export_id"]
    assert _manifest(Path(again.dataset)) == _manifest(Path(rep.dataset))


def test_build_cli_killed_then_rerun_completes(data_dir, tmp_path):
    """kill -9 in the middle of `faceset build`, rerun the same command: it finishes, nothing doubled."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    src = tmp_path / "photos"
    src.mkdir()
    rows = _utk_rows(data_dir, offset=2 * N_UTK_PER_GENDER)
    for r in rows:
        shutil.copy(data_dir / "utkface" / r["file"], src)
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "from faceset.cli import main; main()", "build", str(src), "-o", str(out),
           "--license", "research-only", "--consent", "research_exemption", "--labels", "utkface",
           "--label", "gender", "--format", "parquet", "--json"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    db = out / "workspace" / "catalog.db"
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as c:
                if c.execute("SELECT COUNT(*) FROM images").fetchone()[0] > 0:
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    time.sleep(0.5)
    assert p.poll() is None, "build finished before it could be killed"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout)
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT COUNT(*) FROM images").fetchone()[0] == len(rows)
        assert c.execute("SELECT COUNT(*) FROM images WHERE status='new'").fetchone()[0] == 0
        assert c.execute("SELECT COUNT(*) FROM exports").fetchone()[0] == 1
        n_items = c.execute("SELECT COUNT(*) FROM export_items").fetchone()[0]
    import pyarrow.parquet as pq

    n_rows = sum(pq.read_metadata(f).num_rows for f in (out / "dataset" / "data").glob("*.parquet"))
    assert n_rows == n_items == d["steps"]["export"]["items"] > 0
    truth = Counter(r["gender"] for r in rows)
    assert set(d["steps"]["export"]["classes"]) <= set(truth)
    assert all(d["steps"]["export"]["classes"][g] <= truth[g] for g in d["steps"]["export"]["classes"])
    assert Path(d["report"]).exists() and Path(d["datasheet"]).exists()
    assert not list(out.glob(".dataset.partial-*"))


def test_clean_strips_every_metadata_kind(data_dir):
    """The last gate before bytes leave: EXIF, XMP, ICC, comments, PNG text all go; bare bytes pass untouched."""
    from PIL import PngImagePlugin

    from faceset.export.encode import clean

    src = next((data_dir / "identities" / "matt_damon").glob("*.jpg"))
    with Image.open(src) as im:
        rgb = im.convert("RGB").resize((120, 90))
    exif = Image.Exif()
    exif[0x010F] = "Cam"
    exif[0x8825] = {1: "N", 2: (1.0, 2.0, 3.0)}
    variants = {
        "exif": dict(format="JPEG", exif=exif),
        "xmp": dict(format="JPEG", xmp=b"<x:xmpmeta>who</x:xmpmeta>"),
        "comment": dict(format="JPEG", comment=b"taken at home"),
        "icc": dict(format="JPEG", icc_profile=b"\0" * 128),
        "png_text": dict(format="PNG",
                         pnginfo=(lambda p: (p.add_text("Author", "me"), p)[1])(PngImagePlugin.PngInfo())),
        "png_exif": dict(format="PNG", exif=exif),
    }
    for name, kw in variants.items():
        buf = io.BytesIO()
        rgb.save(buf, **kw)
        out, ext = clean(buf.getvalue())
        assert out != buf.getvalue(), name
        with Image.open(io.BytesIO(out)) as im:
            assert len(im.getexif()) == 0 and not {"exif", "xmp", "comment", "icc_profile"} & set(im.info), name
            assert im.size == (120, 90) and ext == ("png" if kw["format"] == "PNG" else "jpg")
            assert not any(k.lower().startswith(("author", "xml")) for k in im.info), name
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png")):
        buf = io.BytesIO()
        rgb.save(buf, fmt)
        assert clean(buf.getvalue()) == (buf.getvalue(), ext)


def test_build_with_nothing_exportable_fails_clearly_but_reports(data_dir, tmp_path):
    from typer.testing import CliRunner

    from faceset.cli import app

    src = tmp_path / "cats"
    src.mkdir()
    for n in ("coffee.png", "horse.png"):
        shutil.copy(data_dir / "nonface" / "skimage" / n, src)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["build", str(src), "-o", str(out), "--license", "CC0-1.0", "--consent",
                                 "public_domain", "--json"])
    assert r.exit_code == 2 and "nothing to export" in r.output and "no_face 2" in r.output
    assert (out / "workspace" / "report.html").exists() and not (out / "dataset").exists()
    r = CliRunner().invoke(app, ["build", str(src), "-o", str(tmp_path / "o2"), "--consent", "public_domain"])
    assert r.exit_code == 2 and "licence" in r.output.lower() and not (tmp_path / "o2").exists()
