"""Erasure is a journal (issue #15 medium 5): forget commits its shredding plan with the deletes, a kill
after the commit leaves the plan, `status` shows it, and the next forget / export / verify --repair
finishes it. Nothing of the erased person stays in the store or the derived files."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceset.cli import app

PEOPLE = ("john_simm", "angelina_jolie")


@pytest.fixture(scope="module")
def base(tmp_path_factory, data_dir) -> Path:
    from faceset import init_workspace
    from faceset.curate import assign_splits, cluster_people
    from faceset.ingest import ingest
    from faceset.scan import scan

    root = tmp_path_factory.mktemp("journal") / "ws"
    ws = init_workspace(root)
    for who in PEOPLE:
        ingest(ws, [data_dir / "identities" / who], license="test-only", consent="research_exemption",
               source_name=who, progress=False)
    assert scan(ws, workers=1, progress=False).errors == 0
    cluster_people(ws)
    assign_splits(ws)
    ws.close()
    return root


def _open(p):
    from faceset import open_workspace

    return open_workspace(p)


def _her_keys(ws) -> set[str]:
    """Every store key of angelina_jolie's photos and faces."""
    return {r[0] for r in ws.catalog.q(
        "SELECT images.store_key FROM images JOIN sources ON sources.id = images.source_id WHERE sources.name=? "
        "UNION SELECT faces.chip_key FROM faces JOIN images ON images.id = faces.image_id "
        "JOIN sources ON sources.id = images.source_id WHERE sources.name=? AND faces.chip_key IS NOT NULL "
        "UNION SELECT faces.crop_key FROM faces JOIN images ON images.id = faces.image_id "
        "JOIN sources ON sources.id = images.source_id WHERE sources.name=? AND faces.crop_key IS NOT NULL",
        ("angelina_jolie",) * 3)}


_KILL_AFTER_COMMIT = """
import os, sys
from faceset import open_workspace
from faceset.privacy import forget, redact
finish = redact.finish_erasures
# kill -9 right after forget's commit: the first time the journal holds something (before it, forget
# finishes an empty journal, e.g. in purge_blocked)
redact.finish_erasures = lambda ws: os.kill(os.getpid(), 9) if ws.catalog.erasures.counts() else finish(ws)
forget(open_workspace(sys.argv[1]), [sys.argv[2]], sheet=False, include_uncertain=True)
"""


@pytest.fixture
def killed(base, tmp_path, data_dir):
    """A copy of the workspace where forget (of angelina_jolie) was killed between commit and shredding."""
    root = tmp_path / "ws"
    shutil.copytree(base, root)
    ws = _open(root)
    keys = _her_keys(ws)
    (ws.cache_dir / "features").mkdir()
    (ws.cache_dir / "features" / "her.npy").write_bytes(b"a cached feature of her face")
    (ws.root / "report.html").write_text("<img src='data:her face'>")
    ws.close()
    selfie = sorted((data_dir / "identities" / "angelina_jolie").glob("*.jpg"))[0]
    r = subprocess.run([sys.executable, "-c", _KILL_AFTER_COMMIT, str(root), str(selfie)], capture_output=True)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()[-2000:]
    ws = _open(root)
    assert keys and not (_her_keys(ws))  # committed: her rows are gone ...
    assert all(ws.store.exists(k) for k in keys)  # ... but her bytes are still on disk
    yield ws, keys, selfie
    ws.close()


def test_status_shows_the_pending_erasure(killed):
    from faceset.status import workspace_status

    ws, keys, _ = killed
    pending = workspace_status(ws)["pending_erasures"]
    assert pending["store"] >= len(keys) and pending["derived"] == 1
    r = CliRunner().invoke(app, ["status", "-w", str(ws.root)])
    assert r.exit_code == 0 and "pending erasures:" in r.stdout and "verify --repair" in r.stdout
    js = json.loads(CliRunner().invoke(app, ["status", "-w", str(ws.root), "--json"]).stdout)
    assert js["pending_erasures"]["store"] >= len(keys)
    from faceset.verify import verify

    assert not verify(ws, progress=False).ok  # verify reports it too


