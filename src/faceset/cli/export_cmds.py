"""CLI for export, report and build (thin: parse, call the library, print)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import JsonOpt, WorkspaceOpt, console, emit, err, fail, table, ws_open


def _show_export(r: dict) -> None:
    splits = list(r["splits"])  # already in train, val, test order
    classes = sorted(r["classes"])
    console.print(table(f"export #{r['export_id']} ({r['format']}, {r['what']}) -> {r['path']}",
                        ["class", *splits, "total"],
                        [[c, *[r["splits"][s].get(c, 0) for s in splits], r["classes"][c]] for c in classes]))
    if r["skipped"]:
        console.print(table("left out", ["reason", "count"], [[k, v] for k, v in r["skipped"].items()]))
    if r["included_unknown_consent"]:
        err.print(f"[yellow]warning:[/yellow] {r['included_unknown_consent']} records with consent 'unknown' included")
    console.print(f"{r['items']} records, {r['people']} people, {r['files']} files, {r['bytes'] / 1e6:.1f} MB "
                  f"in {r['seconds']:.1f} s; datasheet: {Path(r['path']) / 'datasheet.md'}")


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_cmd(
        out: Optional[Path] = typer.Argument(None, help="Folder to write (new, empty, or a previous export)."),
        format: str = typer.Option("imagefolder", "--format", "-f", help="imagefolder | zip | webdataset | parquet"),
        what: str = typer.Option("crops", "--what", help="crops (224 px aligned) | chips (150 px) | images"),
        label: Optional[str] = typer.Option(None, "--label", "-l", help="Label name used as the class."),
        faces: str = typer.Option("main", "--faces", help="main: each photo's main face; all: every good face."),
        shard_size: int = typer.Option(1000, "--shard-size", "-n", help="Records per zip/tar/parquet shard."),
        sample: int = typer.Option(500, "--sample", help="Records per class in <class>_sample.zip (zip format)."),
        blur_bystanders: bool = typer.Option(False, "--blur-bystanders", help="Blur non-main faces (--what images)."),
        include_unknown_consent: bool = typer.Option(False, "--include-unknown-consent",
                                                     help="Also export consent 'unknown' (said in the datasheet)."),
        include_low_quality: bool = typer.Option(False, "--include-low-quality", help="Keep low-quality faces."),
        max_yaw: Optional[float] = typer.Option(None, "--max-yaw", help="Leave out faces turned more than this "
                                                                        "(degrees; default: the split's)."),
        seed: int = typer.Option(0, "--seed", help="Seed for the sample zips."),
        refresh: bool = typer.Option(False, "--refresh",
                                     help="Rebuild stale exports in place (or OUT / --id, stale or not)."),
        export_id: Optional[int] = typer.Option(None, "--id", help="With --refresh: rebuild this export."),
        engine: str = typer.Option("local", "--engine",
                                   help="local | ray: Ray tasks clean / blur the images, this process writes."),
        workers: Optional[int] = typer.Option(None, "--workers", help="Ray workers to keep busy (default: cores)."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                                  help="Join this Ray cluster (default: a local Ray)."),
        workspace: Optional[Path] = WorkspaceOpt,
        as_json: bool = JsonOpt,
    ):
        """Write the dataset (+ manifest.csv/jsonl, datasheet.md) and record it for erasure."""
        from ..export import ExportError, export
        from ..export import refresh as do_refresh

        ws = ws_open(workspace)
        try:
            if refresh:
                if out is not None and export_id is None:  # `faceset export OUT --refresh`: that one export
                    rec = ws.catalog.exports.latest_at(str(out.resolve()))
                    export_id = rec.id if rec else None
                    if export_id is None:
                        fail(f"{out} is not a recorded export of this workspace")
                reps = [r.to_dict() for r in do_refresh(ws, export_id, progress=not as_json, engine=engine,
                                                        workers=workers, ray_address=ray_address)]

                def human():
                    if not reps:
                        console.print("no stale exports")
                    for r in reps:
                        _show_export(r)

                emit(as_json, reps, human)
                return
            if out is None:
                fail("give the output folder (or --refresh)")
            rep = export(ws, out, format=format, what=what, label=label, faces=faces, shard_size=shard_size,
                         sample=sample, blur_bystanders=blur_bystanders,
                         include_unknown_consent=include_unknown_consent, include_low_quality=include_low_quality,
                         seed=seed, progress=not as_json, max_yaw=max_yaw, engine=engine, workers=workers,
                         ray_address=ray_address)
        except ExportError as e:
            fail(str(e))
        d = rep.to_dict()
        emit(as_json, d, lambda: _show_export(d))

    @app.command("report")
    def report_cmd(
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file (default <workspace>/report.html)."),
        workspace: Optional[Path] = WorkspaceOpt,
        as_json: bool = JsonOpt,
    ):
        """One self-contained HTML page: counts, balance, sources, histograms, duplicates, rejects."""
        from ..report import report

        r = report(ws_open(workspace), out).to_dict()
        emit(as_json, r, lambda: console.print(
            f"report: [bold]{r['path']}[/bold] ({r['images']} images, {r['faces']} faces, {r['people']} people, "
            f"{r['duplicate_groups']} duplicate groups, {r['rejected_images'] + r['rejected_files']} rejected)"))

    @app.command("build")
    def build_cmd(
        sources: List[Path] = typer.Argument(..., help="Photo folders, archives or files you may use."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder: workspace/, dataset/, report.html."),
        license: Optional[str] = typer.Option(None, "--license", help="Licence of the photos (e.g. CC-BY-4.0)."),
        consent: Optional[str] = typer.Option(None, "--consent",
                                              help="consent|license|public_domain|research_exemption|unknown"),
        labels: Optional[str] = typer.Option(None, "--labels",
                                             help="folder[:NAME] | column:A,B | regex:PATTERN | utkface"),
        label_map: Optional[List[str]] = typer.Option(None, "--label-map", help="NAME=RAW:VALUE,... (repeatable)"),
        format: str = typer.Option("imagefolder", "--format", "-f", help="imagefolder | zip | webdataset | parquet"),
        what: str = typer.Option("crops", "--what", help="crops | chips | images"),
        label: Optional[str] = typer.Option(None, "--label", "-l", help="Class label (default: the only label name)."),
        engine: str = typer.Option("local", "--engine",
                                   help="local | ray: ingest, scan, neighbour searches and export encoding on Ray."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                                  help="Join this Ray cluster (with --engine ray)."),
        blur_bystanders: bool = typer.Option(False, "--blur-bystanders", help="Blur non-main faces (--what images)."),
        workspace: Optional[Path] = typer.Option(None, "--workspace", "-w", help="Workspace (default OUT/workspace)."),
        as_json: bool = JsonOpt,
    ):
        """ingest -> scan -> duplicates -> people -> splits -> export -> report; rerun to resume."""
        from ..build import build
        from ..export import ExportError
        from ..ingest import IngestError
        from ..workspace import WorkspaceError

        def on_step(name: str, d: dict) -> None:
            if not as_json:  # the step's headline counts: its scalar numbers
                nums = [f"{k} {v:g}" for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                        and k not in ("seconds", "export_id", "seed", "bytes")][:6]
                err.print(f"[green]done[/green] {name}: {', '.join(nums)}")

        try:
            rep = build(sources, out, workspace=workspace, license=license, consent=consent, labels=labels,
                        label_map=label_map, format=format, what=what, label=label, engine=engine,
                        ray_address=ray_address, blur_bystanders=blur_bystanders,
                        progress=not as_json, on_step=on_step)
        except (IngestError, ExportError, WorkspaceError) as e:
            fail(str(e))
        d = rep.to_dict()
        emit(as_json, d, lambda: console.print(
            f"dataset:   [bold]{d['dataset']}[/bold] ({d['items']} records: "
            f"{', '.join(f'{k} {v}' for k, v in d['classes'].items())})\n"
            f"datasheet: [bold]{d['datasheet']}[/bold]\nreport:    [bold]{d['report']}[/bold]\n"
            f"workspace: {d['workspace']}"))
