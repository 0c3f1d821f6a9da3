"""Per-face data for the identity benchmarks (issue #10), computed once through faceset's own scan pipeline.

For every photo of ../shared/data/{identities_wild, identities, utkface}: decode exactly as scan does
(``pipeline.decode``), ``analyze_rgb`` (cascade, align, quality, 128-D dlib ResNet embedding), plus the
embedding of the mirrored 150 px chip (flip test-time augmentation). Cached OUTSIDE the repository
(default /tmp/faceset_emb/<subset>.npz; ``--cache DIR``), resumable in chunks, so the CV bench never rescans.

    nice -n 10 .venv/bin/python bench/identity_data.py --subsets identities_wild identities utkface --workers 2

npz arrays, one row per detected face (every face of a photo; ``is_main`` marks the main subject):
  files (str, relative to the subset), image (int: index of the photo in labels.csv order), identity (str;
  utkface: the file name itself, every chip being its own person as far as we know), gender (str),
  is_main (bool), status (str ok|low_quality), box (x,y,w,h), score, size, blur, brightness, yaw, quality,
  emb (float32[n,128]), emb_flip (float32[n,128]).
plus ``no_face`` (files where nothing was found) and ``n_images``.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DEFAULT_CACHE = Path("/tmp/faceset_emb")
CHUNK = 200
QKEYS = ("size", "blur", "brightness", "yaw", "quality")


def rows_of(subset: str) -> list[dict]:
    """labels.csv rows with identity / gender filled in for every subset."""
    with open(DATA / subset / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    genders: dict[str, str] = {}
    if subset == "identities_wild":
        with open(DATA / subset / "identities.csv", newline="") as f:
            genders = {r["identity"]: r["gender"] for r in csv.DictReader(f)}
    out = []
    for r in rows:
        if subset == "utkface":
            out.append({"file": r["file"], "identity": "utk:" + r["file"], "gender": r.get("gender", "")})
        else:
            out.append({"file": r["file"], "identity": r["identity"], "gender": genders.get(r["identity"], "")})
    return out


_READY = False


def _work(task):
    """(index, path) -> list of face dicts (never raises)."""
    global _READY
    from faceset.scan.embed import embed_chips, worker_threads
    from faceset.scan.pipeline import analyze_rgb, decode

    if not _READY:
        worker_threads(1)
        _READY = True
    i, path = task
    try:
        rgb, k = decode(Path(path))
        faces = analyze_rgb(rgb, crops=False)
    except Exception as e:  # noqa: BLE001 - one bad file must not stop the run
        return i, [], f"{type(e).__name__}: {e}"
    if not faces:
        return i, [], None
    flip = embed_chips([np.ascontiguousarray(f.chip[:, ::-1]) for f in faces])
    out = []
    for f, fe in zip(faces, flip):
        out.append({"box": [v * k for v in f.box], "score": f.score, "is_main": f.is_main, "status": f.status,
                    **{q: float(f.quality.get(q, 0.0)) * (k if q == "size" else 1.0) for q in QKEYS},
                    "emb": f.embedding.astype(np.float32), "emb_flip": fe.astype(np.float32)})
    return i, out, None


def compute(subset: str, cache: Path, workers: int = 2, limit: int | None = None) -> Path:
    rows = rows_of(subset)[:limit]
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / f"{subset}.npz"
    if final.exists():
        return final
    parts = cache / f"{subset}.parts"
    parts.mkdir(exist_ok=True)
    t0 = time.time()
    ctx = get_context("spawn")
    with ctx.Pool(workers) as pool:
        for c0 in range(0, len(rows), CHUNK):
            part = parts / f"{c0:06d}.npy"
            if part.exists():
                continue
            tasks = [(i, str(DATA / subset / rows[i]["file"])) for i in range(c0, min(c0 + CHUNK, len(rows)))]
            res = sorted(pool.imap_unordered(_work, tasks, chunksize=4), key=lambda r: r[0])
            np.save(part, np.array(res, dtype=object), allow_pickle=True)
            done = min(c0 + CHUNK, len(rows))
            print(f"{subset}: {done}/{len(rows)} photos, {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    recs, no_face, errors = [], [], []
    for part in sorted(parts.glob("*.npy")):
        for i, faces, err in np.load(part, allow_pickle=True):
            if err:
                errors.append(rows[i]["file"])
            if not faces:
                no_face.append(rows[i]["file"])
            for f in faces:
                recs.append((i, f))
    arr = {
        "files": np.array([rows[i]["file"] for i, _ in recs]),
        "image": np.array([i for i, _ in recs], np.int64),
        "identity": np.array([rows[i]["identity"] for i, _ in recs]),
        "gender": np.array([rows[i]["gender"] for i, _ in recs]),
        "is_main": np.array([f["is_main"] for _, f in recs], bool),
        "status": np.array([f["status"] for _, f in recs]),
        "box": np.array([f["box"] for _, f in recs], np.float32).reshape(-1, 4),
        "score": np.array([f["score"] for _, f in recs], np.float32),
        **{q: np.array([f[q] for _, f in recs], np.float32) for q in QKEYS},
        "emb": np.array([f["emb"] for _, f in recs], np.float32).reshape(-1, 128),
        "emb_flip": np.array([f["emb_flip"] for _, f in recs], np.float32).reshape(-1, 128),
        "no_face": np.array(no_face), "errors": np.array(errors), "n_images": np.array(len(rows)),
    }
    tmp = cache / f"{subset}.tmp.npz"
    np.savez_compressed(str(tmp), **arr)
    os.replace(tmp, final)
    print(f"{subset}: {len(recs)} faces in {len(rows)} photos ({len(no_face)} without a face) -> {final}",
          file=sys.stderr)
    return final


def load(subset: str, cache: Path = DEFAULT_CACHE, *, main_only: bool = True) -> dict:
    """The cached arrays of one subset (main faces only by default: one labelled face per photo)."""
    z = np.load(Path(cache) / f"{subset}.npz", allow_pickle=False)
    d = {k: z[k] for k in z.files}
    n = len(d["emb"])
    if main_only:
        m = d["is_main"]
        d = {k: (v[m] if (hasattr(v, "shape") and v.ndim >= 1 and len(v) == n) else v) for k, v in d.items()}
    return d


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subsets", nargs="+", default=["identities", "identities_wild", "utkface"])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N photos only (smoke test)")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    for s in a.subsets:
        compute(s, a.cache, a.workers, a.limit)


if __name__ == "__main__":
    main()


def load_partial(subset: str, cache: Path = DEFAULT_CACHE) -> dict:
    """Main faces of the chunks computed so far (while a long run, e.g. utkface, is still going)."""
    if (Path(cache) / f"{subset}.npz").exists():
        return load(subset, cache)
    rows = rows_of(subset)
    recs, done = [], 0
    for part in sorted((Path(cache) / f"{subset}.parts").glob("*.npy")):
        for i, faces, _ in np.load(part, allow_pickle=True):
            done += 1
            for f in faces:
                if f["is_main"]:
                    recs.append((i, f))
    return {
        "files": np.array([rows[i]["file"] for i, _ in recs]), "image": np.array([i for i, _ in recs], np.int64),
        "identity": np.array([rows[i]["identity"] for i, _ in recs]),
        "gender": np.array([rows[i]["gender"] for i, _ in recs]),
        "is_main": np.ones(len(recs), bool), "status": np.array([f["status"] for _, f in recs]),
        **{q: np.array([f[q] for _, f in recs], np.float32) for q in QKEYS},
        "emb": np.array([f["emb"] for _, f in recs], np.float32).reshape(-1, 128),
        "emb_flip": np.array([f["emb_flip"] for _, f in recs], np.float32).reshape(-1, 128),
        "n_images": np.array(len(rows)), "photos_done": np.array(done),
    }
