import sqlite3

import pytest

from faceset import init_workspace, open_workspace
from faceset.catalog import MIGRATIONS
from faceset.workspace import WorkspaceError


def test_init_creates_wal_catalog_at_latest_schema(tmp_path):
    ws = init_workspace(tmp_path / "w")
    assert ws.catalog.schema_version == len(MIGRATIONS)
    assert ws.catalog.scalar("PRAGMA journal_mode") == "wal"
    ws.close()
    # reopening does not re-run migrations or lose data
    ws2 = open_workspace(tmp_path / "w")
    assert ws2.catalog.schema_version == len(MIGRATIONS)


def test_open_missing_workspace_is_a_clear_error(tmp_path):
    with pytest.raises(WorkspaceError, match="no faceset workspace"):
        open_workspace(tmp_path / "nope")


def test_audit_log_is_append_only(ws):
    with ws.catalog.tx():
        ws.catalog.audit("test", n=1)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        ws.catalog.conn.execute("UPDATE audit SET action='x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        ws.catalog.conn.execute("DELETE FROM audit")
    assert ws.catalog.scalar("SELECT COUNT(*) FROM audit") == 1


def test_tx_rolls_back_on_error(ws):
    with pytest.raises(RuntimeError):
        with ws.catalog.tx() as c:
            c.execute("INSERT INTO sources(name,kind,license,consent,created_at) VALUES ('a','folder','x','consent','t')")
            raise RuntimeError("boom")
    assert ws.catalog.scalar("SELECT COUNT(*) FROM sources") == 0


def test_store_roundtrip_and_delete(ws):
    k = ws.store.put(b"hello")
    assert ws.store.get(k) == b"hello" and ws.store.put(b"hello") == k
    assert ws.store.delete(k) and not ws.store.exists(k)
