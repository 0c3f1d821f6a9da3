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

    nice -n 10 .venv/bin/python bench/train_face_verifier.py              # the shipped file (--wild 600 --utk 450)
    nice -n 10 .venv/bin/python bench/train_face_verifier.py --sets embedding+stats --ship embedding+stats \
        --out face_verifier_fast.npz                                        # no torch
    (features are cached per image in /tmp/faceset_verifier_cache/v2: the first run extracts every block for
    ~1,860 images, ~25 min on one loaded core; a second run only fits, ~10 min)

Feature blocks (``faceset.scan.verify``): embedding, stats, MobileNetV2 of the aligned 224 px crop
(``mobilenet``, its mirror ``mobilenet_flip``, their mean ``mobilenet_tta``), EfficientNet-Lite0 of the
crop (``effnet``), MobileNetV2 of a 2.5x context square around the box (``mobilenet_ctx``) and of the whole
image squashed to 224 px (``mobilenet_img``, once per image). ``auto`` rows: scan's default (the fast head
decides when its P(real) >= pipeline.AUTO_SURE, the shipped head otherwise).

Stacking (the shipped full head, unless ``--no-stack``): P(real) = sigmoid(STACK_A logit(fast head) + (1 - STACK_A)
logit(full head)), STACK_A = 0.5 fixed (equal weights, not tuned); the fast head's parameters ride in the weight
file and read the leading embedding+stats features. Its nested cut is chosen on the combined inner scores, like
every single head's; the "before" row is the previous auto (the full head alone), from the same run.
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
                "mobilenet": ("mobilenet",), "embedding+stats+mobilenet": ("embedding", "stats", "mobilenet"),
                # flip TTA of the crop; EfficientNet-Lite0 of the crop; context (2.5x box) + whole-image features
                "embedding+stats+mobilenet_tta": ("embedding", "stats", "mobilenet_tta"),
                "embedding+stats+effnet": ("embedding", "stats", "effnet"),
                "embedding+stats+mobilenet_ctx+mobilenet_img": ("embedding", "stats", "mobilenet_ctx", "mobilenet_img"),
                "embedding+stats+mobilenet+mobilenet_ctx+mobilenet_img": ("embedding", "stats", "mobilenet",
                                                                          "mobilenet_ctx", "mobilenet_img"),
                "embedding+stats+effnet+mobilenet_ctx+mobilenet_img": ("embedding", "stats", "effnet",
                                                                       "mobilenet_ctx", "mobilenet_img")}
DEFAULT_SETS = ("embedding+stats", "embedding+stats+mobilenet", "embedding+stats+mobilenet_tta",
                "embedding+stats+mobilenet+mobilenet_ctx+mobilenet_img",
                "embedding+stats+effnet+mobilenet_ctx+mobilenet_img")
SHIP = "embedding+stats+effnet+mobilenet_ctx+mobilenet_img"
AUTO_FAST = "embedding+stats"  # scan's 'auto': the fast head decides when it is sure (P(real) >= AUTO_SURE)
C_REG = 0.05           # L2 strength (sklearn C), fixed before looking at results
POS_RECALL = 0.995     # nested threshold: the largest P(real) cut keeping this share of training positives
STACK_A = 0.5          # shipped head: a * logit(fast head) + (1 - a) * logit(full head); equal weights, not tuned


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


V2_BLOCKS = ("embedding", "stats", "mobilenet", "mobilenet_flip", "mobilenet_ctx", "mobilenet_img", "effnet")
V2_TIMES: dict = defaultdict(float)  # seconds per block over the faces extracted in this run


