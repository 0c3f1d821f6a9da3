"""Export folders are owned, and export cannot race erasure (hostile trial, issue #15 high 2, 3, medium 5).

A small workspace (two identities, scanned and curated once per module) is copied per test. Every case
asserts the one-line reason, the exit code, that nothing outside the workspace changed (the surrounding
files hashed before and after) and that nothing of an erased person is published.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceset.cli import app

PEOPLE = ("john_simm", "angelina_jolie")
WORKSPACES = {"ws", "ws2", "moved"}


@pytest.fixture(scope="module")
def base(tmp_path_factory, data_dir) -> Path:
    from faceset import init_workspace
    from faceset.curate import assign_splits, cluster_people
    from faceset.ingest import ingest
    from faceset.scan import scan

    root = tmp_path_factory.mktemp("hostile_export") / "ws"
    ws = init_workspace(root)
    for who in PEOPLE:  # one source per person, named after them (how the tests find a person's records)
        ingest(ws, [data_dir / "identities" / who], license="test-only", consent="research_exemption",
               source_name=who, progress=False)
    assert scan(ws, workers=1, progress=False).errors == 0
    cluster_people(ws)
    assign_splits(ws)
    ws.close()
    return root


@pytest.fixture
def place(base, tmp_path):
    """A fresh copy of the workspace at tmp/ws (its own id: the base still exists) and a tmp/out folder."""
    shutil.copytree(base, tmp_path / "ws")
    (tmp_path / "out").mkdir()
    return tmp_path


def _hashes(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root`` except the workspaces (what must not change)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink() and p.relative_to(root).parts[0] not in WORKSPACES:
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_line_error(r, code=2) -> str:
    assert r.exit_code == code, (r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output
    return lines[0]


def _open(p):
    from faceset import open_workspace

    return open_workspace(p)


# -- ownership ---------------------------------------------------------------------


def test_export_writes_an_ownership_marker(place):
    from faceset.export import MARKER, export, workspace_id

    ws = _open(place / "ws")
    rep = export(ws, place / "out" / "ds", progress=False)
    m = json.loads((place / "out" / "ds" / MARKER).read_text())
    assert m["workspace_id"] == workspace_id(ws) and m["export_id"] == rep.export_id and m["state"] == "complete"
    assert json.loads((place / "ws" / "faceset.json").read_text())["id"] == m["workspace_id"]
    ws.close()


def test_refresh_refuses_a_folder_someone_made_at_the_recorded_path(place):
    """The issue's reproduction: export ds; rm -rf ds; mkdir ds; echo thesis > ds/thesis.txt; export --refresh."""
    ws, ds = place / "ws", place / "out" / "ds"
    assert _cli("export", ds, "-w", ws, "--json").exit_code == 0
    shutil.rmtree(ds)
    ds.mkdir()
    (ds / "thesis.txt").write_text("thesis\n")
    before = _hashes(place)
    line = _one_line_error(_cli("export", "--refresh", "--id", "1", "-w", ws))
    assert "no faceset export marker" in line and "not replaced" in line
    line = _one_line_error(_cli("export", ds, "-w", ws))  # re-export to the recorded path: the same refusal
    assert "no faceset export marker" in line
    line = _one_line_error(_cli("export", ds, "--refresh", "-w", ws))
    assert "not replaced" in line
    assert _hashes(place) == before and (ds / "thesis.txt").read_text() == "thesis\n"
    assert not list((place / "out").glob(".ds.*"))


def test_refresh_refuses_a_symlink_at_the_recorded_path(place):
    ws, ds = place / "ws", place / "out" / "ds"
    assert _cli("export", ds, "-w", ws).exit_code == 0
    shutil.rmtree(ds)
    (place / "out" / "mine").mkdir()
    (place / "out" / "mine" / "notes.txt").write_text("mine")
    os.symlink(place / "out" / "mine", ds)
    before = _hashes(place)
    line = _one_line_error(_cli("export", "--refresh", "--id", "1", "-w", ws))
    assert "symbolic link" in line
    assert _hashes(place) == before and ds.is_symlink()


def test_refresh_replaces_its_own_export_and_shreds_the_old_one(place):
    from faceset.export import export, refresh

    ws = _open(place / "ws")
    rep = export(ws, place / "out" / "ds", progress=False)
    (place / "out" / "other.txt").write_text("neighbour")
    before = {k: v for k, v in _hashes(place).items() if not k.startswith("out/ds/")}
    [again] = refresh(ws, rep.export_id, progress=False)
    assert again.refreshed and again.items == rep.items
    after = {k: v for k, v in _hashes(place).items() if not k.startswith("out/ds/")}
    assert after == before
    assert not list((place / "out").glob(".ds.*")) and ws.catalog.erasures.counts() == {}
    ws.close()


