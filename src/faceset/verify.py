"""`faceset verify`: is this workspace whole? Catalog, store, exports; repair what is safe to repair.

Safe repairs only: remove store objects nobody references (and planted links, which are unlinked,
never written through), clear the store's temp folder, shred abandoned partial export folders.
A referenced object that is missing or damaged cannot be repaired here: it is reported with the
rows that need it, so the photo can be ingested again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .privacy import redact
from .progress import bar
from .workspace import Workspace


@dataclass
class VerifyReport:
    ok: bool = True
    catalog_errors: list[str] = field(default_factory=list)
    broken_references: int = 0
    objects_checked: int = 0
    objects_bad: list[dict] = field(default_factory=list)       # referenced but missing/damaged/a link
    orphan_objects: int = 0                                      # in the store, referenced by nothing
    exports: list[dict] = field(default_factory=list)            # id, path, stale, exists
    partial_exports: list[str] = field(default_factory=list)     # abandoned .<name>.partial-* folders
    pending_erasures: dict = field(default_factory=dict)         # erasure journal rows by kind (not shredded yet)
    repaired: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def verify(ws: Workspace, *, repair: bool = False, hashes: bool = True, progress: bool = True) -> VerifyReport:
    """Check catalog integrity, every referenced store object, and exports; ``repair`` fixes the safe part."""
    rep = VerifyReport()
    integ = ws.catalog.integrity
    rep.catalog_errors = integ.integrity_errors()
    fk = integ.foreign_key_errors()
    rep.broken_references = len(fk)
    rep.catalog_errors += [f"{t} row {rid} points at a missing {parent} row" for t, rid, parent in fk[:20]]

    refs = integ.key_refs()
    by_key: dict[str, list] = {}
    for r in refs:
        by_key.setdefault(r.key, []).append(r)
    with bar("verify store", len(by_key), progress) as b:
        for key, where in by_key.items():
            why = ws.store.check(key, verify_hash=hashes)
            if why:
                rep.objects_bad.append({"key": key[:12], "problem": why,
                                        "rows": [f"{r.table}.{r.column} id {r.row_id}" for r in where[:5]]})
            rep.objects_checked += 1
            b.advance()
    live = set(by_key)
    orphans = [k for k in ws.store.keys() if k not in live]
    rep.orphan_objects = len(orphans)

    rep.pending_erasures = ws.catalog.erasures.counts()
    writing = {t.target for t in ws.catalog.erasures.pending("partial_export") if redact.alive(t.pid)}
    for eid, path, stale in integ.export_paths():
        p = Path(path)
        rep.exports.append({"id": eid, "path": path, "stale": stale, "exists": p.exists()})
        for partial in p.parent.glob(f".{p.name}.partial-*") if p.parent.exists() else ():
            if partial.is_dir() and not partial.is_symlink() and str(partial) not in writing:
                rep.partial_exports.append(str(partial))
    for t in ws.catalog.erasures.pending("partial_export"):  # tracked ones, wherever they are
        if t.target not in writing and t.target not in rep.partial_exports and Path(t.target).is_dir():
            rep.partial_exports.append(t.target)

    if repair:
        done = redact.finish_erasures(ws)  # the journal first: it may shred orphans and partial folders
        rep.repaired["erasures_finished"] = done.store_objects + done.derived_files + done.folders
        live = ws.catalog.integrity.referenced_keys()
        rep.repaired["orphan_objects_removed"] = ws.store.gc(live) if orphans else 0
        removed = done.folders
        for d in rep.partial_exports:
            if Path(d).is_dir():
                redact.shred_tree(Path(d))
                removed += 1
        rep.repaired["partial_exports_removed"] = removed
        if ws.store.anomalies:
            rep.repaired["links_unlinked"] = [why for _, why in ws.store.anomalies]
        with ws.catalog.tx():
            ws.catalog.audit("verify_repair", **{k: (len(v) if isinstance(v, list) else v)
                                                 for k, v in rep.repaired.items()})
        rep.orphan_objects = 0 if orphans else rep.orphan_objects
        rep.partial_exports = []
        rep.pending_erasures = ws.catalog.erasures.counts()
    pending = {k: v for k, v in rep.pending_erasures.items() if k != "partial_export" or v > len(writing)}
    rep.ok = not (rep.catalog_errors or rep.objects_bad or rep.orphan_objects or rep.partial_exports or pending)
    return rep

