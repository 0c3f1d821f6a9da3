"""faceset: consented, identity-aware face datasets and face-attribute classifiers.

The library API mirrors the pipeline; the CLI is a thin layer over it::

    ws = faceset.init_workspace("ws")
    faceset.ingest(ws, ["photos/"], license="CC-BY-4.0", consent="consent", labels="folder:gender")
    faceset.scan(ws)
    faceset.find_duplicates(ws); faceset.cluster_people(ws); faceset.assign_splits(ws, label="gender")
    faceset.export(ws, "out", format="zip", label="gender")
    faceset.forget(ws, ["selfie.jpg"])
    faceset.train("ws", label="gender", backbone="face_embedding", out="models/gender")
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
        "analyze": ("faceset.scan", "analyze"),
        "detect": ("faceset.scan", "detect"),
        "find_duplicates": ("faceset.curate", "find_duplicates"),
        "cluster_people": ("faceset.curate", "cluster_people"),
        "assign_splits": ("faceset.curate", "assign_splits"),
        "dataset_faces": ("faceset.curate", "dataset_faces"),
        "export": ("faceset.export", "export"),
        "refresh": ("faceset.export", "refresh"),
        "report": ("faceset.report", "report"),
        "build": ("faceset.build", "build"),
        "forget": ("faceset.privacy.forget", "forget"),
        "train": ("faceset.train", "train"),
        "evaluate": ("faceset.train", "evaluate"),
        "predict": ("faceset.train", "predict"),
    }
    if name in lazy:
        import importlib

        mod, attr = lazy[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(name)
