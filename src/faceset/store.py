"""Content-addressed file store: bytes in, sha256 key out.

Writes are atomic (temp file + fsync + rename), so a kill -9 never leaves a
half-written object under a real key. Objects only matter while the catalog
references them; :meth:`Store.gc` removes the rest.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key[2:4] / key

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def put(self, data: bytes, *, sync: bool = True) -> str:
        """``sync=False`` skips the per-object fsync: the caller must :meth:`sync` before the catalog
        commit that references the object (one flush per batch instead of one per object)."""
        key = hashlib.sha256(data).hexdigest()
        dst = self.path(key)
        with _suppress():
            if dst.stat().st_size == len(data):  # (a size mismatch = torn by a power cut: rewrite)
                return key
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if sync:
                    os.fsync(f.fileno())
            os.replace(tmp, dst)
        except BaseException:
            with _suppress():
                os.unlink(tmp)
            raise
        return key

    def sync(self) -> None:
        """Make every object written so far durable: one syncfs(2) of the store's filesystem."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _syncfs is None or _syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def delete(self, key: str) -> bool:
        """Overwrite, then unlink: erased faces must not stay recoverable from the disk blocks we own."""
        p = self.path(key)
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            return False
        with open(p, "r+b") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
        p.unlink()
        return True

    def keys(self) -> Iterator[str]:
        for d in sorted(self.root.glob("??/??")):
            for p in d.iterdir():
                if len(p.name) == 64:
                    yield p.name

    def gc(self, referenced: Iterable[str]) -> int:
        """Delete objects nobody references (e.g. written just before a crash) and stale temp files."""
        keep = set(referenced)
        n = 0
        for k in list(self.keys()):
            if k not in keep:
                self.delete(k)
                n += 1
        for t in (self.root / "tmp").iterdir():
            with _suppress():
                t.unlink()
        return n


def _load_syncfs():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # not Linux: fall back to os.sync()
        return None


_syncfs = _load_syncfs()


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)
