"""Privacy commands: `forget`, `consent ...`, `audit` (thin: parse, call faceset.privacy, print)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .common import JsonOpt, WorkspaceOpt, console, emit, fail, table, ws_open

consent_app = typer.Typer(help="View and change the consent ledger (per source, person or image) and the blocklist.",
                          no_args_is_help=True)


def forget(
    selfies: List[Path] = typer.Argument(..., help="One or more photos of the person to erase."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would be erased (and a contact sheet)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Erase without asking."),
    drop_group_photos: bool = typer.Option(False, "--drop-group-photos",
                                           help="Drop group shots where they are a bystander instead of blurring "
                                                "them."),
    threshold: Optional[float] = typer.Option(None, help="Override the RMS distance to the selfies at which a face "
                                                         "alone is a certain match (default: the operating point "
                                                         "for the number of selfies)."),
    include_uncertain: bool = typer.Option(False, "--include-uncertain",
                                           help="Also erase the matches that need review (listed with their "
                                                "distances and on the contact sheet)."),
    refresh_exports: bool = typer.Option(False, "--refresh-exports", help="Rebuild the exports that held them now."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
):
    """Erase a person everywhere from their photo(s), blur them in group shots and block them from later scans."""
    from ..privacy import forget as do_forget
    from ..privacy.forget import ForgetError

    ws = ws_open(workspace)
    if not (dry_run or yes) and not sys.stdin.isatty():
        fail("refusing to erase without confirmation: stdin is not a terminal (pass --yes, or --dry-run to look first)")

    def ask(rep) -> bool:
        _show_matches(rep)
        if rep.review and not rep.include_uncertain:
            rep.include_uncertain = typer.confirm(
                f"{len(rep.review)} faces need review (marked '?' above and framed red on the contact sheet): "
                "are they this person too, and to be erased?", default=False)
        n = len(rep.to_erase)
        if not n:
            return False
        return typer.confirm(f"erase {n} faces in {len({m.image_id for m in rep.to_erase})} images for good?",
                             default=False)

    try:
        rep = do_forget(ws, selfies, dry_run=dry_run, drop_group_photos=drop_group_photos, threshold=threshold,
                        include_uncertain=include_uncertain, confirm=None if (yes or dry_run) else ask)
    except ForgetError as e:
        fail(str(e))
    refreshed = []
    if refresh_exports and not (rep.dry_run or rep.cancelled) and rep.exports_stale:
        from ..export import refresh

        refreshed = refresh(ws)
    data = rep.to_dict()
    if refreshed:
        data["exports_refreshed"] = [r.to_dict() for r in refreshed]

    def human():
        if dry_run or yes:
            _show_matches(rep)
        if rep.cancelled:
            console.print("cancelled: nothing was erased")
            return
        if rep.dry_run:
            if rep.plan is not None:
                hidden = sum(len(v) for v in rep.plan.hide_faces.values())
                console.print(f"plan: erase {len(rep.plan.erase_images)} images, pixelate {hidden} faces in "
                              f"{len(rep.plan.hide_faces)} group shots"
                              + ("" if rep.include_uncertain or not rep.review else
                                 f" (certain matches only; {len(rep.review)} more with --include-uncertain)"))
            console.print("dry run: nothing was erased")
            return
        console.print(
            f"erased {rep.images_erased} images and {rep.faces_erased} faces, blurred {rep.faces_blurred} "
            f"bystander faces, deleted {rep.store_objects_deleted} stored objects and {rep.cache_files_deleted} "
            f"cache/sheet files; blocklist entry {rep.blocklist_id} keeps later scans from adding them back"
        )
        if refreshed:
            console.print(f"rebuilt {len(refreshed)} export(s) that held them")
        elif rep.exports_stale:
            console.print(f"{rep.exports_stale} exports held them and are now stale: run `faceset export --refresh`")
        if rep.unscanned_images:
            console.print(f"{rep.unscanned_images} images are not scanned yet: the blocklist will drop them at scan")
        if rep.review and not rep.include_uncertain:
            console.print(f"{len(rep.review)} faces that need review were kept: look at them (`--dry-run`) and "
                          "rerun with --include-uncertain if they are this person")

    emit(as_json, data, human)


def _short(path: str) -> str:
    """Folder + file name: enough to find it in a table; --json has the full path."""
    parts = Path(path).parts
    return str(Path(*parts[-2:])) if len(parts) > 2 else path


def _show_matches(rep) -> None:
    order = sorted(rep.matches, key=lambda m: (m.certainty != "certain", m.image_id, m.face_id))
    rows = [[m.image_id, m.face_id, "yes" if m.certainty == "certain" else "? review", f"{m.distance:.3f}",
             "-" if m.person_distance is None else f"{m.person_distance:.3f}", m.action,
             "; ".join(_short(p) for p in m.source_paths)] for m in order]
    console.print(table(f"{len(rep.matches)} matching faces in {len(rep.images)} images: {len(rep.certain)} certain, "
                        f"{len(rep.review)} need review ({rep.selfies} selfie{'s' if rep.selfies != 1 else ''})",
                        ["image", "face", "certain", "distance", "person", "action", "original file"], rows))
    if rep.contact_sheet:
        console.print(f"contact sheet: {rep.contact_sheet}")


@consent_app.command("list")
def consent_list(workspace: Optional[Path] = WorkspaceOpt, as_json: bool = JsonOpt):
    """Every source's basis and expiry, plus per-person and per-image overrides."""
    from ..privacy.consent import ledger

    led = ledger(ws_open(workspace))

    def human():
        console.print(table("sources", ["source", "license", "basis", "expires", "images"],
                            [[s["name"], s["license"], s["basis"], s["expires"] or "-", s["images"]]
                             for s in led["sources"]]))
        if led["people"]:
            console.print(table("people (override their images)", ["person", "basis", "expires", "faces"],
                                [[p["person"], p["basis"], p["expires"] or "-", p["faces"]] for p in led["people"]]))
        if led["images"]:
            console.print(table("images (override their source)", ["image", "basis", "expires"],
                                [[i["image"], i["basis"], i["expires"] or "-"] for i in led["images"]]))
        e = led["effective"]
        console.print(f"faces by effective basis: {e['faces_by_basis']}  expired: {e['faces_expired']}  "
                      f"exportable by default: {e['faces_usable']}")

    emit(as_json, led, human)


