"""`faceset demo`: build a messy photo collection from images shipped with scikit-image and run the pipeline on it.

Works offline on a fresh machine (no ../shared/data, no network): every picture comes from the
scikit-image wheel. The collection is deliberately messy, so the demo shows what each stage
does with real-world problems: byte duplicates, a lossless re-encode (same pixels), a lossy
re-encode and a sideways photo with an EXIF rotation tag (near duplicates), GPS metadata (stripped),
a truncated JPEG, an empty file, a text file named .jpg, a cat, objects, and a zip with a
member that tries to escape its folder.

The pipeline is a list of ``Step``s, each naming a library entry point and how to call it; a step
that fails is reported and the demo goes on, so it shows how far the pipeline gets.
"""

from __future__ import annotations

import importlib
import io
import json
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from .errors import UsageError
from .workspace import Workspace, init_workspace

MARKER = ".faceset-demo"
LICENSE = "scikit-image sample data (BSD-3-Clause / CC0 / public domain, see skimage.data docstrings)"
CONSENT = "public_domain"
N_LFW_FACES = 12  # lfw_subset: first 100 are faces; a few keep the demo quick


class DemoError(UsageError):
    """The output folder (or another argument) is not usable (CLI: exit 2)."""


@dataclass
class StepResult:
    name: str
    status: str  # ok | skipped (its entry point does not exist) | failed
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)
    detail: str = ""


@dataclass
class DemoReport:
    out: str
    collection: str
    workspace: str
    files_made: int
    steps: list[StepResult] = field(default_factory=list)
    dataset: str = ""  # where build put the dataset, its datasheet and the owner's report
    datasheet: str = ""
    report: str = ""

    @property
    def ok(self) -> bool:
        return all(s.status != "failed" for s in self.steps)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


# -- the messy collection -------------------------------------------------------
def _save(im: Image.Image, path: Path, fmt: str, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt, **kw)


def _u8(a: np.ndarray) -> np.ndarray:
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8) if a.dtype.kind == "f" else a


