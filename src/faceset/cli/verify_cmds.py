"""`faceset verify`: a thin wrapper over faceset.verify.verify (catalog, store objects, exports; safe repairs).

Exit 0 when the workspace is whole (after --repair, when what remained was repaired); exit 2 with one line
naming what is left when problems remain (a damaged catalog, a missing or damaged store object, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import JsonOpt, WorkspaceOpt, console, emit, err, table, ws_open


def register(app: typer.Typer) -> None:
    app.command(name="verify")(verify_cmd)


def _problems(d: dict) -> list[str]:
    out = []
    if d["catalog_errors"]:
        out.append(f"{len(d['catalog_errors'])} catalog integrity error(s)")
    if d["objects_bad"]:
        out.append(f"{len(d['objects_bad'])} referenced store object(s) missing or damaged")
    if d["orphan_objects"]:
        out.append(f"{d['orphan_objects']} unreferenced store object(s)")
    if d["partial_exports"]:
        out.append(f"{len(d['partial_exports'])} abandoned partial export folder(s)")
    return out


def verify_cmd(
    repair: bool = typer.Option(False, "--repair", help="Fix what is safe to fix: unreferenced store objects, "
                                "planted links, abandoned partial exports."),
    fast: bool = typer.Option(False, "--fast", help="Check that store objects exist and are plain files, "
                              "without re-hashing their bytes."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
):
    """Check a workspace: catalog integrity and foreign keys, every referenced store object, exports.

    Exit 0 when all is well, 2 (with one line) when problems remain; --repair fixes the safe ones first."""
    from ..verify import verify

    ws = ws_open(workspace)
    rep = verify(ws, repair=repair, hashes=not fast, progress=not as_json)
    d = rep.to_dict()
    problems = _problems(d)

    def human():
        rows = [["catalog integrity", "ok" if not d["catalog_errors"] else f"{len(d['catalog_errors'])} error(s)"],
                ["broken references", d["broken_references"]],
                ["store objects checked", d["objects_checked"]],
                ["  missing / damaged", len(d["objects_bad"])],
                ["  unreferenced", d["orphan_objects"]],
                ["exports", len(d["exports"])],
                ["  stale", sum(1 for x in d["exports"] if x["stale"])],
                ["  folder gone", sum(1 for x in d["exports"] if not x["exists"])],
                ["partial export folders", len(d["partial_exports"])]]
        rows += [[f"repaired: {k}", len(v) if isinstance(v, list) else v] for k, v in d["repaired"].items()]
        console.print(table("verify", ["check", "result"], rows))
        if d["catalog_errors"]:
            console.print(table("catalog errors", ["error"], [[e] for e in d["catalog_errors"][:20]]))
        if d["objects_bad"]:
            console.print(table("store objects", ["key", "problem", "rows"],
                                [[b["key"], b["problem"], ", ".join(b["rows"])] for b in d["objects_bad"][:20]]))

    emit(as_json, d, human)
    if problems:
        hint = "" if repair else " (rerun with --repair for the safe fixes)"
        err.print("error: problems remain: " + "; ".join(problems) + hint, soft_wrap=True, markup=False,
                  highlight=False)
        raise typer.Exit(2)
