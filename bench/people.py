"""People clustering: quality on real photos, threshold calibration, and scale.

1. Real: ingest + scan ../shared/data/identities (24 people, one main face per
   photo; truth = folder name), then on the main faces' embeddings:
   - the threshold curve (pairwise P/R/F and BCubed F for faceset's clustering
     at each threshold) and dlib's own Chinese whispers at its usual 0.6;
   - leave-people-out calibration: 4 folds over people; the threshold is
     chosen on 3 folds (middle of the best-F plateau) and scored on the
     held-out people;
   - held-out photos: cluster a random half of each person's photos, then add
     the other half incrementally (new photos join existing ids); F over all
     photos and over the held-out half.
2. Unseen people (issue #10): person-disjoint halves of ../shared/data/identities_wild (300 LFW people) with
   utkface faces as distractors, embeddings from bench/identity_data.py's cache (/tmp/faceset_emb, raw
   embeddings as scan stores them): faceset's clustering at its default (curate/cluster.DEFAULT) on each
   held-out half, the threshold re-chosen on the other half, the previous Chinese whispers at 0.57 and the
   peer (dlib Chinese whispers at 0.6, face_recognition's encodings), side by side; utkface alone: cluster
   sizes. ``--quick`` uses 1,500 distractors and skips the peer on utkface alone.
3. Scale: 10k and 100k synthetic embeddings (real identity embeddings as
   seeds, jittered into new people); time and peak memory (RSS above start) of
   faceset's clustering vs dlib's (dlib skipped at 100k: dense O(n^2) edges).

    python bench/people.py                   # writes bench/results/people.{json,md,png}
    python bench/people.py --sizes 10000     # quicker
    python bench/people.py --quick           # smoke: 24 people, small wild CV, 10k scale only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import measure  # noqa: E402

DATA = Path(os.environ.get("FACESET_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "bench" / "results"
PEER_T = 0.6
GRID = np.round(np.arange(0.40, 0.701, 0.01), 2)


def identity_embeddings(cache: Path | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(embeddings of main faces, identity per face, info) from a real ingest + scan."""
    if cache and cache.exists():
        z = np.load(cache)
        return z["emb"], z["ids"], {"from_cache": str(cache)}
    import faceset
    from faceset.ingest import ingest
    from faceset.scan import scan

    with tempfile.TemporaryDirectory() as tmp:
        ws = faceset.init_workspace(Path(tmp) / "ws")
        ingest(ws, [DATA / "identities"], license="test-only", consent="research_exemption",
               source_name="identities", labels="folder:identity", progress=False)
        t = time.perf_counter()
        scan(ws, progress=False)
        scan_s = time.perf_counter() - t
        rows = ws.catalog.q(
            """SELECT f.embedding, l.value FROM faces f JOIN labels l ON l.image_id=f.image_id AND l.name='identity'
               WHERE f.is_main=1 AND f.embedding IS NOT NULL ORDER BY f.id""")
        photos = ws.catalog.scalar("SELECT COUNT(*) FROM images")
        ws.close()
    emb = np.frombuffer(b"".join(r[0] for r in rows), np.float32).reshape(-1, 128)
    ids = np.array([r[1] for r in rows])
    if cache:
        np.savez(cache, emb=emb, ids=ids)
    return emb, ids, {"photos": photos, "main_faces": len(ids), "scan_s": round(scan_s, 1)}


