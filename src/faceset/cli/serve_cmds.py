"""CLI for review: `serve`, and the review verbs `people merge|split|not-a-person|label`, `dedup keep`.

`faceset people` and `faceset dedup` stay what they were (cluster / find duplicates) when called without
a sub-command: the groups here call those same commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import curate_cmds
from .common import JsonOpt, WorkspaceOpt, console, emit, ws_open

people_app = typer.Typer(help="Cluster faces into people (no sub-command), or fix the clusters by hand.",
                         invoke_without_command=True, no_args_is_help=False)
dedup_app = typer.Typer(help="Group near-duplicate images (no sub-command), or choose a group's keeper.",
                        invoke_without_command=True, no_args_is_help=False)


def _ws(ctx: typer.Context, workspace: Optional[Path]):
    return ws_open(workspace or (ctx.obj or {}).get("workspace"))


def _show(as_json: bool, rep) -> None:
    def human():
        d = rep.to_dict()
        parts = [f"{rep.action}:"]
        if rep.person_id is not None:
            parts.append(f"person {rep.person_id}")
        parts.append(f"{rep.faces} {'images' if rep.action == 'person_label' else 'faces'}")
        if rep.decisions:
            parts.append(f"{rep.decisions} decisions recorded")
        if rep.deleted_people:
            parts.append(f"people emptied and removed: {' '.join(map(str, rep.deleted_people))}")
        if rep.exports_stale:
            parts.append(f"{rep.exports_stale} exports now stale")
        if d.get("details"):
            parts.append(" ".join(f"{k}={v}" for k, v in d["details"].items()))
        console.print("   ".join(parts), highlight=False, markup=False)

    emit(as_json, rep.to_dict(), human)


@people_app.callback()
def people_root(
    ctx: typer.Context,
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
    threshold: Optional[float] = typer.Option(None,
                                              help="Embedding distance that links two faces (default: the calibrated "
                                                   "value)."),
    engine: str = curate_cmds.EngineOpt,
    workers: Optional[int] = curate_cmds.WorkersOpt,
    ray_address: Optional[str] = curate_cmds.RayAddressOpt,
):
    """Cluster faces into people (incremental, stable ids); or merge / split / fix them (sub-commands)."""
    ctx.obj = {"workspace": workspace}
    if ctx.invoked_subcommand is None:
        curate_cmds.people(workspace=workspace, as_json=as_json, threshold=threshold, engine=engine, workers=workers,
                           ray_address=ray_address)


@people_app.command("merge")
def people_merge(
    ctx: typer.Context,
    keep: int = typer.Argument(..., help="Person to keep."),
    others: List[int] = typer.Argument(..., help="People merged into it."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
):
    """Merge people into KEEP (a must-link decision a later `faceset people` honours)."""
    from ..curate.decisions import merge_people

    _show(as_json, merge_people(_ws(ctx, workspace), keep, others))


@people_app.command("split")
def people_split(
    ctx: typer.Context,
    faces: List[int] = typer.Argument(..., help="Face ids to move off their person."),
    into: Optional[int] = typer.Option(None, "--into", help="Move them into this person (default: a new one)."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
):
    """Split faces off into a new person (or --into another): cannot-link to the person they leave."""
    from ..curate.decisions import split_faces

    _show(as_json, split_faces(_ws(ctx, workspace), faces, into=into))


@people_app.command("not-a-person")
def people_not_a_person(
    ctx: typer.Context,
    faces: List[int] = typer.Argument(..., help="Face ids that are no person (poster, painting, screen)."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
):
    """Mark faces as no person at all: they leave their person and are recorded as such."""
    from ..curate.decisions import mark_not_a_person

    _show(as_json, mark_not_a_person(_ws(ctx, workspace), faces))


@people_app.command("label")
def people_label(
    ctx: typer.Context,
    person: int = typer.Argument(..., help="Person id."),
    name: str = typer.Argument(..., help="Label name (e.g. identity)."),
    value: str = typer.Argument(..., help="Value for every photo whose main face is this person."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
):
    """Set one label on all of a person's photos at once (origin 'user')."""
    from ..curate.decisions import set_person_label

    _show(as_json, set_person_label(_ws(ctx, workspace), person, name, value))


@dedup_app.callback()
def dedup_root(
    ctx: typer.Context,
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
    sheet: bool = typer.Option(False, "--sheet",
                               help="Write a contact sheet of the groups to the workspace's sheets/."),
    engine: str = curate_cmds.EngineOpt,
    workers: Optional[int] = curate_cmds.WorkersOpt,
    ray_address: Optional[str] = curate_cmds.RayAddressOpt,
):
    """Group near-duplicate images (resized, re-encoded, cropped, mirrored, recoloured); keep the best of each."""
    ctx.obj = {"workspace": workspace}
    if ctx.invoked_subcommand is None:
        curate_cmds.dedup(workspace=workspace, as_json=as_json, sheet=sheet, engine=engine, workers=workers,
                          ray_address=ray_address)


@dedup_app.command("keep")
def dedup_keep(
    ctx: typer.Context,
    image: int = typer.Argument(..., help="Image to keep in its near-duplicate group."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
):
    """Make IMAGE the kept copy of its near-duplicate group."""
    from ..curate.decisions import choose_keeper

    _show(as_json, choose_keeper(_ws(ctx, workspace), image))


def serve(
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (anything but loopback needs --token)."),
    port: int = typer.Option(8765, "--port", help="Port (0: a free one)."),
    token: Optional[str] = typer.Option(None, "--token", envvar="FACESET_TOKEN", show_envvar=False,
                                        help="Login token (required off loopback; generated and printed if missing)."),
    owner_token: Optional[str] = typer.Option(None, "--owner-token",
                                              help="A second token whose holder also sees original file paths."),
    max_upload_mb: int = typer.Option(20, "--max-upload-mb", help="Cap on one selfie upload (all files)."),
):
    """Review app in the browser: images, people (merge/split), duplicates, labels, forget requests."""
    from ..errors import UsageError
    from ..serve import serve as run

    if max_upload_mb < 1 or max_upload_mb > 512:
        raise UsageError("--max-upload-mb must be 1..512")
    ws = ws_open(workspace)

    def announce(line: str) -> None:
        if as_json:
            import json
            import sys

            if ": " not in line:
                sys.stdout.write(json.dumps({"status": line}) + "\n")
            else:
                key = "token" if line.startswith("token") else "url"
                sys.stdout.write(json.dumps({key: line.split(": ", 1)[1]}) + "\n")
            sys.stdout.flush()
        else:
            console.print(line, highlight=False, markup=False, soft_wrap=True)

    try:
        run(ws, host=host, port=port, token=token, owner_token=owner_token, max_upload=max_upload_mb * 1024 * 1024,
            announce=announce)
    finally:
        ws.close()


def register(app: typer.Typer) -> None:
    app.command()(serve)
    # Replace the plain `people` / `dedup` commands with groups that run them when called bare.
    app.registered_commands[:] = [c for c in app.registered_commands
                                  if (c.name or getattr(c.callback, "__name__", "")) not in ("people", "dedup")]
    from .curate_cmds import people_review  # issue #10: assisted review, with the other people verbs

    people_app.command("review")(people_review)
    app.add_typer(people_app, name="people")
    app.add_typer(dedup_app, name="dedup")
