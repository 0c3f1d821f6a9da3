"""Landmark conversion for the CNN detectors, and whether their chips stay compatible with the embedding.

CenterFace / YuNet give eye centres, nose tip and mouth corners; scan's alignment and the dlib
ResNet expect dlib's 5 points (eye corners, nose base). On faces that both the cascade and a CNN
detector find (identities + an identities_wild sample), this script

1. measures (on identities only) the conversion constants used by ``faceset.scan.cnn_detectors``: dlib's mean 5-point
   shape in a common frame (generalised Procrustes) and the CNN's mean 5 points in the same frame
   (``template`` method), and the CNN-box -> HOG-box mapping (``dlib`` method: dlib's 5-point shape
   predictor run inside the converted box);
2. embeds each face's chip aligned by the current path (cascade landmarks) and by each new path and
   reports the distance between them (same face, same image), and verification on identities_wild
   (TAR / FAR at the project's thresholds 0.36 forget, 0.57 people, 0.6 dlib's own) for
   old-old, new-new and old-enrolled vs new-probed pairs.

    nice -n 10 .venv/bin/python bench/cnn_align.py [--wild 500] [--print-constants]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from detect_data import load_rgb, portraits  # noqa: E402

OUT = ROOT / "bench" / "results"
DETECTORS = ("centerface", "yunet")


def gpa(shapes: np.ndarray, iters: int = 10) -> np.ndarray:
    from faceset.scan.cnn_detectors import apply, similarity

    ref = shapes[0]
    for _ in range(iters):
        al = np.stack([apply(similarity(s, ref), s) for s in shapes])
        ref = np.median(al, 0)
    # express in a readable 150 px frame: eye-centre distance 45 px, eyes at y = 58, centred
    e1, e2 = ref[2:4].mean(0), ref[0:2].mean(0)  # image-left eye, image-right eye
    src = np.array([e1, e2])
    dst = np.array([[52.5, 58.0], [97.5, 58.0]])
    from faceset.scan.cnn_detectors import apply as ap
    from faceset.scan.cnn_detectors import similarity as sim

    M = sim(np.vstack([src, src.mean(0)]), np.vstack([dst, dst.mean(0)]))
    return ap(M, ref)


def collect(items, limit_s: float | None = None):
    from faceset.scan import cascade
    from faceset.scan.cascade import iou
    from faceset.scan.cnn_detectors import get_detector

    recs = []
    t0 = time.perf_counter()
    for it in items:
        rgb = load_rgb(it["path"])
        c = cascade.find_faces(rgb)
        if not c:
            continue
        main = max(c, key=lambda d: (d.box[2] - d.box[0]))
        rec = {"item": it, "rgb": rgb, "dlib": main}
        for name in DETECTORS:
            ds = get_detector(name).detect(rgb, 0.3)
            best = max(ds, key=lambda d: iou(d.box, main.box), default=None)
            if best is not None and iou(best.box, main.box) >= 0.3:
                rec[name] = best
        recs.append(rec)
        if limit_s and time.perf_counter() - t0 > limit_s:
            break
    return recs


def constants(recs) -> dict:
    from faceset.scan.cnn_detectors import apply, similarity

    dl = np.stack([r["dlib"].landmarks for r in recs])
    ref = gpa(dl)
    out = {"DLIB_CHIP_5": np.round(ref, 2).tolist(), "CNN_CHIP_5": {}, "BOX_TO_HOG": {}}
    for name in DETECTORS:
        rs = [r for r in recs if name in r]
        pts = np.stack([apply(similarity(r["dlib"].landmarks, ref), r[name].extra["cnn_landmarks"]) for r in rs])
        out["CNN_CHIP_5"][name] = np.round(np.median(pts, 0), 2).tolist()
        dx, dy, k = [], [], []
        for r in rs:
            l, t, rr, b = r[name].box
            w, h = rr - l, b - t
            L, T, R, B = r["dlib"].box
            dx.append(((L + R) / 2 - (l + rr) / 2) / w)
            dy.append(((T + B) / 2 - (t + b) / 2) / h)
            k.append((R - L) / np.sqrt(w * h))
        out["BOX_TO_HOG"][name] = [round(float(np.median(v)), 4) for v in (dx, dy, k)]
        out.setdefault("n_faces", {})[name] = len(rs)
    return out


def embed_paths(recs) -> dict:
    from faceset.scan import align
    from faceset.scan.cnn_detectors import to_dlib_landmarks
    from faceset.scan.embed import embed_chips

    paths = {"current": []}
    keys = ["current"] + [f"{n}:{m}" for n in DETECTORS for m in ("template", "dlib")]
    for k in keys:
        paths[k] = []
    for r in recs:
        rgb = r["rgb"]
        shapes = {"current": align.shape_of(r["dlib"].landmarks, r["dlib"].box)}
        for n in DETECTORS:
            if n not in r:
                continue
            for m in ("template", "dlib"):
                d = r[n]
                to_dlib_landmarks(rgb, [d], m)
                shapes[f"{n}:{m}"] = align.shape_of(d.landmarks, d.box)
        ks = list(shapes)
        embs = embed_chips(align.chips(rgb, [shapes[k] for k in ks]))
        for k in keys:
            paths[k].append(embs[ks.index(k)] if k in shapes else None)
    return paths


def verification(ids: list[str], a: list, b: list, thresholds=(0.36, 0.57, 0.6)) -> dict:
    ok = [i for i in range(len(ids)) if a[i] is not None and b[i] is not None]
    A = np.stack([a[i] for i in ok])
    B = np.stack([b[i] for i in ok])
    lab = np.array([ids[i] for i in ok])
    D = np.linalg.norm(A[:, None] - B[None], axis=2)
    same = lab[:, None] == lab[None]
    off = ~np.eye(len(ok), dtype=bool)
    gen, imp = D[same & off], D[~same]
    return {"faces": len(ok), "genuine_pairs": int(gen.size), "impostor_pairs": int(imp.size),
            **{f"tar@{t}": round(float((gen < t).mean()), 4) for t in thresholds},
            **{f"far@{t}": round(float((imp < t).mean()), 5) for t in thresholds}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wild", type=int, default=500)
    ap.add_argument("--print-constants", action="store_true")
    a = ap.parse_args(argv)
    from faceset.scan.embed import worker_threads

    worker_threads(1)
    t0 = time.perf_counter()
    items = portraits(wild=a.wild)
    recs = collect(items)
    t1 = time.perf_counter()
    # constants from identities only; identities_wild (the verification set) never tunes them
    const = constants([r for r in recs if r["item"]["subset"] == "identities"])
    from faceset.scan import cnn_detectors as cd

    cd.DLIB_CHIP_5 = np.array(const["DLIB_CHIP_5"])
    cd.CNN_CHIP_5 = {k: np.array(v) for k, v in const["CNN_CHIP_5"].items()}
    cd.BOX_TO_HOG = {k: tuple(v) for k, v in const["BOX_TO_HOG"].items()}
    if a.print_constants:
        print(json.dumps(const, indent=1))
    paths = embed_paths(recs)
    res = {"faces_compared": len(recs), "images": len(items), "constants": const, "distance_to_current": {},
           "verification": {}}
    cur = paths["current"]
    for k, v in paths.items():
        if k == "current":
            continue
        d = np.array([np.linalg.norm(x - y) for x, y in zip(cur, v) if y is not None])
        res["distance_to_current"][k] = {"n": int(d.size), "median": round(float(np.median(d)), 4),
                                         "p90": round(float(np.percentile(d, 90)), 4),
                                         "max": round(float(d.max()), 4)}
    wild = [i for i, r in enumerate(recs) if r["item"]["subset"] == "identities_wild"]
    ids = [recs[i]["item"]["identity"] for i in wild]
    for k, v in paths.items():
        vv = [v[i] for i in wild]
        cc = [cur[i] for i in wild]
        both = [x is not None for x in vv]
        res["verification"][k] = verification(ids, [c if o else None for c, o in zip(cc, both)] if k != "current"
                                               else cc, vv)
        if k != "current":
            res["verification"][k + " (current enrolled, new probed)"] = verification(
                ids, [c if o else None for c, o in zip(cc, both)], [x for x in vv])
            res["verification"][k + " (current, same faces)"] = verification(
                ids, [c if o else None for c, o in zip(cc, both)], [c if o else None for c, o in zip(cc, both)])
            res["verification"][k] = verification(ids, vv, vv)
    res["seconds"] = {"detect": round(t1 - t0, 1), "total": round(time.perf_counter() - t0, 1)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cnn_align.json").write_text(json.dumps(res, indent=1))
    lines = ["# CNN detector landmarks -> dlib alignment: embedding compatibility", "",
             f"{len(recs)} faces found by the cascade (identities + identities_wild sample of {a.wild}); "
             "a CNN detection matches at IoU >= 0.3.", "",
             "## Distance between the embedding of the same face, current chip vs new chip", "",
             "| path | faces | median | p90 | max |", "|---|---|---|---|---|"]
    for k, v in res["distance_to_current"].items():
        lines.append(f"| {k} | {v['n']} | {v['median']} | {v['p90']} | {v['max']} |")
    lines += ["", "Same-face noise of the current path (mirror, rescale) is 0.05-0.35.", "",
              "## Verification on identities_wild (all pairs)", "",
              "| embeddings | faces | TAR@0.36 | FAR@0.36 | TAR@0.57 | FAR@0.57 | TAR@0.6 | FAR@0.6 |",
              "|---|---|---|---|---|---|---|---|"]
    for k, v in res["verification"].items():
        lines.append(f"| {k} | {v['faces']} | {v['tar@0.36']} | {v['far@0.36']} | {v['tar@0.57']} | "
                     f"{v['far@0.57']} | {v['tar@0.6']} | {v['far@0.6']} |")
    lines += ["", "## Constants (pasted into faceset/scan/cnn_detectors.py)", "", "```",
              json.dumps(const, indent=1), "```"]
    (OUT / "cnn_align.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return res


if __name__ == "__main__":
    main()
