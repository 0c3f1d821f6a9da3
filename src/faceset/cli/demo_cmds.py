"""`faceset demo`: a messy collection from scikit-image's sample pictures, through every available stage.

Exit codes: 0 when every available step ran, 1 when a step failed, 2 when --out is unusable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import JsonOpt, console, emit, err, fail, table


def _brief(summary: dict, n: int = 5) -> str:
    """The first few numeric results of a step, e.g. 'scanned=27 ok=20 faces=21'."""
    nums = [f"{k}={v}" for k, v in summary.items() if isinstance(v, int) and not isinstance(v, bool)]
    return " ".join(nums[:n])


def register(app: typer.Typer) -> None:
    app.command(name="demo")(demo_cmd)


def demo_cmd(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o",
                             help="Output folder (replaced if it is an earlier demo)."),
    stop_after: Optional[str] = typer.Option(None, "--stop-after", help="Stop after this step (e.g. ingest, scan)."),
    as_json: bool = JsonOpt,
):
    """Build a messy photo collection offline and run the pipeline on it (ingest -> scan -> curate -> build)."""
    from ..demo import DemoError, demo

    def show(s):
        if not as_json:
            colour = {"ok": "green", "skipped": "yellow", "failed": "red"}[s.status]
            err.print(f"[{colour}]{s.status:>7}[/{colour}]  {s.name}  ({s.seconds:.1f} s) {s.detail}")

    try:
        rep = demo(out, progress=not as_json, stop_after=stop_after, on_step=show)
    except DemoError as e:
        fail(str(e))

    def human():
        for s in rep.steps:
            if s.name.startswith("ingest") and s.status == "ok":
                ing = s.summary
                rows = [["added", ing["added"]], ["duplicates", ing["duplicates"]]]
                rows += [[f"  {k.replace('_', ' ')}", v] for k, v in ing.get("duplicate_kinds", {}).items()]
                rows += [[f"rejected: {k}", v] for k, v in ing["rejected"].items()]
                console.print(table(s.name, ["outcome", "count"], rows))
        console.print(table("demo steps", ["step", "status", "seconds", "note"],
                            [[s.name, s.status, s.seconds, s.detail or _brief(s.summary)] for s in rep.steps]))
        console.print(f"collection: {rep.collection} ({rep.files_made} files)\nworkspace:  {rep.workspace}")
        if rep.dataset:
            console.print(f"dataset:    [bold]{rep.dataset}[/bold]\ndatasheet:  [bold]{rep.datasheet}[/bold]\n"
                          f"report:     [bold]{rep.report}[/bold]")
        console.print(f"try: faceset status -w {rep.workspace}")

    emit(as_json, rep.to_dict(), human)
    if not rep.ok:
        raise typer.Exit(1)
