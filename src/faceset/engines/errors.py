"""What an engine raises to its caller (a module of its own: the engines import it, it imports nothing)."""

from __future__ import annotations


class WorkerLost(RuntimeError):
    """A task's worker process (or its node) died before it returned: a decoder segfault, the OOM killer.
    Raised by :meth:`RayEngine.result`, so callers can retry items alone without importing ray."""
