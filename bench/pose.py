"""Is the stored yaw useful for a pose filter? Profiles vs frontal portraits, two estimators, one run.

Pose ground truth on ../shared/data (read in place): every ``nonface_hard`` photo whose label note says
"profile" (the profiles) against the portraits of ``identities`` and ``identities_wild`` (LFW: mostly
frontal, some turned, so "frontal" is approximate there). Each image goes through scan's ``analyze``
(CenterFace + verifier, the defaults); its main face is the one measured. Per face, two yaw estimates:

- ``cnn`` (scan's, ``quality.yaw_cnn``): CenterFace's eye centres, nose tip and mouth corners, nose offset
  from the eye-mouth midline against the eye span, ``atan2`` with the nose depth of a generic 3D head model;
- ``dlib`` (the previous one, ``quality.yaw_degrees``): dlib's 5 points fitted in the box, asin of the
  nose offset along the eye line.

No constant is fitted to these images. Reported: AUC of |yaw| (profiles vs each portrait set), the share of
profiles a ``--max-yaw 30`` / ``45`` dataset would still keep, the share of portraits it keeps, and on
``identities`` the mirror check (yaw of the mirrored photo should be minus the yaw).

    nice -n 10 .venv/bin/python bench/pose.py        # writes bench/results/pose.{json,md}, ~3 min
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from detect_data import load_rgb, nonfaces, portraits  # noqa: E402

OUT = ROOT / "bench" / "results"
CUTS = (30, 45)


def main_face(rgb):
    from faceset.scan import analyze
    from faceset.scan.quality import yaw_degrees

    faces = analyze(rgb)
    if not faces:
        return None
    f = faces[0]
    return {"cnn": float(f.quality["yaw"]), "dlib": float(yaw_degrees(f.landmarks)), "detector": f.detector,
            "status": f.status}


def auc(pos, neg) -> float:
    """P(|yaw| of a profile > |yaw| of a portrait), ties half."""
    p, n = np.abs(np.asarray(pos))[:, None], np.abs(np.asarray(neg))[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / max(p.size * n.size, 1))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wild", type=int, default=300, help="identities_wild photos (whole people)")
    a = ap.parse_args(argv)
    from faceset.scan.embed import worker_threads

    worker_threads(1)
    t0 = time.perf_counter()
    prof = [it for it in nonfaces() if it["subset"] == "nonface_hard" and it["has_face"]
            and "profile" in it["note"].lower()]
    sets = {"profiles": prof}
    por = portraits(wild=a.wild)
    sets["identities"] = [it for it in por if it["subset"] == "identities"]
    sets["identities_wild"] = [it for it in por if it["subset"] == "identities_wild"]
    got: dict = {k: [] for k in sets}
    missed: dict = {k: [] for k in sets}
    per_profile = []
    mirror = []
    for name, items in sets.items():
        for it in items:
            rgb = load_rgb(it["path"])
            r = main_face(rgb)
            if r is None:
                missed[name].append(it["path"].split("/data/")[1])
                continue
            got[name].append(r)
            if name == "profiles":
                per_profile.append({"file": it["path"].split("/data/")[1], "note": it["note"],
                                    "cnn": round(r["cnn"], 1), "dlib": round(r["dlib"], 1)})
            if name == "identities":
                m = main_face(np.ascontiguousarray(rgb[:, ::-1]))
                if m is not None:
                    mirror.append({k: r[k] + m[k] for k in ("cnn", "dlib")})
    res = {"images": {k: len(v) for k, v in sets.items()}, "faces": {k: len(v) for k, v in got.items()},
           "missed": missed, "per_profile": per_profile, "estimators": {}}
    for est in ("cnn", "dlib"):
        P = [r[est] for r in got["profiles"]]
        e = {"profiles_abs_yaw_median": round(float(np.median(np.abs(P))), 1) if P else None}
        for name in ("identities", "identities_wild"):
            N = [r[est] for r in got[name]]
            e[f"auc_vs_{name}"] = round(auc(P, N), 3)
            e[f"{name}_abs_yaw_p50_p90"] = [round(float(v), 1) for v in np.percentile(np.abs(N), [50, 90])]
            for c in CUTS:
                e[f"{name}_kept_at_{c}"] = round(float(np.mean(np.abs(N) <= c)), 3)
        for c in CUTS:
            e[f"profiles_kept_at_{c}"] = f"{int(np.sum(np.abs(P) <= c))}/{len(P)}"
        e["mirror_abs_sum_median"] = round(float(np.median([abs(m[est]) for m in mirror])), 2) if mirror else None
        res["estimators"][est] = e
    res["seconds"] = round(time.perf_counter() - t0, 1)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "pose.json").write_text(json.dumps(res, indent=1))
    (OUT / "pose.md").write_text(render(res))
    print(render(res))
    return res


def render(res) -> str:
    E = res["estimators"]
    f = res["faces"]
    lines = ["# Yaw for a pose filter: profiles vs portraits (bench/pose.py)", "",
             f"Main face of each image through scan's `analyze` (CenterFace + verifier). Profiles: {f['profiles']} "
             f"of {res['images']['profiles']} `nonface_hard` photos whose note says profile had a face; "
             f"portraits: identities {f['identities']}, identities_wild {f['identities_wild']} (LFW, mostly "
             "frontal). Nothing fitted to these images.", "",
             "| estimator | AUC vs identities | AUC vs wild | profiles kept at 30 / 45 deg "
             "| identities kept at 30 / 45 | wild kept at 30 / 45 | wild abs yaw p50 / p90 "
             "| mirror: median abs(yaw + yaw mirrored) |",
             "|---|---|---|---|---|---|---|---|"]
    for est, lab in (("cnn", "CenterFace 5 points, atan2 (scan's now)"), ("dlib", "dlib 5 points, asin (before)")):
        e = E[est]
        lines.append(f"| {lab} | {e['auc_vs_identities']} | {e['auc_vs_identities_wild']} | "
                     f"{e['profiles_kept_at_30']} / {e['profiles_kept_at_45']} | "
                     f"{100 * e['identities_kept_at_30']:.1f}% / {100 * e['identities_kept_at_45']:.1f}% | "
                     f"{100 * e['identities_wild_kept_at_30']:.1f}% / {100 * e['identities_wild_kept_at_45']:.1f}% | "
                     f"{e['identities_wild_abs_yaw_p50_p90'][0]} / {e['identities_wild_abs_yaw_p50_p90'][1]} | "
                     f"{e['mirror_abs_sum_median']} |")
    lines += ["", "Per profile photo (yaw in degrees, main face):", "", "| file | note | cnn | dlib |",
              "|---|---|---|---|"]
    for p in res["per_profile"]:
        lines.append(f"| {p['file']} | {p['note']} | {p['cnn']} | {p['dlib']} |")
    miss = [m for v in res["missed"].values() for m in v]
    lines += ["", f"No face found: {', '.join(miss) if miss else 'none'}. Run time {res['seconds']} s.", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