def extract_image_v2(path: str) -> dict:
    """One image's detections with every candidate feature block (+ detector score, boxes, landmarks)."""
    from faceset.scan import align
    from faceset.scan.cnn_detectors import get_detector, hog_like_box, to_dlib_landmarks
    from faceset.scan.embed import embed_chips
    from faceset.scan.verify import backbone_features, chip_stats, context_crop, image_thumb

    det = get_detector("centerface", threads=1)
    rgb = load_rgb(path)
    t = time.perf_counter()
    ds = to_dlib_landmarks(rgb, det.detect(rgb, CAND_T), "dlib")
    V2_TIMES["detect"] += time.perf_counter() - t
    out = {k: [] for k in V2_BLOCKS + ("score", "box", "raw_box", "landmarks", "cnn_landmarks")}
    if ds:
        def timed(name, fn):
            t0 = time.perf_counter()
            r = fn()
            V2_TIMES[name] += time.perf_counter() - t0
            return r
        shapes = [align.shape_of(d.landmarks, d.box) for d in ds]
        chips = timed("align", lambda: align.chips(rgb, shapes, align.CHIP_SIZE, align.CHIP_PADDING))
        crops = timed("align", lambda: align.chips(rgb, shapes, align.CROP_SIZE, align.CROP_PADDING))
        out["embedding"] = timed("embedding", lambda: embed_chips(chips))
        out["stats"] = timed("stats", lambda: np.stack([chip_stats(c) for c in chips]))
        out["mobilenet"] = timed("mobilenet", lambda: backbone_features(crops))
        out["mobilenet_flip"] = timed("mobilenet_flip", lambda: backbone_features([c[:, ::-1] for c in crops]))
        out["mobilenet_ctx"] = timed("mobilenet_ctx", lambda: backbone_features(
            [context_crop(rgb, d.box) for d in ds]))
        img = timed("mobilenet_img", lambda: backbone_features([image_thumb(rgb)]))
        out["mobilenet_img"] = np.repeat(img, len(ds), 0)
        out["effnet"] = timed("effnet", lambda: backbone_features(crops, "efficientnet_lite0"))
        out["score"] = [d.score for d in ds]
        out["box"] = [hog_like_box(d.box, "centerface") for d in ds]
        out["raw_box"] = [np.asarray(d.box, np.float64) for d in ds]
        out["landmarks"] = [np.asarray(d.landmarks, np.float64) for d in ds]
        out["cnn_landmarks"] = [np.asarray(d.extra["cnn_landmarks"], np.float64) for d in ds]
        V2_TIMES["faces"] += len(ds)
    V2_TIMES["images"] += 1
    return {k: np.asarray(v, np.float32 if k in V2_BLOCKS else np.float64) for k, v in out.items()}


