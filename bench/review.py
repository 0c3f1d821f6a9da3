"""Assisted review with a simulated curator (issue #10 item 4): pairwise F after 0, 10, 50, 100 answers per 1,000
faces on person-disjoint halves of identities_wild + all utkface faces as distractors.

Per fold: the review model (curate/review.ReviewParams: one logistic per question kind) is fitted on the
training half's clustering (the curator's truth answers as labels), then the held-out half + distractors is
clustered at the product's cluster.DEFAULT and reviewed: each round asks the best questions (by expected
gain), the simulated curator answers from the truth, and the answers are applied as the product applies them
(curate/review.apply_answer = people.answer: move the face, merge the people, split the face off, split a
cluster said not to be one person). Side by side: the fitted model with the shipped proportions (with "is this
one person?" cluster questions), the same without cluster questions (the former proportions), and a naive
ranking (closest pair first, no gain weighting). Before the curves, per fold, an oracle analysis (:func:`oracle`):
the LFW pairs the clustering loses and what a perfect ranker could gain from the candidates. No peer does this.

Metric: pairwise F over the LFW faces (what bench/people.py and the issue's goal measure: LFW people only,
distractor faces left out); also pairwise F over all faces (distractors included, each utkface face its
own person), which is what bench/identity_cv.py's review table printed (F 0.173: the distractor-only
clusters of look-alike children carry almost all of its pairs, so answers about LFW people barely move it).

    nice -n 5 .venv/bin/python bench/review.py [--quick]      # writes bench/results/review.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import identity_cv as C  # noqa: E402
from faceset.curate import review as R  # noqa: E402
from faceset.curate.cluster import DEFAULT, cluster  # noqa: E402

OUT = ROOT / "bench" / "results"
PER_K = (0, 10, 50, 100)
NO_CLUSTER = {"cluster_share": 0.0, "split_share": 0.25}  # the side row: the former proportions, no cluster questions


def truth_answer(q: R.Question, y: np.ndarray) -> bool:
    return bool(y[q.a] == y[q.b])


def fit(x, y, lab, params=DEFAULT) -> R.ReviewParams:
    """Logistic per kind on the training half's candidates; label = the curator's answer improves the
    clustering: move: yes AND b's cluster holds more faces of a's person than a's own cluster does (a yes that
    moves a face out of its own person gains nothing); merge: yes; split: no. The move model is fitted on
    standardised features (MOVE_FEATURES differ in scale by 10x) and stored unstandardised."""
    from collections import Counter

    from sklearn.linear_model import LogisticRegression

    c = R.candidates(x, lab, params, replace(R.REVIEW_DEFAULT, cluster_share=1.0))
    t = params.threshold
    same = y[c.a] == y[c.b]
    held = Counter(zip(lab.tolist(), y.tolist()))
    better = np.array([held[(lab[b], y[a])] > held[(lab[a], y[a])] - 1 for a, b in zip(c.a, c.b)], bool)
    kw = {}
    for kind, width, target, name in (("move", len(R.MOVE_FEATURES), same & better, "move_w"),
                                      ("merge", len(R.MERGE_FEATURES), same, "merge_w")):
        m = c.kind == kind
        tgt = target[m]
        if m.sum() < 10 or not 0 < tgt.sum() < m.sum():
            continue
        X = c.X[m][:, :width]
        mu, sd = X.mean(0), X.std(0) + 1e-9
        lr = LogisticRegression(C=1.0, max_iter=5000).fit((X - mu) / sd, tgt)
        w = lr.coef_[0] / sd
        kw[name] = tuple(round(float(v), 4) for v in [lr.intercept_[0] - float((lr.coef_[0] * mu / sd).sum()), *w])
    m = c.kind == "cluster"  # cluster question: P(no) = P(its faces are not all one person)
    one = np.array([len(set(y[lab == lab[a]].tolist())) == 1 for a in c.a[m]], bool)
    if m.sum() >= 10 and 0 < one.sum() < m.sum():
        X = c.X[m][:, :len(R.CLUSTER_FEATURES)]
        mu, sd = X.mean(0), X.std(0) + 1e-9
        lr = LogisticRegression(C=1.0, max_iter=5000).fit((X - mu) / sd, ~one)
        kw["cluster_w"] = tuple(round(float(v), 4) for v in
                                [lr.intercept_[0] - float((lr.coef_[0] * mu / sd).sum()), *(lr.coef_[0] / sd)])
    for kind, cols, target, names in (("split", [c.L - t], ~same, ("s0", "s1")),):
        m = c.kind == kind
        X = np.stack([v[m] for v in cols], 1)
        if m.sum() < 10 or target[m].all() or not target[m].any():
            continue
        lr = LogisticRegression(C=10.0, max_iter=1000).fit(X, target[m])
        for nm, v in zip(names, [lr.intercept_[0], *lr.coef_[0]]):
            kw[nm] = round(float(v), 3)
    return replace(R.REVIEW_DEFAULT, **kw)


def naive(x, lab, limit, answers, graph, params=DEFAULT):
    """Peer-less baseline: the same candidates, closest first (no probability, no sizes)."""
    return R.questions(x, lab, limit=limit, params=params, review=R.REVIEW_DEFAULT, answers=answers, graph=graph,
                       order="closest")


def curve(x, y, q, is_lfw, rp, *, step_per_1000=2.0, per_k=PER_K, ranking="gain", cp=DEFAULT) -> list:
    n = len(x)
    lab = cluster(x, quality=q, params=cp)
    ans = R.Answers()
    graph = R.neighbours(x)
    out, asked, yes = [], 0, 0
    kinds = {k: 0 for k in R.KINDS}
    for k in per_k:
        goal = int(round(k * n / 1000))
        while asked < goal:
            step = min(goal - asked, max(1, int(round(step_per_1000 * n / 1000))))
            qs = (R.questions(x, lab, limit=step, params=cp, review=rp, answers=ans, graph=graph)
                  if ranking == "gain" else naive(x, lab, step, ans, graph, cp))
            if not qs:
                break
            for qq in qs:
                same = truth_answer(qq, y)
                ans.add(qq, same)
                lab = R.apply_answer(lab, qq, same, x, cp)
                kinds[qq.kind] += 1
                yes += same
            asked += len(qs)
        out.append({"answers_per_1000": k, "answers": asked, "yes": yes, "kinds": dict(kinds),
                    "lfw": C.pairwise(y[is_lfw], lab[is_lfw]), "all": C.pairwise(y, lab),
                    "bcubed_lfw": C.bcubed(y, lab, is_lfw),
                    "largest_distractor_only": C.mixed_report(y, lab, is_lfw)["largest_distractor_only_cluster"],
                    "distractor_only_over_5": distractor_only_over(lab, is_lfw, 5)})
        print(json.dumps({"ranking": ranking, **out[-1]}), file=sys.stderr, flush=True)
    return out


def oracle(x, y, lab, is_lfw, cp=DEFAULT) -> dict:
    """What a perfect ranker could do with the candidates (the simulated curator's truth known): the LFW pairs the
    clustering loses, in how many pieces, how far each piece is from its person's largest piece, and the LFW
    pairwise F after applying every move candidate whose yes would join a face to more of its own person (best
    per face, each asked once), from the old candidate set (each face's closest adjacent cluster only) and from
    the current one (every adjacent cluster within the band)."""
    from collections import Counter

    idx = np.flatnonzero(is_lfw)
    lost, pieces, rms, nearest, split_people = 0, [], [], [], 0
    for p in sorted(set(y[idx].tolist())):
        m = idx[y[idx] == p]
        cnt = Counter(lab[m].tolist())
        lost += len(m) * (len(m) - 1) // 2 - sum(v * (v - 1) // 2 for v in cnt.values())
        if len(cnt) < 2:
            continue
        split_people += 1
        big = max(cnt, key=cnt.get)
        for cl, v in cnt.items():
            if cl != big:
                d2 = ((x[m[lab[m] == cl]][:, None] - x[m[lab[m] == big]][None]) ** 2).sum(-1)
                pieces.append(v)
                rms.append(float(np.sqrt(d2.mean())))
                nearest.append(float(np.sqrt(d2.min())))
    c = R.candidates(x, lab, cp)
    held = Counter(zip(lab.tolist(), y.tolist()))
    mv = np.flatnonzero(c.kind == "move")
    gain = np.array([held[(lab[c.b[k]], y[c.a[k]])] - (held[(lab[c.a[k]], y[c.a[k]])] - 1)
                     if y[c.a[k]] == y[c.b[k]] and is_lfw[c.a[k]] else 0 for k in mv])
    closest = c.X[mv, R.MOVE_FEATURES.index("rank_a")] == 0
    out = {"lost_pairs": int(lost), "true_pairs": int(sum(v * (v - 1) // 2 for v in Counter(y[idx].tolist()).values())),
           "people_split": split_people, "extra_pieces": len(pieces), "piece_sizes": dict(Counter(pieces)),
           "piece_rms_to_main": {f"{lo}-{hi}": int(sum(lo <= r_ < hi for r_ in rms))
                                 for lo, hi in ((0, .5), (.5, .58), (.58, .68), (.68, .78), (.78, 2))},
           "piece_nearest_to_main_median": round(float(np.median(nearest)), 3) if nearest else None,
           "lfw_f_now": C.pairwise(y[is_lfw], lab[is_lfw])["f"]}
    for name, sel in (("closest_cluster_only", closest), ("all_adjacent", np.ones(len(mv), bool))):
        g = np.where(sel, gain, 0)
        best: dict = {}
        for k, gk in zip(mv, g):
            if gk > 0 and gk > best.get(int(c.a[k]), (0, 0))[0]:
                best[int(c.a[k])] = (gk, int(c.b[k]))
        lab2 = lab.copy()
        for a_, (_, b_) in sorted(best.items(), key=lambda kv: -kv[1][0]):
            lab2[a_] = lab2[b_]
        out[name] = {"useful_questions": len(best), "pairs_gained": int(sum(v for v, _ in best.values())),
                     "lfw_f_after": C.pairwise(y[is_lfw], lab2[is_lfw])["f"]}
    return out


def distractor_only_over(lab, is_lfw, size) -> int:
    """Clusters with no LFW face and more than ``size`` faces (issue #10's goal: none)."""
    lfw = set(lab[is_lfw].tolist())
    sizes = np.bincount(lab[~is_lfw])
    return int(sum(1 for c_, v in enumerate(sizes) if v > size and c_ not in lfw))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="1,500 distractors, one fold, 0/10/50 only")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--kind", default="raw", help="embedding kind (scan/embed.KINDS)")
    ap.add_argument("--cluster-threshold", type=float, default=None, help="clustering threshold (default DEFAULT's)")
    ap.add_argument("--crowd-radius", type=float, default=None, help="crowd split radius (default DEFAULT's)")
    ap.add_argument("--stem", default=None, help="output name in bench/results (default review[_quick])")
    a = ap.parse_args(argv)
    t0 = time.time()
    cp = DEFAULT.with_(threshold=a.cluster_threshold or DEFAULT.threshold,
                       crowd_radius=a.crowd_radius or DEFAULT.crowd_radius)
    data = C.load_product(a.cache, quick=a.quick, kind=a.kind)
    halves = C.folds(data["y_w"], data["g_w"])
    per_k = (0, 10, 50) if a.quick else PER_K
    res = {"what": "assisted review, simulated curator, person-disjoint halves of identities_wild + utkface",
           "kind": a.kind, "cluster_params": asdict(cp), "shipped": asdict(R.REVIEW_DEFAULT), "folds": []}
    for f in ((0,) if a.quick else (0, 1)):
        train, test = halves[f], halves[1 - f]
        xtr, _, ytr, qtr, _ = C.subset(data, train)
        rp = fit(xtr, ytr, cluster(xtr, quality=qtr, params=cp), cp)
        x, _, y, q, is_lfw = C.subset(data, test)
        fold = {"train_people": len(train), "test_people": len(test), "faces": int(len(x)),
                "lfw_faces": int(is_lfw.sum()), "fitted": asdict(rp),
                "oracle": oracle(x, y, cluster(x, quality=q, params=cp), is_lfw, cp)}
        print(json.dumps({"oracle": fold["oracle"]}), file=sys.stderr, flush=True)
        fold["fitted_on_train"] = curve(x, y, q, is_lfw, rp, per_k=per_k, cp=cp)
        fold["fitted_no_cluster_questions"] = curve(x, y, q, is_lfw, replace(rp, **NO_CLUSTER), per_k=per_k, cp=cp)
        fold["naive_closest_first"] = curve(x, y, q, is_lfw, rp, per_k=per_k, ranking="naive", cp=cp)
        res["folds"].append(fold)
    res["seconds"] = round(time.time() - t0, 1)
    a.out.mkdir(parents=True, exist_ok=True)
    name = a.stem or ("review_quick" if a.quick else "review")
    (a.out / f"{name}.json").write_text(json.dumps(res, indent=1))
    (a.out / f"{name}.md").write_text(render(res))
    print(render(res))
    return res


def render(res: dict) -> str:
    L = ["# Assisted review, simulated curator (`python bench/review.py`)", "",
         "Held-out half of identities_wild (LFW people) + all utkface faces as distractors, clustered at "
         f"cluster.DEFAULT (threshold {res['cluster_params']['threshold']}); the review model fitted on the "
         "other half. Answers per 1,000 faces of the whole workspace (distractors included). Goal: LFW pairwise F "
         ">= 0.98 after 50.", "",
         "| fold | ranking | answers / 1000 | answers (yes) | kinds (move/merge/split/cluster) | LFW pairwise F "
         "| P | R | BCubed F (LFW) | pairwise F, all faces | largest distractor-only cluster "
         "| distractor-only clusters > 5 |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, f in enumerate(res["folds"]):
        for rk in ("fitted_on_train", "fitted_no_cluster_questions", "naive_closest_first"):
            for r in f.get(rk, []):
                kd = "/".join(str(r["kinds"].get(k, 0)) for k in ("move", "merge", "split", "cluster"))
                L.append(f"| {i} | {rk} | {r['answers_per_1000']} | {r['answers']} ({r['yes']}) | {kd} "
                         f"| {r['lfw']['f']} | {r['lfw']['precision']} | {r['lfw']['recall']} | {r['bcubed_lfw']} "
                         f"| {r['all']['f']} "
                         f"| {r.get('largest_distractor_only', '-')} | {r.get('distractor_only_over_5', '-')} |")
    L += ["", "Oracle (what a perfect ranker could do with the candidates, per fold, at 0 answers):", ""]
    for i, f in enumerate(res["folds"]):
        o = f.get("oracle")
        if o:
            L.append(f"- fold {i}: {o['lost_pairs']} of {o['true_pairs']} LFW pairs lost ({o['people_split']} people "
                     f"split, {o['extra_pieces']} extra pieces, sizes {o['piece_sizes']}); RMS from a piece to its "
                     f"person's largest piece {o['piece_rms_to_main']}, nearest face median "
                     f"{o['piece_nearest_to_main_median']}. Every useful move asked once: closest cluster only "
                     f"(the former candidates) {o['closest_cluster_only']['useful_questions']} questions, "
                     f"+{o['closest_cluster_only']['pairs_gained']} pairs, F {o['lfw_f_now']} -> "
                     f"{o['closest_cluster_only']['lfw_f_after']}; every adjacent cluster (now) "
                     f"{o['all_adjacent']['useful_questions']} questions, +{o['all_adjacent']['pairs_gained']} "
                     f"pairs, F -> {o['all_adjacent']['lfw_f_after']}.")
    L += ["", "Reading the oracle: with each face's closest adjacent cluster only (the former candidate set) even a "
          "perfect ranker stayed below the goal on fold 0 (the face's own person is often its second cluster: the "
          "strangers it sits with are closer), so candidate generation was the first limit; with every adjacent "
          "cluster in the band a perfect ranker needs ~35 questions for F ~0.99. The fitted ranker finds most of "
          "its yes answers in the first 10 per 1,000 and few after: ranking (how little the dlib distances tell a "
          "lost face of an unseen person from a look-alike stranger) is now the limit on fold 0."]
    L += ["", "Fitted review models per fold: " + "; ".join(json.dumps(f["fitted"]) for f in res["folds"]),
          "", f"Shipped (curate/review.REVIEW_DEFAULT): {json.dumps(res['shipped'])} (fold 0's fit: fold 0's rows are "
          "its held-out numbers). `fitted_no_cluster_questions`: the same model with the former proportions (split "
          "share 0.25, no cluster questions). `naive_closest_first`: the same candidates, smallest distance first. "
          "The curator's answers are applied as `people.answer` applies them (review.apply_answer; a no to a "
          "cluster question splits it into review.split_pieces). The simulated curator answers a cluster question "
          "yes only when all its faces share one truth id (utkface faces are all distinct but for "
          "exact_duplicates.csv, so a correct cluster of one actress's 22 photos gets a no).", "",
          "Why bench/identity_cv.py printed F 0.173 -> 0.173: it scored pairwise F over ALL faces (distractor-only "
          "clusters of look-alike children, hundreds of faces each, hold nearly all predicted pairs, so precision "
          "stays ~0.01-0.1 whatever is answered about LFW people), on flip-TTA embeddings the product does not "
          "store, at its CV threshold 0.46 instead of the shipped 0.58; the goal (issue #10) and bench/people.py "
          "measure pairwise F on the LFW people.", "", f"Run time {res['seconds']} s.", ""]
    return "\n".join(L)


if __name__ == "__main__":
    main()
