"""The catalog: one SQLite file (WAL) that is the single source of truth.

Every stage reads and writes through it; files in the store are only reachable
through keys recorded here. Schema changes are appended to ``MIGRATIONS``
(never edit a released one) and applied in order on open.
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

CONSENT_BASES = ("consent", "license", "public_domain", "research_exemption", "unknown")

# Image status: new (ingested, not scanned) | ok (has >= 1 face) | no_face | error (scan failed)
IMAGE_STATUSES = ("new", "ok", "no_face", "error")

MIGRATIONS: list[str] = [
    # v1: the whole pipeline's tables, so later stages only fill them.
    """
    CREATE TABLE sources(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,                 -- folder|zip|tar|manifest|file
        uri TEXT,                           -- where it was read from
        license TEXT NOT NULL,
        consent TEXT NOT NULL,              -- one of CONSENT_BASES
        consent_expires TEXT,               -- ISO date or NULL
        notes TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE images(
        id INTEGER PRIMARY KEY,
        pixel_sha TEXT NOT NULL UNIQUE,     -- sha256 of decoded RGB + shape: re-encodes collapse here
        sha256 TEXT NOT NULL,               -- sha256 of the first original file's bytes
        store_key TEXT NOT NULL,            -- clean stored copy (oriented, no metadata)
        format TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        source_id INTEGER NOT NULL REFERENCES sources(id),
        license TEXT,                       -- per-row override, NULL = the source's
        consent TEXT,
        consent_expires TEXT,
        status TEXT NOT NULL DEFAULT 'new',
        status_reason TEXT,
        dup_of INTEGER REFERENCES images(id) ON DELETE SET NULL,  -- near-duplicate of a kept image
        created_at TEXT NOT NULL,
        scanned_at TEXT
    );
    CREATE INDEX images_status ON images(status);
    CREATE INDEX images_sha ON images(sha256);
    CREATE TABLE files(                     -- every original path seen, rejects included
        id INTEGER PRIMARY KEY,
        source_id INTEGER NOT NULL REFERENCES sources(id),
        path TEXT NOT NULL,
        sha256 TEXT,
        size INTEGER,
        image_id INTEGER REFERENCES images(id) ON DELETE CASCADE,
        outcome TEXT NOT NULL,              -- added|duplicate|rejected|blocked
        reason_code TEXT,
        reason TEXT,
        seen_at TEXT NOT NULL,
        UNIQUE(source_id, path)
    );
    CREATE INDEX files_image ON files(image_id);
    CREATE INDEX files_sha ON files(sha256);
    CREATE TABLE people(
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        n_faces INTEGER NOT NULL DEFAULT 0,
        centroid BLOB,                      -- float32[128]
        split TEXT,                         -- train|val|test, assigned once
        consent TEXT,                       -- per-subject basis, NULL = the images' own
        consent_expires TEXT,
        name TEXT
    );
    CREATE TABLE faces(
        id INTEGER PRIMARY KEY,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        x REAL NOT NULL, y REAL NOT NULL, w REAL NOT NULL, h REAL NOT NULL,
        score REAL,
        detector TEXT,
        landmarks TEXT,                     -- JSON [[x, y] * 5], image coordinates
        is_main INTEGER NOT NULL DEFAULT 0,
        size REAL, blur REAL, brightness REAL, yaw REAL, quality REAL,
        embedding BLOB,                     -- float32[128], dlib ResNet
        chip_key TEXT,                      -- 150 px aligned chip in the store
        crop_key TEXT,                      -- larger aligned crop with margin
        person_id INTEGER REFERENCES people(id) ON DELETE SET NULL,
        status TEXT NOT NULL DEFAULT 'ok',  -- ok|low_quality|bystander_blurred
        UNIQUE(image_id, idx)
    );
    CREATE INDEX faces_person ON faces(person_id);
    CREATE TABLE labels(
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        origin TEXT NOT NULL,               -- folder|manifest|regex|user
        updated_at TEXT NOT NULL,
        PRIMARY KEY(image_id, name)
    );
    CREATE TABLE exports(
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        format TEXT NOT NULL,
        what TEXT NOT NULL,
        params TEXT NOT NULL,               -- JSON: everything needed to rebuild it
        created_at TEXT NOT NULL,
        stale INTEGER NOT NULL DEFAULT 0,
        stale_reason TEXT
    );
    CREATE TABLE export_items(
        export_id INTEGER NOT NULL REFERENCES exports(id) ON DELETE CASCADE,
        image_id INTEGER,
        face_id INTEGER
    );
    CREATE INDEX export_items_image ON export_items(image_id);
    CREATE TABLE blocklist(
        id INTEGER PRIMARY KEY,
        template BLOB NOT NULL,             -- see privacy/ for what it is and is not
        radius REAL NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE audit(
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        details TEXT NOT NULL               -- JSON counts and parameters; never biometric data
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
    """,
    # v2 (curate): perceptual hashes for near-duplicate search, and small stage settings
    # (e.g. the split parameters exporters must honour).
    """
    ALTER TABLE images ADD COLUMN phash TEXT;
    ALTER TABLE images ADD COLUMN phash_flip TEXT;
    CREATE TABLE settings(
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
]


class SchemaTooNew(Exception):
    """The catalog was written by a newer faceset; we never downgrade or guess."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Catalog:
    """A thin, typed-enough wrapper over sqlite3.

    One connection per process (and per thread); safe to open from worker
    processes. Writes go through :meth:`tx` so a kill -9 leaves either the
    whole unit of work or none of it.
    """

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
        for i in range(v, len(MIGRATIONS)):
            with self.tx():
                for stmt in _split_sql(MIGRATIONS[i]):
                    c.execute(stmt)
                c.execute(f"PRAGMA user_version={i + 1}")

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

    def q(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def scalar(self, sql: str, params: Any = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

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


def _split_sql(script: str) -> list[str]:
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