def make_collection(root: Path, zip_path: Path, n_lfw: int = N_LFW_FACES) -> int:
    """Write the demo collection under ``root`` and a friend's zip at ``zip_path``. Returns the number of files."""
    from skimage import data

    root.mkdir(parents=True, exist_ok=True)
    astronaut = Image.fromarray(data.astronaut())
    camera = Image.fromarray(data.camera())  # grayscale: becomes RGB at ingest
    faces, other = root / "people", root / "other"

    gps = Image.Exif()
    gps[0x010F] = "DemoCam"
    gps[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    _save(astronaut, faces / "astronaut.jpg", "JPEG", quality=92, exif=gps.tobytes())
    (faces / "copies").mkdir(parents=True, exist_ok=True)
    shutil.copy(faces / "astronaut.jpg", faces / "copies" / "astronaut (1).jpg")  # byte duplicate
    _save(astronaut, faces / "copies" / "astronaut-lossless.png", "PNG")
    _save(astronaut, faces / "copies" / "astronaut-lossless.tiff", "TIFF")  # same pixels as the PNG
    _save(astronaut.resize((384, 384), Image.Resampling.LANCZOS), faces / "copies" / "astronaut-small.jpg",
          "JPEG", quality=70)  # near duplicate
    side = Image.Exif()
    side[0x0112] = 6  # "rotate 90 CW to view": stored sideways, upright after ingest
    _save(astronaut.transpose(Image.Transpose.ROTATE_90), faces / "copies" / "astronaut-phone.jpg", "JPEG",
          quality=90, exif=side.tobytes())
    _save(camera, faces / "cameraman.png", "PNG")

    lfw = data.lfw_subset()
    for i in range(n_lfw):  # 25x25 chips, upscaled so a detector has something to work with
        im = Image.fromarray(_u8(lfw[i])).resize((150, 150), Image.Resampling.LANCZOS).convert("RGB")
        _save(im, faces / "lfw" / f"face_{i:03d}.jpg", "JPEG", quality=95)

    _save(Image.fromarray(data.chelsea()), other / "cat" / "chelsea.jpg", "JPEG", quality=92)
    for name in ("coffee", "rocket", "horse", "coins"):
        im = Image.fromarray(_u8(getattr(data, name)()))
        fmt, ext = ("JPEG", "jpg") if name == "rocket" else ("PNG", "png")
        _save(im.convert("RGB") if im.mode not in ("RGB", "L") else im, other / "objects" / f"{name}.{ext}", fmt)

    bad = root / "broken"
    bad.mkdir(parents=True, exist_ok=True)
    whole = (other / "objects" / "rocket.jpg").read_bytes()
    (bad / "half-copied.jpg").write_bytes(whole[: len(whole) // 2])
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.jpg").write_text("this is a text file with an image extension\n")
    tiny = Image.fromarray(_u8(lfw[150]))  # 25x25 non-face: too small
    _save(tiny, bad / "tiny.png", "PNG")

    with zipfile.ZipFile(zip_path, "w") as z:
        for i in range(n_lfw, n_lfw + 4):
            b = io.BytesIO()
            Image.fromarray(_u8(lfw[i])).resize((150, 150), Image.Resampling.LANCZOS).convert("RGB").save(
                b, "JPEG", quality=95)
            z.writestr(f"friends/face_{i:03d}.jpg", b.getvalue())
        z.writestr("friends/dup-of-astronaut.jpg", (faces / "astronaut.jpg").read_bytes())
        z.writestr("../../outside.jpg", (faces / "astronaut.jpg").read_bytes())  # zip-slip: rejected, never written
    return sum(1 for p in root.rglob("*") if p.is_file()) + 1


# -- the pipeline ------------------------------------------------------------------
@dataclass
class Step:
    name: str
    module: str
    attr: str
    call: Callable[[Any, Workspace, dict], Any]  # (entry point, workspace, context) -> report


def _summary(x: Any) -> dict:
    d = x.to_dict() if hasattr(x, "to_dict") else (x if isinstance(x, dict) else {"result": str(x)})
    # keep the demo's summary short: drop long lists
    return {k: v for k, v in d.items() if not (isinstance(v, list) and len(v) > 10)}


def steps(out: Path, progress: bool) -> list[Step]:
    """The demo pipeline, in order."""
    col = out / "collection"
    ing = dict(license=LICENSE, consent=CONSENT, progress=progress)

    return [
        Step("ingest", "faceset.ingest", "ingest",
             lambda fn, ws, ctx: fn(ws, [col], labels="folder:album", **ing)),
        Step("ingest zip", "faceset.ingest", "ingest",
             lambda fn, ws, ctx: fn(ws, [out / "from-a-friend.zip"], labels="folder:album", **ing)),
        Step("scan", "faceset.scan", "scan", lambda fn, ws, ctx: fn(ws, progress=progress)),
        Step("find_duplicates", "faceset.curate", "find_duplicates", lambda fn, ws, ctx: fn(ws)),
        Step("cluster_people", "faceset.curate", "cluster_people", lambda fn, ws, ctx: fn(ws)),
        Step("assign_splits", "faceset.curate", "assign_splits", lambda fn, ws, ctx: fn(ws)),
        # `faceset build` over the same collection and workspace: the stages above make it a resume
        # (nothing new to ingest or scan), so it only adds the export, datasheet and report.
        Step("build", "faceset.build", "build",
             lambda fn, ws, ctx: fn([col, out / "from-a-friend.zip"], out, workspace=ws.root, labels="folder:album",
                                    format="imagefolder", what="crops", **ing)),
        Step("status", "faceset.status", "workspace_status", lambda fn, ws, ctx: fn(ws)),
    ]


def _entry(module: str, attr: str):
    """The step's entry point, or None when it cannot be imported (the step is then skipped)."""
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def demo(out: str | Path = "demo-out", *, progress: bool = True, stop_after: str | None = None,
         on_step: Callable[[StepResult], None] | None = None) -> DemoReport:
    """Make the messy collection in ``out/collection`` and run every stage into ``out/workspace``.

    Starts fresh each time (an earlier demo folder is replaced; any other non-empty folder is refused).
    ``stop_after`` names a step (e.g. ``ingest``, ``scan``); an unknown name is a ``DemoError``.
    """
    out = Path(out).expanduser().resolve()
    pipeline = steps(out, progress)
    names = [st.name for st in pipeline]
    if stop_after is not None and stop_after not in names:
        raise DemoError(f"--stop-after {stop_after!r}: not a demo step (steps: {', '.join(names)})")
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise DemoError(f"{out} exists, is not empty and is not a faceset demo folder: choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps({"faceset_demo": 1}) + "\n")
    n = make_collection(out / "collection", out / "from-a-friend.zip")
    ws = init_workspace(out / "workspace")
    rep = DemoReport(out=str(out), collection=str(out / "collection"), workspace=str(ws.root), files_made=n)
    ctx: dict = {}
    try:
        for st in pipeline:
            fn = _entry(st.module, st.attr)
            t = time.perf_counter()
            if fn is None:
                res = StepResult(st.name, "skipped", detail=f"{st.module}.{st.attr} does not exist")
            else:
                try:
                    r = st.call(fn, ws, ctx)
                    ctx[st.name] = r
                    res = StepResult(st.name, "ok", summary=_summary(r))
                except Exception as e:  # keep going: the demo shows how far the pipeline gets
                    res = StepResult(st.name, "failed", detail=f"{type(e).__name__}: {e}".splitlines()[0][:300])
            res.seconds = round(time.perf_counter() - t, 2)
            rep.steps.append(res)
            if on_step:
                on_step(res)
            if stop_after and st.name == stop_after:
                break
    finally:
        ws.close()
    if "build" in ctx:
        b = ctx["build"]
        rep.dataset, rep.datasheet, rep.report = b.dataset, b.datasheet, b.report
    return rep
