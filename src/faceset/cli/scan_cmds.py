"""`faceset scan`, `faceset detect`, `faceset sheet`: thin wrappers over faceset.scan / faceset.sheets."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import JsonOpt, WorkspaceOpt, console, emit, err, fail, table, ws_open

DetectorOpt = typer.Option("centerface", "--detector",
                           help="centerface (CNN, default) | yunet (CNN) | cascade (dlib HOG/MMOD).")
VerifierOpt = typer.Option("auto", "--verifier",
                           help="Real-human-face check per face: auto (default: fast, MobileNet where unsure) "
                                "| full (MobileNet for every face) | fast | off.")
TurnsOpt = typer.Option(False, "--quarter-turns/--no-quarter-turns",
                        help="No real face upright: look again turned a quarter left and right (sideways photos "
                             "whose orientation tag was lost; no-face images cost ~1.8x).")


def register(app: typer.Typer) -> None:
    app.command(name="scan")(scan_cmd)
    app.command(name="detect")(detect_cmd)
    app.command(name="sheet")(sheet_cmd)


def scan_cmd(
    engine: str = typer.Option("local", "--engine", help="local (process pool) | ray"),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes (default: all cores)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                              help="Join this Ray cluster (default: a local Ray)."),
    detector: str = DetectorOpt,
    verifier: str = VerifierOpt,
    quarter_turns: bool = TurnsOpt,
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
):
    """Detect, align, measure and embed every face in images not scanned yet (reruns resume)."""
    from ..engines import ENGINES
    from ..scan import scan

    if engine not in ENGINES:
        fail(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if workers is not None and workers < 1:
        fail("--workers must be >= 1")
    ws = ws_open(workspace)
    rep = scan(ws, engine=engine, workers=workers, ray_address=ray_address, progress=not as_json,
               detector=detector, verifier=verifier, quarter_turns=quarter_turns)
    d = rep.to_dict()

    def human():
        rows = [["images scanned", rep.scanned], ["  with faces", rep.ok], ["  no face", rep.no_face],
                ["  errors", rep.errors], ["faces", rep.faces], ["  low quality", rep.low_quality],
                ["  not a real face (kept, left out)", rep.not_real],
                ["  blocked (not stored)", rep.blocked]]
        console.print(table("scan", ["outcome", "count"], rows))
        console.print(f"{rep.seconds:.1f} s, {rep.images_per_s:.2f} images/s, engine {rep.engine} x{rep.workers}")
        if rep.error_list:
            console.print(table("errors", ["image", "reason"], [list(e) for e in rep.error_list[:20]]))
        if rep.scanned == 0:
            err.print("nothing to scan: every image already has a scan result")

    emit(as_json, d, human)


def detect_cmd(
    images: List[Path] = typer.Argument(..., help="Image files (no workspace needed)."),
    detector: str = DetectorOpt,
    verifier: str = VerifierOpt,
    quarter_turns: bool = TurnsOpt,
    as_json: bool = JsonOpt,
):
    """Find faces in image files: boxes [x, y, w, h], scores, 5-point landmarks; or why an image was rejected."""
    from ..scan import detect

    recs = detect(images, detector=detector, verifier=verifier, quarter_turns=quarter_turns)

    def human():
        rows = []
        for r in recs:
            if r["rejected"]:
                rows.append([r["path"], 0, "", r["rejected"]])
            for f in r["faces"]:
                rows.append([r["path"], len(r["faces"]), ",".join(f"{v:.0f}" for v in f["box"]),
                             f"{f['score']:.2f}{' main' if f['is_main'] else ''}"])
        console.print(table("faces", ["image", "faces", "box x,y,w,h", "score / reason"], rows))

    emit(as_json, recs, human)


def sheet_cmd(
    kind: Optional[List[str]] = typer.Option(None, "--kind",
                                             help="faces | rejected | low_quality (repeatable; default all)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the PNGs (default: <workspace>/sheets)."),
    limit: int = typer.Option(200, "--limit", help="At most this many items per kind."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
):
    """Contact-sheet PNGs of accepted faces, rejected images (with reasons) and low-quality faces."""
    from ..sheets import KINDS, contact_sheets

    kinds = tuple(kind) if kind else KINDS
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        fail(f"unknown --kind {bad[0]!r}: choose from {', '.join(KINDS)}")
    ws = ws_open(workspace)
    rep = contact_sheets(ws, out=out, kinds=kinds, limit=limit)

    def human():
        console.print(table("contact sheets", ["kind", "items", "files"],
                            [[k, rep.counts[k], " ".join(str(p) for p in rep.sheets[k]) or "-"] for k in kinds]))

    emit(as_json, rep.to_dict(), human)
