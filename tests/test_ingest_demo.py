"""`faceset demo`: the messy collection is built offline and ingest handles each of its traps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from faceset import open_workspace
from faceset.demo import DemoError, Step, demo


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("d") / "demo-out"
    rep = demo(out, progress=False, stop_after="ingest zip")
    return out, rep


def test_demo_ingest_counts_each_trap(demo_run):
    out, rep = demo_run
    assert rep.ok and [s.name for s in rep.steps] == ["ingest", "ingest zip"]
    ing, z = rep.steps[0].summary, rep.steps[1].summary
    files = [p for p in (out / "collection").rglob("*") if p.is_file()]
    broken = {p.name for p in (out / "collection" / "broken").iterdir()}
    assert ing["rejected"] == {"zero_byte": 1, "truncated": 1, "not_image": 1, "too_small": 1}
    assert {r["path"].split("/")[-1] for r in ing["rejects"]} == broken
    # astronaut (1).jpg = same bytes; the TIFF = same pixels as the PNG
    assert ing["duplicate_kinds"] == {"same_bytes": 1, "same_pixels": 1}
    assert ing["added"] == len(files) - len(broken) - 2
    assert z["rejected"] == {"unsafe_path": 1} and z["duplicate_kinds"] == {"same_bytes": 1}
    assert not (out.parent / "outside.jpg").exists() and not (out / "outside.jpg").exists()


def test_demo_exif_rotation_applied_and_gps_stripped(demo_run):
    out, rep = demo_run
    ws = open_workspace(rep.workspace)
    try:
        def image_of(name):
            return ws.catalog.scalar("SELECT image_id FROM files WHERE path LIKE ?", (f"%{name}",))
        up = ws.image_rgb(image_of("astronaut-phone.jpg"))
        ref = ws.image_rgb(image_of("people/astronaut.jpg"))
        assert up.shape == ref.shape == (512, 512, 3)
        assert np.abs(up.astype(int) - ref.astype(int)).mean() < 8  # upright, not sideways
        with Image.open(out / "collection" / "people" / "astronaut.jpg") as im:
            assert im.getexif().get_ifd(0x8825)  # the original has GPS (and is left as it was) ...
        blob = ws.image_bytes(image_of("people/astronaut.jpg"))
        assert b"Exif" not in blob and b"DemoCam" not in blob  # ... the stored copy has none
        labels = {r[0] for r in ws.catalog.q("SELECT DISTINCT value FROM labels WHERE name='album'")}
        assert {"lfw", "objects", "cat", "friends"} <= labels
    finally:
        ws.close()


def test_demo_refuses_foreign_folder_and_replaces_its_own(tmp_path, demo_run):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    with pytest.raises(DemoError, match="not a faceset demo folder"):
        demo(tmp_path / "mine", progress=False, stop_after="ingest")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me"
    out = tmp_path / "again"
    demo(out, progress=False, stop_after="ingest")
    rep = demo(out, progress=False, stop_after="ingest")  # a second run starts fresh, same result
    assert rep.steps[0].summary["added"] == demo_run[1].steps[0].summary["added"]


def test_missing_stage_is_skipped_not_fatal(tmp_path, monkeypatch):
    import faceset.demo as d

    real = d.steps
    monkeypatch.setattr(d, "steps", lambda out, progress: real(out, progress)[:1] + [
        Step("future", "faceset.not_written_yet", "run", lambda fn, ws, ctx: fn(ws)),
        Step("status", "faceset.status", "workspace_status", lambda fn, ws, ctx: fn(ws))])
    rep = d.demo(tmp_path / "o", progress=False)
    assert [(s.name, s.status) for s in rep.steps] == [("ingest", "ok"), ("future", "skipped"), ("status", "ok")]
    assert rep.ok and rep.steps[2].summary["images"] == rep.steps[0].summary["added"]


def test_cli_demo_json_offline(tmp_path):
    env = {**os.environ, "FACESET_DATA": str(tmp_path / "no-data-here"), "RAY_USAGE_STATS_ENABLED": "0"}
    r = subprocess.run([sys.executable, "-c", "from faceset.cli import main; main()", "demo", "--out",
                        str(tmp_path / "o"), "--stop-after", "ingest", "--json"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["ok"] and d["steps"][0]["name"] == "ingest" and d["steps"][0]["summary"]["added"] > 0
