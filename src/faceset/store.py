"""Content-addressed file store: bytes in, sha256 key out.

Writes are atomic (temp file + fsync + rename), so a kill -9 never leaves a
half-written object under a real key. Objects only matter while the catalog
references them; :meth:`Store.gc` removes the rest.

The store never follows or writes through links: objects are opened with ``O_NOFOLLOW`` below
directories checked to be real directories inside the store, and a symlink, a device or a file with
more than one hard link is refused (reading) or only unlinked, never overwritten (erasing). Otherwise a
planted ``store/aa/bb/<key> -> /home/you/thesis.pdf`` would let erasure zero-fill a file outside the
workspace.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import WorkspaceError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRFLAGS = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_DIRECTORY", 0)


class StoreError(WorkspaceError):
    """A store object is missing, damaged or not a plain file of its own (a link, a device...)."""


def _is_key(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        self._dirs_ok: set[str] = set()
        # (key prefix, why) of objects erasure found to be links and only unlinked: reported by callers
        self.anomalies: list[tuple[str, str]] = []

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key[2:4] / key

    # -- safe access -----------------------------------------------------
    def _dir_fd(self, key: str, create: bool = False) -> int:
        """An fd of ``root/aa/bb`` reached without following any link (``-1`` when missing)."""
        fd = os.open(self.root, _DIRFLAGS)
        try:
            for part in (key[:2], key[2:4]):
                try:
                    nfd = os.open(part, _DIRFLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return -1
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:  # another worker made it first
                        pass
                    nfd = os.open(part, _DIRFLAGS, dir_fd=fd)
                except OSError as e:  # ELOOP / ENOTDIR: a link or a file where a folder should be
                    raise StoreError(f"store folder {part!r} for object {key[:12]} is not a real folder "
                                     f"({e.strerror}): refused (see `faceset verify`)") from None
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _open(self, key: str, flags: int) -> int | None:
        """fd of a regular, singly-linked object, None if missing; StoreError for anything else."""
        dfd = self._dir_fd(key)
        if dfd < 0:
            return None
        try:
            try:
                fd = os.open(key, flags | _NOFOLLOW | _CLOEXEC, dir_fd=dfd)
            except FileNotFoundError:
                return None
            except OSError as e:  # ELOOP: the object is a symlink
                raise StoreError(f"store object {key[:12]} is a link ({e.strerror}): refused") from None
        finally:
            os.close(dfd)
        st = os.fstat(fd)
        why = self._why_not_plain(st)
        if why:
            os.close(fd)
            raise StoreError(f"store object {key[:12]} {why}: refused")
        return fd

    @staticmethod
    def _why_not_plain(st: os.stat_result) -> str | None:
        if not stat.S_ISREG(st.st_mode):
            return "is not a regular file"
        if st.st_nlink > 1:
            return f"has {st.st_nlink} hard links (another name shares its bytes)"
        return None

    def check(self, key: str, *, verify_hash: bool = True) -> str | None:
        """None if the object is a plain file whose bytes hash to its key, else why not (for verify)."""
        try:
            fd = self._open(key, os.O_RDONLY)
        except StoreError as e:
            return str(e)
        if fd is None:
            return f"store object {key[:12]} is missing"
        if not verify_hash:
            os.close(fd)
            return None
        h = hashlib.sha256()
        with os.fdopen(fd, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return None if h.hexdigest() == key else f"store object {key[:12]} is damaged (its bytes do not match its key)"

    # -- the verbs -------------------------------------------------------
    def exists(self, key: str) -> bool:
        try:
            st = os.lstat(self.path(key))
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode)

    def put(self, data: bytes, *, sync: bool = True) -> str:
        """``sync=False`` skips the per-object fsync: the caller must :meth:`sync` before the catalog
        commit that references the object (one flush per batch instead of one per object)."""
        key = hashlib.sha256(data).hexdigest()
        dst = self.path(key)
        folder = key[:4]
        if folder not in self._dirs_ok:
            os.close(self._dir_fd(key, create=True))  # raises if root/aa/bb is a link
            self._dirs_ok.add(folder)
        try:
            st = os.lstat(dst)
            # a plain file of the right size is ours (a size mismatch = torn by a power cut: rewrite);
            # anything else (a planted link) is replaced by the rename below, never written through
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_size == len(data):
                return key
        except FileNotFoundError:
            pass
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if sync:
                    os.fsync(f.fileno())
            os.replace(tmp, dst)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
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
        fd = self._open(key, os.O_RDONLY)
        if fd is None:
            raise StoreError(f"store object {key[:12]} is missing (see `faceset verify`)")
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def delete(self, key: str) -> bool:
        """Overwrite, then unlink: erased faces must not stay recoverable from the disk blocks we own.

        Only a regular, singly-linked file inside the store is overwritten; a link (symbolic or hard)
        is only unlinked, and noted in :attr:`anomalies`.
        """
        try:
            dfd = self._dir_fd(key)
        except StoreError as e:
            self.anomalies.append((key[:12], str(e)))
            return False
        if dfd < 0:
            return False
        try:
            try:
                st = os.lstat(key, dir_fd=dfd)
            except FileNotFoundError:
                return False
            why = None if stat.S_ISREG(st.st_mode) else "is not a regular file"
            if why is None:
                try:
                    fd = os.open(key, os.O_RDWR | _NOFOLLOW | _CLOEXEC, dir_fd=dfd)
                except OSError as e:
                    fd, why = None, f"cannot be opened ({e.strerror})"
                if fd is not None:
                    fst = os.fstat(fd)
                    why = self._why_not_plain(fst)
                    if why is None:
                        with os.fdopen(fd, "r+b") as f:
                            f.write(b"\0" * fst.st_size)
                            f.flush()
                            os.fsync(f.fileno())
                    else:
                        os.close(fd)
            if why is not None:
                self.anomalies.append((key[:12], f"store object {key[:12]} {why}: unlinked, not overwritten"))
            try:
                os.unlink(key, dir_fd=dfd)
            except FileNotFoundError:
                return False
            return True
        finally:
            os.close(dfd)

    def keys(self) -> Iterator[str]:
        """Names of objects (links included, so gc can remove them), never descending into linked folders."""
        for a in sorted(_real_dirs(self.root)):
            if len(a.name) != 2:
                continue
            for b in sorted(_real_dirs(a)):
                if len(b.name) != 2:
                    continue
                for e in os.scandir(b):
                    if _is_key(e.name):
                        yield e.name

    def gc(self, referenced: Iterable[str]) -> int:
        """Delete objects nobody references (e.g. written just before a crash) and stale temp files."""
        keep = set(referenced)
        n = 0
        for k in list(self.keys()):
            if k not in keep:
                self.delete(k)
                n += 1
        tmp = self.root / "tmp"
        for t in os.scandir(tmp):
            try:
                if t.is_file(follow_symlinks=False):
                    os.unlink(t.path)
                elif t.is_symlink():
                    os.unlink(t.path)
            except OSError:
                pass
        return n


def _real_dirs(p: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(p) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _load_syncfs():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # not Linux: fall back to os.sync()
        return None


_syncfs = _load_syncfs()