def cached_features_v2(items) -> dict:
    """Like ``cached_features`` with every V2 block, cached per image (adding images costs only those)."""
    from faceset.scan.cascade import iou

    d = CACHE / "v2"
    d.mkdir(parents=True, exist_ok=True)
    rows = defaultdict(list)
    t0 = time.perf_counter()
    for n, it in enumerate(items):
        p = d / (hashlib.sha256(f"{it['path']}:{CAND_T}".encode()).hexdigest()[:20] + ".npz")
        if p.exists():
            z = np.load(p)
            f = {k: z[k] for k in z.files}
        else:
            f = extract_image_v2(it["path"])
            np.savez(p, **f)
        k = len(f["score"])
        if k:
            best = int(np.argmax(f["score"]))
            for j in range(k):
                for b in f:
                    rows[b].append(f[b][j])
                rows["image"].append(n)
                rows["label"].append(_label(it, _D(f["score"][j]), j == best, f["box"][j], iou))
        if (n + 1) % 200 == 0:
            print(f"  {n + 1}/{len(items)} images, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return {k: np.asarray(v) for k, v in rows.items()}


class _D:
    def __init__(self, score):
        self.score = float(score)


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
    if "mobilenet_tta" in blocks and "mobilenet_tta" not in F:
        F["mobilenet_tta"] = (F["mobilenet"].astype(np.float64) + F["mobilenet_flip"]) / 2
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


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def nested_scores(F, items, blocks, *, fo=None, y=None, use=None) -> tuple[np.ndarray, dict, np.ndarray]:
    """Outer-fold P(real) of every face, and per outer fold the inner out-of-fold P(real) of its training faces
    (what a threshold, or a combination of heads, is chosen on without seeing the outer fold).

    ``fo`` (fold per image; default ``folds(items)``), ``y`` (labels; default ``F["label"]``) and ``use`` (faces
    that may be trained on; default every labelled one) are for benches that add training-only images."""
    X, y = X_of(F, blocks), (F["label"] if y is None else y)
    img = F["image"]
    fo = folds(items) if fo is None else fo
    use = (y != "") if use is None else use
    outer = np.full(len(y), np.nan)
    inner: dict = {}
    for f in sorted(set(fo)):
        te = (fo == f)[img]
        trn = ~te & use
        outer[te] = fit(X[trn], y[trn], None).p_real(X[te])
        inner[f] = np.full(len(y), np.nan)
        for g in sorted(set(fo)):
            if g == f:
                continue
            te2 = (fo == g)[img]
            trn2 = ~te & ~te2 & use
            inner[f][te2] = fit(X[trn2], y[trn2], None).p_real(X[te2])
    return outer, inner, fo


def nested_cuts(F, inner: dict, fo, pos=None) -> dict:
    """Per outer fold: the largest cut keeping POS_RECALL of its training positives' inner scores (``pos``:
    which faces are positives; default every face labelled real)."""
    img, pos = F["image"], (F["label"] == "real" if pos is None else pos)
    cuts = {}
    for f, sc in inner.items():
        p = np.sort(sc[pos & (fo != f)[img]])
        cuts[f] = float(p[int(np.floor((1 - POS_RECALL) * len(p)))]) if len(p) else 0.5
    return cuts


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
    ap.add_argument("--wild", type=int, default=600)
    ap.add_argument("--utk", type=int, default=450)
    ap.add_argument("--sets", default=",".join(DEFAULT_SETS), help=f"comma list of {', '.join(FEATURE_SETS)}")
    ap.add_argument("--limit", type=int, default=0, help="smoke test: every Nth image only (weights not shipped)")
    ap.add_argument("--ship", default=SHIP, help="feature set of the shipped weights")
    ap.add_argument("--no-stack", dest="stack", action="store_false",
                    help="ship the full head alone (default: averaged in logit space with the fast head)")
    ap.add_argument("--out", default="face_verifier.npz",
                    help="weight file name under src/faceset/scan/weights/ (results: bench/results/<stem>.{json,md})")
    a = ap.parse_args(argv)
    from faceset.scan.embed import worker_threads

    worker_threads(1)
    items = portraits(wild=a.wild, utk=a.utk) + groups() + nonfaces()
    if a.limit:
        items = items[::a.limit]
    t0 = time.perf_counter()
    F = cached_features_v2(items)
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
    nested = {}
    for name in a.sets.split(","):
        blocks = FEATURE_SETS[name]
        t1 = time.perf_counter()
        oof, inner, fo = nested_scores(F, items, blocks)
        nested[name] = (oof, inner)
        cuts = [nested_cuts(F, inner, fo)[f] for f in sorted(inner)]
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
        res["feature_sets"][name]["_oof"] = (oof, cut_face)
    # scan's default 'auto': the fast head's verdict when it is sure (P >= AUTO_SURE), else the full head's
    from faceset.scan.pipeline import AUTO_SURE

    fs_ = res["feature_sets"]
    stack = a.stack and AUTO_FAST in fs_ and a.ship in fs_ and AUTO_FAST != a.ship
    if AUTO_FAST in fs_ and a.ship in fs_ and AUTO_FAST != a.ship:
        from sklearn.metrics import roc_auc_score

        (pf, cf), (pF, cF) = fs_[AUTO_FAST]["_oof"], fs_[a.ship]["_oof"]
        fo = folds(items)
        # before: the full head alone for the faces the fast head is unsure of
        acc = np.where(pf >= AUTO_SURE, pf >= cf, pF >= cF).astype(np.float64)
        rows = {f"auto (fast >= {AUTO_SURE}, else {a.ship} alone): before": (acc, fs_[a.ship])}
        # after: the two heads' logits averaged (STACK_A), cut chosen on the inner scores like every other row
        (of, inf), (oF, inF) = nested[AUTO_FAST], nested[a.ship]
        comb = STACK_A * logit(of) + (1 - STACK_A) * logit(oF)
        comb_in = {f: STACK_A * logit(inf[f]) + (1 - STACK_A) * logit(inF[f]) for f in inF}
        cc = nested_cuts(F, comb_in, fo)
        cut_c = np.array([cc[f] for f in sorted(cc)])[fo[F["image"]]]
        lab = y != ""
        auc_c = round(float(roc_auc_score(y[lab] == "real", comb[lab])), 4)
        stacked = {"cuts_per_fold": [round(cc[f], 4) for f in sorted(cc)], "face_auc": auc_c}
        rows[f"stacked ({STACK_A} logit fast + {1 - STACK_A} logit full)"] = ((comb >= cut_c).astype(np.float64),
                                                                              stacked)
        acc2 = np.where(pf >= AUTO_SURE, pf >= cf, comb >= cut_c).astype(np.float64)
        rows[f"auto (fast >= {AUTO_SURE}, else stacked): after"] = (acc2, stacked)
        for name, (acc, src) in rows.items():
            r = {"cuts_per_fold": src["cuts_per_fold"], "seconds": 0.0, "face_auc": src["face_auc"],
                 "full_share": round(float((pf < AUTO_SURE).mean()), 4)}
            for t in DET_TS:
                r[str(t)] = {**image_results(F, items, acc, 0.5, t),
                             **group_results(F, items, acc, 0.5, t, box_of_face)}
                r[str(t) + "@0.5"] = r[str(t)]
            fs_[name] = r
    for r in fs_.values():
        r.pop("_oof", None)
    res["cost_ms_per_face"] = measure_cost(items)
    # the shipped model: all labelled faces, threshold from its own 5-fold OOF scores at POS_RECALL
    blocks = FEATURE_SETS[a.ship]
    X = X_of(F, blocks)
    lab = y != ""
    v = fit(X[lab], y[lab], None)
    oof, _, _ = cross_validate(F, items, blocks, nested=False)
    from faceset.scan.verify import WEIGHTS, Verifier

    sub = None
    if stack:  # the fast head rides inside the full one (its blocks lead the full feature vector)
        fb = FEATURE_SETS[AUTO_FAST]
        assert tuple(blocks[:len(fb)]) == tuple(fb), (blocks, fb)
        vf = fit(X_of(F, fb)[lab], y[lab], None)
        oof_f, _, _ = cross_validate(F, items, fb, nested=False)
        sub = (Verifier(fb, vf.classes, vf.mean, vf.scale, vf.coef, vf.intercept, 0.5), STACK_A)
        oof = 1.0 / (1.0 + np.exp(-(STACK_A * logit(oof_f) + (1 - STACK_A) * logit(oof))))
    pos = np.sort(oof[y == "real"])
    thr = float(pos[int(np.floor((1 - POS_RECALL) * len(pos)))])

    WEIGHTS = WEIGHTS.with_name(a.out)

    shipped = Verifier(blocks, v.classes, v.mean, v.scale, v.coef, v.intercept, thr,
                       {"trained_by": "bench/train_face_verifier.py", "faces": int(lab.sum()),
                        "labels": {str(k): v for k, v in res["labels"].items()}, "detector": "centerface",
                        "candidate_threshold": CAND_T,
                        "C": C_REG, "data": "../shared/data: identities, identities_wild, utkface, groups, "
                                            "nonface, nonface_hard (see the script docstring)"}, stack=sub)
    if a.limit:  # a smoke test never overwrites the shipped weights
        import tempfile

        WEIGHTS = Path(tempfile.mkdtemp()) / "face_verifier.npz"
    shipped.save(WEIGHTS)
    res["shipped"] = {"blocks": list(blocks), "threshold": round(thr, 4), "path": os.path.relpath(WEIGHTS, ROOT),
                      "bytes": WEIGHTS.stat().st_size,
                      "stack": {"with": list(sub[0].blocks), "a": STACK_A} if sub else None}
    OUT.mkdir(parents=True, exist_ok=True)
    if not a.limit:
        stem = Path(a.out).stem
        (OUT / f"{stem}.json").write_text(json.dumps(res, indent=1))
        (OUT / f"{stem}.md").write_text(render(res))
    print(render(res))
    return res


def measure_cost(items, n_images: int = 12) -> dict:
    """ms per face of each feature block on a few multi-face images (this run, this machine's load)."""
    V2_TIMES.clear()
    picks = [it for it in items if it["subset"] in ("groups", "identities")][:: 7][:n_images]
    t = time.process_time()
    for it in picks:
        extract_image_v2(it["path"])
    faces = max(V2_TIMES.pop("faces", 0), 1)
    V2_TIMES.pop("images", None)
    out = {k: round(1000 * v / faces, 1) for k, v in V2_TIMES.items()}
    out["faces"] = int(faces)
    out["cpu_s"] = round(time.process_time() - t, 1)
    return out


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
    if res.get("cost_ms_per_face"):
        c = dict(res["cost_ms_per_face"])
        lines += ["", f"Wall ms per face of each block ({c.pop('faces')} faces of groups/identities, measured in this "
                      "run on the shared machine; `mobilenet_img` is once per image, shown per face): "
                  + ", ".join(f"{k} {v}" for k, v in c.items() if k != "cpu_s")]
    st = s.get("stack")
    lines += ["", f"Shipped: `{s['path']}` ({s['bytes']} bytes), features {'+'.join(s['blocks'])}"
              + (f", stacked with the {'+'.join(st['with'])} head (P(real) = sigmoid({st['a']} logit fast + "
                 f"{1 - st['a']} logit full))" if st else "")
              + f", P(real) cut {s['threshold']} (from its own out-of-fold scores), trained on all labelled faces.", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
