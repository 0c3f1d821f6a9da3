"""What the quarter-turn rescue costs where there is no face to find, and what it finds where there is one.

scan looks again with a photo turned a quarter left and right when it finds no real face upright
(``--quarter-turns``, off by default; a turn is kept only if its best face looks upright, ``verify.p_upright``,
and lies sideways in the photo).
On every nonface / nonface_hard image (read in place), scan's ``analyze`` with and without it: no-face images
still rejected, real-face images found, and CPU seconds. *dev*: the verifier was trained on these images upright
(its held-out numbers are in face_verifier.md); the turned copies are new to it. What it gains on sideways
portraits is in robustness.md (``rotated 90``).

    nice -n 10 .venv/bin/python bench/quarter_turns.py       # ~5 min on 2 cores; bench/results/quarter_turns.{json,md}
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from detect_data import load_rgb, nonfaces  # noqa: E402

OUT = ROOT / "bench" / "results"


def _one(it) -> dict:
    from faceset.scan.embed import worker_threads
    from faceset.scan.pipeline import analyze_rgb

    worker_threads(1)
    rgb = load_rgb(it["path"])
    r = {"has_face": it["has_face"], "kind": it["kind"], "file": os.path.relpath(it["path"], ROOT.parent)}
    for on in (False, True):
        t = time.process_time()
        faces = analyze_rgb(rgb, crops=False, quarter_turns=on)
        r[f"cpu_{on}"] = time.process_time() - t
        real = [f for f in faces if f.status != "not_real_face"]
        r[f"found_{on}"] = bool(real)
        r[f"turned_{on}"] = bool(real) and real[0].turned != 0
    return r


def main() -> dict:
    import multiprocessing as mp

    items = nonfaces()
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(2) as pool:
        rows = list(pool.imap_unordered(_one, items, chunksize=8))
    res = {"images": len(rows), "wall_s": round(time.perf_counter() - t0, 1)}
    for on in (False, True):
        no = [r for r in rows if not r["has_face"]]
        yes = [r for r in rows if r["has_face"]]
        res[f"turns_{on}"] = {"no_face_rejected": [sum(not r[f"found_{on}"] for r in no), len(no)],
                              "real_found": [sum(r[f"found_{on}"] for r in yes), len(yes)],
                              "cpu_s": round(sum(r[f"cpu_{on}"] for r in rows), 1)}
    res["newly_accepted_no_face"] = sorted(r["file"] for r in rows if not r["has_face"] and r["found_True"]
                                           and not r["found_False"])
    res["newly_found_real"] = sorted(r["file"] for r in rows if r["has_face"] and r["found_True"]
                                     and not r["found_False"])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "quarter_turns.json").write_text(json.dumps(res, indent=1))
    a, b = res["turns_False"], res["turns_True"]
    lines = ["# Quarter-turn rescue on the rejection sets (`python bench/quarter_turns.py`, *dev*)", "",
             f"{res['images']} nonface + nonface_hard images through scan's `analyze`, without and with the rescue.",
             "", "| | no-face rejected | real-face images found | CPU s |", "|---|---|---|---|",
             f"| upright only | {a['no_face_rejected'][0]}/{a['no_face_rejected'][1]} | "
             f"{a['real_found'][0]}/{a['real_found'][1]} | {a['cpu_s']} |",
             f"| + quarter turns (`--quarter-turns`) | {b['no_face_rejected'][0]}/{b['no_face_rejected'][1]} | "
             f"{b['real_found'][0]}/{b['real_found'][1]} | {b['cpu_s']} ({b['cpu_s'] / max(a['cpu_s'], 1e-9):.2f}x) |",
             "", "Newly accepted no-face images: " + (", ".join(f"`{f}`" for f in res["newly_accepted_no_face"])
                                                    or "none") + ".",
             "Newly found real-face images: " + (", ".join(f"`{f}`" for f in res["newly_found_real"]) or "none") + ".",
             "", f"Wall {res['wall_s']} s.", ""]
    (OUT / "quarter_turns.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return res


if __name__ == "__main__":
    main()
