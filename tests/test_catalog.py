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
            c.execute("INSERT INTO sources(name,kind,license,consent,created_at) "
                      "VALUES ('a','folder','x','consent','t')")
            raise RuntimeError("boom")
    assert ws.catalog.scalar("SELECT COUNT(*) FROM sources") == 0


def test_store_roundtrip_and_delete(ws):
    k = ws.store.put(b"hello")
    assert ws.store.get(k) == b"hello" and ws.store.put(b"hello") == k
    assert ws.store.delete(k) and not ws.store.exists(k)


def test_old_catalog_is_migrated_in_place_keeping_its_rows(tmp_path):
    from faceset.catalog import _split_sql

    ws = init_workspace(tmp_path / "w")
    ws.close()
    db = tmp_path / "w" / "catalog.db"
    db.unlink()
    # A catalog as the first release wrote it: schema v1 only, with a row in it.
    c = sqlite3.connect(db)
    for stmt in _split_sql(MIGRATIONS[0]):
        c.execute(stmt)
    c.execute("PRAGMA user_version=1")
    c.execute("INSERT INTO sources(name,kind,license,consent,created_at) VALUES ('old','folder','x','consent','t')")
    c.commit()
    c.close()
    ws = open_workspace(tmp_path / "w")
    assert ws.catalog.schema_version == len(MIGRATIONS) > 1
    assert ws.catalog.scalar("SELECT name FROM sources") == "old"
    cols = {r["name"] for r in ws.catalog.q("PRAGMA table_info(images)")}
    assert {"phash", "phash_flip"} <= cols  # added by a later migration


def test_catalog_from_a_newer_faceset_is_refused_clearly(tmp_path):
    ws = init_workspace(tmp_path / "w")
    ws.catalog.conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    ws.close()
    with pytest.raises(WorkspaceError, match="upgrade faceset"):
        open_workspace(tmp_path / "w")