def test_a_copied_workspace_never_rewrites_the_originals_exports(place):
    """`cp -a WS WS2`: same catalog, same faceset.json; WS2 gets a new id at its first export."""
    ws, ds = place / "ws", place / "out" / "ds"
    assert _cli("export", ds, "-w", ws).exit_code == 0
    subprocess.run(["cp", "-a", str(ws), str(place / "ws2")], check=True)
    before = _hashes(place)
    line = _one_line_error(_cli("export", "--refresh", "--id", "1", "-w", place / "ws2"))
    assert "another workspace" in line
    assert _hashes(place) == before
    # the original still owns it
    r = _cli("export", "--refresh", "--id", "1", "-w", ws, "--json")
    assert r.exit_code == 0, r.output
    ids = {json.loads((p / "faceset.json").read_text())["id"] for p in (ws, place / "ws2")}
    assert len(ids) == 2


def test_a_moved_workspace_keeps_its_exports(place):
    ws, ds = place / "ws", place / "out" / "ds"
    assert _cli("export", ds, "-w", ws).exit_code == 0
    os.rename(ws, place / "moved")
    r = _cli("export", "--refresh", "--id", "1", "-w", place / "moved", "--json")
    assert r.exit_code == 0, r.output


def test_forget_refresh_exports_refuses_a_foreign_folder_but_erases(place, data_dir):
    ws, ds = place / "ws", place / "out" / "ds"
    assert _cli("export", ds, "-w", ws).exit_code == 0
    shutil.rmtree(ds)
    ds.mkdir()
    (ds / "thesis.txt").write_text("thesis\n")
    before = _hashes(place)
    selfie = sorted((data_dir / "identities" / "angelina_jolie").glob("*.jpg"))[0]
    line = _one_line_error(_cli("forget", selfie, "-w", ws, "--yes", "--refresh-exports"))
    assert "refused 1" in line and "not replaced" in line
    assert _hashes(place) == before
    w = _open(ws)
    assert w.catalog.exports.get(1).stale  # still stale: a later refresh after the user moves it away
    assert w.catalog.erasures.counts() == {}
    w.close()


# -- racing erasure ------------------------------------------------------------------


def _person_crops(ws, who: str) -> tuple[set[bytes], list[int]]:
    """The bytes of every crop of ``who`` (their source) and their image ids."""
    from faceset.export.select import select_items

    sel = select_items(ws, what="crops", salt="x", label=None, faces="main", include_unknown_consent=False,
                       include_low_quality=False, blur_bystanders=False)
    mine = {r[0] for r in ws.catalog.q("SELECT images.id FROM images JOIN sources ON sources.id = images.source_id "
                                         "WHERE sources.name=?", (who,))}
    ids = [it.image_id for it in sel.items if it.image_id in mine]
    keys = {it.key for it in sel.items if it.image_id in ids}
    return {ws.store.get(k) for k in keys}, ids


def _exported_blobs(out: Path) -> set[bytes]:
    return {p.read_bytes() for p in out.rglob("*") if p.is_file() and p.suffix in (".jpg", ".png")}


def _erase(ws, image_ids):
    from faceset.privacy import redact

    with ws.catalog.tx():
        redact.mark_stale(ws, "forget", image_ids=image_ids)
        gone = redact.erase_images(ws, image_ids)
        redact.journal(ws, "forget", keys=gone.keys, derived=True)
    redact.finish_erasures(ws)


def test_forget_between_select_and_commit_is_caught_and_the_export_retries(place, data_dir, monkeypatch):
    """The issue's race, made deterministic: forget commits while the export is writing its files."""
    from faceset.export import core, export
    from faceset.privacy import forget

    ws = _open(place / "ws")
    her, her_ids = _person_crops(ws, "angelina_jolie")
    assert her and her_ids
    selfie = sorted((data_dir / "identities" / "angelina_jolie").glob("*.jpg"))[0]
    calls = []

    def race(w, sel):
        if not calls:
            calls.append(forget(w, [selfie], sheet=False, include_uncertain=True))

    monkeypatch.setattr(core, "_before_commit", race)
    rep = export(ws, place / "out" / "ex", progress=False)
    fr = calls[0]
    assert fr.images_erased >= len(her_ids) - 1
    assert not (_exported_blobs(place / "out" / "ex") & her), "an erased person was published"
    assert not ws.catalog.exports.get(rep.export_id).stale
    assert all(iid not in set(her_ids) for iid, _ in ws.catalog.exports.items(rep.export_id))
    assert not list((place / "out").glob(".ex.*")) and ws.catalog.erasures.counts() == {}
    ws.close()


