"""`faceset` command line: thin wrappers over the library, one module per pipeline stage.

Errors: a :class:`faceset.errors.FacesetError` (what a user can fix) exits 2 with its one-line message;
anything else is a bug and exits 1 with a short "internal error" line (``--debug`` or ``FACESET_DEBUG=1``
shows the traceback); Ctrl-C exits 130.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from .. import __version__
from ..workspace import init_workspace
from .common import MAX_CELL, JsonOpt, WorkspaceOpt, console, emit, handle_exception, table, ws_open


class FacesetGroup(TyperGroup):
    """The root command group: maps exceptions that escape a command to exit codes (see module docstring)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # exits, usage errors: typer prints them
            raise
        except (Exception, KeyboardInterrupt) as e:  # noqa: B902 - the one place every error is mapped
            handle_exception(e, ctx)


app = typer.Typer(
    name="faceset",
    cls=FacesetGroup,
    help="Consented, identity-aware face datasets: ingest -> scan -> curate -> export -> train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def init(
    path: Optional[Path] = typer.Argument(None, help="Folder for the new workspace (default: -w)."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
):
    """Create a workspace (catalog + content-addressed store)."""
    from ..workspace import default_path

    ws = init_workspace(path or workspace or default_path())
    emit(as_json, {"workspace": str(ws.root), "schema_version": ws.catalog.schema_version},
         lambda: console.print(f"workspace ready at [bold]{ws.root}[/bold]", highlight=False, markup=True))


@app.command()
def status(workspace: Optional[Path] = WorkspaceOpt, as_json: bool = JsonOpt):
    """Counts by image status, source and label (long values end in '…'; --json has them in full)."""
    from ..status import workspace_status

    ws = ws_open(workspace)
    s = workspace_status(ws)

    def human():
        console.print(table("images by status", ["status", "count"],
                            [[k, v] for k, v in s["images_by_status"].items()]))
        console.print(table("sources", ["source", "kind", "license", "consent", "images", "duplicates", "rejected"],
                            [[x["name"], x["kind"], x["license"], x["consent"], x["images"], x.get("duplicates", 0),
                              x["rejected"]] for x in s["sources"]]))
        if s.get("files_by_outcome"):
            console.print(table("original files", ["outcome", "count"],
                                [[k, v] for k, v in s["files_by_outcome"].items()]
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
        if s.get("pending_erasures"):  # harden_a: committed erasures not shredded yet (finished by the next write)
            console.print("[yellow]pending erasures:[/yellow] " + ", ".join(
                f"{k} {v}" for k, v in s["pending_erasures"].items()) + " (run `faceset verify --repair` to finish)")

    emit(as_json, s, human)


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", envvar="FACESET_DEBUG",
                               help="Show the full traceback of an internal error (or set FACESET_DEBUG=1)."),
):
    """Consented, identity-aware face datasets: ingest -> scan -> curate -> export -> train."""
    if version:
        console.print(__version__)
        raise typer.Exit(0)


def _register() -> None:
    # Each stage module adds its commands with register(app).
    from . import (
        campaign_cmds,
        curate_cmds,
        demo_cmds,
        export_cmds,
        ingest_cmds,
        privacy_cmds,
        scan_cmds,
        serve_cmds,
        train_cmds,
        verify_cmds,
    )

    # serve_cmds last: its `people` / `dedup` groups replace (and call) curate's plain commands
    for m in (ingest_cmds, scan_cmds, verify_cmds, curate_cmds, export_cmds, privacy_cmds, train_cmds, demo_cmds,
              campaign_cmds, serve_cmds):
        m.register(app)


_register()

__all__ = ["app", "main", "MAX_CELL"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # outside a command (e.g. while importing): same message and code
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
