"""Export: curated catalog -> dataset folder in a standard layout, with manifest and datasheet.

`export(ws, out, format=..., what=..., label=...)` writes and records one export;
`refresh(ws, export_id=None)` rebuilds the ones `forget` marked stale.
"""

from .core import MARKER, WHATS, ExportError, ExportReport, NotOwned, export, refresh, workspace_id
from .datasheet import SECTIONS
from .writers import FORMATS

__all__ = ["FORMATS", "MARKER", "SECTIONS", "WHATS", "ExportError", "ExportReport", "NotOwned", "export",
           "refresh", "workspace_id"]