def test_an_export_that_keeps_losing_the_race_publishes_nothing(place, monkeypatch):
    from faceset.export import ExportError, core, export

    ws = _open(place / "ws")
    _, ids = _person_crops(ws, "angelina_jolie")
    _, others = _person_crops(ws, "john_simm")
    todo = [ids[:1], others[:1]]

    def race(w, sel):
        if todo:
            _erase(w, todo.pop(0))

    monkeypatch.setattr(core, "_before_commit", race)
    before = _hashes(place)
    with pytest.raises(ExportError, match="erased or redacted while this export was written") as e:
        export(ws, place / "out" / "ex", progress=False)
    assert "\n" not in str(e.value)
    assert not (place / "out" / "ex").exists() and not list((place / "out").glob(".ex.*"))
    assert _hashes(place) == before and ws.catalog.exports.all() == []
    assert ws.catalog.erasures.counts() == {}
    ws.close()


def test_a_refresh_racing_forget_drops_the_person(place, monkeypatch):
    from faceset.export import core, export, refresh

    ws = _open(place / "ws")
    her, ids = _person_crops(ws, "angelina_jolie")
    rep = export(ws, place / "out" / "ds", progress=False)
    assert _exported_blobs(place / "out" / "ds") & her
    calls = []

    def race(w, sel):
        if not calls:
            calls.append(_erase(w, ids))

    monkeypatch.setattr(core, "_before_commit", race)
    [again] = refresh(ws, rep.export_id, progress=False)
    assert again.items < rep.items
    assert not (_exported_blobs(place / "out" / "ds") & her)
    assert not ws.catalog.exports.get(rep.export_id).stale
    ws.close()


_KILL_IN_EXPORT = """
import os, sys
from faceset import open_workspace
from faceset.export import core, export
core._before_commit = lambda ws, sel: os.kill(os.getpid(), 9)
export(open_workspace(sys.argv[1]), sys.argv[2], progress=False)
"""


def _killed_export(ws: Path, out: Path) -> Path:
    r = subprocess.run([sys.executable, "-c", _KILL_IN_EXPORT, str(ws), str(out)], capture_output=True)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()[-2000:]
    [partial] = list(out.parent.glob(f".{out.name}.partial-*"))
    assert any(partial.rglob("*.jpg"))
    return partial


@pytest.mark.parametrize("finisher", ["verify", "export"])
def test_a_killed_export_leaves_a_tracked_partial_that_is_shredded(place, finisher):
    from faceset.status import workspace_status

    partial = _killed_export(place / "ws", place / "out" / "ex")
    ws = _open(place / "ws")
    assert workspace_status(ws)["pending_erasures"] == {"partial_export": 1}
    r = _cli("status", "-w", place / "ws")
    assert "pending erasures" in r.stdout and "partial_export 1" in r.stdout
    if finisher == "verify":
        r = _cli("verify", "-w", place / "ws", "--repair", "--json")
    else:
        r = _cli("export", place / "out" / "other", "-w", place / "ws", "--json")
    assert r.exit_code == 0, r.output
    assert not partial.exists() and workspace_status(ws)["pending_erasures"] == {}
    ws.close()


def test_forget_shreds_a_killed_exports_partial_folder(place, data_dir):
    partial = _killed_export(place / "ws", place / "out" / "ex")
    ws = _open(place / "ws")
    from faceset.privacy import forget

    selfie = sorted((data_dir / "identities" / "angelina_jolie").glob("*.jpg"))[0]
    forget(ws, [selfie], sheet=False, include_uncertain=True)
    assert not partial.exists() and ws.catalog.erasures.counts() == {}
    ws.close()


def test_a_damaged_stored_crop_is_a_one_line_workspace_error(place):
    """Bit rot in the store: export stops with exit 2 and points at `faceset verify`, no traceback."""
    from faceset import open_workspace

    ws = open_workspace(place / "ws")
    key = ws.catalog.scalar("SELECT crop_key FROM faces WHERE crop_key IS NOT NULL ORDER BY id LIMIT 1")
    path = ws.store.path(key)
    path.write_bytes(b"\xff\xd8\xff" + b"\0" * (path.stat().st_size - 3))  # same size, not a picture any more
    ws.close()
    res = _cli("export", place / "out" / "ds", "-w", place / "ws")
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("error:") and "damaged" in lines[-1] and "verify" in lines[-1]
    assert "Traceback" not in res.output
    assert not (place / "out" / "ds").exists()
