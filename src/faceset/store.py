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

    def put(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        dst = self.path(key)
        if dst.exists():
            return key
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dst)
        except BaseException:
            with _suppress():
                os.unlink(tmp)
            raise
        return key

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


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)
