"""`faceset` command line: thin wrappers over the library, one module per pipeline stage."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .. import __version__
from ..workspace import WorkspaceError, default_path, init_workspace
from .common import JsonOpt, WorkspaceOpt, console, emit, fail, table, ws_open

app = typer.Typer(
    name="faceset",
    help="Consented, identity-aware face datasets: ingest -> scan -> curate -> export -> train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def init(
    path: Optional[Path] = typer.Argument(None, help="Folder for the new workspace."),
    as_json: bool = JsonOpt,
):
    """Create a workspace (catalog + content-addressed store)."""
    try:
        ws = init_workspace(path or default_path())
    except WorkspaceError as e:
        fail(str(e))
    emit(as_json, {"workspace": str(ws.root), "schema_version": ws.catalog.schema_version},
         lambda: console.print(f"workspace ready at [bold]{ws.root}[/bold]"))


@app.command()
def status(workspace: Optional[Path] = WorkspaceOpt, as_json: bool = JsonOpt):
    """Counts by image status, source and label."""
    from ..status import workspace_status

    ws = ws_open(workspace)
    s = workspace_status(ws)

    def human():
        console.print(table("images by status", ["status", "count"], [[k, v] for k, v in s["images_by_status"].items()]))
        console.print(table("sources", ["source", "kind", "license", "consent", "images", "duplicates", "rejected"],
                            [[x["name"], x["kind"], x["license"], x["consent"], x["images"], x.get("duplicates", 0),
                              x["rejected"]] for x in s["sources"]]))
        if s.get("files_by_outcome"):
            console.print(table("original files", ["outcome", "count"], [[k, v] for k, v in s["files_by_outcome"].items()]
                                + [[f"  rejected: {k}", v] for k, v in s["rejected_by_reason"].items()]))
        if s["labels"]:
            rows = []
            for n, vals in s["labels"].items():  # long value lists (e.g. age) show their top 15
                top = sorted(vals.items(), key=lambda kv: -kv[1])
                rows += [[n, v, c] for v, c in (top if len(top) <= 20 else top[:15])]
                if len(top) > 20:
                    rows.append([n, f"... {len(top) - 15} more values", sum(c for _, c in top[15:])])
            console.print(table("labels", ["label", "value", "count"], rows))
        console.print(f"faces: {s['faces']}   people: {s['people']}   rejected files: {s['rejected_files']}")

    emit(as_json, s, human)


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        console.print(__version__)
        raise typer.Exit(0)


def _register() -> None:
    # Each stage module adds its commands with register(app).
    from . import curate_cmds, demo_cmds, export_cmds, ingest_cmds, privacy_cmds, scan_cmds, train_cmds

    for m in (ingest_cmds, scan_cmds, curate_cmds, export_cmds, privacy_cmds, train_cmds, demo_cmds):
        m.register(app)


_register()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
