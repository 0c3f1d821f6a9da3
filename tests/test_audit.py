"""Audit log: append-only at the database level, filterable, and free of file names."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from faceset.cli import app
from faceset.privacy.audit import entries


def test_append_only_filter_and_cli(ws, data_dir, tmp_path):
    from faceset.ingest import ingest

    src = tmp_path / "in"
    src.mkdir()
    photos = sorted((data_dir / "identities" / "joe_biden").iterdir())
    for p in photos:
        (src / p.name).write_bytes(p.read_bytes())
    ingest(ws, [src], license="test-only", consent="consent", progress=False, workers=1)
    ws.catalog.audit("label_change", changed=3)

    rows = entries(ws)
    assert [r["action"] for r in rows][0] == "label_change"  # newest first
    ing = entries(ws, action="ingest")
    assert len(ing) == 1 and ing[0]["actor"] and ing[0]["ts"]
    assert len(entries(ws, limit=1)) == 1

    # No original file name or folder reaches the log.
    blob = json.dumps([r["details"] for r in rows])
    for p in photos:
        assert p.name not in blob and p.stem not in blob
    assert str(src) not in blob

    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        ws.catalog.conn.execute("UPDATE audit SET actor='someone else'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        ws.catalog.conn.execute("DELETE FROM audit")

    r = CliRunner()
    out = r.invoke(app, ["audit", "-w", str(ws.root), "--json", "--action", "label_change"])
    assert out.exit_code == 0, out.output
    assert [(e["action"], e["details"]) for e in json.loads(out.stdout)] == [("label_change", {"changed": 3})]
    human = r.invoke(app, ["audit", "-w", str(ws.root), "--limit", "5"])
    assert human.exit_code == 0 and "ingest" in human.stdout
