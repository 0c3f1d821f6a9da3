"""CLI for consented collection: `campaign create|list|close|consent|withdraw|expire`.

Participants contribute through the portal (`faceset serve`, pages at /c/<campaign>); these commands
are the curator's side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError
from .common import JsonOpt, WorkspaceOpt, console, emit, table, ws_open

campaign_app = typer.Typer(help="Consented collection campaigns (the portal at /c/<campaign> of `faceset serve`).",
                           no_args_is_help=True)


def _text(path: Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{what} {path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def _show(as_json: bool, infos) -> None:
    rows = infos if isinstance(infos, list) else [infos]

    def human():
        console.print(table("campaigns", ["campaign", "status", "scopes", "consent", "expires", "active",
                                          "withdrawn", "photos", "self-reported"],
                            [[i.slug, i.status, ",".join(i.scopes), f"v{i.consent_version} {i.consent_sha256[:12]}",
                              i.expires or "-", i.active, i.withdrawn, i.photos, ",".join(i.self_reported) or "-"]
                             for i in rows]))
        if not isinstance(infos, list):
            console.print(f"portal page: /c/{infos.slug} of `faceset serve`", highlight=False, markup=False)

    emit(as_json, [i.to_dict() for i in rows] if isinstance(infos, list) else infos.to_dict(), human)


@campaign_app.command("create")
def create(
    title: str = typer.Option(..., "--title", help="Shown to participants; also makes the address /c/<slug>."),
    purpose: Path = typer.Option(..., "--purpose", help="Markdown/text file: why the photos are collected."),
    consent: Path = typer.Option(..., "--consent", help="Text file: the consent text participants agree to."),
    scopes: str = typer.Option("dataset,training,publication,commercial", "--scopes",
                               help="Uses a participant may agree to, each ticked separately."),
    labels: str = typer.Option("", "--labels", help="Self-reported labels, e.g. gender:self_described,age_range."),
    expires: Optional[str] = typer.Option(None, "--expires", help="Consent expiry date YYYY-MM-DD."),
    max_photos: int = typer.Option(10, "--max-photos", help="Photos per participant (besides the selfie)."),
    bystanders: str = typer.Option("blur", "--bystanders", help="Other faces in a photo: blur | reject."),
    slug: Optional[str] = typer.Option(None, "--slug", help="Address /c/<slug> (default: from the title)."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
):
    """Create a campaign (consent text version 1, stored with its sha256)."""
    from ..collect import create_campaign

    ws = ws_open(workspace)
    _show(as_json, create_campaign(ws, title=title, purpose=_text(purpose, "--purpose"),
                                   consent=_text(consent, "--consent"), scopes=scopes, labels=labels,
                                   expires=expires, max_photos=max_photos, bystanders=bystanders, slug=slug))


@campaign_app.command("list")
def list_(workspace: Optional[Path] = WorkspaceOpt, as_json: bool = JsonOpt):
    """Campaigns with their consent version, scopes and counts (nobody named)."""
    from ..collect import list_campaigns

    _show(as_json, list_campaigns(ws_open(workspace)))


@campaign_app.command("close")
def close(slug: str = typer.Argument(..., help="The campaign."), workspace: Optional[Path] = WorkspaceOpt,
          as_json: bool = JsonOpt):
    """Close a campaign: the portal takes no more contributions (withdrawal stays open)."""
    from ..collect import close_campaign

    _show(as_json, close_campaign(ws_open(workspace), slug))


@campaign_app.command("consent")
def consent(slug: str = typer.Argument(..., help="The campaign."),
            text: Path = typer.Option(..., "--consent", help="The new consent text."),
            workspace: Optional[Path] = WorkspaceOpt, as_json: bool = JsonOpt):
    """Change the consent text: a new version (earlier contributors keep the version they agreed to)."""
    from ..collect import update_consent

    _show(as_json, update_consent(ws_open(workspace), slug, _text(text, "--consent")))


@campaign_app.command("withdraw")
def withdraw(slug: str = typer.Argument(..., help="The campaign."),
             code: Optional[str] = typer.Option(None, "--code", help="The withdrawal code from the receipt."),
             selfie: Optional[Path] = typer.Option(None, "--selfie", help="Or a selfie of the contributor."),
             workspace: Optional[Path] = WorkspaceOpt, as_json: bool = JsonOpt):
    """Withdraw a contribution for its contributor: erase everything of them and block them."""
    from ..collect import withdraw as do

    data = _text_bytes(selfie) if selfie else None
    rep = do(ws_open(workspace), slug, code=code, selfie=data)

    def human():
        if rep.already:
            console.print(f"already withdrawn ({rep.ended_at}): nothing left to erase", highlight=False)
        else:
            console.print(f"withdrawn: {rep.images_erased} photos, {rep.faces_erased} faces, {rep.labels_erased} "
                          f"labels erased; {rep.exports_stale} exports now stale", highlight=False)

    emit(as_json, rep.to_dict(), human)


def _text_bytes(p: Path) -> bytes:
    try:
        return Path(p).read_bytes()
    except OSError as e:
        raise UsageError(f"--selfie {p}: cannot read ({e.strerror or e})") from None


@campaign_app.command("expire")
def expire(apply: bool = typer.Option(False, "--apply", help="Erase (default: dry run, counts only)."),
           workspace: Optional[Path] = WorkspaceOpt, as_json: bool = JsonOpt):
    """Contributions whose campaign consent expired: counted (dry run), or erased like a withdrawal."""
    from ..collect import expire as do

    out = do(ws_open(workspace), dry_run=not apply)
    emit(as_json, out, lambda: console.print(
        f"{'would erase' if out['dry_run'] else 'erased'} {out['contributions']} expired contributions"
        + ("" if out["dry_run"] else f" ({out['images_erased']} photos)"), highlight=False))


def register(app: typer.Typer) -> None:
    app.add_typer(campaign_app, name="campaign")
