"""Workspace summary used by `faceset status` (and the report)."""

from __future__ import annotations

from .workspace import Workspace


def workspace_status(ws: Workspace) -> dict:
    c = ws.catalog
    by_status = {r[0]: r[1] for r in c.q("SELECT status, COUNT(*) FROM images GROUP BY status ORDER BY status")}
    sources = [
        dict(r)
        for r in c.q(
            """SELECT s.name, s.kind, s.license, s.consent,
                      (SELECT COUNT(*) FROM images i WHERE i.source_id=s.id) AS images,
                      (SELECT COUNT(*) FROM files f WHERE f.source_id=s.id AND f.outcome='duplicate') AS duplicates,
                      (SELECT COUNT(*) FROM files f WHERE f.source_id=s.id AND f.outcome='rejected') AS rejected
               FROM sources s ORDER BY s.id"""
        )
    ]
    labels: dict[str, dict[str, int]] = {}
    for r in c.q("SELECT name, value, COUNT(*) FROM labels GROUP BY name, value ORDER BY name, value"):
        labels.setdefault(r[0], {})[r[1]] = r[2]
    files = {r[0]: r[1] for r in c.q("SELECT outcome, COUNT(*) FROM files GROUP BY outcome ORDER BY 2 DESC")}
    rejected = {r[0]: r[1] for r in c.q(
        "SELECT reason_code, COUNT(*) FROM files WHERE outcome='rejected' GROUP BY reason_code ORDER BY 2 DESC")}
    return {
        "workspace": str(ws.root),
        "images": sum(by_status.values()),
        "images_by_status": by_status,
        "faces": c.scalar("SELECT COUNT(*) FROM faces"),
        "people": c.scalar("SELECT COUNT(*) FROM people"),
        "files_by_outcome": files,  # every original path seen: added | duplicate | rejected
        "rejected_files": sum(rejected.values()),
        "rejected_by_reason": rejected,
        "sources": sources,
        "labels": labels,
    }
