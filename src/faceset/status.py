"""Workspace summary used by `faceset status` (and the report)."""

from __future__ import annotations

from .workspace import Workspace


def workspace_status(ws: Workspace) -> dict:
    c = ws.catalog
    by_status = c.images.count_by_status()
    rejected = c.images.rejected_by_reason()
    return {
        "workspace": str(ws.root),
        "images": sum(by_status.values()),
        "images_by_status": by_status,
        "faces": c.faces.count(),
        "people": c.people.count(),
        "files_by_outcome": c.images.files_by_outcome(),  # every original path seen: added | duplicate | rejected
        "rejected_files": sum(rejected.values()),
        "rejected_by_reason": rejected,
        "sources": c.sources.summary(),
        "labels": c.labels.value_counts(),
        # the erasure journal: committed erasures not yet shredded (finished by the next forget, export,
        # scan or `verify --repair`), and export folders being written or left by a killed export
        "pending_erasures": c.erasures.counts(),
    }
