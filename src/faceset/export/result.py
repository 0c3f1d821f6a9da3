"""What an export returns and raises (its own module so the datasheet can read the report
without importing the exporter)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import FacesetError, NotFound, UsageError


class ExportError(FacesetError):
    """User-facing problem with an export request (the CLI exits 2 with it)."""


class BadExportRequest(ExportError, UsageError):
    """A bad export argument or combination of arguments."""


class ExportNotFound(ExportError, NotFound):
    """No recorded export has that id."""


@dataclass
class ExportReport:
    export_id: int
    path: str
    format: str
    what: str
    label: str | None
    items: int
    files: int
    bytes: int
    seconds: float
    classes: dict[str, int] = field(default_factory=dict)
    splits: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> count
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> records left out
    included_unknown_consent: int = 0
    people: int = 0
    blurred_faces: int = 0
    refreshed: bool = False

    def to_dict(self) -> dict:
        return asdict(self)
