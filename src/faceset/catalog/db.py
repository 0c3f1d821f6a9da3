"""The connection: one SQLite file (WAL, ``secure_delete``), migrations applied on open, transactions.

Everything else in ``catalog/`` is named queries over this; nothing outside ``catalog/`` speaks SQL.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ..errors import WorkspaceError
from .schema import MIGRATIONS


class SchemaTooNew(WorkspaceError):
    """The catalog was written by a newer faceset; we never downgrade or guess."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Database:
    """One connection per thread (safe to open from worker processes) and :meth:`tx`, so a kill -9
    leaves either the whole unit of work or none of it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()
        self.migrate()

    @property
    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            c.row_factory = sqlite3.Row
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("PRAGMA foreign_keys=ON")
            # Deleted rows are overwritten with zeros: erasure must not leave readable pages.
            c.execute("PRAGMA secure_delete=ON")
            c.execute("PRAGMA busy_timeout=60000")
            self._local.conn = c
        return c

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    # -- schema -----------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        c = self.conn
        v = self.schema_version
        if v > len(MIGRATIONS):
            raise SchemaTooNew(
                f"catalog {self.path} has schema v{v}, this faceset knows v{len(MIGRATIONS)}: upgrade faceset"
            )
        if v == len(MIGRATIONS):
            return
        # Table rebuilds (v3) need foreign keys off; they are checked before each commit.
        c.execute("PRAGMA foreign_keys=OFF")
        try:
            for i in range(v, len(MIGRATIONS)):
                with self.tx():
                    for stmt in split_sql(MIGRATIONS[i]):
                        c.execute(stmt)
                    bad = c.execute("PRAGMA foreign_key_check").fetchall()
                    if bad:
                        raise WorkspaceError(f"catalog {self.path}: migration to v{i + 1} found "
                                             f"{len(bad)} broken references (first in table {bad[0][0]})")
                    c.execute(f"PRAGMA user_version={i + 1}")
        finally:
            c.execute("PRAGMA foreign_keys=ON")

    # -- transactions -----------------------------------------------------
    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; nested calls join the outer transaction."""
        c = self.conn
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield c
            finally:
                self._local.depth -= 1
            return
        c.execute("BEGIN IMMEDIATE")
        self._local.depth = 1
        try:
            yield c
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        finally:
            self._local.depth = 0

    # Raw access: for the aggregate modules in catalog/ and for tests; stages use named queries.
    def q(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def scalar(self, sql: str, params: Any = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows) -> sqlite3.Cursor:
        return self.conn.executemany(sql, rows)

    # -- audit --------------------------------------------------------------
    def audit(self, action: str, **details: Any) -> None:
        """Append one audit entry. Pass counts and parameters, never faces or embeddings."""
        try:
            actor = getpass.getuser()
        except Exception:  # no passwd entry in some containers
            actor = "unknown"
        self.conn.execute(
            "INSERT INTO audit(ts, actor, action, details) VALUES (?,?,?,?)",
            (now(), actor, action, json.dumps(details, sort_keys=True, default=str)),
        )

    def vacuum(self) -> None:
        """Rewrite the file so deleted rows leave no readable pages behind (used by erasure)."""
        c = self.conn
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.execute("VACUUM")
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class Repo:
    """Base of the aggregate modules: named queries over one :class:`Database`."""

    def __init__(self, db: Database):
        self.db = db


def placeholders(n: int) -> str:
    return ",".join("?" * n)


def chunks(ids, size: int = 900):
    """SQLite caps bound parameters; IN (...) lists go in slices of ``size``."""
    ids = list(ids)
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    out, buf = [], []
    for line in script.splitlines():
        s = line.split("--", 1)[0].rstrip() if "RAISE" not in line else line.rstrip()
        if not s.strip():
            continue
        buf.append(s)
        joined = "\n".join(buf)
        if s.endswith(";") and sqlite3.complete_statement(joined):
            out.append(joined)
            buf = []
    if buf and "".join(buf).strip():
        out.append("\n".join(buf))
    return out
