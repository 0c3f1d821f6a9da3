"""Engines: local and Ray give identical catalogs; a kill -9 mid-scan then a rerun ends complete and equal."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from faceset import init_workspace


def _subset(data_dir: Path) -> list[Path]:
    """~10 varied real images: portraits of several people, a chip, two group shots, a pet."""
    ids = data_dir / "identities"
    files = [sorted((ids / p).glob("*"))[0] for p in
             ("angelina_jolie", "barack_obama", "john_simm", "katy_perry", "elon_musk", "lin_manuel_miranda")]
    files += [data_dir / "groups" / "couple.jpg", data_dir / "groups" / "2008_002470.jpg"]
    files += [data_dir / "nonface" / "pets" / "dog.4001.jpg", data_dir / "nonface" / "memes" / "center.jpg"]
    return [f for f in files if f.exists()]


def _build(root: Path, files) -> None:
    from faceset.ingest import ingest

    w = init_workspace(root)
    ingest(w, files, license="test-only", consent="research_exemption", progress=False)
    w.close()


def _snapshot(root: Path) -> dict:
    """Scan results keyed by pixel hash (ids and timestamps differ between runs)."""
    c = sqlite3.connect(root / "catalog.db")
    out = {}
    for sha, status in c.execute("SELECT pixel_sha, status FROM images"):
        faces = c.execute("SELECT f.idx, f.x, f.y, f.w, f.h, f.score, f.is_main, f.status, f.embedding, f.chip_key "
                          "FROM faces f JOIN images i ON i.id=f.image_id WHERE i.pixel_sha=? ORDER BY f.idx",
                          (sha,)).fetchall()
        out[sha] = (status, faces)
    c.close()
    return out


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k][0] == b[k][0], k
        assert len(a[k][1]) == len(b[k][1]), k
        for fa, fb in zip(a[k][1], b[k][1]):
            assert fa[:8] == fb[:8], k   # boxes, score, main, status: deterministic
            ea, eb = np.frombuffer(fa[8], np.float32), np.frombuffer(fb[8], np.float32)
            assert np.abs(ea - eb).max() < 1e-4
            assert fa[9] == fb[9]  # same chip bytes


def test_ray_and_local_give_identical_catalogs(tmp_path, data_dir):
    from faceset.scan import scan
    from faceset.workspace import open_workspace

    files = _subset(data_dir)
    for name in ("local", "ray"):
        _build(tmp_path / name, files)
    wl = open_workspace(tmp_path / "local")
    rl = scan(wl, engine="local", workers=2, progress=False)
    wl.close()
    wr = open_workspace(tmp_path / "ray")
    rr = scan(wr, engine="ray", workers=2, progress=False)
    wr.close()
    assert rl.scanned == rr.scanned == len(files)
    assert (rl.ok, rl.no_face, rl.faces) == (rr.ok, rr.no_face, rr.faces)
    assert rl.ok >= 1 and rl.no_face >= 1
    _same(_snapshot(tmp_path / "local"), _snapshot(tmp_path / "ray"))


def test_kill_9_mid_scan_then_rerun(tmp_path, data_dir):
    ids = data_dir / "identities"
    files = _subset(data_dir) + sorted((ids / "angelina_jolie").glob("*.jpg"))[1:7]
    _build(tmp_path / "ref", files)
    _build(tmp_path / "ws", files)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    # a real process, killed with SIGKILL after its first committed transaction (one image per transaction)
    code = ("import sys; from faceset.workspace import open_workspace; from faceset.scan import scan; "
            "scan(open_workspace(sys.argv[1]), workers=1, progress=False, batch=1)")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "ws")], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True)
    db = tmp_path / "ws" / "catalog.db"
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        c = sqlite3.connect(db, timeout=30)
        done = c.execute("SELECT COUNT(*) FROM images WHERE status<>'new'").fetchone()[0]
        c.close()
        if done >= 1:
            break
        time.sleep(0.02)
    assert p.poll() is None, "scan finished before it could be killed: " + p.stderr.read().decode()[-500:]
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    c = sqlite3.connect(db)
    left = c.execute("SELECT COUNT(*) FROM images WHERE status='new'").fetchone()[0]
    c.close()
    assert 0 < left < len(files)
    cmd = [sys.executable, "-c", "from faceset.cli import main; main()", "scan", "--json", "--workers", "1"]
    r = subprocess.run([*cmd, "-w", str(tmp_path / "ws")], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-800:]
    assert json.loads(r.stdout)["scanned"] == left     # the rerun does only what was left
    r = subprocess.run([*cmd, "-w", str(tmp_path / "ref")], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-800:]
    _same(_snapshot(tmp_path / "ws"), _snapshot(tmp_path / "ref"))


def test_get_engine_rejects_unknown():
    from faceset.engines import get_engine

    with pytest.raises(ValueError, match="unknown engine"):
        get_engine("spark", 1)
