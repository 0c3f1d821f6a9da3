"""What else was tried for the real-human-face verifier, measured like the shipped one (held-out, nested cuts).

Three levers, each against the shipped recipe (stacked fast + full head, bench/train_face_verifier.py) in the same
run, on the same 1,860 images, the same source- and person-disjoint 5 folds and the same nested P(real) cut:

1. **Synthetic training images** (bench/synthetic_styles.py): 150 real portraits (every 8th of the training
   portraits) painted, drawn, cartooned and relief-shaded (negatives) and made old or low quality (positives).
   They join the *training* side of the fold their person is in and are never scored; variants: all of them,
   negatives only, positives only, and the negatives as one separate ``synthetic`` class.
2. **A bigger ImageNet backbone**: EfficientNet-Lite2 of the 2.5x context square and of the whole image, added to
   (or replacing) the shipped MobileNetV2 context/image blocks.
3. **YuNet as a rescue detector** for images where CenterFace finds nothing >= 0.5 (the hard real faces it misses:
   tiny, profile, masked): how many real-face images it recovers against how many no-face images it hands the
   verifier (detector alone; the verifier would have to reject every one of those).

    nice -n 10 .venv/bin/python bench/verifier_ablation.py      # ~6 min on 2 cores with the verifier cache warm
    (images and feature blocks are cached under /tmp/faceset_verifier_cache: synthetic/, lite2/, v2/)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import synthetic_styles as SS  # noqa: E402
import train_face_verifier as T  # noqa: E402
from detect_data import groups, load_rgb, nonfaces, portraits  # noqa: E402

OUT = ROOT / "bench" / "results"
SYN = T.CACHE / "synthetic"
LITE2 = T.CACHE / "lite2"
N_BASE = 150
LITE2_BLOCKS = ("effnet2_ctx", "effnet2_img")


def items_real() -> list[dict]:
    return portraits(wild=600, utk=450) + groups() + nonfaces()


def synthetic_items(real: list[dict], n_base: int = N_BASE) -> list[dict]:
    """Every style of ``n_base`` evenly spaced portraits, written once as PNG (the CV group of the base person)."""
    from PIL import Image

    P = [it for it in real if it["subset"] in ("identities", "identities_wild", "utkface")]
    bases = P[:: max(len(P) // n_base, 1)][:n_base]
    SYN.mkdir(parents=True, exist_ok=True)
    out = []
    for it in bases:
        im = None
        for name, (lab, fn) in {**SS.NEG, **SS.POS}.items():
            key = hashlib.sha256(f"{it['path']}:{name}".encode()).hexdigest()[:16]
            p = SYN / f"{name}_{key}.png"
            if not p.exists():
                if im is None:
                    im = Image.fromarray(load_rgb(it["path"]))
                    if min(im.size) < 200:  # small chips: paint at 2x so the filters act as on a real picture
                        im = im.resize((im.size[0] * 2, im.size[1] * 2), Image.LANCZOS)
                fn(im, SS.rng_for(key)).save(p)
            out.append({"subset": "synthetic", "path": str(p), "group": it["group"], "syn_label": lab,
                        "style": name, "has_face": lab == "real", "kind": lab})
    return out


def _cache_v2(path: str) -> str:
    from faceset.scan.embed import worker_threads

    worker_threads(1)
    p = T.CACHE / "v2" / (hashlib.sha256(f"{path}:{T.CAND_T}".encode()).hexdigest()[:20] + ".npz")
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        f = T.extract_image_v2(path)
        tmp = str(p) + ".tmp.npz"
        np.savez(tmp, **f)
        os.replace(tmp, p)
    return path


def _key(path: str) -> str:
    return hashlib.sha256(f"{path}:{T.CAND_T}".encode()).hexdigest()[:20]


def _cache_lite2(path: str) -> str:
    """EfficientNet-Lite2 of each cached detection's context square and of the whole image."""
    import torch

    from faceset.scan.verify import backbone_features, context_crop, image_thumb

    torch.set_num_threads(1)
    p = LITE2 / f"{_key(path)}.npz"
    if p.exists():
        return path
    z = np.load(T.CACHE / "v2" / f"{_key(path)}.npz")
    boxes = z["raw_box"]
    ctx = img = np.zeros((0, 1280), np.float32)
    if len(boxes):
        rgb = load_rgb(path)
        ctx = backbone_features([context_crop(rgb, b) for b in boxes], "efficientnet_lite2")
        img = np.repeat(backbone_features([image_thumb(rgb)], "efficientnet_lite2"), len(boxes), 0)
    tmp = str(p) + ".tmp.npz"
    np.savez(tmp, effnet2_ctx=ctx, effnet2_img=img)
    os.replace(tmp, p)
    return path


