"""Scan: find, align, measure and embed every human face; mark images without one.

Library entry points:
- :func:`scan` over a workspace (images with status 'new' only: resumable, kill -9 safe),
- :func:`analyze` for one in-memory image (predict, forget-by-selfie),
- :func:`detect` for files on disk (``faceset detect``; no workspace).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import imageio
from ..catalog import now
from ..catalog.faces import NewFace
from ..errors import UsageError
from ..privacy.blocklist import blocked_mask
from ..privacy.redact import blur_boxes, purge_blocked
from ..progress import bar
from ..workspace import Workspace
from .pipeline import (
    DEFAULT_DETECTOR,
    DEFAULT_VERIFIER,
    NOT_REAL,
    QUARTER_TURNS,
    FaceResult,
    analyze_rgb,
    check_options,
    decode,
    no_face_reason,
    process,
)

__all__ = ["scan", "analyze", "detect", "FaceResult", "ScanReport"]

WRITE_EVERY = 16        # results per catalog transaction
WRITE_SECONDS = 2.0     # ... or this often, whichever comes first


@dataclass
class ScanReport:
    scanned: int = 0
    ok: int = 0
    no_face: int = 0
    errors: int = 0
    faces: int = 0
    low_quality: int = 0
    not_real: int = 0                                     # faces the verifier called not real (kept, marked)
    blocked: int = 0
    seconds: float = 0.0
    engine: str = "local"
    workers: int = 1
    detector: str = DEFAULT_DETECTOR
    verifier: str = DEFAULT_VERIFIER
    stage_seconds: dict = field(default_factory=dict)     # summed worker time per stage
    error_list: list = field(default_factory=list)       # (image_id, reason), first 100
    _to_blur: dict = field(default_factory=dict, repr=False)  # image_id -> boxes of blocked bystanders

    @property
    def images_per_s(self) -> float:
        return self.scanned / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("_to_blur", None)
        d["images_per_s"] = round(self.images_per_s, 3)
        d["seconds"] = round(self.seconds, 3)
        d["stage_seconds"] = {k: round(v, 3) for k, v in self.stage_seconds.items()}
        return d


def analyze(rgb: np.ndarray, *, embed: bool = True, crops: bool = True, detector: str = DEFAULT_DETECTOR,
            verifier: str = DEFAULT_VERIFIER, quarter_turns: bool = QUARTER_TURNS) -> list[FaceResult]:
    """Faces in one HxWx3 uint8 image, main subject first (boxes in that image's pixels).

    Faces the real-face verifier rejects are returned with status 'not_real_face' (and their kind).
    ``quarter_turns``: with no real face upright, look again turned a quarter left and right (sideways photos).
    """
    check_options(detector, verifier)
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, -1)
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.dtype != np.uint8:
        raise UsageError(f"expected an HxWx3 uint8 image, got shape {rgb.shape} dtype {rgb.dtype}")
    return analyze_rgb(np.ascontiguousarray(rgb[..., :3]), embed=embed, crops=crops, detector=detector,
                       verifier=verifier, quarter_turns=quarter_turns)


def detect(paths: list[str | Path], *, detector: str = DEFAULT_DETECTOR,
           verifier: str = DEFAULT_VERIFIER, quarter_turns: bool = QUARTER_TURNS) -> list[dict]:
    """One record per file: ``{"path", "faces": [{"box", "score", "landmarks", ...}], "rejected"}``.

    ``faces`` lists real faces only; faces the verifier rejects are in ``not_real`` (with their kind).
    """
    check_options(detector, verifier)
    out = []
    for p in paths:
        rec = {"path": str(p), "faces": [], "rejected": None}
        try:  # the guarded reader + the shared budget (imageio.read_file / check_dims): no FIFO hang, no OOM
            rgb, k = decode(imageio.read_file(p))
            faces = analyze_rgb(rgb, embed=verifier != "off", crops=False, detector=detector, verifier=verifier,
                                quarter_turns=quarter_turns)
        except imageio.Rejected as r:
            rec["rejected"] = "not found" if r.code == "missing" else f"{r.code}: {r.reason}"
        except Exception as e:
            rec["rejected"] = f"unreadable: {type(e).__name__}: {e}"[:200]
        else:
            def _rec(f, k=k):
                return {"box": [round(v * k, 1) for v in f.box], "score": round(f.score, 4),
                        "landmarks": np.round(f.landmarks * k, 1).tolist(), "is_main": f.is_main,
                        "yaw": f.quality["yaw"], "detector": f.detector, "turned": f.turned}
            rec["faces"] = [_rec(f) for f in faces if f.status != NOT_REAL]
            fake = [f for f in faces if f.status == NOT_REAL]
            if fake:
                rec["not_real"] = [{**_rec(f), "kind": f.kind, "p_real": round(f.p_real, 4)} for f in fake]
            rec["rejected"] = no_face_reason(faces)
        out.append(rec)
    return out


def _tasks(ws: Workspace, want_bytes: bool, chunk: int = 256, opts: dict | None = None):
    """Stream (image_id, path|bytes, options) for status 'new' images, a page at a time (flat memory)."""
    last = 0
    while True:
        rows = ws.catalog.images.pending(last, chunk)
        if not rows:
            return
        for image_id, key in rows:
            last = image_id
            src = ws.store.get(key) if want_bytes else str(ws.store.path(key))
            yield (image_id, src, opts or {})


def count_pending(ws: Workspace) -> int:
    return ws.catalog.images.count_with_status("new")


def scan(ws: Workspace, *, engine: str = "local", workers: int | None = None, ray_address: str | None = None,
         progress: bool = True, batch: int = WRITE_EVERY, detector: str = DEFAULT_DETECTOR,
         verifier: str = DEFAULT_VERIFIER, quarter_turns: bool = QUARTER_TURNS) -> ScanReport:
    """Scan every image with status 'new'; rerun after any interruption to finish the rest.

    ``batch``: results per catalog transaction (also written every WRITE_SECONDS); a kill loses at most one.
    ``detector``: centerface (default) | yunet | cascade; ``verifier``: fast (default) | full | off -- see
    ``scan/pipeline.py``. Faces the verifier rejects stay in the catalog with status 'not_real_face'.
    """
    from ..engines import ENGINES, get_engine

    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if workers is not None and workers < 1:
        raise UsageError("workers must be >= 1")
    if batch < 1:
        raise UsageError("batch must be >= 1")
    check_options(detector, verifier)
    t0 = time.perf_counter()
    total = count_pending(ws)
    rep = ScanReport(engine=engine, detector=detector, verifier=verifier)
    if total == 0:
        _audit(ws, rep)
        return rep
    eng = get_engine(engine, workers, ray_address)
    rep.workers = eng.workers
    buf: list[dict] = []
    last_write = time.perf_counter()
    try:
        with bar("scan", total, progress) as b:
            opts = {"detector": detector, "verifier": verifier, "quarter_turns": quarter_turns}
            for res in eng.imap(process, _tasks(ws, eng.wants_bytes, opts=opts)):
                buf.append(res)
                if len(buf) >= batch or time.perf_counter() - last_write > WRITE_SECONDS:
                    _write(ws, buf, rep)
                    b.advance(len(buf))
                    buf, last_write = [], time.perf_counter()
            if buf:
                _write(ws, buf, rep)
                b.advance(len(buf))
                buf = []
    finally:
        eng.close()
        rep.seconds = time.perf_counter() - t0
        _audit(ws, rep)
    if rep.blocked:
        _honour_blocklist(ws, rep)
    return rep


def _honour_blocklist(ws: Workspace, rep: ScanReport) -> None:
    """A blocked face must not stay visible in the stored copy either.

    Photos where a blocked person was the only face are erased; in group shots the blocked
    faces are pixelated (both are the privacy stage's redaction).
    """
    for iid, boxes in rep._to_blur.items():
        if ws.catalog.images.exists(iid):
            blur_boxes(ws, iid, boxes)
    purge_blocked(ws)


def _audit(ws: Workspace, rep: ScanReport) -> None:
    with ws.catalog.tx():
        ws.catalog.audit("scan", scanned=rep.scanned, ok=rep.ok, no_face=rep.no_face, errors=rep.errors,
                         faces=rep.faces, low_quality=rep.low_quality, not_real=rep.not_real, blocked=rep.blocked,
                         engine=rep.engine, workers=rep.workers, detector=rep.detector, verifier=rep.verifier)


def _write(ws: Workspace, results: list[dict], rep: ScanReport) -> None:
    """Store chips/crops (content-addressed, idempotent), then one transaction for the rows."""
    faces = [f for r in results for f in r["faces"]]
    if faces and ws.catalog.blocklist.count():
        emb = np.frombuffer(b"".join(f["embedding"] for f in faces), np.float32).reshape(-1, 128)
        for f, blk in zip(faces, np.asarray(blocked_mask(ws, emb), bool)):
            f["blocked"] = bool(blk)
    keys = {}
    for f in faces:
        if not f.get("blocked"):
            keys[id(f)] = (ws.store.put(f["chip"]), ws.store.put(f["crop"]))
    ts = now()
    images, face_rows = ws.catalog.images, ws.catalog.faces
    with ws.catalog.tx():
        for r in results:
            iid = r["image_id"]
            for k, v in r.get("timings", {}).items():
                rep.stage_seconds[k] = rep.stage_seconds.get(k, 0.0) + v
            rep.scanned += 1
            if r["status"] == "error":
                rep.errors += 1
                if len(rep.error_list) < 100:
                    rep.error_list.append((iid, r["reason"]))
                images.set_scanned(iid, "error", r["reason"], ts)
                continue
            kept = [f for f in r["faces"] if not f.get("blocked")]
            nblk = len(r["faces"]) - len(kept)
            rep.blocked += nblk
            if nblk and kept:
                rep._to_blur[iid] = [tuple(f["box"]) for f in r["faces"] if f.get("blocked")]
            if kept and not any(f["is_main"] for f in kept):  # the main one was blocked: prefer a real face
                max(kept, key=lambda f: (f["status"] != NOT_REAL, f["quality"]["size"]))["is_main"] = True
            rows = []
            for i, f in enumerate(kept):
                q = f["quality"]
                rows.append(NewFace(i, tuple(f["box"]), f["score"], f["detector"], f["landmarks"], bool(f["is_main"]),
                                    q["size"], q["blur"], q["brightness"], q["yaw"], q["quality"], f["embedding"],
                                    *keys[id(f)], f["status"]))
                rep.faces += 1
                rep.low_quality += f["status"] == "low_quality"
                rep.not_real += f["status"] == NOT_REAL
            face_rows.replace_for_image(iid, rows)
            if kept and "kind" in kept[0]:
                face_rows.set_verdicts(iid, [(i, f["kind"] if f.get("p_real") is not None else None, f.get("p_real"))
                                             for i, f in enumerate(kept)])
            fake_only = no_face_reason(kept) if kept else None
            if fake_only:  # faces kept (rejected contact sheet), but no real one: the image is no_face
                rep.no_face += 1
                images.set_scanned(iid, "no_face", fake_only, ts)
            elif kept:
                rep.ok += 1
                images.set_scanned(iid, "ok", None, ts)
            elif nblk:  # every face is a forgotten person's: purged right after this scan
                rep.no_face += 1
                images.set_scanned(iid, "blocked", None, ts)
            else:
                rep.no_face += 1
                images.set_scanned(iid, "no_face", r["reason"], ts)
