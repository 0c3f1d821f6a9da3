"""faceset: consented, identity-aware face datasets and face-attribute classifiers.

The library API mirrors the pipeline; the CLI is a thin layer over it::

    ws = faceset.init_workspace("ws")
    faceset.ingest(ws, ["photos/"], license="CC-BY-4.0", consent="consent")
    faceset.scan(ws)
"""

from __future__ import annotations

__version__ = "0.1.0"

from .workspace import Workspace, WorkspaceError, init_workspace, open_workspace  # noqa: E402

__all__ = ["Workspace", "WorkspaceError", "init_workspace", "open_workspace", "__version__"]


def __getattr__(name: str):
    # Stage entry points load lazily: importing faceset must stay cheap (no dlib/torch).
    lazy = {
        "ingest": ("faceset.ingest", "ingest"),
        "scan": ("faceset.scan", "scan"),
        "detect": ("faceset.scan", "detect"),
    }
    if name in lazy:
        import importlib

        mod, attr = lazy[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(name)
