"""CLI for curate: `dedup`, `people`, `split`, `label export|import|conflicts|noise` (thin: parse, call, print)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError
from .common import JsonOpt, WorkspaceOpt, console, emit, fail, table, ws_open

label_app = typer.Typer(help="Check and fix labels per person (CSV in/out).", no_args_is_help=True)


def dedup(
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
    sheet: bool = typer.Option(False, "--sheet",
                               help="Write a contact sheet of the groups to the workspace's sheets/."),
):
    """Group near-duplicate images (resized, re-encoded, cropped, mirrored, recoloured); keep the best of each."""
    from ..curate import find_duplicates

    ws = ws_open(workspace)
    rep = find_duplicates(ws, sheet=sheet, progress=not as_json)

    def human():
        console.print(f"images checked: {rep.images}   near-duplicate groups: {rep.groups}   "
                      f"copies set aside (dup_of): {rep.duplicates}")
        console.print(f"exact copies collapsed at ingest: {rep.exact_groups} groups, {rep.exact_files} files")
        if rep.by_method:
            console.print("links by method: " + ", ".join(f"{k} {v}" for k, v in sorted(rep.by_method.items())))
        if rep.items:
            console.print(table("groups (kept first)", ["keep", "duplicates", "how"],
                                [[g.keep, " ".join(map(str, g.members[1:])), ",".join(g.how)] for g in rep.items[:30]]))
        for e in rep.hash_errors:
            console.print(f"[yellow]skipped[/yellow] {e}")
        if rep.sheet:
            console.print(f"contact sheet: {rep.sheet}")

    emit(as_json, rep.to_dict(), human)


def people(
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
    threshold: Optional[float] = typer.Option(None,
                                              help="Embedding distance that links two faces (default: the calibrated "
                                                   "value)."),
):
    """Cluster faces into people (incremental, stable ids); list unique people and photos per person."""
    from ..curate import cluster_people, people_listing
    from ..curate.people import THRESHOLD

    ws = ws_open(workspace)
    rep = cluster_people(ws, threshold=THRESHOLD if threshold is None else threshold, progress=not as_json)
    if as_json:
        emit(True, {"report": rep.to_dict(), **people_listing(ws)})
        return
    console.print(f"faces: {rep.faces}   people: {rep.people} ({rep.new_people} new, {rep.singletons} with one face)   "
                  f"assigned now: {rep.assigned_now} ({rep.joined_existing} joined known people)")
    if rep.faces_per_person:
        f = rep.faces_per_person
        console.print(f"faces per person: min {f['min']}, median {f['median']}, mean {f['mean']}, max {f['max']}")
    console.print(table("largest people", ["person", "faces", "images", "split"],
                        [[p["person_id"], p["faces"], p["images"], p["split"] or "-"] for p in rep.top]))


def split(
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
    ratios: str = typer.Option("0.8,0.1,0.1", help="train,val,test shares."),
    seed: int = typer.Option(0, help="Seed of the person-order hash."),
    label: Optional[str] = typer.Option(None, help="Stratify by this label (each person's majority value)."),
    per_person_cap: Optional[int] = typer.Option(None, "--per-person-cap",
                                                 help="At most N faces of one person in a dataset."),
    balance: bool = typer.Option(False, "--balance",
                                 help="Downsample each split to equal class counts (needs --label)."),
):
    """Identity-disjoint train/val/test: assigns people without a split; never moves anyone."""
    from ..curate import assign_splits

    try:
        r = tuple(float(x) for x in ratios.split(","))
    except ValueError:
        raise UsageError(f"--ratios must be numbers like 0.8,0.1,0.1, not {ratios!r}") from None
    if balance and not label:
        raise UsageError("--balance needs --label")
    ws = ws_open(workspace)
    try:
        rep = assign_splits(ws, ratios=r, seed=seed, label=label, per_person_cap=per_person_cap, balance=balance)
    except ValueError as e:  # compat(#9): assign_splits still raises plain ValueError for bad ratios / cap
        fail(str(e))

    def human():
        console.print(f"people assigned now: {rep.assigned_now}   already assigned (unchanged): {rep.already_assigned}")
        rows = [[s, rep.people.get(s, 0), rep.faces.get(s, 0),
                 " ".join(f"{k}:{v}" for k, v in sorted(rep.by_label.get(s, {}).items()))]
                for s in ("train", "val", "test")]
        console.print(table("splits", ["split", "people", "faces", "by label"], rows))
        if rep.dup_conflicts:
            console.print(f"[yellow]{rep.dup_conflicts} duplicate groups span two splits already "
                          "(copies are dropped)[/yellow]")

    emit(as_json, rep.to_dict(), human)


@label_app.command("export")
def label_export(
    file: Path = typer.Argument(..., help="CSV to write."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
    label: Optional[str] = typer.Option(None, help="Only this label."),
):
    """Write labels to a CSV (image_id, person_id, label, value, origin, path) for review."""
    from ..curate import export_labels

    n = export_labels(ws_open(workspace), file, label=label)
    emit(as_json, {"rows": n, "file": str(file)}, lambda: console.print(f"wrote {n} label rows to {file}"))


@label_app.command("import")
def label_import(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Reviewed CSV."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
):
    """Apply a reviewed CSV (image_id or person_id, label, value); empty value removes the label."""
    from ..curate import import_labels

    rep = import_labels(ws_open(workspace), file)  # a CSV without the columns: UsageError, exit 2

    def human():
        console.print(f"rows: {rep.rows}   changed: {rep.changed}   removed: {rep.removed}   "
                      f"unchanged: {rep.unchanged}   "
                      f"rejected: {len(rep.rejected)}")
        for r in rep.rejected[:50]:
            console.print(f"[yellow]skipped[/yellow] {r}")

    emit(as_json, rep.to_dict(), human)


@label_app.command("conflicts")
def label_conflicts_cmd(
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
    label: Optional[str] = typer.Option(None, help="Only this label."),
    tolerance: float = typer.Option(10.0, help="Numeric labels (age) conflict only when they spread more than this."),
):
    """People whose photos disagree on a label."""
    from ..curate import label_conflicts

    rep = label_conflicts(ws_open(workspace), label=label, numeric_tolerance=tolerance)

    def human():
        console.print(f"people checked: {rep.people_checked}   conflicts: {len(rep.conflicts)}")
        console.print(table("conflicts", ["person", "label", "values", "majority", "other images"],
                            [[c.person_id, c.label, " ".join(f"{k}:{v}" for k, v in c.values.items()), c.majority,
                              " ".join(map(str, c.minority_images[:10]))] for c in rep.conflicts[:50]]))

    emit(as_json, rep.to_dict(), human)


@label_app.command("noise")
def label_noise_cmd(
    label: str = typer.Option(..., help="Label to check, e.g. gender."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
    top: int = typer.Option(50, help="How many suspects to list."),
):
    """Rank faces whose label cross-validated predictions doubt most (likely mislabeled)."""
    from ..curate import label_noise

    rep = label_noise(ws_open(workspace), label, top=top)

    def human():
        if rep.note:
            console.print(f"{rep.faces} labelled faces: {rep.note}")
            return
        console.print(f"{rep.faces} labelled faces, {rep.folds}-fold person-grouped CV accuracy {rep.cv_accuracy}"
                      + (f" (skipped rare classes: {', '.join(rep.skipped_classes)})" if rep.skipped_classes else ""))
        console.print(table(f"likely mislabeled ({label})",
                            ["image", "person", "given", "predicted", "p(given)", "path"],
                            [[s.image_id, s.person_id, s.given, s.predicted, s.p_given, s.path] for s in rep.suspects]))

    emit(as_json, rep.to_dict(), human)


def register(app: typer.Typer) -> None:
    app.command()(dedup)
    app.command()(people)
    app.command()(split)
    app.add_typer(label_app, name="label")