@pytest.mark.parametrize("finisher", ["forget", "export", "verify"])
def test_the_next_writing_command_finishes_the_erasure(killed, tmp_path, finisher):
    ws, keys, selfie = killed
    if finisher == "forget":
        args = ["forget", selfie, "--yes", "--json"]
    elif finisher == "export":
        args = ["export", tmp_path / "ds", "--json"]
    else:
        args = ["verify", "--repair", "--json"]
    r = CliRunner().invoke(app, [str(a) for a in args] + ["-w", str(ws.root)])
    assert r.exit_code == 0, r.output
    assert not any(ws.store.exists(k) for k in keys), "her stored bytes survived"
    assert ws.catalog.erasures.counts() == {}
    assert not (ws.root / "report.html").exists() and not list(ws.cache_dir.rglob("*.npy"))
    if finisher == "export":  # and the export published nothing of her
        blobs = {p.read_bytes() for p in (tmp_path / "ds").rglob("*.jpg")}
        assert blobs and len(blobs) == json.loads(r.stdout)["items"]


def test_finishing_is_idempotent_and_never_shreds_what_is_referenced_again(base, tmp_path):
    from faceset.privacy import redact

    shutil.copytree(base, tmp_path / "ws")
    ws = _open(tmp_path / "ws")
    live = next(iter(ws.catalog.images.referenced_keys()))
    orphan = ws.store.put(b"an erased face")
    with ws.catalog.tx():
        redact.journal(ws, "forget", keys=[live, orphan, "ab" * 32])  # "ab"*32: already gone
    first = redact.finish_erasures(ws)
    assert first.store_objects == 1 and not ws.store.exists(orphan) and ws.store.exists(live)
    assert ws.catalog.erasures.counts() == {}
    assert redact.finish_erasures(ws).store_objects == 0
    ws.close()


def test_a_crash_inside_the_erasing_transaction_journals_nothing(base, tmp_path, data_dir, monkeypatch):
    """The plan and the deletes are one unit: a failure before the commit leaves neither."""
    from faceset.privacy import forget

    shutil.copytree(base, tmp_path / "ws")
    ws = _open(tmp_path / "ws")
    keys = _her_keys(ws)
    selfie = sorted((data_dir / "identities" / "angelina_jolie").glob("*.jpg"))[0]

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("faceset.privacy.blocklist.add_template", boom)  # called inside the transaction
    with pytest.raises(KeyboardInterrupt):
        forget(ws, [selfie], sheet=False, include_uncertain=True)
    assert _her_keys(ws) == keys and ws.catalog.erasures.counts() == {}
    ws.close()


def test_a_journal_row_pointing_at_a_users_folder_never_shreds_it(base, tmp_path):
    """Folders outside the workspace are shredded only if named like an export's hidden sibling and
    marked with this workspace's id (a damaged or hostile catalog cannot aim the shredder)."""
    import hashlib

    from faceset.privacy import redact

    shutil.copytree(base, tmp_path / "ws")
    ws = _open(tmp_path / "ws")
    victims = [tmp_path / "thesis", tmp_path / ".ds.partial-1-abc"]  # the second: right name, no marker
    for v in victims:
        v.mkdir()
        (v / "chapter1.txt").write_text("my thesis\n")
    def sums():
        return [hashlib.sha256((v / "chapter1.txt").read_bytes()).hexdigest() for v in victims]

    before = sums()
    with ws.catalog.tx():
        ws.catalog.erasures.plan("export_folder", [str(victims[0])], "export")
        ws.catalog.erasures.plan("partial_export", [str(victims[1])], "export", pid=2 ** 22 + 7)
    done = redact.finish_erasures(ws)
    assert done.folders == 0 and ws.catalog.erasures.counts() == {}
    assert sums() == before
    ws.close()
