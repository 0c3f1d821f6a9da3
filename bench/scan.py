"""Scan throughput, per-stage time, peak memory and detection quality vs face_recognition, in one run.

Side by side on the same image files and the same number of worker processes:
- ``faceset``: ``faceset.scan.scan`` (library, local engine) on a fresh workspace (ingest is not timed);
- ``face_recognition`` 1.3.0 (the widely used peer: dlib HOG upsample 1 on the full image +
  ``face_encodings``), one ``load_image_file`` + ``face_locations`` + ``face_encodings`` per image in a
  process pool -- what its own CLI and most tutorials do. Install it with ``make bench-env``.

Images (all from ../shared/data, nothing copied into the repo):
- ``identities`` (portraits, every one has a face), ``groups`` (IoU >= 0.5 against labelled boxes),
  ``nonface`` (has_face yes/no), a seeded ``utkface`` sample (frame-filling aligned chips),
- ``hard``: variants made in a temp folder from the first portraits: tilted +-30 deg, face ~48 px
  in an 800x600 frame, and a close-up tighter than the face box.

Each side runs in its own subprocess; the parent samples the RSS and CPU time of it and its workers
every 50 ms. CPU seconds are the steadier comparison on a shared machine (wall time moves with other
jobs' load). ``--rounds N`` (default 2) runs both sides N times per set, interleaved (faceset first, then
the peer first, ...), and reports the median ratios with every round's.
Camera-size photos: real portraits, group shots and pets upscaled to 4032 px on the long side (12 MP at 4:3)
in a temp folder. Per-stage seconds on both sides (the peer: decode, HOG detect, landmarks + encode).

    python bench/scan.py                      # writes bench/results/scan.{json,md}
    python bench/scan.py --utk 100 --hard 10  # quicker
    python bench/scan.py --quick              # a small sample -> bench/results/scan_quick.{json,md}
    python bench/scan.py --detector cascade --verifier off   # the previous default, for comparison

``--detector`` / ``--verifier`` are scan's options (default: scan's defaults). Faces the verifier calls
not real are not counted as found. Without face_recognition installed the peer side is skipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACESET_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import measure  # noqa: E402


def _labels(sub: str) -> list[dict]:
    with open(DATA / sub / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


# -- the image set -------------------------------------------------------------------------------
def build_set(tmp: Path, utk: int, hard: int) -> list[dict]:
    items = [{"subset": "identities", "path": str(DATA / "identities" / r["file"])} for r in _labels("identities")]
    items += [{"subset": "groups", "path": str(DATA / "groups" / r["file"]), "boxes": r["boxes"], "n": r["n_faces"]}
              for r in _labels("groups")]
    items += [{"subset": "nonface", "path": str(DATA / "nonface" / r["file"]), "has_face": r["has_face"],
               "kind": r["kind"]} for r in _labels("nonface")]
    u = _labels("utkface")
    random.Random(0).shuffle(u)
    items += [{"subset": "utkface", "path": str(DATA / "utkface" / r["file"])} for r in u[:utk]]
    items += make_hard(tmp / "hard", hard)
    return items


def make_camera(out: Path, n: int) -> list[dict]:
    """Phone-camera-sized copies (long side 4032 px, JPEG q90) of real portraits, group shots and pets."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    portraits = [r for r in _labels("identities") if "chip" not in r["note"] and "partial" not in r["note"]]
    picks = [("identities", DATA / "identities" / r["file"]) for r in portraits[::3][:n]]
    picks += [("groups", DATA / "groups" / r["file"]) for r in _labels("groups")[: max(1, n // 4)]]
    picks += [("nonface", DATA / "nonface" / r["file"]) for r in _labels("nonface")
              if r["has_face"] == "no"][::7][: max(1, n // 4)]
    items = []
    for i, (sub, src) in enumerate(picks):
        with Image.open(src) as im:
            im = im.convert("RGB")
            k = 4032 / max(im.size)
            big = im.resize((round(im.width * k), round(im.height * k)), Image.BICUBIC)
        p = out / f"camera-{i}.jpg"
        big.save(p, quality=90)
        it = {"subset": f"camera {sub}", "path": str(p)}
        if sub == "nonface":
            it.update(has_face="no", kind="camera")
        items.append(it)
    return items


def make_hard(out: Path, n: int) -> list[dict]:
    """Tilted, small and close-up variants of real portraits (boxes from faceset's detection of the original)."""
    import numpy as np
    from PIL import Image

    from faceset.scan import analyze

    out.mkdir(parents=True, exist_ok=True)
    items = []
    rows = [r for r in _labels("identities") if "chip" not in r["note"] and "partial" not in r["note"]]
    for r in rows:
        if len(items) >= 4 * n:
            break
        with Image.open(DATA / "identities" / r["file"]) as im:
            im = im.convert("RGB")
        if max(im.size) < 300:
            continue
        faces = analyze(np.asarray(im), embed=False, crops=False)
        if not faces:
            continue
        x, y, w, h = faces[0].box
        stem = Path(r["file"]).stem + "-" + str(len(items))
        for ang in (30, -30):
            p = out / f"{stem}-rot{ang}.jpg"
            im.rotate(ang, resample=Image.BILINEAR, expand=True, fillcolor=(128, 128, 128)).save(p, quality=92)
            items.append({"subset": "hard", "variant": "tilted 30", "path": str(p)})
        k = 48 / w
        small = im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))), Image.LANCZOS)
        canvas = Image.new("RGB", (800, 600), (100, 110, 100))
        canvas.paste(small, (min(500, 800 - small.width), 80))
        p = out / f"{stem}-small.jpg"
        canvas.save(p, quality=92)
        items.append({"subset": "hard", "variant": "small 48px", "path": str(p)})
        m = 0.1
        p = out / f"{stem}-close.jpg"
        im.crop((int(x + m * w), int(y + m * h), int(x + w - m * w), int(y + h - m * h))).save(p, quality=92)
        items.append({"subset": "hard", "variant": "close-up", "path": str(p)})
    return items


# -- the two sides (each in its own process) -----------------------------------------------------
def run_faceset(items: list[dict], workers: int, tmp: Path, opts: dict | None = None) -> dict:
    from faceset import init_workspace
    from faceset.ingest import ingest
    from faceset.scan import scan

    man = tmp / "manifest.csv"
    with open(man, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path"])
        w.writerows([[it["path"]] for it in items])
    ws = init_workspace(tmp / "ws")
    t = time.perf_counter()
    ing = ingest(ws, [man], license="bench", consent="research_exemption", progress=False)
    t_ingest = time.perf_counter() - t
    n_images = ws.catalog.scalar("SELECT COUNT(*) FROM images")
    # every file must be in the catalog (byte-identical copies merge), or the comparison is unfair
    assert ing.n_rejected == 0 and n_images + ing.duplicates == len(items), ing.to_dict()
    t = time.perf_counter()
    rep = scan(ws, workers=workers, progress=False, **(opts or {}))
    dt = time.perf_counter() - t
    assert rep.scanned == n_images and rep.errors == 0, rep.to_dict()
    img_of = {r["path"]: r["image_id"] for r in ws.catalog.q("SELECT path, image_id FROM files")}
    boxes: dict[int, list] = {}
    for r in ws.catalog.q("SELECT image_id, x, y, w, h FROM faces WHERE status != 'not_real_face' "
                          "ORDER BY image_id, idx"):
        boxes.setdefault(r["image_id"], []).append([r["x"], r["y"], r["w"], r["h"]])
    return {"seconds": dt, "ingest_seconds": t_ingest, "images": n_images, "report": rep.to_dict(),
            "boxes": {it["path"]: boxes.get(img_of.get(it["path"]), []) for it in items}}


def _peer_one(path: str):
    import face_recognition

    t0 = time.perf_counter()
    img = face_recognition.load_image_file(path)
    t1 = time.perf_counter()
    locs = face_recognition.face_locations(img)  # HOG, upsample 1 (its default)
    t2 = time.perf_counter()
    face_recognition.face_encodings(img, locs)
    t3 = time.perf_counter()
    return path, [[l, t, r - l, b - t] for t, r, b, l in locs], {"decode": t1 - t0, "detect": t2 - t1,
                                                                "landmarks+encode": t3 - t2}


def run_peer(items: list[dict], workers: int, tmp: Path) -> dict:
    measure.shim_pkg_resources()
    import face_recognition  # noqa: F401  (fail here, not in a worker)

    t = time.perf_counter()
    res, stages = {}, {}
    with ProcessPoolExecutor(workers) as ex:
        for path, boxes, st in ex.map(_peer_one, [it["path"] for it in items], chunksize=4):
            res[path] = boxes
            for k, v in st.items():
                stages[k] = stages.get(k, 0.0) + v
    return {"seconds": time.perf_counter() - t, "images": len(items), "boxes": res,
            "stage_seconds": {k: round(v, 3) for k, v in stages.items()}}


def child(side: str, manifest: Path, workers: int, out: Path, opts: dict | None = None) -> None:
    items = json.loads(manifest.read_text())
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-scan-{side}-"))
    r = run_faceset(items, workers, tmp, opts) if side == "faceset" else run_peer(items, workers, tmp)
    out.write_text(json.dumps(r))


def run_side(side: str, manifest: Path, workers: int, tmp: Path, opts: dict | None = None) -> dict:
    import psutil

    out = tmp / f"{side}.json"
    extra = [x for k, v in (opts or {}).items() for x in (f"--{k}", v)]
    p = subprocess.Popen([sys.executable, __file__, "--child", side, "--manifest", str(manifest),
                          "--workers", str(workers), "--out", str(out), *extra])
    proc, peak = psutil.Process(p.pid), 0
    cpu: dict[int, float] = {}  # pid -> last seen user+system seconds (wall time moves with the machine's load)
    while p.poll() is None:
        try:
            procs = [proc] + proc.children(recursive=True)
            rss = 0
            for c in procs:
                try:
                    rss += c.memory_info().rss
                    t = c.cpu_times()
                    cpu[c.pid] = t.user + t.system
                except psutil.Error:
                    pass
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    if p.returncode:
        raise SystemExit(f"{side} failed ({p.returncode})")
    r = json.loads(out.read_text())
    r["peak_rss_mb"] = round(peak / 2**20, 1)
    r["cpu_seconds"] = round(sum(cpu.values()), 1)
    return r


# -- scoring ---------------------------------------------------------------------------------------
def _iou(a, b) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter) if inter > 0 else 0.0


def score(items: list[dict], boxes: dict) -> dict:
    s: dict = {}

    def frac(k, num, den):
        s[k] = {"found": num, "of": den, "rate": round(num / den, 4) if den else None}

    for sub in ("identities", "utkface", "camera identities", "camera groups"):
        its = [it for it in items if it["subset"] == sub]
        if not its:
            continue
        frac(f"{sub} with a face", sum(bool(boxes[it["path"]]) for it in its), len(its))
    for v in ("tilted 30", "small 48px", "close-up"):
        its = [it for it in items if it.get("variant") == v]
        if not its:
            continue
        frac(f"hard: {v}", sum(bool(boxes[it["path"]]) for it in its), len(its))
    neg = [it for it in items if it.get("has_face") == "no"]
    pos = [it for it in items if it.get("has_face") == "yes"]
    frac("no-face images rejected", sum(not boxes[it["path"]] for it in neg), len(neg))
    if pos:
        frac("nonface kept (has_face=yes)", sum(bool(boxes[it["path"]]) for it in pos), len(pos))
    fa: dict[str, int] = {}
    for it in neg:
        if boxes[it["path"]]:
            fa[it["kind"]] = fa.get(it["kind"], 0) + 1
    s["false accepts by kind"] = fa
    tp = n = 0
    over = 0
    for it in (it for it in items if it["subset"] == "groups"):
        dets = boxes[it["path"]]
        over += max(0, len(dets) - int(it["n"]))
        if it["boxes"]:
            gt = [list(map(float, b.split(","))) for b in it["boxes"].split(";")]
            tp += sum(any(_iou(g, d) >= 0.5 for d in dets) for g in gt)
            n += len(gt)
    if n:
        frac("groups boxes found (IoU>=0.5)", tp, n)
        s["groups extra faces (over n_faces)"] = over
    return s


def _have_peer() -> bool:
    import importlib.util

    return importlib.util.find_spec("face_recognition") is not None


def _median(v: list[float]) -> float:
    v = sorted(v)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def compare(name: str, items: list[dict], workers: int, tmp: Path, opts: dict | None = None,
            rounds: int = 1) -> dict:
    """Both sides ``rounds`` times, interleaved A B B A ... (the machine's load drifts): median ratios."""
    if not _have_peer() or rounds <= 1:
        return compare_once(name, items, workers, tmp, opts)
    runs = []
    for i in range(rounds):
        runs.append(compare_once(name, items, workers, tmp, opts, peer_first=bool(i % 2)))
    r = dict(runs[0])
    r["rounds"] = [{"speed_ratio": x["speed_ratio"], "cpu_ratio": x["cpu_ratio"],
                    "faceset_images_per_s": x["faceset"]["images_per_s"],
                    "peer_images_per_s": x["face_recognition"]["images_per_s"],
                    "faceset_cpu_seconds": x["faceset"]["cpu_seconds"],
                    "peer_cpu_seconds": x["face_recognition"]["cpu_seconds"],
                    "order": "peer first" if i % 2 else "faceset first"} for i, x in enumerate(runs)]
    r["speed_ratio"] = round(_median([x["speed_ratio"] for x in runs]), 2)
    r["cpu_ratio"] = round(_median([x["cpu_ratio"] for x in runs]), 2)
    for side in ("faceset", "face_recognition"):
        r[side] = dict(r[side])
        r[side]["peak_rss_mb"] = max(x[side]["peak_rss_mb"] for x in runs)
    return r


def compare_once(name: str, items: list[dict], workers: int, tmp: Path, opts: dict | None = None,
                 peer_first: bool = False) -> dict:
    man = tmp / f"{name}.json"
    man.write_text(json.dumps(items))
    if peer_first and _have_peer():
        peer = run_side("face_recognition", man, workers, tmp)
    fs = run_side("faceset", man, workers, tmp, opts)
    by_sub: dict = {}
    for it in items:
        by_sub[it["subset"]] = by_sub.get(it["subset"], 0) + 1
    fs_ips = len(items) / fs["seconds"]
    if not _have_peer():  # `make bench-env` installs it
        return {"images": len(items), "by_subset": by_sub, "peer_skipped": "face_recognition not installed",
                "faceset": {"seconds": round(fs["seconds"], 2), "images_per_s": round(fs_ips, 2),
                            "peak_rss_mb": fs["peak_rss_mb"], "cpu_seconds": fs["cpu_seconds"],
                            "stage_cpu_seconds": fs["report"]["stage_seconds"], "faces": fs["report"]["faces"],
                            "not_real": fs["report"].get("not_real", 0), "quality": score(items, fs["boxes"])}}
    if not peer_first:
        peer = run_side("face_recognition", man, workers, tmp)
    peer_ips = len(items) / peer["seconds"]
    return {
        "images": len(items), "by_subset": by_sub,
        "faceset": {"seconds": round(fs["seconds"], 2), "images_per_s": round(fs_ips, 2),
                    "peak_rss_mb": fs["peak_rss_mb"], "cpu_seconds": fs["cpu_seconds"],
                    "stage_cpu_seconds": fs["report"]["stage_seconds"],
                    "faces": fs["report"]["faces"], "quality": score(items, fs["boxes"])},
        "face_recognition": {"seconds": round(peer["seconds"], 2), "images_per_s": round(peer_ips, 2),
                             "peak_rss_mb": peer["peak_rss_mb"], "cpu_seconds": peer["cpu_seconds"],
                             "stage_cpu_seconds": peer["stage_seconds"], "quality": score(items, peer["boxes"])},
        "speed_ratio": round(fs_ips / peer_ips, 2),
        "cpu_ratio": round(peer["cpu_seconds"] / fs["cpu_seconds"], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--utk", type=int, default=300)
    ap.add_argument("--hard", type=int, default=30, help="portraits to make hard variants from (4 each)")
    ap.add_argument("--camera", type=int, default=16, help="portraits upscaled to 4032 px (+ n/4 groups, n/4 pets)")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--rounds", type=int, default=2,
                    help="runs of both sides per set, interleaved (faceset first, then peer first, ...): median")
    ap.add_argument("--child")
    ap.add_argument("--manifest", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--detector", default=None, help="scan's detector (default: scan's default)")
    ap.add_argument("--verifier", default=None, help="scan's real-face verifier (default: scan's default)")
    ap.add_argument("--quick", action="store_true",
                    help="a small sample (every 4th portrait, every 8th nonface, 20 utk, 3 hard, 2 camera)")
    a = ap.parse_args()
    opts = {k: v for k, v in (("detector", a.detector), ("verifier", a.verifier)) if v}
    if a.child:
        return child(a.child, a.manifest, a.workers, a.out, opts)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    tmp = Path(tempfile.mkdtemp(prefix="bench-scan-"))
    if a.quick:
        a.utk, a.hard, a.camera = min(a.utk, 20), min(a.hard, 3), min(a.camera, 2)
    items = build_set(tmp, a.utk, a.hard)
    if a.quick:
        items = ([it for it in items if it["subset"] == "identities"][::4]
                 + [it for it in items if it["subset"] == "groups"]
                 + [it for it in items if it["subset"] == "nonface"][::8]
                 + [it for it in items if it["subset"] not in ("identities", "groups", "nonface")])
    sets = {"shared data": items}
    if a.camera:
        sets["camera-size photos"] = make_camera(tmp / "camera", a.camera)
    from faceset.scan import pipeline

    res = {"command": "python bench/scan.py" + "".join(f" {x}" for x in sys.argv[1:]),
           "machine": {"cpus": os.cpu_count(), "workers": a.workers, "python": platform.python_version()},
           "detector": opts.get("detector", pipeline.DEFAULT_DETECTOR),
           "verifier": opts.get("verifier", pipeline.DEFAULT_VERIFIER),
           "rounds": a.rounds, "sets": {k: compare(k, v, a.workers, tmp, opts, a.rounds) for k, v in sets.items()}}
    OUT.mkdir(parents=True, exist_ok=True)
    stem = "scan_quick" if a.quick else "scan"
    (OUT / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    (OUT / f"{stem}.md").write_text(to_md(res))
    print(to_md(res))


def to_md(res: dict) -> str:
    L = [f"# Scan: faceset vs face_recognition 1.3.0 (same images, {res['machine']['workers']} worker processes each)",
         "", f"`{res['command']}` ({res['machine']['cpus']} CPUs); faceset detector "
         f"{res.get('detector', 'cascade')}, verifier {res.get('verifier', 'off')}", ""]
    for name, r in res["sets"].items():
        fs = r["faceset"]
        if "face_recognition" not in r:  # peer skipped
            L += [f"## {name}: {r['images']} images {r['by_subset']} (peer skipped: {r['peer_skipped']})", "",
                  "| | faceset |", "|---|---:|", f"| images/s | {fs['images_per_s']} |",
                  f"| wall seconds | {fs['seconds']} |", f"| CPU seconds, all processes | {fs['cpu_seconds']} |",
                  f"| peak RSS, all processes (MB) | {fs['peak_rss_mb']} |",
                  f"| faces stored / not real | {fs['faces']} / {fs.get('not_real', 0)} |"]
            for k, v in fs["quality"].items():
                L.append(f"| {k} | {v['found']}/{v['of']} ({v['rate']:.1%}) |" if isinstance(v, dict) and "rate" in v
                         else f"| {k} | {v} |")
            L += ["", "faceset worker seconds by stage (wall time inside the workers, summed): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in fs["stage_cpu_seconds"].items()), ""]
            continue
        pe = r["face_recognition"]
        L += [f"## {name}: {r['images']} images {r['by_subset']}", "",
              "| | faceset | face_recognition | faceset / peer |", "|---|---:|---:|---:|",
              f"| images/s | {fs['images_per_s']} | {pe['images_per_s']} | {r['speed_ratio']}x |",
              f"| wall seconds | {fs['seconds']} | {pe['seconds']} | |",
              f"| CPU seconds, all processes (incl. model loading) | {fs['cpu_seconds']} | {pe['cpu_seconds']} "
              f"| {r['cpu_ratio']}x less |",
              f"| peak RSS, all processes (MB) | {fs['peak_rss_mb']} | {pe['peak_rss_mb']} | |"]
        for k, v in fs["quality"].items():
            p = pe["quality"][k]
            if isinstance(v, dict) and "rate" in v:
                L.append(f"| {k} | {v['found']}/{v['of']} ({v['rate']:.1%}) "
                         f"| {p['found']}/{p['of']} ({p['rate']:.1%}) | |")
            else:
                L.append(f"| {k} | {v} | {p} | |")
        L += ["", "faceset worker seconds by stage (wall time inside the workers, summed): "
              + ", ".join(f"{k} {v:.1f}" for k, v in fs["stage_cpu_seconds"].items()),
              "", "face_recognition worker seconds by stage: "
              + ", ".join(f"{k} {v:.1f}" for k, v in pe.get("stage_cpu_seconds", {}).items()), ""]
        if r.get("rounds"):
            L += [f"Ratios above: median of {len(r['rounds'])} interleaved rounds (first round's quality rows); "
                  "per round (images/s ratio, CPU ratio): "
                  + "; ".join(f"{x['order']}: {x['speed_ratio']}x, {x['cpu_ratio']}x" for x in r["rounds"]), ""]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