@consent_app.command("set")
def consent_set(
    basis: str = typer.Option(..., "--basis", help="consent | license | public_domain | research_exemption | unknown"),
    source: Optional[str] = typer.Option(None, "--source", help="Source name."),
    person: Optional[int] = typer.Option(None, "--person", help="Person id (overrides the images' basis)."),
    image: Optional[int] = typer.Option(None, "--image", help="Image id (overrides the source's basis)."),
    expires: Optional[str] = typer.Option(None, "--expires", help="Expiry date YYYY-MM-DD."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
):
    """Record the basis for one source, person or image (audited)."""
    from ..privacy.consent import ConsentError, set_consent

    ws = ws_open(workspace)
    try:
        n = set_consent(ws, basis, source=source, person=person, image=image, expires=expires)
    except ConsentError as e:
        fail(str(e))
    target = {"source": source, "person": person, "image": image}
    emit(as_json, {"changed": n, "basis": basis, "expires": expires,
                   **{k: v for k, v in target.items() if v is not None}},
         lambda: console.print(f"basis set to {basis}" + (f" until {expires}" if expires else "")))


@consent_app.command("expire")
def consent_expire(apply: bool = typer.Option(False, "--apply", help="Erase (default: dry run, counts only)."),
                   workspace: Optional[Path] = WorkspaceOpt, as_json: bool = JsonOpt):
    """Contributors whose consent expired: counted (dry run), or erased and blocked like a withdrawal."""
    from ..collect import expire as do

    out = do(ws_open(workspace), dry_run=not apply)
    emit(as_json, out, lambda: console.print(
        f"{'would erase' if out['dry_run'] else 'erased'} {out['contributions']} contributions whose consent expired"
        + ("" if out["dry_run"] else f" ({out['images_erased']} photos)"), highlight=False))


@consent_app.command("blocklist")
def consent_blocklist(workspace: Optional[Path] = WorkspaceOpt, as_json: bool = JsonOpt):
    """People who asked to be forgotten (ids and dates only; templates are never shown)."""
    from ..privacy.blocklist import entries

    rows = entries(ws_open(workspace))
    emit(as_json, rows, lambda: console.print(table("blocklist", ["id", "radius", "created_at"],
                                                    [[r["id"], r["radius"], r["created_at"]] for r in rows])))


@consent_app.command("unblock")
def consent_unblock(blocklist_id: int = typer.Argument(..., help="Id from `faceset consent blocklist`."),
                    workspace: Optional[Path] = WorkspaceOpt, as_json: bool = JsonOpt):
    """Delete a blocklist template (only when the person asks): later scans keep their faces again."""
    from ..privacy.blocklist import remove

    if not remove(ws_open(workspace), blocklist_id):
        fail(f"no blocklist entry {blocklist_id}")
    emit(as_json, {"removed": blocklist_id}, lambda: console.print(f"blocklist entry {blocklist_id} removed"))


def audit(
    action: Optional[str] = typer.Option(None, "--action", help="Only this action (ingest, forget, export, ...)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Newest N entries."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
):
    """The append-only log: who did what, when, with which counts (never faces or file names)."""
    from ..privacy.audit import entries

    rows = entries(ws_open(workspace), action=action, limit=limit)

    def human():
        console.print(table("audit log (newest first)", ["id", "when", "who", "action", "details"],
                            [[r["id"], r["ts"], r["actor"], r["action"],
                              ", ".join(f"{k}={v}" for k, v in r["details"].items())] for r in rows]))

    emit(as_json, rows, human)


def register(app: typer.Typer) -> None:
    app.command()(forget)
    app.command()(audit)
    app.add_typer(consent_app, name="consent")
