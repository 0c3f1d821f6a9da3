"""CLI for curate: `dedup`, `people`, `split`, `label export|import|conflicts|noise` (thin: parse, call, print)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UsageError
from .common import JsonOpt, WorkspaceOpt, console, emit, fail, table, ws_open

label_app = typer.Typer(help="Check and fix labels per person (CSV in/out).", no_args_is_help=True)

# the neighbour-graph build of `people` / `dedup` on Ray (curate/knn_dist.py); the driver clusters and writes
EngineOpt = typer.Option("local", "--engine", help="local (this process) | ray: neighbour searches on Ray tasks.")
WorkersOpt = typer.Option(None, "--workers", help="Ray workers to keep busy (default: this machine's cores).")
RayAddressOpt = typer.Option(None, "--ray-address", help="Join this Ray cluster (default: a local Ray).")


def dedup(
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
    sheet: bool = typer.Option(False, "--sheet",
                               help="Write a contact sheet of the groups to the workspace's sheets/."),
    engine: str = EngineOpt,
    workers: Optional[int] = WorkersOpt,
    ray_address: Optional[str] = RayAddressOpt,
):
    """Group near-duplicate images (resized, re-encoded, cropped, mirrored, recoloured); keep the best of each."""
    from ..curate import find_duplicates
    from ..curate.knn_dist import on_engine

    ws = ws_open(workspace)
    with on_engine(engine, workers, ray_address):
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
                                              help="Largest RMS distance over all face pairs at which two clusters "
                                                   "merge (default: the calibrated value)."),
    engine: str = EngineOpt,
    workers: Optional[int] = WorkersOpt,
    ray_address: Optional[str] = RayAddressOpt,
):
    """Cluster faces into people (incremental, stable ids); list unique people and photos per person."""
    from ..curate import cluster_people, people_listing
    from ..curate.knn_dist import on_engine

    ws = ws_open(workspace)
    with on_engine(engine, workers, ray_address):
        rep = cluster_people(ws, threshold=threshold, progress=not as_json)
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
    if rep.merge_candidates:
        console.print(f"{rep.merge_candidates_total} pairs of people may be one person (not merged): "
                      "`faceset people review` asks about them")


def _parse_answer(text: str) -> tuple[int, int, bool]:
    parts = [t.strip() for t in text.replace(":", ",").split(",")]
    if len(parts) != 3 or parts[2].lower() not in ("y", "yes", "n", "no"):
        raise UsageError(f"--answer takes FACE,FACE,yes|no (e.g. 12,34,no), not {text!r}")
    try:
        return int(parts[0]), int(parts[1]), parts[2].lower() in ("y", "yes")
    except ValueError:
        raise UsageError(f"--answer takes face ids (numbers), not {text!r}") from None


def people_review(
    ctx: typer.Context,
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
    limit: int = typer.Option(10, "--limit", help="How many questions to ask (best expected gain first)."),
    answers: Optional[List[str]] = typer.Option(None, "--answer",
                                                help="Apply an answer without asking: FACE,FACE,yes|no "
                                                     "(repeatable)."),
    sheet: bool = typer.Option(False, "--sheet", help="Write the questions' face pairs to a PNG in sheets/."),
    ask: bool = typer.Option(True, "--ask/--no-ask",
                             help="Ask each question on the terminal (only when stdin is a terminal)."),
):
    """Answer yes/no "same person?" (and "is this person one person?") questions ranked by how much each answer
    improves the clustering; answers become must-link / cannot-link decisions every later `faceset people` keeps."""
    import sys
    import time

    from ..curate.people import answer, review_questions, review_sheet

    ws = ws_open(workspace or (ctx.obj or {}).get("workspace"))
    applied = []
    for text in answers or []:
        a, b, same = _parse_answer(text)
        applied.append({"face_a": a, "face_b": b, "same": same, **answer(ws, a, b, same).to_dict()})
    qs = review_questions(ws, limit)
    sheet_path = None
    if sheet and qs:
        sheet_path = str(review_sheet(ws, qs, ws.sheets_dir / f"review-{time.strftime('%Y%m%d-%H%M%S')}.png"))
    interactive = ask and not as_json and not answers and sys.stdin.isatty()
    if interactive and qs:
        console.print(table("questions", ["#", "face", "face", "people", "kind", "distance"],
                            [[k + 1, q.face_a, q.face_b, f"{q.person_a}/{q.person_b}", q.kind, f"{q.linkage:.3f}"]
                             for k, q in enumerate(qs)]))
        if sheet_path:
            console.print(f"faces side by side: {sheet_path}")
        for k, q in enumerate(qs):
            ask_ = (f"person {q.person_a} (faces {', '.join(map(str, q.faces))}) one person?" if q.kind == "cluster"
                    else f"faces {q.face_a} and {q.face_b} the same person?")
            got = typer.prompt(f"{k + 1}: {ask_} [y/n/s=skip/q=quit]", default="s").strip().lower()
            if got.startswith("q"):
                break
            if got[:1] in ("y", "n"):
                rep = answer(ws, q.face_a, q.face_b, got.startswith("y"), q.kind)
                applied.append({"face_a": q.face_a, "face_b": q.face_b, "same": got.startswith("y"), **rep.to_dict()})
                # a merge or split changes the people, so the remaining questions may be stale: ask again later
                if rep.action in ("merge", "split"):
                    console.print(f"{rep.action}: person {rep.person_id}")
        qs = review_questions(ws, limit)
    data = {"answered": applied, "questions": [q.to_dict() for q in qs], "sheet": sheet_path}

    def human():
        if applied:
            console.print(table("answers applied", ["face", "face", "same", "did", "person"],
                                [[r["face_a"], r["face_b"], "yes" if r["same"] else "no", r["action"],
                                  r["person_id"] if r["person_id"] is not None else "-"] for r in applied]))
        if not qs:
            console.print("no questions left: the clustering has no close calls")
            return
        console.print(table("next questions (answer with --answer FACE,FACE,yes|no)",
                            ["face", "face", "people", "kind", "gain", "distance"],
                            [[q.face_a, q.face_b, f"{q.person_a}/{q.person_b}", q.kind, f"{q.gain:.1f}",
                              f"{q.linkage:.3f}"] for q in qs]))
        if sheet_path:
            console.print(f"faces side by side: {sheet_path}")

    emit(as_json, data, human)


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
    max_yaw: Optional[float] = typer.Option(None, "--max-yaw",
                                            help="Datasets leave out faces turned more than this (degrees)."),
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
        rep = assign_splits(ws, ratios=r, seed=seed, label=label, per_person_cap=per_person_cap, balance=balance,
                            max_yaw=max_yaw)
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
    # `faceset people review` joins the `people` group in serve_cmds.register (no import back from here)
    app.command()(split)
    app.add_typer(label_app, name="label")
