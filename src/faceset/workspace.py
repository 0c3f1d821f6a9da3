"""A workspace: the dataset abstraction every stage reads and writes.

``Workspace`` = catalog (``catalog.db``) + content-addressed store
(``store/``) + a few folders for derived artefacts (``cache/``, ``sheets/``).
Open one with :func:`open_workspace`; create with :func:`init_workspace`.
"""

from __future__ import annotations

import errno
import io
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .catalog import Catalog, SchemaTooNew
from .errors import WorkspaceError
from .store import Store, StoreError

__all__ = ["Workspace", "init_workspace", "open_workspace", "default_path", "WorkspaceError", "NotAWorkspace",
           "CorruptCatalog", "ReadOnlyWorkspace", "DiskFull", "StoreError", "environmental_error", "require_folder"]


# -- environmental failures: one error type each (CLI: exit 2, one line; never a traceback) ------------------------
class NotAWorkspace(WorkspaceError):
    """The path is missing, a regular file, or a folder without a faceset workspace in it."""


class CorruptCatalog(WorkspaceError):
    """catalog.db is not a SQLite database, or SQLite reports it damaged."""


class ReadOnlyWorkspace(WorkspaceError):
    """The workspace (or the catalog in it) cannot be written: read-only mount, permissions."""


class DiskFull(WorkspaceError):
    """No space (or quota) left while writing; every stage resumes when rerun after freeing space."""


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def environmental_error(e: BaseException) -> WorkspaceError | None:
    """The environmental failure behind ``e`` (or anything in its cause/context chain), as one of the error
    types above, or None when ``e`` is not one. A full disk often surfaces as a chained "cannot rollback"
    from SQLite: the chain is searched so the root cause is what the user reads."""
    seen: set[int] = set()
    chain: list[BaseException] = []
    x: BaseException | None = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        chain.append(x)
        x = x.__cause__ or x.__context__
    for x in chain:
        if isinstance(x, WorkspaceError):
            return x
    for x in chain:
        if isinstance(x, OSError) and x.errno in _DISK_FULL:
            where = f" writing {x.filename}" if x.filename else ""
            return DiskFull(f"disk full{where}: free some space and rerun the same command (it resumes)")
        msg = str(x).lower()
        if isinstance(x, sqlite3.Error):
            if "disk is full" in msg or "database or disk is full" in msg:
                return DiskFull("disk full while writing the catalog: free some space and rerun the same command "
                                "(it resumes; nothing half-written was committed)")
            if "readonly" in msg or "read-only" in msg:
                return ReadOnlyWorkspace("the workspace is read-only (the catalog cannot be written): make it "
                                         "writable, or copy it somewhere writable")
            if "not a database" in msg or "malformed" in msg:
                return CorruptCatalog(f"the catalog is damaged ({x}): restore catalog.db from a backup "
                                      "(`faceset verify` says what else is affected)")
            if "unable to open database" in msg:
                return ReadOnlyWorkspace("cannot open the catalog (the workspace folder is not writable or is gone)")
            if "disk i/o error" in msg:
                return WorkspaceError(f"the disk reported an I/O error on the catalog ({x})")
        if isinstance(x, OSError) and x.errno in _READ_ONLY:
            where = f": {x.filename}" if x.filename else ""
            return ReadOnlyWorkspace(f"permission denied or read-only file system{where}")
    return None

DEFAULT_WORKSPACE = "faceset-workspace"
MARKER = "faceset.json"


def default_path() -> Path:
    return Path(os.environ.get("FACESET_WORKSPACE") or DEFAULT_WORKSPACE)


@dataclass
class Workspace:
    root: Path
    catalog: Catalog
    store: Store

    @property
    def cache_dir(self) -> Path:
        """Derived, rebuildable data (feature caches, indexes). Erasure clears what it must here."""
        p = self.root / "cache"
        p.mkdir(exist_ok=True)
        return p

    @property
    def sheets_dir(self) -> Path:
        p = self.root / "sheets"
        p.mkdir(exist_ok=True)
        return p

    # -- reading images ------------------------------------------------
    def image_bytes(self, image_id: int) -> bytes:
        """The stored copy's bytes (oriented, metadata-free). Faces: ``catalog.faces.embeddings(...)``."""
        key = self.catalog.images.store_key(image_id)
        if key is None:
            raise KeyError(f"no image {image_id}")
        return self.store.get(key)

    def image_rgb(self, image_id: int) -> np.ndarray:
        """The stored copy as HxWx3 uint8 (already oriented and metadata-free)."""
        from PIL import Image

        data = self.image_bytes(image_id)
        try:
            with Image.open(io.BytesIO(data)) as im:
                return np.asarray(im.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as e:  # what Pillow raises on damaged bytes
            raise StoreError(f"the stored copy of image {image_id} is damaged ({type(e).__name__}): "
                             "run `faceset verify`") from None

    def close(self) -> None:
        self.catalog.close()


def require_folder(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise NotAWorkspace(f"{root} is a file, not a workspace folder: pass a folder to -w")


def init_workspace(path: str | Path | None = None) -> Workspace:
    root = Path(path) if path else default_path()
    require_folder(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        marker = root / MARKER
        if not marker.exists():
            if any(p.name != MARKER for p in root.iterdir()) and not (root / "catalog.db").exists():
                raise WorkspaceError(f"{root} exists and is not empty: choose an empty or new folder")
            marker.write_text(json.dumps({"faceset_workspace": 1}) + "\n")
    except (FileExistsError, NotADirectoryError):
        raise NotAWorkspace(f"{root}: a file is in the way (not a workspace folder)") from None
    except OSError as e:
        raise environmental_error(e) or WorkspaceError(f"cannot create {root} ({e.strerror or e})") from None
    return _open(root)


def open_workspace(path: str | Path | None = None, create: bool = False) -> Workspace:
    root = Path(path) if path else default_path()
    require_folder(root)
    if not (root / MARKER).exists():
        if create:
            return init_workspace(root)
        raise NotAWorkspace(f"no faceset workspace at {root} (run `faceset init {root}` or pass -w)")
    return _open(root)


def _open(root: Path) -> Workspace:
    db = root / "catalog.db"
    try:
        catalog = Catalog(db)
        catalog.schema_version  # noqa: B018 - a garbage file fails here, not in the middle of a command
    except SchemaTooNew as e:
        raise WorkspaceError(str(e)) from None
    except (sqlite3.Error, OSError) as e:
        env = environmental_error(e)
        if env is None:
            raise
        if isinstance(env, ReadOnlyWorkspace):
            raise ReadOnlyWorkspace(f"{root} is read-only (the catalog needs write access even to read it, for its "
                                    "write-ahead log): make it writable, or copy it somewhere writable") from None
        if isinstance(env, CorruptCatalog):
            raise CorruptCatalog(f"{db} is not a faceset catalog or is damaged ({e}): "
                                 "restore it from a backup") from None
        raise env from None
    return Workspace(root=root, catalog=catalog, store=Store(root / "store"))
