"""Scan-time cost of flip test-time augmentation (issue #10 item 5), measured inside one scan worker.

Per photo, what a scan worker does (``pipeline.decode`` + ``analyze_rgb``: detect, align, embed, verify,
quality), then the extra work a flip kind adds (``embed.embed_faces``: the mirrored chips through the ResNet,
in one batch with the plain ones). Rounds interleave the two so the shared machine's load hits both; CPU
seconds of this process (1 torch thread, as scan's workers run) are the steadier number. The scan goal is
3x face_recognition's images/s (bench/results/scan.md): multiply that ratio by raw / flip images per CPU-second.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/embed_tta.py [--photos 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = Path(os.environ.get("FACESET_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "bench" / "results"


def photos(n: int) -> list[Path]:
    """Half identities portraits, half groups (several faces a photo), from ../shared/data (read in place)."""
    with open(DATA / "identities" / "labels.csv", newline="") as f:
        ids = [DATA / "identities" / r["file"] for r in csv.DictReader(f)]
    groups = sorted(p for p in (DATA / "groups").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return ids[:: max(1, len(ids) // (n - n // 2))][: n - n // 2] + groups[: n // 2]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kind", default="flip_unit")
    a = ap.parse_args(argv)
    from faceset.scan import embed as E
    from faceset.scan.pipeline import analyze_rgb, decode

    E.worker_threads(1)
    ps = photos(a.photos)
    analyze_rgb(decode(ps[0])[0])  # model loads out of the timing
    rows = []
    for r in range(a.rounds):
        for side in (("raw", a.kind) if r % 2 == 0 else (a.kind, "raw")):
            c0, w0, faces = time.process_time(), time.perf_counter(), 0
            for p in ps:
                rgb, _ = decode(p)
                fs = analyze_rgb(rgb)
                faces += len(fs)
                if side != "raw" and fs:  # the mirrored chips: the only extra work of a flip kind (+ represent)
                    flip = E.embed_chips([f.chip[:, ::-1].copy() for f in fs])
                    E.represent(np.stack([f.embedding for f in fs]), flip, side)
            rows.append({"round": r, "kind": side, "cpu_s": round(time.process_time() - c0, 2),
                         "wall_s": round(time.perf_counter() - w0, 2), "faces": faces})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    med = {}
    for k in ("raw", a.kind):
        cpu = sorted(x["cpu_s"] for x in rows if x["kind"] == k)
        med[k] = cpu[len(cpu) // 2]
    ratio = med["raw"] / med[a.kind]
    res = {"photos": len(ps), "faces_per_pass": rows[0]["faces"], "rounds": rows, "median_cpu_s": med,
           "images_per_cpu_s": {k: round(len(ps) / v, 3) for k, v in med.items()},
           "throughput_ratio_flip_over_raw": round(ratio, 3)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "embed_tta.json").write_text(json.dumps(res, indent=1) + "\n")
    L = ["# Scan-time cost of flip TTA (`python bench/embed_tta.py`)", "",
         f"{len(ps)} photos (identities portraits + group shots, {rows[0]['faces']} faces a pass), one scan worker's "
         f"work per photo (decode + analyze_rgb), {a.rounds} interleaved rounds, 1 torch thread, CPU seconds.", "",
         "| kind | median CPU s | images / CPU s |", "|---|---|---|"]
    L += [f"| {k} | {v} | {res['images_per_cpu_s'][k]} |" for k, v in med.items()]
    L += ["", f"{a.kind} / raw throughput: {ratio:.3f} (scan's 3.51x over face_recognition would become "
          f"~{3.51 * ratio:.2f}x).", ""]
    (OUT / "embed_tta.md").write_text("\n".join(L))
    print("\n".join(L))
    return res


if __name__ == "__main__":
    main()
