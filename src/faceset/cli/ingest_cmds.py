"""`faceset ingest`: thin wrapper over :func:`faceset.ingest.ingest`.

Exit codes: 0 when the run finished, even with per-file rejections (the summary counts them);
2 for usage or fatal errors (no licence/consent, unreadable SRC, bad --labels), nothing written.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import JsonOpt, WorkspaceOpt, console, emit, err, fail, table, ws_open


def register(app: typer.Typer) -> None:
    app.command(name="ingest")(ingest_cmd)


def ingest_cmd(
    src: List[Path] = typer.Argument(..., help="Folders, zip/tar(.gz) archives, CSV/JSONL manifests or files."),
    license: Optional[str] = typer.Option(None, "--license", "--licence",
                                          help="Licence of these photos (required unless a manifest has a license "
                                               "column)."),
    consent: Optional[str] = typer.Option(None, "--consent",
                                          help="Consent basis: "
                                               "consent|license|public_domain|research_exemption|unknown."),
    source_name: Optional[str] = typer.Option(None, "--source-name",
                                              help="Name of the source (default: from the path)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="folder[:NAME] | column:A,B | regex:PATTERN | utkface"),
    label_map: Optional[List[str]] = typer.Option(None, "--label-map", help="NAME=RAW:VALUE,RAW:VALUE (repeatable)"),
    min_side: int = typer.Option(32, "--min-side", help="Reject images smaller than this on a side (px)."),
    max_pixels: int = typer.Option(100_000_000, "--max-pixels",
                                   help="Reject images with more pixels (decompression bombs)."),
    max_file_mb: int = typer.Option(256, "--max-file-mb", help="Reject files (or archive members) larger than this."),
    workers: Optional[int] = typer.Option(None, "--workers",
                                          help="Decode processes, or Ray tasks at once with --engine ray "
                                               "(default 2; 1 = in-process)."),
    engine: str = typer.Option("local", "--engine",
                               help="Where images are decoded: local (process pool) | ray (bytes shipped to Ray "
                                    "tasks; this process writes store and catalog)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                              help="Ray cluster to join with --engine ray (e.g. ray://head:10001; "
                                                   "default: start a local Ray)."),
    confine: bool = typer.Option(False, "--confine",
                                 help="Manifest rows may only name files inside the manifest's folder (default: "
                                      "any readable path)."),
    show_rejects: int = typer.Option(20, "--show-rejects", help="How many rejected files to list (0: none)."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
):
    """Add photos with their provenance: licence, consent basis, labels. Reruns resume; duplicates are found.

    Exit codes: 0 done (per-file rejections are counted, not errors); 2 usage or fatal error, nothing written.
    """
    from ..engines import ENGINES
    from ..ingest import IngestError, check_request, ingest
    from ..workspace import MARKER, WorkspaceError, default_path, require_folder

    if engine not in ENGINES:
        fail(f"unknown --engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if ray_address and engine != "ray":
        fail("--ray-address needs --engine ray")
    if not ((workspace or default_path()) / MARKER).exists():
        try:  # refuse before creating anything
            require_folder(workspace or default_path())
            check_request(src, license=license, consent=consent, source_name=source_name, labels=labels,
                          label_map=label_map, max_file_bytes=max_file_mb * 2**20, confine=confine)
        except (IngestError, WorkspaceError) as e:
            fail(str(e))
        err.print(f"creating workspace {workspace or default_path()}")
    ws = ws_open(workspace, create=True)
    try:
        rep = ingest(ws, list(src), license=license, consent=consent, source_name=source_name, labels=labels,
                     label_map=label_map, workers=workers, min_side=min_side, max_pixels=max_pixels,
                     max_file_bytes=max_file_mb * 2**20, confine=confine, engine=engine,
                     ray_address=ray_address, progress=not as_json)
    except IngestError as e:
        fail(str(e))
    d = rep.to_dict()

    def human():
        rows = [["added", rep.added], ["duplicates", rep.duplicates]]
        rows += [[f"  {k.replace('_', ' ')}", v] for k, v in sorted(rep.duplicate_kinds.items())]
        rows += [["rejected", rep.n_rejected]]
        rows += [[f"  {k}", v] for k, v in d["rejected"].items()]
        if rep.skipped:
            rows.append(["already recorded (skipped)", rep.skipped])
        if rep.ignored:
            rows.append(["ignored (OS junk files)", rep.ignored])
        console.print(table(f"ingest ({rep.seconds:.1f} s)", ["outcome", "count"], rows))
        if len(rep.sources) > 1 or rep.sources:
            console.print(table("sources", ["source", "kind", "license", "consent", "added", "duplicates", "rejected"],
                                [[s["name"], s["kind"], s["license"], s["consent"], s["added"], s["duplicates"],
                                  s["rejected"]] for s in rep.sources]))
        if rep.rejects and show_rejects:
            console.print(table("rejected files", ["file", "reason"], [list(r) for r in rep.rejects[:show_rejects]]))
            if rep.n_rejected > show_rejects:
                err.print(f"... {rep.n_rejected - show_rejects} more: `faceset status` or --json lists them")
        if rep.label_conflicts:
            err.print(f"note: {rep.label_conflicts} duplicate files carry labels that differ from the kept image's "
                      "(kept the first; see files.reason)")

    emit(as_json, d, human)