def _pool_map(fn, paths, jobs: int, what: str) -> None:
    import multiprocessing as mp

    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(jobs) as pool:
        for i, _ in enumerate(pool.imap_unordered(fn, paths, chunksize=8)):
            if (i + 1) % 200 == 0:
                print(f"  {what}: {i + 1}/{len(paths)}, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


class CV:
    """Features of real + synthetic detections, the real images' folds, and the shipped nested-cut recipe."""

    def __init__(self, real, syn):
        orig = T._label

        def label(it, d, is_best, hbox, iou):  # synthetic: the strongest detection carries the style's label
            if it["subset"] == "synthetic":
                return it["syn_label"] if is_best else ""
            return orig(it, d, is_best, hbox, iou)

        T._label = label
        try:
            self.F = T.cached_features_v2(real + syn)
        finally:
            T._label = orig
        self.real, self.syn = real, syn
        fo_real = T.folds(real)  # the same folds as the shipped bench (synthetic images do not move them)
        gfold = {it["group"]: f for it, f in zip(real, fo_real)}
        self.fo = np.concatenate([fo_real, [gfold[s["group"]] for s in syn]]).astype(int)
        img = self.F["image"]
        self.is_real = img < len(real)
        self.style = np.array([syn[i - len(real)]["style"] if i >= len(real) else "" for i in img], dtype=object)
        self.label_kind = self.F["label"].copy()
        self.label_syn = np.where(~self.is_real & (self.label_kind != "") & (self.label_kind != "real"),
                                  "synthetic", self.label_kind)
        self.Fr = {k: v[self.is_real] for k, v in self.F.items()}

    def add_lite2(self) -> None:
        parts = {b: [] for b in LITE2_BLOCKS}
        for it in self.real + self.syn:
            p = LITE2 / f"{_key(it['path'])}.npz"
            if not p.exists():
                continue
            z = np.load(p)
            for b in LITE2_BLOCKS:
                if len(z[b]):
                    parts[b].append(z[b])
        n_real = int(self.is_real.sum())
        for b, v in parts.items():
            a = np.concatenate(v)
            assert len(a) == n_real, (b, len(a), n_real)  # lite2 blocks exist for the real images only
            full = np.zeros((len(self.F["score"]), a.shape[1]), np.float32)
            full[self.is_real] = a
            self.F[b] = full
            self.Fr[b] = a

    def scores(self, blocks, styles=(), syn_class=False):
        """Outer-fold P(real) of every face and the inner out-of-fold scores of each outer fold's training side."""
        y = self.label_syn if syn_class else self.label_kind
        use = (y != "") & (self.is_real | np.isin(self.style, list(styles)))
        outer, inner, _ = T.nested_scores(self.F, None, blocks, fo=self.fo, y=y, use=use)
        return outer, inner

    def cut(self, inner) -> np.ndarray:
        """Per face: its outer fold's cut, keeping POS_RECALL of the fold's *real* training positives."""
        c = T.nested_cuts(self.F, inner, self.fo, pos=(self.label_kind == "real") & self.is_real)
        return np.array([c[f] for f in range(5)])[self.fo[self.F["image"]]]

    def stacked(self, fast, full) -> dict:
        (of, inf), (oF, inF) = fast, full
        comb = T.STACK_A * T.logit(of) + (1 - T.STACK_A) * T.logit(oF)
        cin = {f: T.STACK_A * T.logit(inf[f]) + (1 - T.STACK_A) * T.logit(inF[f]) for f in inF}
        acc = (comb >= self.cut(cin)).astype(np.float64)
        return self.result(acc, comb)

    def result(self, acc, score) -> dict:
        from sklearn.metrics import roc_auc_score

        r = T.image_results(self.Fr, self.real, acc[self.is_real], 0.5, 0.5)
        y = self.Fr["label"]
        lab = y != ""
        r["face_auc"] = round(float(roc_auc_score(y[lab] == "real", score[self.is_real][lab])), 4)
        return r


def yunet_rescue(real) -> dict:
    """Images where CenterFace finds nothing >= 0.5: how many a YuNet pass gives a candidate, per threshold."""
    from faceset.scan.cnn_detectors import get_detector

    cf, yu = get_detector("centerface", threads=1), get_detector("yunet")
    out = {}
    for it in real:
        if it["subset"] not in ("nonface", "nonface_hard"):
            continue
        rgb = load_rgb(it["path"])
        if cf.detect(rgb, 0.5):
            continue
        scores = [d.score for d in yu.detect(rgb, 0.5)]
        side = "real_face_images" if it["has_face"] else "no_face_images"
        for t in (0.5, 0.6, 0.7, 0.8, 0.9):
            r = out.setdefault(str(t), {"real_face_images": [0, 0], "no_face_images": [0, 0]})[side]
            r[1] += 1
            r[0] += any(s >= t for s in scores)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=2, help="processes for feature extraction")
    ap.add_argument("--base", type=int, default=N_BASE, help="portraits the synthetic images are made from")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    real = items_real()
    syn = synthetic_items(real, a.base)
    todo = [it["path"] for it in real + syn
            if not (T.CACHE / "v2" / f"{_key(it['path'])}.npz").exists()]
    if todo:
        _pool_map(_cache_v2, todo, a.jobs, "features")
    LITE2.mkdir(parents=True, exist_ok=True)
    todo = [it["path"] for it in real if not (LITE2 / f"{_key(it['path'])}.npz").exists()]
    if todo:
        _pool_map(_cache_lite2, todo, a.jobs, "lite2")
    cv = CV(real, syn)
    cv.add_lite2()
    fast_b, ship_b = T.FEATURE_SETS[T.AUTO_FAST], T.FEATURE_SETS[T.SHIP]
    neg = tuple(SS.NEG)
    rows = {}
    fast0 = cv.scores(fast_b)
    rows["shipped recipe (no synthetic, MobileNetV2 context/image)"] = cv.stacked(fast0, cv.scores(ship_b))
    for name, styles, sc in (("+ synthetic, all styles", tuple(SS.NEG) + tuple(SS.POS), False),
                             ("+ synthetic negatives", neg, False),
                             ("+ synthetic positives (old, low quality)", tuple(SS.POS), False),
                             ("+ synthetic negatives as one 'synthetic' class", neg, True),
                             ("+ synthetic, all styles, negatives as one class", tuple(SS.NEG) + tuple(SS.POS), True)):
        print(name, file=sys.stderr, flush=True)
        rows[name] = cv.stacked(cv.scores(fast_b, styles, sc), cv.scores(ship_b, styles, sc))
    for name, blocks in (("+ Lite2 context/image blocks", ship_b + LITE2_BLOCKS),
                         ("Lite2 context/image instead of MobileNetV2's",
                          ("embedding", "stats", "effnet") + LITE2_BLOCKS)):
        print(name, file=sys.stderr, flush=True)
        rows[name] = cv.stacked(fast0, cv.scores(blocks))
    res = {"images": len(real), "synthetic_images": len(syn),
           "synthetic_faces": {s: int(((cv.style == s) & (cv.label_kind != "")).sum()) for s in {**SS.NEG, **SS.POS}},
           "rows": rows, "yunet_rescue": yunet_rescue(real), "seconds": round(time.perf_counter() - t0, 1)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "verifier_ablation.json").write_text(json.dumps(res, indent=1))
    (OUT / "verifier_ablation.md").write_text(render(res))
    print(render(res))
    return res


