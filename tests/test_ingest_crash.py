"""kill -9 during `faceset ingest`, rerun the same command: same catalog as an uninterrupted run."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time

from conftest import read_labels
from faceset import open_workspace

CLI = [sys.executable, "-c", "from faceset.cli import main; main()"]
N_FILES = 2500


def _cmd(manifest, ws):
    return CLI + ["ingest", str(manifest), "-w", str(ws), "--license", "UTKFace research-only",
                  "--consent", "research_exemption", "--labels", "utkface", "--json"]


def _run(manifest, ws):
    r = subprocess.run(_cmd(manifest, ws), capture_output=True, text=True, timeout=300,
                       env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert r.returncode == 0, r.stderr
    return r


def _files_count(ws) -> int:
    try:
        with sqlite3.connect(f"file:{ws / 'catalog.db'}?mode=ro", uri=True, timeout=1) as c:
            return c.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    except sqlite3.Error:
        return 0


def _kill_midway(manifest, ws, at: int) -> int:
    """Start an ingest, SIGKILL its whole process group once `at` files are committed."""
    p = subprocess.Popen(_cmd(manifest, ws), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    deadline = time.monotonic() + 120
    while p.poll() is None and time.monotonic() < deadline:
        n = _files_count(ws)
        if n >= at:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return n
        time.sleep(0.01)
    raise AssertionError(f"ingest finished before it could be killed (at={at})")


def _snapshot(ws_path) -> dict:
    ws = open_workspace(ws_path)
    c = ws.catalog
    snap = {
        "images": [tuple(r) for r in c.q(
            """SELECT id, pixel_sha, sha256, store_key, format, width, height, bytes, source_id, license, consent,
                      status FROM images ORDER BY id""")],
        "files": [tuple(r) for r in c.q(
            "SELECT id, source_id, path, sha256, size, image_id, outcome, reason_code, reason FROM files ORDER BY id")],
        "labels": [tuple(r) for r in c.q("SELECT image_id, name, value, origin FROM labels ORDER BY image_id, name")],
        "sources": [tuple(r) for r in c.q("SELECT id, name, kind, license, consent FROM sources")],
    }
    keys = {r[3] for r in snap["images"]}
    assert all(ws.store.exists(k) for k in keys)  # no row without its stored copy
    snap["orphans"] = len(set(ws.store.keys()) - keys)
    ws.close()
    return snap


def test_kill9_then_rerun_equals_uninterrupted(data_dir, tmp_path):
    utk = data_dir / "utkface"
    rows = read_labels(utk)[:N_FILES]
    manifest = tmp_path / "utk.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path"])
        w.writerows([[str(utk / r["file"])] for r in rows])

    _run(manifest, tmp_path / "clean")
    want = _snapshot(tmp_path / "clean")
    assert len(want["files"]) == N_FILES and want["orphans"] == 0

    crashed = tmp_path / "crashed"
    first = _kill_midway(manifest, crashed, at=N_FILES // 5)
    partial = _snapshot(crashed)
    assert first <= len(partial["files"]) < N_FILES  # stopped mid-run with whole batches only
    assert {r[5] for r in partial["files"] if r[6] != "rejected"} <= {r[0] for r in partial["images"]}
    second = _kill_midway(manifest, crashed, at=N_FILES * 3 // 5)  # killed again while resuming
    assert second > first
    _run(manifest, crashed)
    got = _snapshot(crashed)
    orphans = got.pop("orphans")
    want.pop("orphans")
    assert got == want
    # copies written just before a kill are at most unreferenced objects, which gc removes
    ws = open_workspace(crashed)
    assert ws.store.gc(r["store_key"] for r in ws.catalog.q("SELECT store_key FROM images")) == orphans
    ws.close()
    # and a third run adds nothing
    out = _run(manifest, crashed).stdout
    assert '"added": 0' in out and f'"skipped": {N_FILES}' in out
