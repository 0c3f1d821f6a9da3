"""`faceset build`: one command from photo folders to a finished dataset.

ingest -> scan -> duplicates -> people -> splits -> export -> report. Every
step is idempotent over the catalog (ingest skips files it has seen, scan takes
only 'new' images, clustering is incremental, splits never move a person, the
export is swapped in atomically), so rerunning after a kill simply continues.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .catalog.schema import EXPORT_FORMATS, EXPORT_WHAT
from .engines import check_options
from .errors import UsageError
from .workspace import Workspace, open_workspace

STEPS = ("ingest", "scan", "duplicates", "people", "splits", "export", "report")


@dataclass
class BuildReport:
    out: str
    workspace: str
    dataset: str
    datasheet: str
    report: str
    label: str | None
    items: int = 0  # records in the dataset
    classes: dict[str, int] = field(default_factory=dict)
    steps: dict[str, dict] = field(default_factory=dict)  # step -> that stage's report (to_dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _d(x) -> dict:
    if hasattr(x, "to_dict"):
        return x.to_dict()
    if isinstance(x, list):
        return {"items": [_d(i) for i in x]}
    return dict(x) if isinstance(x, dict) else {"result": str(x)}


def pick_label(ws: Workspace, label: str | None) -> str | None:
    """The class label: the one asked for, else the workspace's only label name, else none."""
    if label:
        return label
    names = ws.catalog.labels.names_with_values()
    return names[0] if len(names) == 1 else None


def build(
    sources: list[str | Path],
    out: str | Path,
    *,
    workspace: str | Path | None = None,
    license: str | None = None,
    consent: str | None = None,
    labels: str | None = None,
    label_map: list[str] | dict | None = None,
    format: str = "imagefolder",
    what: str = "crops",
    label: str | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    blur_bystanders: bool = False,
    progress: bool = True,
    on_step: Callable[[str, dict], None] | None = None,
) -> BuildReport:
    """Run the whole pipeline into ``out`` (``workspace/``, ``dataset/``); rerun to resume.

    ``engine="ray"`` (``ray_address`` to join a cluster) runs ingest's decoding, scan, the neighbour searches of
    duplicates and people, and export's re-encoding on Ray; this process stays the single writer.
    The report goes to ``<workspace>/report.html``: it holds thumbnails of people, so it lives
    where ``forget`` shreds it and never next to the dataset that gets shared.
    """
    from .curate import assign_splits, cluster_people, find_duplicates
    from .curate.knn_dist import on_engine
    from .export import ExportError, export
    from .ingest import check_request, ingest
    from .report import report
    from .scan import scan

    # Refuse a bad request (bad option, no licence/consent, missing SRC, bad label spec) before creating anything.
    for opt, value, allowed in (("--format", format, EXPORT_FORMATS), ("--what", what, EXPORT_WHAT)):
        if value not in allowed:
            raise UsageError(f"{opt} {value!r}: choose one of {', '.join(allowed)}")
    check_options(engine, None, ray_address, error=UsageError)
    check_request(list(sources), license=license, consent=consent, labels=labels, label_map=label_map)
    out = Path(out).expanduser().resolve()
    ws_path = Path(workspace).expanduser().resolve() if workspace else out / "workspace"
    out.mkdir(parents=True, exist_ok=True)
    ws = open_workspace(ws_path, create=True)
    dataset = out / "dataset"
    rep = BuildReport(out=str(out), workspace=str(ws_path), dataset=str(dataset),
                      datasheet=str(dataset / "datasheet.md"), report=str(ws.root.resolve() / "report.html"),
                      label=label)

    def step(name: str, fn: Callable[[], object]) -> None:
        t = time.perf_counter()
        rep.steps[name] = _d(fn())
        rep.seconds[name] = round(time.perf_counter() - t, 2)
        if on_step:
            on_step(name, rep.steps[name])

    try:
        step("ingest", lambda: ingest(ws, [str(s) for s in sources], license=license, consent=consent,
                                      labels=labels, label_map=label_map, progress=progress, engine=engine,
                                      ray_address=ray_address))
        step("scan", lambda: scan(ws, engine=engine, ray_address=ray_address, progress=progress))
        with on_engine(engine, None, ray_address):
            step("duplicates", lambda: find_duplicates(ws))
            step("people", lambda: cluster_people(ws))
        rep.label = pick_label(ws, label)
        step("splits", lambda: assign_splits(ws, label=rep.label))
        try:
            step("export", lambda: export(ws, dataset, format=format, what=what, label=rep.label,
                                          blur_bystanders=blur_bystanders, progress=progress, engine=engine,
                                          ray_address=ray_address))
        except ExportError:
            report(ws)  # nothing exportable: the report shows why (rejects, quality)
            raise
        rep.items, rep.classes = rep.steps["export"]["items"], rep.steps["export"]["classes"]
        step("report", lambda: report(ws))
    finally:
        ws.close()
    return rep