def render(res) -> str:
    def f(v):
        return f"{100 * v['rate']:.1f}% ({v['ok']}/{v['n']})" if v else "-"

    kinds = ("painting", "render", "sculpture", "cartoon", "object", "animal")
    lines = ["# Face verifier: what else was tried (held-out, source- and person-disjoint 5-fold CV, det. 0.5)", "",
             f"{res['images']} real dev images scored; {res['synthetic_images']} synthetic images (faces detected per "
             f"style: {res['synthetic_faces']}) only ever on the training side. Every row is the shipped stacked "
             "recipe with one change, nested P(real) cut on the real training positives.", "",
             "| variant | AUC | portraits | no-face rejected | " + " | ".join(kinds) + " | real faces in hard photos |",
             "|---" * (5 + len(kinds)) + "|"]
    for name, r in res["rows"].items():
        lines.append(f"| {name} | {r['face_auc']} | {f(r['portraits_found'])} | {f(r['nonface_rejected'])} | "
                     + " | ".join(f(r.get("nonface_rejected:" + k)) for k in kinds)
                     + f" | {f(r.get('real_faces_found'))} |")
    lines += ["", "## YuNet as a rescue detector (images where CenterFace finds nothing >= 0.5)", "",
              "| YuNet threshold | real-face images recovered | no-face images given a candidate |", "|---|---|---|"]
    for t, r in res["yunet_rescue"].items():
        a, b = r["real_face_images"], r["no_face_images"]
        lines.append(f"| {t} | {a[0]}/{a[1]} | {b[0]}/{b[1]} |")
    lines += ["", f"Wall {res['seconds']} s.", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
