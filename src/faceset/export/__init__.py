"""Export: curated catalog -> dataset folder in a standard layout, with manifest and datasheet.

`export(ws, out, format=..., what=..., label=...)` writes and records one export;
`refresh(ws, export_id=None)` rebuilds the ones `forget` marked stale.
"""

from .core import WHATS, ExportError, ExportReport, export, refresh
from .datasheet import SECTIONS
from .writers import FORMATS

__all__ = ["FORMATS", "SECTIONS", "WHATS", "ExportError", "ExportReport", "export", "refresh"]
