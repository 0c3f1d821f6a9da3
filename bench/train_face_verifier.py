"""Train and cross-validate the "real human face?" verifier; writes src/faceset/scan/weights/face_verifier.npz.

Data (all read in place from ../shared/data; nothing is copied into the repository):
- positives (real photographed faces): identities (all 140), identities_wild (whole people, ``--wild``
  photos), a seeded utkface sample (``--utk``), groups (detections matching a labelled box), and
  nonface / nonface_hard images with ``has_face=yes`` of kind photo/animal (detections with score >= 0.5);
  in portraits only the strongest detection is a training positive;
- negatives: every detection on a ``has_face=no`` image of nonface / nonface_hard, labelled with the
  image's kind (cartoon, painting, render, sculpture, object, animal; kind photo without a visible
  face -> object). ``has_face=yes`` sculpture photos (statues with visitors) are evaluated, never trained on.

Candidates: CenterFace (``faceset.scan.cnn_detectors``) at score >= 0.3, dlib 5-point landmarks in the
box, the 150 px chip + 224 px crop as scan makes them, then per face: the 128-D embedding, chip colour /
texture statistics, MobileNetV2 ImageNet features of the crop (``faceset.scan.verify``).

Cross-validation: 5 folds, grouped so that no person (identities, identities_wild), no source
repository (nonface_hard), no folder (nonface pets / memes / skimage) and no group photo is on both
sides. The threshold on P(real) is chosen inside each training fold (nested, on the training fold's
own out-of-fold scores), so the reported numbers never saw a threshold tuned on them.
Image-level results: an image "has a face" when a detection >= the detector threshold passes the verifier.

    nice -n 10 .venv/bin/python bench/train_face_verifier.py --wild 150 --utk 150   # the shipped file
    nice -n 10 .venv/bin/python bench/train_face_verifier.py --wild 150 --utk 150 \
        --sets embedding+stats --ship embedding+stats --out face_verifier_fast.npz   # no torch, ~8 ms/face
    (features are cached in /tmp/faceset_verifier_cache, so a second run takes a minute)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from detect_data import groups, load_rgb, nonfaces, portraits  # noqa: E402

OUT = ROOT / "bench" / "results"
CACHE = Path(os.environ.get("FACESET_VERIFIER_CACHE", "/tmp/faceset_verifier_cache"))
CAND_T = 0.3
DET_TS = (0.5, 0.6, 0.7)
FEATURE_SETS = {"stats": ("stats",), "embedding": ("embedding",), "embedding+stats": ("embedding", "stats"),
                "mobilenet": ("mobilenet",), "embedding+stats+mobilenet": ("embedding", "stats", "mobilenet")}
C_REG = 0.05           # L2 strength (sklearn C), fixed before looking at results
POS_RECALL = 0.995     # nested threshold: the largest P(real) cut keeping this share of training positives


def extract(items) -> dict:
    """Per detected face: blocks of features, detector score, image index, training label."""
    from faceset.scan import align
    from faceset.scan.cascade import iou
    from faceset.scan.cnn_detectors import get_detector, hog_like_box, to_dlib_landmarks
    from faceset.scan.embed import embed_chips
    from faceset.scan.verify import chip_stats, mobilenet_features

    det = get_detector("centerface", threads=1)
    rows = defaultdict(list)
    t0 = time.perf_counter()
    for n, it in enumerate(items):
        rgb = load_rgb(it["path"])
        ds = to_dlib_landmarks(rgb, det.detect(rgb, CAND_T), "dlib")
        if ds:
            shapes = [align.shape_of(d.landmarks, d.box) for d in ds]
            chips = align.chips(rgb, shapes, align.CHIP_SIZE, align.CHIP_PADDING)
            crops = align.chips(rgb, shapes, align.CROP_SIZE, align.CROP_PADDING)
            emb = embed_chips(chips)
            mob = mobilenet_features(crops)
            best = int(np.argmax([d.score for d in ds]))
            for j, d in enumerate(ds):
                rows["embedding"].append(emb[j])
                rows["stats"].append(chip_stats(chips[j]))
                rows["mobilenet"].append(mob[j])
                rows["score"].append(d.score)
                rows["box"].append(hog_like_box(d.box, "centerface"))
                rows["image"].append(n)
                rows["label"].append(_label(it, d, j == best, hog_like_box(d.box, "centerface"), iou))
        if (n + 1) % 100 == 0:
            print(f"  {n + 1}/{len(items)} images, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return {k: np.asarray(v) for k, v in rows.items()}


def _label(it, d, is_best, hbox, iou) -> str:
    """Training label of one detection: 'real', a non-real kind, or '' (not trained on)."""
    sub = it["subset"]
    if sub in ("identities", "identities_wild", "utkface"):
        return "real" if is_best else ""
    if sub == "groups":
        return "real" if any(iou(hbox, g) >= 0.4 for g in it["boxes"]) or (not it["boxes"] and d.score >= 0.5) else ""
    if it["has_face"]:
        return "real" if it["kind"] in ("photo", "animal") and d.score >= 0.5 else ""
    return "object" if it["kind"] == "photo" else it["kind"]


def cached_features(items, tag: str) -> dict:
    key = hashlib.sha256(json.dumps([i["path"] for i in items] + [CAND_T, tag]).encode()).hexdigest()[:16]
    p = CACHE / f"faces_{key}.npz"
    if p.exists():
        z = np.load(p)
        return {k: z[k] for k in z.files}
    f = extract(items)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(p, **f)
    return f


def X_of(F, blocks) -> np.ndarray:
    return np.concatenate([F[b].astype(np.float64).reshape(len(F["score"]), -1) for b in blocks], 1)


def fit(X, y, classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(X)
    s = np.where(sc.scale_ > 1e-8, sc.scale_, 1.0)
    Xs = (X - sc.mean_) / s
    from faceset.scan.verify import Verifier

    if len(set(y)) < 2:  # (tiny smoke-test folds only) one class: a constant model
        c = ["real", str(y[0])] if y[0] != "real" else ["real", "object"]
        return Verifier((), c, sc.mean_, s, np.zeros((1, X.shape[1])), [0.0 if y[0] == "real" else -5.0], 0.5)
    # balanced: each class weighs the same in total
    w = np.ones(len(y))
    for c in set(y):
        w[y == c] = len(y) / (len(set(y)) * (y == c).sum())
    lr = LogisticRegression(C=C_REG, max_iter=2000).fit(Xs, y, sample_weight=w)
    from faceset.scan.verify import Verifier

    return Verifier((), list(lr.classes_), sc.mean_, s, lr.coef_, lr.intercept_, 0.5)


def folds(items, k=5) -> np.ndarray:
    """Fold of each image; GroupKFold-like: groups greedily spread over folds, largest first."""
    sizes = defaultdict(int)
    for it in items:
        sizes[it["group"]] += 1
    order = sorted(sizes, key=lambda g: (-sizes[g], hashlib.md5(g.encode()).hexdigest()))
    load = [0] * k
    fold_of = {}
    for g in order:
        f = int(np.argmin(load))
        fold_of[g] = f
        load[f] += sizes[g]
    return np.array([fold_of[it["group"]] for it in items])


def choose_threshold(F, X, y, img_fold_tr, train_img_mask, items) -> float:
    """Inside a training fold: inner CV scores, then the largest cut keeping POS_RECALL of positives."""
    img = F["image"]
    inner = np.full(len(y), np.nan)
    tr_faces = train_img_mask[img]
    inner_folds = sorted(set(img_fold_tr[train_img_mask]))
    for f in inner_folds:
        te = tr_faces & (img_fold_tr[img] == f)
        trn = tr_faces & ~te & (y != "")
        v = fit(X[trn], y[trn], None)
        inner[te] = v.p_real(X[te])
    pos = tr_faces & (y == "real")
    p = np.sort(inner[pos])
    return float(p[int(np.floor((1 - POS_RECALL) * len(p)))]) if len(p) else 0.5


def cross_validate(F, items, blocks, nested=True) -> tuple[np.ndarray, list]:
    X, y = X_of(F, blocks), F["label"]
    img = F["image"]
    fo = folds(items)
    oof = np.full(len(y), np.nan)
    cuts = []
    for f in sorted(set(fo)):
        te_img = fo == f
        te = te_img[img]
        trn = ~te & (y != "")
        v = fit(X[trn], y[trn], None)
        oof[te] = v.p_real(X[te])
        if nested:
            # inner folds: the other outer folds, each one in turn
            cuts.append(choose_threshold(F, X, y, fo, ~te_img, items))
        else:
            cuts.append(0.5)
    return oof, cuts, fo


def image_results(F, items, oof, cut_of_face, det_t) -> dict:
    img = F["image"]
    ok = (F["score"] >= det_t) & (oof >= cut_of_face)
    acc_by_img = defaultdict(int)
    for i in np.nonzero(ok)[0]:
        acc_by_img[int(img[i])] += 1
    R = defaultdict(lambda: [0, 0])
    for n, it in enumerate(items):
        found = acc_by_img.get(n, 0) > 0
        sub = it["subset"]
        if sub in ("identities", "identities_wild", "utkface"):
            R["portraits_found"][0] += found
            R["portraits_found"][1] += 1
            R[f"portraits_found:{sub}"][0] += found
            R[f"portraits_found:{sub}"][1] += 1
        elif sub == "groups":
            pass
        elif it["has_face"]:
            k = "pets" if it["folder"] == "pets" else "memes" if it["folder"] == "memes" else "hard"
            R["real_faces_found"][0] += found
            R["real_faces_found"][1] += 1
            R[f"real_faces_found:{k}"][0] += found
            R[f"real_faces_found:{k}"][1] += 1
        else:
            R["nonface_rejected"][0] += not found
            R["nonface_rejected"][1] += 1
            R[f"nonface_rejected:{it['kind']}"][0] += not found
            R[f"nonface_rejected:{it['kind']}"][1] += 1
    return {k: {"ok": v[0], "n": v[1], "rate": round(v[0] / v[1], 4)} for k, v in sorted(R.items())}


def group_results(F, items, oof, cut_of_face, det_t, box_of_face) -> dict:
    from detect_cv import match

    img = F["image"]
    m_tot = n_tot = extra = 0
    for n, it in enumerate(items):
        if it["subset"] != "groups" or not it["boxes"]:
            continue
        sel = (img == n) & (F["score"] >= det_t) & (oof >= cut_of_face)
        m, e = match([box_of_face[i] for i in np.nonzero(sel)[0]], it["boxes"])
        m_tot += m
        n_tot += len(it["boxes"])
        extra += e
    return {"groups_iou50": {"ok": m_tot, "n": n_tot, "rate": round(m_tot / max(n_tot, 1), 4)}, "groups_extra": extra}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wild", type=int, default=250)
    ap.add_argument("--utk", type=int, default=250)
    ap.add_argument("--sets", default=",".join(FEATURE_SETS))
    ap.add_argument("--limit", type=int, default=0, help="smoke test: every Nth image only (weights not shipped)")
    ap.add_argument("--ship", default="embedding+stats+mobilenet", help="feature set of the shipped weights")
    ap.add_argument("--out", default="face_verifier.npz",
                    help="weight file name under src/faceset/scan/weights/ (results: bench/results/<stem>.{json,md})")
    a = ap.parse_args(argv)
    from faceset.scan.embed import worker_threads

    worker_threads(1)
    items = portraits(wild=a.wild, utk=a.utk) + groups() + nonfaces()
    if a.limit:
        items = items[::a.limit]
    t0 = time.perf_counter()
    F = cached_features(items, f"v1:{a.wild}:{a.utk}")
    t_feat = time.perf_counter() - t0
    box_of_face = F["box"]

    y = F["label"]
    res = {"images": len(items), "faces": int(len(y)),
           "labels": {str(k): int((y == k).sum()) for k in sorted(set(y)) if k},
           "unlabelled_faces": int((y == "").sum()), "feature_seconds": round(t_feat, 1),
           "folds": 5, "C": C_REG, "pos_recall_target": POS_RECALL, "feature_sets": {}}
    # detector alone (no verifier) for reference
    res["no_verifier"] = {str(t): {**image_results(F, items, np.ones(len(y)), 0.0, t),
                                   **group_results(F, items, np.ones(len(y)), 0.0, t, box_of_face)} for t in DET_TS}
    for name in a.sets.split(","):
        blocks = FEATURE_SETS[name]
        t1 = time.perf_counter()
        oof, cuts, fo = cross_validate(F, items, blocks, nested=True)
        cut_face = np.array(cuts)[fo[F["image"]]]
        r = {"cuts_per_fold": [round(c, 4) for c in cuts], "seconds": round(time.perf_counter() - t1, 1)}
        for t in DET_TS:
            for key, cut in ((str(t), cut_face), (str(t) + "@0.5", 0.5)):
                r[key] = {**image_results(F, items, oof, cut, t),
                          **group_results(F, items, oof, cut, t, box_of_face)}
        # face-level AUC real vs not-real (labelled faces)
        lab = y != ""
        from sklearn.metrics import roc_auc_score

        r["face_auc"] = round(float(roc_auc_score(y[lab] == "real", oof[lab])), 4)
        res["feature_sets"][name] = r
        print(f"{name}: AUC {r['face_auc']}  cuts {r['cuts_per_fold']}  "
              "@0.5: " + json.dumps({k: v["rate"] for k, v in r["0.5"].items()
                                     if isinstance(v, dict) and ":" not in k}),
              file=sys.stderr, flush=True)
    # the shipped model: all labelled faces, threshold from its own 5-fold OOF scores at POS_RECALL
    blocks = FEATURE_SETS[a.ship]
    X = X_of(F, blocks)
    lab = y != ""
    v = fit(X[lab], y[lab], None)
    oof, _, _ = cross_validate(F, items, blocks, nested=False)
    pos = np.sort(oof[y == "real"])
    thr = float(pos[int(np.floor((1 - POS_RECALL) * len(pos)))])
    from faceset.scan.verify import WEIGHTS, Verifier

    WEIGHTS = WEIGHTS.with_name(a.out)

    shipped = Verifier(blocks, v.classes, v.mean, v.scale, v.coef, v.intercept, thr,
                       {"trained_by": "bench/train_face_verifier.py", "faces": int(lab.sum()),
                        "labels": {str(k): v for k, v in res["labels"].items()}, "detector": "centerface",
                        "candidate_threshold": CAND_T,
                        "C": C_REG, "data": "../shared/data: identities, identities_wild, utkface, groups, "
                                            "nonface, nonface_hard (see the script docstring)"})
    if a.limit:  # a smoke test never overwrites the shipped weights
        import tempfile

        WEIGHTS = Path(tempfile.mkdtemp()) / "face_verifier.npz"
    shipped.save(WEIGHTS)
    res["shipped"] = {"blocks": list(blocks), "threshold": round(thr, 4), "path": os.path.relpath(WEIGHTS, ROOT),
                      "bytes": WEIGHTS.stat().st_size}
    OUT.mkdir(parents=True, exist_ok=True)
    if not a.limit:
        stem = Path(a.out).stem
        (OUT / f"{stem}.json").write_text(json.dumps(res, indent=1))
        (OUT / f"{stem}.md").write_text(render(res))
    print(render(res))
    return res


def render(res) -> str:
    def f(v):
        return f"{100 * v['rate']:.1f}% ({v['ok']}/{v['n']})" if v else "-"

    kinds = sorted(k.split(":")[1] for k in res["no_verifier"]["0.5"] if k.startswith("nonface_rejected:"))
    lines = ["# Real-human-face verifier: source- and person-disjoint 5-fold CV (held-out numbers)", "",
             f"{res['images']} images, {res['faces']} CenterFace detections >= {CAND_T}; training labels "
             f"{res['labels']} ({res['unlabelled_faces']} detections evaluated but not trained on). "
             f"Logistic regression (C={res['C']}, balanced classes); the P(real) cut is chosen inside each "
             f"training fold (keep {100 * res['pos_recall_target']:.1f}% of its positives).", "",
             "| features | det. thr | AUC | portraits | no-face rejected | real in pets/memes/hard | groups IoU.5 "
             "| extra |",
             "|---|---|---|---|---|---|---|---|"]
    for t in DET_TS:
        r = res["no_verifier"][str(t)]
        lines.append(f"| (no verifier) | {t} | - | {f(r['portraits_found'])} | {f(r['nonface_rejected'])} | "
                     f"{f(r['real_faces_found'])} | {f(r['groups_iou50'])} | {r['groups_extra']} |")
    for name, R in res["feature_sets"].items():
        for t in DET_TS:
            for key, lab in ((str(t), "nested cut"), (str(t) + "@0.5", "cut 0.5")):
                r = R[key]
                lines.append(f"| {name} ({lab}) | {t} | {R['face_auc']} | {f(r['portraits_found'])} | "
                             f"{f(r['nonface_rejected'])} | {f(r['real_faces_found'])} | {f(r['groups_iou50'])} | "
                             f"{r['groups_extra']} |")
    lines += ["", "## No-face images rejected, per kind (detector threshold 0.5)", "",
              "| features | " + " | ".join(kinds) + " | pets | memes | hard |", "|---" * (4 + len(kinds)) + "|"]
    rows = [("(no verifier)", res["no_verifier"]["0.5"])] + [(f"{n} (nested cut)", R["0.5"])
                                                             for n, R in res["feature_sets"].items()]
    for name, r in rows:
        lines.append(f"| {name} | " + " | ".join(f(r.get('nonface_rejected:' + k)) for k in kinds) +
                     f" | {f(r.get('real_faces_found:pets'))} | {f(r.get('real_faces_found:memes'))} | "
                     f"{f(r.get('real_faces_found:hard'))} |")
    s = res["shipped"]
    lines += ["", f"Shipped: `{s['path']}` ({s['bytes']} bytes), features {'+'.join(s['blocks'])}, "
                  f"P(real) cut {s['threshold']} (from its own out-of-fold scores), trained on all labelled faces.", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
