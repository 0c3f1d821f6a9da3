"""Face embedding speed: dlib's ResNet (dlib-bin) vs faceset's torch port of the same network.

Same chips, same process, batch 1 / 16 / 64, torch on N threads (default 2). Also records the
max |torch - dlib| over the chips so a speed number never comes without the match it stands for.

    python bench/embed.py            # writes bench/results/embed.json and embed.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACESET_DATA", ROOT.parent / "shared" / "data"))


def real_chips(n: int) -> np.ndarray:
    """n aligned 150 px chips: dlib's own johns chips, then HOG + 5-point chips from UTKFace."""
    import csv

    import dlib
    from PIL import Image

    from faceset.model_files import face_model

    out = []
    with open(DATA / "identities" / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["identity"].startswith("john_") and len(out) < n // 2:
                out.append(np.asarray(Image.open(DATA / "identities" / row["file"]).convert("RGB")))
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(face_model("landmarks5")))
    with open(DATA / "utkface" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows[:: max(1, len(rows) // (4 * n))]:
        if len(out) >= n:
            break
        img = np.asarray(Image.open(DATA / "utkface" / row["file"]).convert("RGB"))
        dets = det(img, 1)
        if len(dets):
            out.append(dlib.get_face_chip(img, sp(img, dets[0]), size=150))
    return np.stack(out)


def timed(fn, repeats: int) -> tuple[float, float]:
    """Best wall and best process-CPU seconds over repeats (other jobs share this machine)."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--repeats", type=int, default=3, help="dlib: best of N (the machine is shared)")
    ap.add_argument("--torch-repeats", type=int, default=10, help="torch: best of N (cheap, so more)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    a = ap.parse_args()

    import dlib
    import torch

    from faceset.model_files import face_model
    from faceset.scan.dlib_resnet import embed_chips_torch, load_model

    torch.set_num_threads(a.threads)
    chips = real_chips(a.chips)
    n = len(chips)
    batches = [int(b) for b in a.batches.split(",")]
    rec = dlib.face_recognition_model_v1(str(face_model("resnet")))

    t = time.perf_counter()
    load_model("cpu")
    load_s = time.perf_counter() - t

    def dlib_run(bs: int):
        if bs == 1:
            return [rec.compute_face_descriptor(c) for c in chips]
        res = []
        for s in range(0, n, bs):
            res += list(rec.compute_face_descriptor([np.ascontiguousarray(c) for c in chips[s : s + bs]]))
        return res

    ref = np.array([np.asarray(v, np.float32) for v in dlib_run(1)])
    ours = embed_chips_torch(chips, batch_size=64, device="cpu")  # also warms up torch
    max_diff = float(np.abs(ours - ref).max())

    rows = []
    for bs in batches:
        d, dc = timed(lambda bs=bs: dlib_run(bs), a.repeats)
        t_, tc = timed(lambda bs=bs: embed_chips_torch(chips, batch_size=bs, device="cpu"), a.torch_repeats)
        rows.append({"batch": bs, "dlib_faces_per_s": n / d, "torch_faces_per_s": n / t_,
                     "dlib_ms_per_face": 1000 * d / n, "torch_ms_per_face": 1000 * t_ / n, "ratio": d / t_,
                     "dlib_cpu_ms_per_face": 1000 * dc / n, "torch_cpu_ms_per_face": 1000 * tc / n})
        print(f"batch {bs:3d}: dlib {n / d:7.1f} faces/s   torch {n / t_:7.1f} faces/s   x{d / t_:.2f}",
              file=sys.stderr)

    result = {
        "bench": "embed",
        "command": "python bench/embed.py " + " ".join(sys.argv[1:]),
        "chips": n,
        "torch_threads": a.threads,
        "torch_version": torch.__version__,
        "dlib_version": dlib.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_model_load_s": load_s,
        "max_abs_diff_vs_dlib": max_diff,
        "rows": rows,
        "note": "shared 2-core machine: best of --repeats; dlib-bin computes on one thread; CPU ms counts all threads",
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "embed.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# Face embedding: dlib ResNet vs faceset torch port",
        "",
        f"`{result['command']}` — {n} real chips, torch {torch.__version__} on {a.threads} threads, "
        f"dlib {dlib.__version__}; max |torch - dlib| = {max_diff:.2g}; model load {load_s:.2f} s.",
        "",
        "| batch | dlib faces/s | torch faces/s | torch / dlib speed | dlib CPU ms/face | torch CPU ms/face |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    md += [f"| {r['batch']} | {r['dlib_faces_per_s']:.1f} | {r['torch_faces_per_s']:.1f} | {r['ratio']:.1f}x | "
           f"{r['dlib_cpu_ms_per_face']:.1f} | {r['torch_cpu_ms_per_face']:.1f} |" for r in rows]
    md += ["", "faces/s: wall clock, best of --repeats. CPU ms/face: process CPU time (torch counts both threads)."]
    (a.out / "embed.md").write_text("\n".join(md) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
