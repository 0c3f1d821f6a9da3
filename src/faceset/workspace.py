"""A workspace: the dataset abstraction every stage reads and writes.

``Workspace`` = catalog (``catalog.db``) + content-addressed store
(``store/``) + a few folders for derived artefacts (``cache/``, ``sheets/``).
Open one with :func:`open_workspace`; create with :func:`init_workspace`.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .catalog import Catalog, SchemaTooNew
from .errors import WorkspaceError
from .store import Store

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

        with Image.open(io.BytesIO(self.image_bytes(image_id))) as im:
            return np.asarray(im.convert("RGB"))

    def close(self) -> None:
        self.catalog.close()


def init_workspace(path: str | Path | None = None) -> Workspace:
    root = Path(path) if path else default_path()
    root.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    if not marker.exists():
        if any(p.name != MARKER for p in root.iterdir()) and not (root / "catalog.db").exists():
            raise WorkspaceError(f"{root} exists and is not empty: choose an empty or new folder")
        marker.write_text(json.dumps({"faceset_workspace": 1}) + "\n")
    return _open(root)


def open_workspace(path: str | Path | None = None, create: bool = False) -> Workspace:
    root = Path(path) if path else default_path()
    if not (root / MARKER).exists():
        if create:
            return init_workspace(root)
        raise WorkspaceError(f"no faceset workspace at {root} (run `faceset init {root}` or pass -w)")
    return _open(root)


def _open(root: Path) -> Workspace:
    try:
        catalog = Catalog(root / "catalog.db")
    except SchemaTooNew as e:
        raise WorkspaceError(str(e)) from None
    return Workspace(root=root, catalog=catalog, store=Store(root / "store"))