def pairwise(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Pairwise precision/recall/F via contingency counts (no n x n matrix)."""
    _, p = np.unique(pred, return_inverse=True)
    _, t = np.unique(truth, return_inverse=True)
    c2 = lambda x: (x * (x - 1) / 2).sum()
    cont = np.unique(np.stack([p, t], 1), axis=0, return_counts=True)[1].astype(np.float64)
    tp = c2(cont)
    pp, tt = c2(np.bincount(p).astype(np.float64)), c2(np.bincount(t).astype(np.float64))
    P = tp / pp if pp else 1.0
    R = tp / tt if tt else 1.0
    # BCubed: per item, share of its predicted cluster with its class, and vice versa
    key = p * (t.max() + 1) + t
    _, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)  # not bincount: key spans clusters x classes
    both = cnt[inv].astype(np.float64)
    bp = float((both / np.bincount(p)[p]).mean())
    br = float((both / np.bincount(t)[t]).mean())
    f = lambda a, b: 2 * a * b / (a + b) if a + b else 0.0
    return {"precision": round(P, 4), "recall": round(R, 4), "f": round(f(P, R), 4),
            "bcubed_p": round(bp, 4), "bcubed_r": round(br, 4), "bcubed_f": round(f(bp, br), 4),
            "clusters": int(p.max() + 1)}


def ours(emb: np.ndarray, t: float) -> np.ndarray:
    """What `faceset people` runs on a first pass: average linkage (curate/cluster.py) at threshold ``t``."""
    from faceset.curate.cluster import DEFAULT, cluster

    return cluster(emb, params=DEFAULT.with_(threshold=float(t)))


def dlib_cw(emb: np.ndarray, t: float = PEER_T) -> np.ndarray:
    import dlib

    return np.array(dlib.chinese_whispers_clustering([dlib.vector(e.astype(float).tolist()) for e in emb], t))


def plateau_mid(ts: np.ndarray, fs: np.ndarray) -> float:
    """Middle of the thresholds whose F is within 0.005 of the best (robust to where the curve is flat)."""
    good = ts[fs >= fs.max() - 0.005]
    return float(np.round(np.median(good), 2))


def leave_people_out(emb, ids, folds=4, seed=0) -> dict:
    people = np.array(sorted(set(ids)))
    rng = np.random.default_rng(seed)
    rng.shuffle(people)
    parts = np.array_split(people, folds)
    out = []
    for k, held in enumerate(parts):
        test = np.isin(ids, held)
        fs = np.array([pairwise(ours(emb[~test], t), ids[~test])["f"] for t in GRID])
        t = plateau_mid(GRID, fs)
        out.append({"fold": k, "held_out_people": len(held), "threshold": t,
                    **{k2: v for k2, v in pairwise(ours(emb[test], t), ids[test]).items()}})
    return {"folds": out, "thresholds": [o["threshold"] for o in out],
            "mean_f": round(float(np.mean([o["f"] for o in out])), 4),
            "mean_bcubed_f": round(float(np.mean([o["bcubed_f"] for o in out])), 4)}


def held_out_photos(emb, ids, t, seeds=5) -> dict:
    """Half of each person's photos first, the rest added incrementally."""
    from faceset.curate.cluster import DEFAULT, cluster_incremental

    res = []
    for s in range(seeds):
        rng = np.random.default_rng(s)
        first = np.zeros(len(ids), bool)
        for p in set(ids):
            idx = np.flatnonzero(ids == p)
            first[rng.permutation(idx)[: max(1, len(idx) // 2)]] = True
        la = ours(emb[first], t)
        lb = cluster_incremental(emb[~first], emb[first], la, params=DEFAULT.with_(threshold=float(t))).labels
        lb = np.where(lb >= 0, lb, la.max() + 1 - lb)
        lab = np.empty(len(ids), np.int64)
        lab[first], lab[~first] = la, lb
        m_all = pairwise(lab, ids)
        # held-out photos: how they were assigned relative to everything (pairs with a held-out member)
        res.append({"seed": s, "all": m_all, "held_out_joined_right_person": round(float(np.mean([
            (lab[i] == lab[first & (ids == ids[i])]).all() for i in np.flatnonzero(~first)])), 4)})
    return {"runs": res, "mean_f": round(float(np.mean([r["all"]["f"] for r in res])), 4),
            "mean_joined_right": round(float(np.mean([r["held_out_joined_right_person"] for r in res])), 4)}


def synthetic(emb: np.ndarray, n: int, seed=0, per=10) -> tuple[np.ndarray, np.ndarray]:
    """n faces of n/per people: real embeddings jittered into new people (centres ~0.75 apart,
    faces of one person ~0.35 apart, like measured.md's real distances)."""
    rng = np.random.default_rng(seed)
    people = n // per
    base = emb[rng.integers(0, len(emb), people)]
    centres = base + rng.normal(scale=0.047, size=base.shape)
    truth = np.repeat(np.arange(people), per)
    x = centres[truth] + rng.normal(scale=0.022, size=(people * per, 128))
    return x.astype(np.float32), truth


def timed(fn):
    """(result, seconds, peak MiB above the starting RSS)."""
    out, s, _, above = measure.timed(fn)
    return out, round(s, 2), above


def wild_cv(quick: bool = False, cache: Path | None = None) -> dict:
    """Person-disjoint CV on identities_wild + utkface distractors (see the module doc, part 2)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import identity_cv as C
    from faceset.curate.cluster import DEFAULT, cluster

    data = C.load_product(cache, quick=quick)
    halves = C.folds(data["y_w"], data["g_w"])
    ts = (0.50, 0.54, 0.58) if quick else (0.48, 0.50, 0.52, 0.54, 0.56, 0.58)
    grid = [DEFAULT.with_(threshold=t) for t in ts]
    out = {"lfw_faces": int(len(data["x_w"])), "lfw_people": int(len(set(data["y_w"]))),
           "distractors": int(len(data["x_u"])),
           "default": {"threshold": DEFAULT.threshold, "density": DEFAULT.density}, "folds": []}
    for f in (0, 1):
        train, test = halves[f], halves[1 - f]
        xtr, _, ytr, qtr, _ = C.subset(data, train)
        chosen, _ = C.choose_params(xtr, ytr, qtr, grid)
        x, raw, y, q, is_lfw = C.subset(data, test)
        t = time.perf_counter()
        row = {"held_out_people": len(test), "faces": int(len(x)),
               "faceset_default": C.mixed_report(y, cluster(x, quality=q, params=DEFAULT), is_lfw),
               "faceset_default_seconds": round(time.perf_counter() - t, 2),
               "faceset_rechosen": {"threshold": chosen.threshold,
                                    **C.mixed_report(y, cluster(x, quality=q, params=chosen), is_lfw)},
               "previous_cw_0.57": C.mixed_report(y, C.faceset_cw(raw), is_lfw),
               "peer_dlib_cw_0.6": C.mixed_report(y, C.peer_cw(raw), is_lfw)}
        out["folds"].append(row)
        print(json.dumps({"fold": f, **{k: v.get("pairwise_lfw", v) for k, v in row.items() if isinstance(v, dict)}}),
              file=sys.stderr)
    xu, ru = data["x_u"], data["raw_u"]
    out["utk_alone"] = {"faceset_default": C.size_report(cluster(xu, quality=data["q_u"], params=DEFAULT)),
                        "previous_cw_0.57": C.size_report(C.faceset_cw(ru))}
    if not quick:
        out["utk_alone"]["peer_dlib_cw_0.6"] = C.size_report(C.peer_cw(ru))
    return out


def _wild_md(w: dict) -> list[str]:
    L = ["", "## Unseen people: identities_wild, person-disjoint halves + utkface distractors", "",
         f"{w['lfw_faces']} LFW faces of {w['lfw_people']} people; {w['distractors']} utkface distractor faces; "
         f"faceset default threshold {w['default']['threshold']} (density {w['default']['density']}).", "",
         "| held-out half | method | pairwise F (LFW) | P | R | BCubed F (LFW) | distractors in LFW people | "
         "largest distractor-only cluster |", "|---|---|---|---|---|---|---|---|"]
    for i, fo in enumerate(w["folds"]):
        for k in ("faceset_default", "faceset_rechosen", "previous_cw_0.57", "peer_dlib_cw_0.6"):
            r = fo[k]
            name = f"{k} (t {r['threshold']})" if k == "faceset_rechosen" else k
            pl = r["pairwise_lfw"]
            L.append(f"| {i} | {name} | {pl['f']} | {pl['precision']} | {pl['recall']} | {r['bcubed_f_lfw']} | "
                     f"{r['distractors_joining_lfw_people']} | {r['largest_distractor_only_cluster']} |")
    L += ["", "utkface alone (cluster sizes):", "", "| method | faces | clusters | largest | largest % | top 5 |",
          "|---|---|---|---|---|---|"]
    for k, v in w["utk_alone"].items():
        L.append(f"| {k} | {v['faces']} | {v['clusters']} | {v['largest']} | {v['largest_pct']} | {v['top5']} |")
    return L


# ---------------------------------------------------------------- --cv: variants against chaining (issue #10 item 1)
CV_T = (0.54, 0.56, 0.58, 0.60, 0.62)
CV_SIZES = (5, 10, 20)
CV_FRACS = (0.2, 0.3)
BIG_N, BIG_PEOPLE = 300, 3


def big_people(data: dict, cov_people, seed_people, size: int = BIG_N, seed: int = 0):
    """Synthetic people with many photos (the case LFW's 4-10 photos a person cannot show): ``size`` draws from
    N(mean of a held-out person's photos, pooled within-person covariance of the OTHER fold's people)."""
    xw, yw = data["x_w"].astype(np.float64), data["y_w"]
    dev = []
    for p in sorted(cov_people):
        m = yw == p
        dev.append((xw[m] - xw[m].mean(0)) * np.sqrt(m.sum() / (m.sum() - 1)))
    dev = np.concatenate(dev)
    cov = dev.T @ dev / len(dev)
    rng = np.random.default_rng(seed)
    xs = [rng.multivariate_normal(xw[yw == p].mean(0), cov, size) for p in seed_people]
    return np.concatenate(xs).astype(np.float32), np.repeat(np.array(list(seed_people)), size)


def _cv_report(y, lab, is_lfw) -> dict:
    """identity_cv.mixed_report + how many distractor-only clusters exceed 5 faces (the goal: none)."""
    import identity_cv as C

    lab = np.asarray(lab)
    r = C.mixed_report(y, lab, is_lfw)
    only = lab[~is_lfw][~np.isin(lab[~is_lfw], np.unique(lab[is_lfw]))]
    sizes = np.unique(only, return_counts=True)[1] if len(only) else np.zeros(0, int)
    return {"pairwise_f": r["pairwise_lfw"]["f"], "precision": r["pairwise_lfw"]["precision"],
            "recall": r["pairwise_lfw"]["recall"], "bcubed_f": r["bcubed_f_lfw"],
            "distractors_in_lfw_people": r["distractors_joining_lfw_people"],
            "largest_distractor_only": r["largest_distractor_only_cluster"],
            "distractor_clusters_over_5": int((sizes > 5).sum())}


def _choose(rows: list) -> dict:
    """On the training side: the candidates within 0.005 of the best LFW pairwise F, then the smallest largest
    distractor-only cluster, then the higher F (the goals: F >= 0.95 AND no distractor crowd)."""
    best = max(r["train"]["pairwise_f"] for r in rows)
    near = [r for r in rows if r["train"]["pairwise_f"] >= best - 0.005]
    return min(near, key=lambda r: (r["train"]["largest_distractor_only"], -r["train"]["pairwise_f"]))


def people_cv(quick: bool = False, cache: Path | None = None, *, kinds=("raw",), families=None, radii=None,
              ts=None, sizes=None, fracs=None, peers: bool = True, stem: str | None = None) -> dict:
    """Person-disjoint CV of the clustering variants (module doc); writes bench/results/people_cv.{json,md}.

    ``kinds``: embedding representations (scan/embed.KINDS) compared in the same run on the same folds (each
    family's name gets the kind as a prefix when more than one); ``families``: names to run (default all);
    ``radii`` / ``sizes`` / ``fracs``: crowd_radius / crowd_size / crowd_frac grids of the crowd split (default
    the shipped radius and CV_SIZES x CV_FRACS); ``ts``: threshold grid."""
    import identity_cv as C
    from faceset.curate.cluster import DEFAULT

    t_start = time.perf_counter()
    ts = ts or ((0.56, 0.58, 0.60) if quick else CV_T)
    radii = radii or (DEFAULT.crowd_radius,)
    sizes = sizes or (CV_SIZES[1:] if quick else CV_SIZES)
    fracs = fracs or CV_FRACS
    plain = DEFAULT.with_(crowd_size=0)  # DEFAULT has the crowd split on: the other families run without it
    fams0 = {"threshold only (density 0.5)": [plain.with_(threshold=t) for t in ts],
             "density 1.0": [plain.with_(threshold=t, density=1.0) for t in ts],
             "density 1.5": [plain.with_(threshold=t, density=1.5) for t in ts],
             "crowd split": [DEFAULT.with_(threshold=t, crowd_size=s, crowd_frac=f, crowd_radius=r) for t in ts
                             for s in sizes for f in fracs for r in radii]}
    if families:
        fams0 = {k: v for k, v in fams0.items() if k in families}
    out = {"data": {}, "selection": " ".join(_choose.__doc__.split()), "families": {}, "peers": {}}
    for kind in kinds:
        data = C.load_product(cache, quick=quick, kind=kind)
        prefix = f"{kind}: " if len(kinds) > 1 else ""
        _people_cv_kind(out, data, {prefix + k: v for k, v in fams0.items()}, quick, first=peers and kind == kinds[0])
    out["data"]["kinds"] = list(kinds)
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    OUT.mkdir(parents=True, exist_ok=True)
    stem = stem or ("people_cv_quick" if quick else "people_cv")
    (OUT / f"{stem}.json").write_text(json.dumps(out, indent=1, default=str) + "\n")
    (OUT / f"{stem}.md").write_text(_cv_md(out))
    print(_cv_md(out))
    return out


def _people_cv_kind(out: dict, data: dict, fams: dict, quick: bool, first: bool) -> None:
    """One representation's rows of people_cv (families, then the peers on the raw descriptors, once)."""
    import identity_cv as C
    from faceset.curate import refine
    from faceset.curate.cluster import cluster

    halves = C.folds(data["y_w"], data["g_w"])
    sides = [C.subset(data, h) for h in halves]
    cache_lab: dict = {}
    secs: dict = {}

    def run(side: int, p):
        key = (side, p)
        if key not in cache_lab:
            x, _, _, q, _ = sides[side]
            base = p.with_(crowd_size=0)
            if (side, base) not in cache_lab:
                t0 = time.perf_counter()
                cache_lab[(side, base)] = cluster(x, quality=q, params=base)
                secs[(side, base)] = time.perf_counter() - t0
            if p.crowd_size:
                t0 = time.perf_counter()  # what cluster(params=p) does after the agglomeration
                cache_lab[key] = refine.split_crowds(x, cache_lab[(side, base)], p, cluster, quality=q)
                secs[key] = secs[(side, base)] + time.perf_counter() - t0
        return cache_lab[key]

    out["data"].update({"lfw_faces": int(len(data["x_w"])), "lfw_people": int(len(set(data["y_w"]))),
                        "distractors": int(len(data["x_u"])), "quick": quick})
    for name, grid in fams.items():
        fam = {"folds": [], "utk_alone": [], "big_people": []}
        for f in (0, 1):
            tr, te = f, 1 - f
            rows = []
            for p in grid:
                rows.append({"params": p, "train": _cv_report(sides[tr][2], run(tr, p), sides[tr][4])})
            ch = _choose(rows)
            p = ch["params"]
            x, raw, y, q, is_lfw = sides[te]
            test = _cv_report(y, run(te, p), is_lfw)
            fam["folds"].append({"chosen": _pdict(p), "train": ch["train"], "test": test,
                                 "seconds": round(secs[(te, p)], 2),
                                 "sweep": [{**_pdict(r["params"]), **r["train"]} for r in rows]})
            # utkface alone with the fold's choice
            fam["utk_alone"].append(C.size_report(cluster(data["x_u"], quality=data["q_u"], params=p)))
            # large people (synthetic) among the held-out side: are they kept whole?
            seeds = sorted(halves[te])[:BIG_PEOPLE]
            bx, by = big_people(data, halves[tr], seeds)
            lab = cluster(np.concatenate([x, bx]), quality=np.r_[q, np.full(len(bx), float(np.median(data["q_w"])))],
                          params=p)
            yy = np.r_[y, by]
            kept = []
            for s in seeds:
                m = np.flatnonzero(yy == s)
                main = np.bincount(lab[m]).argmax()
                kept.append({"faces": int(len(m)), "share_in_largest": round(float((lab[m] == main).mean()), 3),
                             "pieces": int(len(np.unique(lab[m]))),
                             "others_in_it": int(((lab == main) & (yy != s)).sum())})
            fam["big_people"].append(kept)
            print(json.dumps({"family": name, "fold": f, "chosen": _pdict(p), "test": test,
                              "utk_largest_pct": fam["utk_alone"][-1]["largest_pct"],
                              "big_min_share": min(k["share_in_largest"] for k in kept)}), file=sys.stderr, flush=True)
        out["families"][name] = fam
    for name, fn in (("peer dlib CW 0.6", C.peer_cw), ("previous faceset CW 0.57", C.faceset_cw)):
        if (quick and name.startswith("peer")) or not first:
            continue
        pr = {"folds": []}
        for f in (0, 1):
            x, raw, y, q, is_lfw = sides[1 - f]
            t0 = time.perf_counter()
            lab = fn(raw)
            pr["folds"].append({"test": _cv_report(y, lab, is_lfw), "seconds": round(time.perf_counter() - t0, 2)})
        pr["utk_alone"] = [C.size_report(fn(data["raw_u"]))]
        out["peers"][name] = pr
        print(json.dumps({"peer": name, "folds": [fo["test"] for fo in pr["folds"]]}), file=sys.stderr, flush=True)


def _pdict(p) -> dict:
    d = {"threshold": p.threshold, "density": p.density}
    if p.crowd_size:
        d.update(crowd_size=p.crowd_size, crowd_frac=p.crowd_frac, crowd_radius=p.crowd_radius)
    return d


def _cv_md(o: dict) -> str:
    d = o["data"]
    L = ["# People clustering, person-disjoint CV (bench/people.py --cv)", "",
         f"{d['lfw_faces']} identities_wild (LFW) faces of {d['lfw_people']} people in 2 person-disjoint halves; "
         f"every one of {d['distractors']} utkface faces as distractors on both sides. Each variant's parameters "
         "are chosen on one half and reported on the other. Selection: " + o["selection"], "",
         "Goals (issue #10): pairwise F >= 0.95, no distractor cluster > 5 faces, utkface alone: no cluster > 1%.",
         "Large people: 3 synthetic people x 300 faces added to the held-out half (drawn from a held-out person's "
         "mean and the other half's within-person covariance): share of each in its largest cluster (min of 3).", "",
         "| variant | fold | chosen | LFW pairwise F | P | R | BCubed F | distractors in LFW people | "
         "largest distractor-only | distractor clusters > 5 | utkface alone largest % | large people kept (min) | s |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, fam in o["families"].items():
        for f, fo in enumerate(fam["folds"]):
            t, u = fo["test"], fam["utk_alone"][f]
            ch = ", ".join(f"{k} {v}" for k, v in fo["chosen"].items())
            big = min(b["share_in_largest"] for b in fam["big_people"][f])
            L.append(f"| {name} | {f} | {ch} | {t['pairwise_f']} | {t['precision']} | {t['recall']} | "
                     f"{t['bcubed_f']} | {t['distractors_in_lfw_people']} | {t['largest_distractor_only']} | "
                     f"{t['distractor_clusters_over_5']} | {u['largest_pct']} | {big} | {fo['seconds']} |")
    for name, pr in o["peers"].items():
        for f, fo in enumerate(pr["folds"]):
            t = fo["test"]
            L.append(f"| {name} | {f} | - | {t['pairwise_f']} | {t['precision']} | {t['recall']} | {t['bcubed_f']} | "
                     f"{t['distractors_in_lfw_people']} | {t['largest_distractor_only']} | "
                     f"{t['distractor_clusters_over_5']} | {pr['utk_alone'][0]['largest_pct']} | - | {fo['seconds']} |")
    L += ["", "## utkface alone: cluster sizes (fold 0's choice; peers)", "",
          "| variant | clusters | largest | largest % | top 5 | singletons | 2-5 | 6-20 | > 20 |",
          "|---|---|---|---|---|---|---|---|---|"]
    rows = [(n, fam["utk_alone"][0]) for n, fam in o["families"].items()]
    rows += [(n, pr["utk_alone"][0]) for n, pr in o["peers"].items()]
    for n, u in rows:
        s = u["sizes"]
        L.append(f"| {n} | {u['clusters']} | {u['largest']} | {u['largest_pct']} | {u['top5']} | {s['1']} | "
                 f"{s['2-5']} | {s['6-20']} | {s['>20']} |")
    L += ["", f"Run time {o['seconds']} s (2 shared cores)."]
    return "\n".join(L) + "\n"


def utk_sheet(n: int, cache: Path | None = None, per_row: int = 12, cell: int = 64) -> Path:
    """Contact sheet of utkface's ``n`` largest clusters at cluster.DEFAULT (the product's clustering), written to
    bench/out/ only: it holds faces of the shared data, which never enter the repo."""
    from PIL import Image, ImageDraw

    import identity_cv as C
    import identity_data as D
    from faceset.curate.cluster import DEFAULT, cluster

    data = C.load_product(cache)
    files = D.load_partial("utkface", cache or D.DEFAULT_CACHE)["files"]
    lab = cluster(data["x_u"], quality=data["q_u"], params=DEFAULT)
    ids, cnt = np.unique(lab, return_counts=True)
    top = ids[np.argsort(-cnt, kind="stable")][:n]
    sheet = Image.new("RGB", (60 + per_row * cell, len(top) * cell), "white")
    draw = ImageDraw.Draw(sheet)
    for r, c in enumerate(top):
        m = np.flatnonzero(lab == c)
        meta = [Path(str(files[i])).name.split("_")[:3] for i in m]  # UTKFace names: age_gender_race_...
        ages = sorted(int(x[0]) for x in meta)
        print(json.dumps({"rank": r, "faces": int(len(m)), "ages": ages, "gender": sorted({x[1] for x in meta}),
                          "race": sorted({x[2] for x in meta})}))
        draw.text((2, r * cell + cell // 2 - 6), f"{r}: {len(m)}", fill="black")
        for k, i in enumerate(m[:per_row]):
            im = Image.open(D.DATA / "utkface" / str(files[i])).convert("RGB").resize((cell, cell))
            sheet.paste(im, (60 + k * cell, r * cell))
    out = ROOT / "bench" / "out" / "utk_largest_clusters.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(f"sheet: {out}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--cache", type=Path, default=None, help="npz of identity embeddings (skips the scan)")
    ap.add_argument("--wild-cache", type=Path, default=None, help="bench/identity_data.py cache folder")
    ap.add_argument("--quick", action="store_true", help="small wild CV and 10k scale only (a smoke run)")
    ap.add_argument("--no-wild", action="store_true", help="skip the identities_wild CV")
    ap.add_argument("--cv", action="store_true", help="only the person-disjoint CV of the clustering variants "
                    "(bench/results/people_cv.*; with --quick: 1,500 distractors, people_cv_quick.*)")
    ap.add_argument("--kinds", default="raw", help="--cv: comma list of embedding kinds (scan/embed.KINDS), "
                    "compared in one run, e.g. raw,flip_mean,unit,flip_unit")
    ap.add_argument("--families", default=None, help="--cv: ';'-separated family names (default all)")
    ap.add_argument("--radii", default=None, help="--cv: crowd_radius grid, e.g. 0.42,0.44,0.46,0.48,0.50")
    ap.add_argument("--thresholds", default=None, help="--cv: threshold grid (default 0.54-0.62)")
    ap.add_argument("--crowd-sizes", default=None, help="--cv: crowd_size grid (default 5,10,20)")
    ap.add_argument("--crowd-fracs", default=None, help="--cv: crowd_frac grid (default 0.2,0.3)")
    ap.add_argument("--no-peers", action="store_true", help="--cv: skip the peers (they use raw descriptors)")
    ap.add_argument("--stem", default=None, help="--cv: output name in bench/results (default people_cv)")
    ap.add_argument("--sheet", type=int, default=0, metavar="N",
                    help="only a contact sheet of utkface's N largest clusters at cluster.DEFAULT -> bench/out/ "
                    "(a row per cluster, with the files' age/gender/race; to check by eye whether a 'distractor "
                    "crowd' is strangers or one person UTKFace holds many times)")
    a = ap.parse_args()
    if a.sheet:
        return utk_sheet(a.sheet, a.wild_cache)
    if a.cv:
        fl = lambda v, f=float: tuple(f(x) for x in v.split(",")) if v else None  # noqa: E731
        people_cv(a.quick, a.wild_cache, kinds=tuple(a.kinds.split(",")),
                  families=a.families.split(";") if a.families else None, radii=fl(a.radii), ts=fl(a.thresholds),
                  sizes=fl(a.crowd_sizes, int), fracs=fl(a.crowd_fracs), peers=not a.no_peers, stem=a.stem)
        return
    if a.quick:
        a.sizes = "10000"
    from faceset.curate.people import THRESHOLD

    emb, ids, info = identity_embeddings(a.cache)
    curve = []
    for t in GRID:
        curve.append({"threshold": float(t), **pairwise(ours(emb, t), ids)})
    lpo = leave_people_out(emb, ids)
    same = []
    diff = []
    for i in range(len(ids)):
        d = np.linalg.norm(emb[i + 1:] - emb[i], axis=1)
        same.append(d[ids[i + 1:] == ids[i]])
        diff.append(d[ids[i + 1:] != ids[i]])
    same, diff = np.concatenate(same), np.concatenate(diff)
    # equal-error point of the pair verification task
    eer_t = float(GRID[np.argmin([abs((same >= t).mean() - (diff < t).mean()) for t in GRID])])
    r_ours, s_ours, m_ours = timed(lambda: ours(emb, THRESHOLD))
    r_dlib, s_dlib, m_dlib = timed(lambda: dlib_cw(emb))
    real = {"faceset": {"threshold": THRESHOLD, **pairwise(r_ours, ids), "seconds": s_ours},
            "dlib_cw_0.6": {"threshold": PEER_T, **pairwise(r_dlib, ids), "seconds": s_dlib},
            "dlib_cw_at_faceset_threshold": {"threshold": THRESHOLD, **pairwise(dlib_cw(emb, THRESHOLD), ids)}}
    held = held_out_photos(emb, ids, THRESHOLD)
    scale = []
    for n in [int(x) for x in a.sizes.split(",") if x]:
        x, truth = synthetic(emb, n)
        r, s, m = timed(lambda x=x: ours(x, THRESHOLD))
        row = {"n": n, "faceset_s": s, "faceset_peak_mib": m, "faceset": pairwise(r, truth),
               "dense_matrix_mib": round(n * n * 4 / 2**20, 1)}
        if n <= 20000:
            r2, s2, m2 = timed(lambda x=x: dlib_cw(x))
            row.update({"dlib_s": s2, "dlib_peak_mib": m2, "dlib": pairwise(r2, truth)})
        else:
            row["dlib"] = "not run: dlib.chinese_whispers_clustering compares all n^2 pairs"
        scale.append(row)
        print(json.dumps(row), file=sys.stderr)
    res = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
           "data": {"identities": len(set(ids)), "faces": len(ids), **info},
           "distances": {"same_person_pct": dict(zip(["p1", "p5", "p50", "p95", "p99"],
                                                     np.percentile(same, [1, 5, 50, 95, 99]).round(3).tolist())),
                         "different_pct": dict(zip(["p0.1", "p1", "p5", "p50"],
                                                   np.percentile(diff, [0.1, 1, 5, 50]).round(3).tolist())),
                         "equal_error_threshold": eer_t},
           "threshold_curve": curve, "leave_people_out": lpo, "real": real, "held_out_photos": held, "scale": scale}
    if not a.no_wild:
        res["identities_wild"] = wild_cv(a.quick, a.wild_cache)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "people.json").write_text(json.dumps(res, indent=2) + "\n")
    write_md(res)
    plot(res)
    print(json.dumps({"real": real, "lpo_mean_f": lpo["mean_f"], "held_out": held["mean_f"]}, indent=1))


def write_md(res: dict) -> None:
    r = res["real"]
    L = ["# People clustering (bench/people.py)", "",
         f"Data: identities/ — {res['data']['identities']} people, {res['data']['faces']} main faces "
         + (f"(embeddings from {res['data']['from_cache']})" if "from_cache" in res["data"]
            else f"(ingest + scan, scan {res['data']['scan_s']} s)")
         + f". Machine: {res['machine']['cpus']} CPUs, Python {res['machine']['python']}.", "",
         "| method | threshold | pairwise P | R | F | BCubed F | clusters | s |", "|---|---|---|---|---|---|---|---|"]
    for k, v in r.items():
        L.append(f"| {k} | {v['threshold']} | {v['precision']} | {v['recall']} | {v['f']} | {v['bcubed_f']} | "
                 f"{v['clusters']} | {v.get('seconds', '')} |")
    fs, fd = r["faceset"]["f"], r["dlib_cw_0.6"]["f"]
    L += ["", f"F ratio faceset / dlib@0.6: {fs / fd:.3f}" if fd else "", "",
          "Leave-people-out (4 folds, threshold chosen on the other folds): thresholds "
          f"{res['leave_people_out']['thresholds']}, held-out pairwise F {res['leave_people_out']['mean_f']}, "
          f"BCubed F {res['leave_people_out']['mean_bcubed_f']}.", "",
          "Held-out photos (half first, half added incrementally, 5 seeds): pairwise F "
          f"{res['held_out_photos']['mean_f']}, "
          f"held-out photos joining their person's existing id: {res['held_out_photos']['mean_joined_right']}.", "",
          f"Distances: same person {res['distances']['same_person_pct']}, "
          f"different {res['distances']['different_pct']}, "
          f"equal-error threshold {res['distances']['equal_error_threshold']}.", "",
          "## Threshold curve", "", "| t | P | R | F | BCubed F | clusters |", "|---|---|---|---|---|---|"]
    for c in res["threshold_curve"][::2]:
        L.append(f"| {c['threshold']:.2f} | {c['precision']} | {c['recall']} | {c['f']} | {c['bcubed_f']} | "
                 f"{c['clusters']} |")
    L += ["", "## Scale (synthetic jittered embeddings, 10 faces per person)", "",
          "| n | faceset s | faceset peak MiB | faceset F | dlib s | dlib peak MiB | dlib F | dense n×n float32 MiB |",
          "|---|---|---|---|---|---|---|---|"]
    for s in res["scale"]:
        d = s["dlib"]
        L.append(f"| {s['n']} | {s['faceset_s']} | {s['faceset_peak_mib']} | {s['faceset']['f']} | "
                 f"{s.get('dlib_s', '—')} | {s.get('dlib_peak_mib', '—')} | "
                 f"{d['f'] if isinstance(d, dict) else 'not run (O(n²))'} | "
                 f"{s['dense_matrix_mib']} |")
    if "identities_wild" in res:
        L += _wild_md(res["identities_wild"])
    (OUT / "people.md").write_text("\n".join(L) + "\n")


def plot(res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = res["threshold_curve"]
    t = [x["threshold"] for x in c]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k in ("precision", "recall", "f", "bcubed_f"):
        ax.plot(t, [x[k] for x in c], label=k)
    ax.axvline(res["real"]["faceset"]["threshold"], color="k", ls="--", lw=0.8, label="faceset threshold")
    ax.axvline(PEER_T, color="r", ls=":", lw=0.8, label="dlib 0.6")
    ax.set_xlabel("embedding distance threshold")
    ax.set_ylim(0.5, 1.01)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "people.png", dpi=110)


if __name__ == "__main__":
    main()
