"""`verify` finds what is wrong with a workspace and repairs only what is safe (issue #15)."""

from __future__ import annotations

import os

from faceset.ingest import ingest
from faceset.verify import verify


def _ingested(ws, data_dir, n=4):
    ingest(ws, [data_dir / "identities" / "john_simm"], license="test-only", consent="research_exemption",
           progress=False)
    keys = [k.key for k in ws.catalog.integrity.key_refs()]
    assert len(keys) >= n
    return keys


def test_a_fresh_workspace_verifies_clean(ws, data_dir):
    _ingested(ws, data_dir)
    rep = verify(ws, progress=False)
    assert rep.ok and rep.objects_checked >= 4 and not rep.objects_bad and rep.orphan_objects == 0


def test_damaged_missing_and_linked_objects_are_reported_not_repaired(ws, data_dir, tmp_path):
    keys = _ingested(ws, data_dir)
    ws.store.path(keys[0]).write_bytes(b"bit rot")
    os.unlink(ws.store.path(keys[1]))
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"outside the workspace")
    os.unlink(ws.store.path(keys[2]))
    os.symlink(victim, ws.store.path(keys[2]))
    rep = verify(ws, repair=True, progress=False)
    problems = " | ".join(b["problem"] for b in rep.objects_bad)
    assert not rep.ok and len(rep.objects_bad) == 3, problems
    assert "damaged" in problems and "missing" in problems and "link" in problems
    assert all(b["rows"] and "images.store_key" in b["rows"][0] for b in rep.objects_bad)
    assert victim.read_bytes() == b"outside the workspace"


def test_repair_removes_orphans_and_abandoned_partial_exports(ws, data_dir, tmp_path):
    _ingested(ws, data_dir)
    orphan = ws.store.put(b"nobody references me")
    out = tmp_path / "ds"
    with ws.catalog.tx():
        ws.catalog.execute("INSERT INTO exports(path, format, what, params, created_at) VALUES (?,?,?,?,?)",
                           (str(out), "imagefolder", "crops", "{}", "t"))
    partial = tmp_path / ".ds.partial-12345"
    (partial / "train").mkdir(parents=True)
    (partial / "train" / "face.jpg").write_bytes(b"a face crop")
    rep = verify(ws, progress=False)
    assert not rep.ok and rep.orphan_objects == 1 and rep.partial_exports == [str(partial)]
    rep = verify(ws, repair=True, progress=False)
    assert rep.repaired["orphan_objects_removed"] == 1 and rep.repaired["partial_exports_removed"] == 1
    assert not ws.store.exists(orphan) and not partial.exists()
    assert verify(ws, progress=False).ok
