"""Ingest: photo folders, archives and manifests -> catalog rows + clean copies in the store.

``ingest(ws, sources, license=..., consent=...)`` is the stage's one entry point.

Why it is shaped like this:
- Provenance first: a licence and a consent basis (per source or per manifest row) are required
  and checked for every SRC *before* anything is written.
- Crash safety: items are processed in a deterministic order; decoded copies are written to the
  content-addressed store (atomic) *before* the catalog transaction that references them commits,
  one small batch per transaction. A kill -9 leaves at most unreferenced store objects
  (``Store.gc``), and a rerun skips every (source, path, sha256) already recorded, so it resumes
  where it stopped and ends with the same catalog as an uninterrupted run.
- Flat memory: sources stream items; at most a small window of items is in flight.
- Decoding dominates, so it runs in a small process pool; the catalog is written by this process only.
- The blocklist is honoured here, not only at scan: when it is not empty (and only then: otherwise no face
  is detected at ingest), a photo whose every face is a forgotten person's is rejected ('blocked': no store
  object, no file hash, ``files.path`` = :func:`blocked_path`, a one-way hash of the path); in a group photo
  those faces are pixelated before the copy is stored.
- Every file is read through ``imageio.read_file`` and decoded under ``imageio.check_dims`` (the budget
  scan, detect and forget's selfies share).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sys
import time
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..catalog import CONSENT_BASES
from ..imageio import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    Rejected,
    decode,
    read_file,
)
from ..progress import bar
from ..store import Store
from ..workspace import Workspace
from .label_specs import LabelSpec, parse_spec
from .sources import BAD_ROW, IngestError, Item, Source, normalize_consent, open_source, row_value

__all__ = ["ingest", "check_request", "IngestReport", "IngestError"]

PER_ROW = "per-row"  # sources.license (and the report's source consent) when only the manifest rows carry them
UNKNOWN = "unknown"  # sources.consent then: a source has one of CONSENT_BASES; its images carry their own
BATCH_ITEMS = 1024  # one store syncfs + one transaction per batch: syncfs costs ~10 ms on a busy disk,
BATCH_SECONDS = 1.0  # so small batches stalled the parent (64 -> 1024: +20% chips/s); a kill loses <= 1 s
MAX_REJECTS_LISTED = 1000


@dataclass
class IngestReport:
    added: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason code -> count
    rejects: list[tuple[str, str]] = field(default_factory=list)  # (path, "code: reason"), first 1000
    skipped: int = 0  # already recorded by an earlier run (resume / re-ingest)
    ignored: int = 0  # OS junk (.DS_Store, __MACOSX, ._*): not recorded
    duplicate_kinds: dict[str, int] = field(default_factory=dict)  # same_bytes | same_pixels
    label_conflicts: int = 0  # duplicates whose labels disagree with the kept image's
    sources: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())

    def to_dict(self) -> dict:
        return {
            "added": self.added,
            "duplicates": self.duplicates,
            "duplicate_kinds": dict(self.duplicate_kinds),
            "rejected": dict(sorted(self.rejected.items(), key=lambda kv: -kv[1])),
            "rejected_total": self.n_rejected,
            "rejects": [{"path": p, "reason": r} for p, r in self.rejects],
            "skipped": self.skipped,
            "ignored": self.ignored,
            "label_conflicts": self.label_conflicts,
            "sources": self.sources,
            "seconds": round(self.seconds, 2),
        }


# -- worker side ---------------------------------------------------------------
_W: dict[str, Any] = {}


def _init_worker(store_root: str, limits: dict, block: tuple | None = None) -> None:
    _W["store"] = Store(store_root)
    _W["limits"] = limits
    _W["block"] = block  # (unit templates float32[k,128], radii float32[k]) when the blocklist is not empty
    if block is not None and multiprocessing.parent_process() is not None:
        from ..scan.embed import worker_threads

        worker_threads(1)  # one process per core already


BLOCKED_REASON = "a photo of a person who asked to be forgotten (blocklist): not stored, original path not kept"


def blocked_path(path: str) -> str:
    """What files.path holds for a blocked photo: a one-way hash of its path (never the path itself), so a rerun
    re-records the same row instead of adding one."""
    h = hashlib.sha256(b"faceset-blocked-path:" + path.encode("utf-8", "surrogateescape"))
    return f"(blocked {h.hexdigest()[:16]})"


def _blocked_boxes(rgb) -> tuple[int, list]:
    """(faces found, [x, y, w, h] of the blocked ones, in ``rgb`` pixels). Only called when the blocklist is not
    empty: the one case ingest needs face embeddings (detection runs on the shared work copy)."""
    import numpy as np

    from .. import imageio
    from ..privacy.blocklist import distances, unit
    from ..scan import analyze

    work = imageio.work_copy(rgb)
    k = rgb.shape[1] / work.shape[1]
    faces = [f for f in analyze(work, embed=True, crops=False) if f.embedding is not None]
    if not faces:
        return 0, []
    t, radii = _W["block"]
    d = distances(unit(np.stack([f.embedding for f in faces])), t)
    hit = (d <= radii[None, :]).any(axis=1)
    return len(faces), [[v * k for v in f.box] for f, h in zip(faces, hit) if h]


def _process(path: str, fs_path: str | None, data: bytes | None, known_sha: str | None) -> tuple:
    """Read, hash, decode, store the clean copy. Returns a small tuple (no pixels) for the parent."""
    if data is None:  # the guarded reader: regular files only (checked on the open descriptor), size cap
        try:
            data = read_file(fs_path, max_file_bytes=_W["limits"]["max_file_bytes"])
        except Rejected as r:
            reason = "file disappeared while ingesting" if r.code == "missing" else r.reason
            return ("rejected", None, None, r.code, reason)
    sha = hashlib.sha256(data).hexdigest()
    if known_sha == sha:
        return ("skip", sha, len(data))
    block = _W.get("block")
    try:  # stripped JPEGs: validated at 1/8 scale, no RGB array (pixels only when the blocklist must be checked)
        d = decode(data, pixels=block is not None, **_W["limits"])
    except Rejected as r:
        return ("rejected", sha, len(data), r.code, r.reason)
    if block is not None:
        n, boxes = _blocked_boxes(d.rgb)
        if boxes and len(boxes) == n:  # the forgotten person is the photo: nothing stored, no hash kept
            return ("rejected", None, None, "blocked", BLOCKED_REASON)
        if boxes:  # a group photo: the forgotten person is pixelated before anything is stored
            from ..imageio import LOSSY, encode_clean, pixel_sha
            from ..privacy.blur import pixelate_faces

            rgb = pixelate_faces(d.rgb, boxes)
            clean, cfmt = encode_clean(rgb, d.format in LOSSY)
            d = type(d)(rgb, d.format, pixel_sha(rgb), clean, cfmt, d.width, d.height)
    key = _W["store"].put(d.clean, sync=False)  # made durable by one Store.sync() per batch
    return ("ok", sha, len(data), d.pixel_sha, key, d.format, d.width, d.height, len(d.clean))


# -- orchestration ---------------------------------------------------------------
@dataclass
class _Plan:
    src: Source
    name: str
    license: str  # default for this run's new images
    consent: str
    existing_id: int | None
    row_license: str | None = None  # the source row's own values (images store only overrides)
    row_consent: str | None = None

    @property
    def base_license(self) -> str:
        return self.row_license or self.license

    @property
    def base_consent(self) -> str:
        return self.row_consent or self.consent


def _validate_consent(consent: str | None, where: str) -> str | None:
    """The basis as stored (aliases and case accepted), or an IngestError naming the closest valid one."""
    return normalize_consent(consent, where)


def _missing_msg(src: str, what: str) -> str:
    return (f"refusing to ingest {src}: no {what} given. Pass --license TEXT (e.g. CC-BY-4.0) and "
            f"--consent BASIS ({'|'.join(CONSENT_BASES)}), or give license/consent columns in a manifest.")


def check_request(sources: list, *, license: str | None, consent: str | None, source_name: str | None = None,
                  labels: str | None = None, label_map=None, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                  confine: bool = False) -> None:
    """Validate a request without a workspace (the CLI calls it before creating one). Raises IngestError."""
    _check_limits({"max_file_bytes": max_file_bytes})
    _plan(None, list(sources), license, consent, source_name, parse_spec(labels, label_map),
          {"max_file_bytes": max_file_bytes}, confine)


def _check_limits(limits: dict, workers: int | None = None) -> dict:
    """Bad numbers are usage errors, before anything is read or written. Returns the limits as ints."""
    if workers is not None and workers < 1:
        raise IngestError(f"--workers must be >= 1 (got {workers}; 1 decodes in this process)")
    out = {}
    for name, v in limits.items():
        try:
            out[name] = int(v)
        except (TypeError, ValueError):
            out[name] = 0
        if out[name] < 1:
            raise IngestError(f"--{name.replace('_', '-')} must be a positive whole number (got {v!r})")
    return out


def _plan(ws: Workspace | None, sources: list, license, consent, source_name, spec: LabelSpec,
          caps: dict, confine: bool = False) -> list[_Plan]:
    """Check everything (paths, names, licence, consent, labels) before a single row is written."""
    if not sources:
        raise IngestError("nothing to ingest: give at least one SRC (folder, zip/tar archive, CSV/JSONL manifest)")
    if source_name and len(sources) > 1:
        raise IngestError("--source-name names one source; ingest several SRCs with separate commands")
    consent = _validate_consent(consent, "--consent")
    if license is not None and not license.strip():
        license = None
    plans, used = [], set()
    for s in sources:
        src = open_source(s, max_file_bytes=caps["max_file_bytes"], confine=confine)
        row = None
        if ws is None:
            name = source_name or src.default_name
        elif source_name:
            row = ws.catalog.sources.by_name(source_name)
            name = source_name
        else:
            row = ws.catalog.sources.by_location(src.kind, src.uri)
            name = row.name if row else _unique_name(ws, src.default_name, used)
        used.add(name)
        lic = license or (row.license if row else None)
        con = consent or (row.consent if row else None)
        if spec.kind == "column":
            if src.kind != "manifest":
                raise IngestError(f"--labels column:... needs a CSV/JSONL manifest, but {s} is a {src.kind}")
            cols = set(next((r for r in src.rows() if BAD_ROW not in r), {}) or {})
            missing = [n for n in spec.names if n not in cols]
            if missing:
                raise IngestError(f"{s}: manifest has no column {', '.join(missing)} (has: {', '.join(sorted(cols))})")
        if src.kind == "manifest":
            bad_lic, bad_con = [], []
            for i, r in enumerate(src.rows(), 2):
                if BAD_ROW in r:  # an unparsable line: rejected as one row at ingest, checks nothing here
                    continue
                rc = row_value(r, "consent")
                _validate_consent(rc, f"{s} row {i}")
                if not (row_value(r, "license", "licence") or (lic and lic != PER_ROW)):
                    bad_lic.append(i)
                if not (rc or (con and con != PER_ROW)):
                    bad_con.append(i)
            if bad_lic or bad_con:
                what = "licence" if bad_lic else "consent basis"
                rows = (bad_lic or bad_con)[:5]
                raise IngestError(_missing_msg(s, what) + f" (manifest rows without one: {rows}...)")
            lic, con = lic or PER_ROW, con or PER_ROW
        elif not lic:
            raise IngestError(_missing_msg(str(s), "licence"))
        elif not con:
            raise IngestError(_missing_msg(str(s), "consent basis"))
        plans.append(_Plan(src, name, lic, con, row.id if row else None,
                           row.license if row else None, row.consent if row else None))
    return plans


def _unique_name(ws: Workspace, base: str, used: set) -> str:
    name, n = base, 1
    while name in used or ws.catalog.sources.name_taken(name):
        n += 1
        name = f"{base}-{n}"
    return name


def ingest(
    ws: Workspace,
    sources: list[str | Path],
    *,
    license: str | None,
    consent: str | None,
    source_name: str | None = None,
    labels: str | None = None,
    progress: bool = True,
    label_map: list[str] | dict | None = None,
    workers: int | None = None,
    min_side: int = DEFAULT_MIN_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    confine: bool = False,
    engine: str = "local",
    ray_address: str | None = None,
) -> IngestReport:
    """Record every file of ``sources`` in the catalog and store a clean copy of each new image.

    Raises ``IngestError`` (a ``UsageError``; nothing written) for missing licence/consent, a bad
    consent basis, bad label specs, bad limits or workers, or unreadable SRCs; per-file problems
    are rejections counted in the report, never exceptions.

    ``engine="ray"`` decodes on a Ray cluster (``ray_address``, or a local Ray with ``workers`` CPUs): this
    process reads every file, ships its bytes to the tasks and writes both the store and the catalog itself,
    in the same batches as the local pool (so results, resume and the blocklist behave the same).
    """
    t0 = time.monotonic()
    _check_engine(engine, ray_address)
    limits = {"min_side": min_side, "max_pixels": max_pixels, "max_file_bytes": max_file_bytes}
    limits = _check_limits(limits, workers)
    spec = parse_spec(labels, label_map)
    plans = _plan(ws, list(sources), license, consent, source_name, spec, limits, confine)
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    rep = IngestReport()
    orphan_keys: set[str] = set()
    if engine == "ray":
        decoder = _RayDecoder(ws.store, workers, limits, _block_templates(ws), ray_address)
    else:
        decoder = _Decoder(workers, str(ws.store.root), limits, _block_templates(ws))
    try:
        for plan in plans:
            src_id = _ensure_source(ws, plan)
            before = (rep.added, rep.duplicates, rep.n_rejected, rep.skipped)
            with bar(f"ingest {plan.name}", plan.src.count(), enabled=progress) as b:
                batch: list = []
                last = time.monotonic()
                for item, res in _results(ws, src_id, plan.src.items(), decoder):
                    b.advance()
                    batch.append((item, res))
                    if len(batch) >= BATCH_ITEMS or time.monotonic() - last >= BATCH_SECONDS:
                        _commit(ws, plan, src_id, spec, batch, rep, orphan_keys)
                        batch, last = [], time.monotonic()
                if batch:
                    _commit(ws, plan, src_id, spec, batch, rep, orphan_keys)
            rep.sources.append({
                "name": plan.name, "kind": plan.src.kind, "license": plan.license, "consent": plan.consent,
                "added": rep.added - before[0], "duplicates": rep.duplicates - before[1],
                "rejected": rep.n_rejected - before[2], "skipped": rep.skipped - before[3],
            })
    finally:
        decoder.close()
    _drop_orphans(ws, orphan_keys)
    rep.seconds = time.monotonic() - t0
    return rep


def _block_templates(ws: Workspace) -> tuple | None:
    """The blocklist for the workers, or None when it is empty (then ingest never detects faces: cheap)."""
    if not ws.catalog.blocklist.count():
        return None
    from ..privacy.blocklist import templates

    _, t, radii = templates(ws)
    return t, radii


def _ensure_source(ws: Workspace, plan: _Plan) -> int:
    if plan.existing_id is not None:
        return plan.existing_id
    # A manifest whose rows carry the consent: the source's own basis is 'unknown' (never used
    # for them: each of its images records its row's basis, as base_consent is PER_ROW).
    return ws.catalog.sources.ensure(plan.name, kind=plan.src.kind, uri=plan.src.uri, license=plan.license,
                                     consent=UNKNOWN if plan.consent == PER_ROW else plan.consent)


def _process_many(jobs: list[tuple]) -> list[tuple]:
    return [_process(*j) for j in jobs]


CHUNK_ITEMS = 16  # items per worker task: amortises inter-process overhead on small chips ...
CHUNK_BYTES = 4 * 2**20  # ... while large photos still spread over the workers
MAX_INFLIGHT_BYTES = 512 * 2**20  # bytes held by chunks in flight (archive members are read in the parent)


class _Decoder:
    """Runs ``_process`` over chunks of items in a small fork pool (or in-process for workers <= 1).

    A worker that dies (a decoder segfault, the OOM killer) must not end the batch: the pool is
    rebuilt and each item of a lost chunk is retried alone in a fresh process; the one that kills
    that process too is rejected as corrupt.
    """

    def __init__(self, workers: int, store_root: str, limits: dict, block: tuple | None = None):
        self.workers, self._init = workers, (store_root, limits, block)
        self.pool = None
        if workers <= 1:
            _init_worker(*self._init)

    def _new_pool(self, n: int) -> ProcessPoolExecutor:
        import multiprocessing as mp

        # Blocklist checks run face detection + torch in the workers. Where this process already loaded torch
        # (a library caller that scanned before), a forkserver child never inherits its torch/OpenMP threads (a
        # plain fork then can deadlock); otherwise (the CLI) fork: cheapest, nothing to inherit.
        risky = self._init[2] is not None and "torch" in sys.modules
        method = "forkserver" if risky and "forkserver" in mp.get_all_start_methods() else "fork"
        return ProcessPoolExecutor(n, mp_context=mp.get_context(method), initializer=_init_worker,
                                   initargs=self._init)

    @property
    def window(self) -> int:  # chunks in flight
        return 3 * max(1, self.workers)

    def submit(self, jobs: list[tuple]) -> Future | list[tuple]:
        if self.workers <= 1:
            return _process_many(jobs)
        if self.pool is None:
            self.pool = self._new_pool(self.workers)
        try:
            return self.pool.submit(_process_many, jobs)
        except BrokenProcessPool:  # broke since the last resolve: start over with a fresh pool
            self.close()
            return self.submit(jobs)

    def resolve(self, jobs: list[tuple], res: Future | list[tuple]) -> list[tuple]:
        if not isinstance(res, Future):
            return res
        try:
            return res.result()
        except BrokenProcessPool:
            self.close()  # the next submit starts a fresh pool
            return [self._alone(j) for j in jobs]

    def _alone(self, job: tuple) -> tuple:
        with self._new_pool(1) as p:
            try:
                return p.submit(_process, *job).result()
            except BrokenProcessPool:
                return ("rejected", None, None, "corrupt", "the image decoder crashed on this file")

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


# -- engine="ray" ----------------------------------------------------------------
def _check_engine(engine: str, ray_address: str | None) -> None:
    from ..engines import check_options

    check_options(engine, None, ray_address, error=IngestError)


class _CaptureStore:
    """The store ``_process`` sees inside a Ray task: it keeps the clean copy for the task to return (remote
    nodes share no filesystem with the workspace) and names it as ``Store.put`` would (content-addressed)."""

    def __init__(self) -> None:
        self.data: bytes | None = None

    def put(self, data: bytes, *, sync: bool = True) -> str:
        self.data = data
        return hashlib.sha256(data).hexdigest()


def _ray_process_many(limits: dict, block: tuple | None, jobs: list[tuple]) -> list[tuple]:
    """One Ray task: the local workers' own ``_process`` (decode, hash, strip, blocklist) on bytes the driver
    read. Returns (result tuple, clean bytes or None) per job; nothing is written on the worker."""
    if block is not None and not _W.get("ray_threads"):
        from ..scan.embed import worker_threads

        worker_threads(1)  # one task per CPU already
        _W["ray_threads"] = True
    _W["limits"], _W["block"] = limits, block
    out = []
    for job in jobs:
        cap = _W["store"] = _CaptureStore()
        res = _process(*job)
        out.append((res, cap.data if res[0] == "ok" else None))
    return out


class _RayDecoder:
    """``_Decoder``'s interface (submit / resolve / window / close) on Ray. The driver reads each file (the
    guarded reader), skips unchanged ones without shipping them, sends the rest's bytes, and on resolve puts
    the returned clean copies into the store (unsynced: ``_commit`` syncs once per batch, as for the pool).
    A chunk whose worker died is retried item by item; an item that kills its worker again is 'corrupt'."""

    CRASHED = ("rejected", None, None, "corrupt", "the image decoder crashed on this file")

    def __init__(self, store: Store, workers: int, limits: dict, block: tuple | None, address: str | None):
        from ..engines import get_engine

        self.workers, self.store, self.limits = workers, store, limits
        try:
            self.engine = get_engine("ray", workers, address)
        except ImportError as e:
            raise IngestError(f"--engine ray needs the 'ray' package ({e})") from e
        except ConnectionError as e:
            raise IngestError(f"cannot reach the Ray cluster at {address}: {str(e).splitlines()[0]}") from e
        self.block = self.engine.put(block) if block is not None else None

    @property
    def window(self) -> int:  # chunks in flight
        return 3 * max(1, self.workers)

    def submit(self, jobs: list[tuple]) -> tuple:
        ready: dict[int, tuple] = {}
        ship: list[tuple[int, tuple]] = []
        for i, (path, fs_path, data, known_sha) in enumerate(jobs):
            if data is None:  # the same guarded reader and messages as ``_process``
                try:
                    data = read_file(fs_path, max_file_bytes=self.limits["max_file_bytes"])
                except Rejected as r:
                    reason = "file disappeared while ingesting" if r.code == "missing" else r.reason
                    ready[i] = ("rejected", None, None, r.code, reason)
                    continue
            if known_sha is not None and hashlib.sha256(data).hexdigest() == known_sha:
                ready[i] = ("skip", known_sha, len(data))
                continue
            ship.append((i, (path, None, data, known_sha)))
        ref = self.engine.submit(_ray_process_many, self.limits, self.block, [j for _, j in ship]) if ship else None
        return ready, ship, ref

    def resolve(self, jobs: list[tuple], res: tuple) -> list[tuple]:
        from ..engines import WorkerLost

        ready, ship, ref = res
        out = dict(ready)
        if ship:
            try:
                done = self.engine.result(ref)
            except WorkerLost:
                done = [self._alone(job) for _, job in ship]
            for (i, _), (r, clean) in zip(ship, done):
                if clean is not None:
                    self.store.put(clean, sync=False)  # content-addressed: the key is r[4]
                out[i] = r
        return [out[i] for i in range(len(jobs))]

    def _alone(self, job: tuple) -> tuple:
        from ..engines import WorkerLost

        try:
            return self.engine.result(self.engine.submit(_ray_process_many, self.limits, self.block, [job]))[0]
        except WorkerLost:
            return self.CRASHED, None

    def close(self) -> None:
        self.engine.close()


def _chunks(ws: Workspace, src_id: int, items: Iterator[Item]) -> Iterator[tuple[list[Item], list]]:
    """Group items; each gets either a final result now (ignored, pre-rejected, known) or a job."""
    seen = ws.catalog.images.seen_file
    group: list[Item] = []
    slots: list = []  # per item: a result tuple, or an int index into the chunk's jobs
    jobs: list[tuple] = []
    nbytes = 0
    for it in items:
        if it.ignored:
            slots.append(("ignored",))
        else:
            known = seen(src_id, it.path)
            if it.reject is not None:
                slots.append(("skip",) if known else ("rejected", None, it.size, it.reject.code, it.reject.reason))
            else:
                slots.append(len(jobs))
                jobs.append((it.path, it.fs_path, it.data, known.sha256 if known else None))
                nbytes += it.size or 0
                it.data = None  # the job holds it until the worker has it
        group.append(it)
        if len(group) >= CHUNK_ITEMS or nbytes >= CHUNK_BYTES:
            yield group, slots, jobs
            group, slots, jobs, nbytes = [], [], [], 0
    if group:
        yield group, slots, jobs


def _results(ws: Workspace, src_id: int, items: Iterator[Item], dec: _Decoder) -> Iterator[tuple[Item, tuple]]:
    """(item, result) in input order, with at most a few chunks in flight (flat memory)."""
    window: deque = deque()

    def drain():
        group, slots, jobs, fut = window.popleft()
        done = dec.resolve(jobs, fut) if jobs else []
        for it, slot in zip(group, slots):
            yield it, done[slot] if isinstance(slot, int) else slot

    inflight: deque = deque()  # bytes per chunk in the window
    for group, slots, jobs in _chunks(ws, src_id, items):
        window.append((group, slots, jobs, dec.submit(jobs) if jobs else None))
        inflight.append(sum(len(j[2]) for j in jobs if j[2] is not None))
        while len(window) > dec.window or (len(window) > 1 and sum(inflight) > MAX_INFLIGHT_BYTES):
            inflight.popleft()
            yield from drain()
    while window:
        inflight.popleft()
        yield from drain()


def _commit(ws: Workspace, plan: _Plan, src_id: int, spec: LabelSpec, batch: list, rep: IngestReport,
            orphan_keys: set[str]) -> None:
    """One transaction per batch: files, images and labels of these items, all or nothing."""
    counts: Counter = Counter()
    if any(res[0] == "ok" for _, res in batch):
        ws.store.sync()  # the batch's stored copies are on disk before any row points at them
    origin = {"folder": "folder", "column": "manifest", "regex": "regex"}.get(spec.kind, "user")
    images, labels = ws.catalog.images, ws.catalog.labels
    with ws.catalog.tx():
        for it, res in batch:
            kind = res[0]
            if kind == "ignored":
                rep.ignored += 1
                continue
            if kind != "skip":  # the same path twice in one run (manifest rows, archive members): as a rerun would
                prev = images.seen_file(src_id, it.path)
                if prev is not None and (prev.sha256 == res[1] or res[1] is None):
                    kind = "skip"
            if kind == "skip":
                rep.skipped += 1
                counts["skipped"] += 1
                continue
            if kind == "rejected":
                _, sha, size, code, reason = res
                path = blocked_path(it.path) if code == "blocked" else it.path
                images.record_file(src_id, path, sha256=sha, size=size, image_id=None, outcome="rejected",
                                   reason_code=code, reason=reason)
                rep.rejected[code] = rep.rejected.get(code, 0) + 1
                if len(rep.rejects) < MAX_REJECTS_LISTED:
                    rep.rejects.append((path, f"{code}: {reason}"))
                counts["rejected"] += 1
                continue
            _, sha, size, psha, key, fmt, w, h, nbytes = res
            lab = spec.extract(it.path, it.columns)
            dup = images.find_duplicate(sha, psha)
            if dup is not None:
                if key != dup.store_key:
                    orphan_keys.add(key)
                conflicts = labels.merge(dup.image_id, lab, origin)
                reason = f"{dup.how.replace('_', ' ')} as image {dup.image_id}"
                if conflicts:
                    reason += "; labels differ: " + ", ".join(f"{c.name}={c.value} (kept {c.kept})" for c in conflicts)
                    rep.label_conflicts += 1
                images.record_file(src_id, it.path, sha256=sha, size=size, image_id=dup.image_id,
                                   outcome="duplicate", reason_code=dup.how, reason=reason)
                rep.duplicates += 1
                rep.duplicate_kinds[dup.how] = rep.duplicate_kinds.get(dup.how, 0) + 1
                counts["duplicates"] += 1
                continue
            lic = it.license or (plan.license if plan.license != PER_ROW else None)
            con = it.consent or (plan.consent if plan.consent != PER_ROW else None)
            img = images.add(pixel_sha=psha, sha256=sha, store_key=key, format=fmt, width=w, height=h, nbytes=nbytes,
                             source_id=src_id, license=None if lic == plan.base_license else lic,
                             consent=None if con == plan.base_consent else con, consent_expires=it.consent_expires)
            labels.add_missing(img, lab, origin)
            images.record_file(src_id, it.path, sha256=sha, size=size, image_id=img, outcome="added")
            rep.added += 1
            counts["added"] += 1
        if counts.get("added") or counts.get("duplicates") or counts.get("rejected"):
            ws.catalog.audit("ingest", source_id=src_id, **{k: counts[k] for k in
                                                            ("added", "duplicates", "rejected", "skipped")})


def _drop_orphans(ws: Workspace, keys: set[str]) -> None:
    """Clean copies of pixel-duplicates were stored by the workers before we knew; remove unreferenced ones."""
    for k in keys:
        if not ws.catalog.images.store_key_in_use(k):
            ws.store.delete(k)
