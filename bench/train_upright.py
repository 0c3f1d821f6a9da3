"""Train the "is this chip upright?" head the quarter-turn rescue uses; writes src/faceset/scan/weights/upright.npz.

When no real face is found in a photo, scan looks again with it turned a quarter left and right. In a sideways
photo one of those turns is upright and the other upside down, and the detector and the verifier both accept
upside-down faces (on jennifer_aniston/img55 the upside-down face scores higher on both). The embedding of an
upside-down (or sideways: a frontal landmark fit on a face lying sideways) chip is far from every upright one, so
a logistic regression on the 128-D dlib embedding tells them apart: positives are the main-face chips of real
portraits, negatives the same chips turned 90, 180 and 270 degrees (self-supervised: no labels needed).
Trained on a seeded UTKFace sample and half of the identities_wild people, measured on the other half (other
people) and on identities (other sources).

    .venv/bin/python bench/train_upright.py         # ~3 min; bench/results/upright.{json,md}
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from detect_data import load_rgb, portraits  # noqa: E402

OUT = ROOT / "bench" / "results"
C_REG = 0.1  # fixed before looking at results
TURNS = (90, 180, 270)


def chips_of(items) -> np.ndarray:
    from faceset.scan.pipeline import analyze_rgb

    out = []
    for it in items:
        faces = analyze_rgb(load_rgb(it["path"]), crops=False, quarter_turns=False)
        main = next((f for f in faces if f.is_main and f.status != "not_real_face"), None)
        if main is not None:
            out.append(main.chip)
    return np.stack(out)


def embeddings(chips: np.ndarray) -> tuple[np.ndarray, dict]:
    """Embeddings of the chips as they are, and of the same chips turned 90 / 180 / 270 degrees."""
    from faceset.scan.embed import embed_chips

    return embed_chips(list(chips)), {a: embed_chips([np.ascontiguousarray(np.rot90(c, a // 90)) for c in chips])
                                      for a in TURNS}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--utk", type=int, default=800)
    a = ap.parse_args(argv)
    from sklearn.linear_model import LogisticRegression

    from faceset.scan.embed import worker_threads
    from faceset.scan.verify import WEIGHTS

    worker_threads(1)
    P = portraits(wild=None, utk=a.utk)
    import hashlib

    def half(it):  # identities_wild people split in two by a hash of the name: train on one, test on the other
        return int(hashlib.md5(it["identity"].encode()).hexdigest(), 16) % 2

    train = [it for it in P if it["subset"] == "utkface" or (it["subset"] == "identities_wild" and half(it) == 0)]
    tests = {"identities_wild (other half: other people)": [it for it in P if it["subset"] == "identities_wild"
                                                           and half(it) == 1],
             "identities": [it for it in P if it["subset"] == "identities"]}
    up, turned = embeddings(chips_of(train))
    X = np.vstack([up] + [turned[a] for a in TURNS]).astype(np.float64)
    y = np.r_[np.ones(len(up)), np.zeros(len(up) * len(TURNS))]
    w = np.r_[np.full(len(up), float(len(TURNS))), np.ones(len(up) * len(TURNS))]  # both sides weigh the same
    lr = LogisticRegression(C=C_REG, max_iter=2000).fit(X, y, sample_weight=w)
    res = {"train_faces": len(up), "C": C_REG, "test": {}}
    for s, items in tests.items():
        u, t = embeddings(chips_of(items))
        pu = lr.predict_proba(u.astype(np.float64))[:, 1]
        r = {"faces": len(u), "upright_kept": round(float((pu >= 0.5).mean()), 4)}
        for deg in TURNS:
            pt = lr.predict_proba(t[deg].astype(np.float64))[:, 1]
            r[f"refused_{deg}"] = round(float((pt < 0.5).mean()), 4)
            r[f"pair_right_{deg}"] = round(float((pu > pt).mean()), 4)
        res["test"][s] = r
    path = WEIGHTS.with_name("upright.npz")
    np.savez(path, coef=lr.coef_[0].astype(np.float64), intercept=np.float64(lr.intercept_[0]),
             meta=json.dumps({"trained_by": "bench/train_upright.py", "faces": len(up), "C": C_REG,
                              "data": f"../shared/data: utkface (seeded sample of {a.utk}), identities_wild "
                                      "(people whose name hash is even)"}))
    res["shipped"] = {"path": os.path.relpath(path, ROOT), "bytes": path.stat().st_size}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "upright.json").write_text(json.dumps(res, indent=1))
    lines = ["# Upright vs upside-down chips (`python bench/train_upright.py`)", "",
             f"Logistic regression on the dlib embedding, trained on {res['train_faces']} chips (UTKFace sample + one "
             "half of the identities_wild people) and the same chips turned 90, 180 and 270 degrees (both sides "
             "weighted equally); measured on other sources and people.", "",
             "| test set | faces | upright kept (P >= 0.5) | turned 90 / 180 / 270 refused | "
             "upright ranked above the turn (90 / 180 / 270) |", "|---|---|---|---|---|"]
    for s, r in res["test"].items():
        lines.append(f"| {s} | {r['faces']} | {100 * r['upright_kept']:.1f}% | "
                     + " / ".join(f"{100 * r[f'refused_{a}']:.1f}%" for a in TURNS) + " | "
                     + " / ".join(f"{100 * r[f'pair_right_{a}']:.1f}%" for a in TURNS) + " |")
    lines += ["", f"Shipped: `{res['shipped']['path']}` ({res['shipped']['bytes']} bytes).", ""]
    (OUT / "upright.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return res


if __name__ == "__main__":
    main()
