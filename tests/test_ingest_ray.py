"""ingest --engine ray: the driver reads and stores, Ray tasks decode; the catalog and store equal the local run's."""

from __future__ import annotations

import io
import shutil
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from faceset import init_workspace
from faceset.errors import UsageError
from faceset.ingest import ingest
from faceset.workspace import open_workspace


def _has_exif(data: bytes) -> bool:
    im = Image.open(io.BytesIO(data))
    return bool(len(im.getexif())) or "exif" in im.info


def _folder(tmp: Path, data_dir: Path) -> tuple[Path, int]:
    """~30 identity photos (some with EXIF) in person folders, plus a byte-copy, a truncated JPEG, a text file."""
    ids = data_dir / "identities"
    people = sorted(p for p in ids.iterdir() if p.is_dir())[:10]
    files = [f for p in people for f in sorted(p.glob("*"))[:3]]
    exif = [f for f in sorted(ids.glob("*/*")) if f.suffix.lower() in (".jpg", ".jpeg") and _has_exif(f.read_bytes())]
    files += [f for f in exif[:3] if f not in files]
    root = tmp / "photos"
    for f in files:
        (root / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, root / f.parent.name / f.name)
    first = files[0]
    shutil.copyfile(first, root / first.parent.name / ("copy_" + first.name))  # same bytes: a duplicate
    data = first.read_bytes()
    (root / "broken").mkdir()
    (root / "broken" / "cut.jpg").write_bytes(data[: len(data) // 2])  # a real JPEG, truncated
    (root / "broken" / "notes.jpg").write_text("not a photo at all\n" * 20)
    return root, sum(_has_exif(f.read_bytes()) for f in files)


def _snapshot(root: Path) -> dict:
    c = sqlite3.connect(root / "catalog.db")
    out = {
        "images": sorted(c.execute("SELECT sha256, pixel_sha, store_key, width, height, status, format, bytes "
                                   "FROM images")),
        "files": sorted(c.execute("SELECT path, sha256, size, outcome, reason_code FROM files")),
        "file_images": sorted(c.execute("SELECT f.path, i.pixel_sha FROM files f JOIN images i ON i.id=f.image_id")),
        "labels": sorted(c.execute("SELECT i.pixel_sha, l.name, l.value, l.origin FROM labels l "
                                   "JOIN images i ON i.id=l.image_id")),
    }
    c.close()
    return out


def _store_keys(root: Path) -> list[str]:
    from faceset.store import Store

    return sorted(Store(root / "store").keys())


def test_ray_ingest_equals_local(tmp_path, data_dir):
    src, n_exif = _folder(tmp_path, data_dir)
    assert n_exif >= 1  # the EXIF check below can fail
    reps = {}
    for name, kw in (("local", {"workers": 2}), ("ray", {"engine": "ray", "workers": 2})):
        w = init_workspace(tmp_path / name)
        reps[name] = ingest(w, [src], license="test-only", consent="research_exemption", labels="folder:identity",
                            progress=False, **kw).to_dict()
        w.close()
    a, b = reps["local"], reps["ray"]
    assert a["added"] >= 25 and a["duplicates"] == 1
    assert a["rejected"].get("truncated") == 1 and a["rejected"].get("not_image") == 1
    for k in ("added", "duplicates", "duplicate_kinds", "rejected", "skipped", "ignored"):
        assert a[k] == b[k], k
    sa, sb = _snapshot(tmp_path / "local"), _snapshot(tmp_path / "ray")
    for k in sa:
        assert sa[k] == sb[k], k
    keys = _store_keys(tmp_path / "ray")
    assert keys == _store_keys(tmp_path / "local")
    assert sorted(r[2] for r in sb["images"]) == keys  # no orphan copies left by the driver

    from faceset.store import Store

    store = Store(tmp_path / "ray" / "store")
    assert not any(_has_exif(store.get(k)) for k in keys)

    # a rerun on Ray resumes: everything already recorded is skipped, nothing changes
    w = open_workspace(tmp_path / "ray")
    again = ingest(w, [src], license="test-only", consent="research_exemption", labels="folder:identity",
                   progress=False, engine="ray", workers=2)
    w.close()
    assert again.added == again.duplicates == again.n_rejected == 0
    assert again.skipped == len(sa["files"])
    assert _snapshot(tmp_path / "ray") == sb


def test_bad_engine_or_lone_address_is_a_usage_error(tmp_path, data_dir):
    w = init_workspace(tmp_path / "ws")
    one = sorted((data_dir / "identities" / "barack_obama").glob("*"))[0]
    with pytest.raises(UsageError, match="unknown --engine 'spark'"):
        ingest(w, [one], license="x", consent="consent", engine="spark", progress=False)
    with pytest.raises(UsageError, match="--ray-address needs --engine ray"):
        ingest(w, [one], license="x", consent="consent", ray_address="ray://nowhere:1", progress=False)
    w.close()
    c = sqlite3.connect(tmp_path / "ws" / "catalog.db")
    assert c.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 0  # refused before anything was written
    c.close()


def test_ray_ingest_honours_the_blocklist_like_local(tmp_path, data_dir):
    """The same blocklist check runs in the Ray tasks: her photos are refused, a group shot is pixelated."""
    import numpy as np

    from faceset import imageio
    from faceset.privacy.blocklist import add_template
    from faceset.scan import analyze

    ids, src = data_dir / "identities", tmp_path / "photos"
    src.mkdir()
    enrol = []
    for f in ("obama.jpg", "obama1.jpg"):
        rgb = imageio.work_copy(imageio.decode((ids / "barack_obama" / f).read_bytes()).rgb)
        enrol += [r.embedding for r in analyze(rgb, embed=True, crops=False)[:1]]
    for f in (ids / "barack_obama" / "obama2.jpg", ids / "barack_obama" / "obama3.jpg",
              data_dir / "groups" / "obama_and_biden.jpg", sorted((ids / "katy_perry").glob("*"))[0]):
        shutil.copyfile(f, src / f.name)
    reps = {}
    for name, kw in (("local", {"workers": 2}), ("ray", {"engine": "ray", "workers": 2})):
        w = init_workspace(tmp_path / name)
        add_template(w, np.stack(enrol), radius=0.5)
        reps[name] = ingest(w, [src], license="test-only", consent="consent", progress=False, **kw)
        w.close()
    a, b = reps["local"], reps["ray"]
    assert a.rejected.get("blocked", 0) >= 1 and a.added >= 1
    assert (a.added, a.rejected) == (b.added, b.rejected)
    assert _snapshot(tmp_path / "local") == _snapshot(tmp_path / "ray")
    assert _store_keys(tmp_path / "local") == _store_keys(tmp_path / "ray")


def test_kill9_mid_ray_ingest_then_rerun_equals_local(data_dir, tmp_path):
    """The driver commits the same batches on Ray: a SIGKILL mid-run then a rerun ends as an uninterrupted local
    run (ids included), with only unreferenced store objects left behind."""
    import csv
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import read_labels
    from test_ingest_crash import _files_count
    from test_ingest_crash import _snapshot as _full

    n = 1200
    utk = data_dir / "utkface"
    manifest = tmp_path / "utk.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path"])
        w.writerows([[str(utk / r["file"])] for r in read_labels(utk)[:n]])
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}

    def cmd(ws, *extra):  # small batches (the catalog does not depend on them): many commits to be killed between
        code = "import faceset.ingest as i; i.BATCH_ITEMS = 64; from faceset.cli import main; main()"
        return [sys.executable, "-c", code, "ingest", str(manifest), "-w", str(ws),
                "--license", "UTKFace research-only", "--consent", "research_exemption", "--labels", "utkface",
                "--json", *extra]

    ray = ("--engine", "ray", "--workers", "2")
    r = subprocess.run(cmd(tmp_path / "clean"), capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    want = _full(tmp_path / "clean")
    crashed = tmp_path / "crashed"
    p = subprocess.Popen(cmd(crashed, *ray), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, env=env)
    deadline, killed_at = time.monotonic() + 180, None
    while p.poll() is None and time.monotonic() < deadline:
        if _files_count(crashed) >= n // 4:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            killed_at = _files_count(crashed)
            break
        time.sleep(0.01)
    assert killed_at is not None, "the Ray ingest finished before it could be killed"
    assert killed_at < n
    r = subprocess.run(cmd(crashed, *ray), capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert f'"skipped": {killed_at}' in r.stdout
    got = _full(crashed)
    got.pop("orphans")
    want.pop("orphans")
    assert got == want


def test_lost_worker_item_is_corrupt_others_added(tmp_path, data_dir, monkeypatch):
    """A chunk whose worker dies is retried item by item; the item that kills its worker again is 'corrupt'.
    (The Ray engine is replaced by an in-process stand-in that loses the worker on one file: no Ray needed.)"""
    import faceset.engines
    from faceset.engines import WorkerLost
    from faceset.ingest import _ray_process_many

    calls = []

    class LosesWorkerOnKiller:
        def __init__(self, *a):
            pass

        def put(self, obj):
            return obj

        def submit(self, fn, *args):
            assert fn is _ray_process_many
            return args

        def result(self, args):
            calls.append(len(args[2]))
            if any(j[0].endswith("killer.jpg") for j in args[2]):
                raise WorkerLost("worker died")
            return _ray_process_many(*args)

        def close(self):
            pass

    monkeypatch.setattr(faceset.engines, "get_engine", lambda name, *a: LosesWorkerOnKiller())
    src = tmp_path / "photos"
    src.mkdir()
    photos = sorted((data_dir / "identities" / "katy_perry").glob("*.jpg"))[:4]
    for f in photos[:3]:
        shutil.copyfile(f, src / f.name)
    shutil.copyfile(photos[3], src / "killer.jpg")
    w = init_workspace(tmp_path / "ws")
    rep = ingest(w, [src], license="x", consent="consent", engine="ray", workers=2, progress=False)
    w.close()
    assert rep.added == 3 and rep.rejected == {"corrupt": 1}
    assert calls == [4, 1, 1, 1, 1]  # the chunk, then each item alone
    snap = _snapshot(tmp_path / "ws")
    assert ("killer.jpg", None, None, "rejected", "corrupt") in snap["files"]
    assert len(_store_keys(tmp_path / "ws")) == 3
