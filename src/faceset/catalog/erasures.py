"""The erasure journal: what a committed erasure (or an export being written) still has to shred.

Rows are written inside the transaction that deletes the catalog rows, so a kill between the commit
and the shredding leaves the plan behind; any later writing command finishes it
(:func:`faceset.privacy.redact.finish_erasures`), and ``status`` shows it until it is done.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

from ..errors import UsageError
from .db import Repo, chunks, now, placeholders
from .schema import SHRED_KINDS


class ShredTask(NamedTuple):
    """One journal row: shred ``target`` (a store key, ``workspace`` for derived files, or a folder)."""

    id: int
    kind: str
    target: str
    reason: str
    pid: int | None
    export_id: int | None


class Erasures(Repo):
    """Rows of `pending_shred`."""

    # -- section: harden_a --
    _COLS = "id, kind, target, reason, pid, export_id"

    def plan(self, kind: str, targets: Iterable[str], reason: str, *, pid: int | None = None,
             export_id: int | None = None) -> int:
        """Journal ``targets`` for shredding (in the caller's transaction: the plan commits with the
        deletes it follows from). Already-journalled targets are kept once. Returns rows added."""
        if kind not in SHRED_KINDS:
            raise UsageError(f"shred kind must be one of {', '.join(SHRED_KINDS)}, not {kind!r}")
        rows = [(kind, str(t), reason, pid, export_id, now()) for t in sorted(set(map(str, targets)))]
        if not rows:
            return 0
        before = self.db.conn.total_changes
        self.db.executemany("INSERT OR IGNORE INTO pending_shred(kind, target, reason, pid, export_id, created_at) "
                            "VALUES (?,?,?,?,?,?)", rows)
        return self.db.conn.total_changes - before

    def pending(self, kind: str | None = None) -> list[ShredTask]:
        """What is still to shred (oldest first), optionally of one kind."""
        if kind is None:
            rows = self.db.q(f"SELECT {self._COLS} FROM pending_shred ORDER BY id")
        else:
            rows = self.db.q(f"SELECT {self._COLS} FROM pending_shred WHERE kind=? ORDER BY id", (kind,))
        return [ShredTask(*tuple(r)) for r in rows]

    def done(self, ids: Iterable[int]) -> int:
        """Forget journal rows whose shredding is finished (idempotent)."""
        n = 0
        for part in chunks(sorted({int(i) for i in ids})):
            n += self.db.execute(f"DELETE FROM pending_shred WHERE id IN ({placeholders(len(part))})", part).rowcount
        return n

    def done_target(self, kind: str, target: str) -> int:
        """Forget the journal row of one target (e.g. a partial export folder that was swapped in)."""
        return self.db.execute("DELETE FROM pending_shred WHERE kind=? AND target=?", (kind, str(target))).rowcount

    def counts(self) -> dict[str, int]:
        """Pending rows by kind (what `status` shows until shredding is done)."""
        return {r[0]: r[1] for r in self.db.q("SELECT kind, COUNT(*) FROM pending_shred GROUP BY kind ORDER BY kind")}
    # (end of section: harden_a)
