"""Scale: people clustering, forget query, blocklist check and incremental add on synthetic workspaces.

Synthetic faces come from real embeddings (/tmp/faceset_emb/identities_wild.npz, see bench/scale_synth.py),
jittered into new people and calibrated so the intra- and inter-person distance distributions match the real
ones (their quantiles are in the json). Per size, each stage is timed with its peak RSS (sampled every 5 ms):

- people (ANN): ``curate.cluster.cluster`` (the clustering `faceset people` runs) with its kNN graph from a
  ``faceset.index.VectorIndex`` (HNSW above the cut-off; the index build is included) and the agglomeration
  engine ``cluster`` picks for the size (the numpy mutual-best rounds from ``cluster.ROUNDS_FROM``);
  ``--hnsw M,efC,efS`` adds a second ANN run with other HNSW settings (faster build);
- people (exact): the same clustering on the exact kNN graph (faiss brute force, BLAS; skipped above
  ``--exact-max``), the reference for pairwise F;
- engine: the previous best-first heap on the same ANN graph (up to ``--heap-max``): time and memory of the
  merge engine alone, and its F;
- peer: scikit-learn ``NearestNeighbors`` (k=20, brute) + dlib Chinese whispers at 0.6 (above ``--peer-max``
  skipped; it runs as far as it finishes within ``--peer-timeout`` seconds in a child process);
- forget query: 5 "selfies" of one person, the exact range search forget runs over the sidecar
  (``index.within``, radius = the operating point's reach), and through HNSW for comparison;
- blocklist check: per scanned face against 1000 templates (``privacy.blocklist.distances``, what scan runs);
- dedup by embedding: each face's 10 nearest through the index (what find_duplicates runs);
- add 10k: the index grows by 10k held-out faces (``index.add``), then ``cluster_incremental`` against the
  rest with the new -> old neighbours through the index.

    python bench/scale.py --faces 100000            # writes bench/results/scale.json
    python bench/scale.py --faces 100000,1000000 --exact-max 200000

Projection: per-million costs and 10M / 100M on paper, from the growth exponent between the two largest
measured sizes (or an assumed n log n, stated, when only one size ran).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "results"

import measure  # noqa: E402
from people import pairwise  # noqa: E402
from scale_synth import default_synth  # noqa: E402

PEER_T = 0.6
ADD = 10_000
ANN_MIN = 50_000  # the all-rows graph goes through HNSW from this many faces (faceset.index.EXACT_BELOW)


timed = measure.timed


def _peer(x, q):
    import dlib
    from sklearn.neighbors import NearestNeighbors

    t = time.perf_counter()
    nn = NearestNeighbors(n_neighbors=21, algorithm="brute").fit(x)
    d, i = nn.kneighbors(x)
    t_knn = time.perf_counter() - t
    src = np.repeat(np.arange(len(x)), 20)
    dst, dd = i[:, 1:].ravel(), d[:, 1:].ravel()
    keep = (dd < PEER_T) & (src < dst)
    edges = list(zip(src[keep].tolist(), dst[keep].tolist()))
    edges += [(j, j) for j in range(len(x))]  # every vertex present
    lab = np.array(dlib.chinese_whispers(edges))
    q.put((lab, t_knn))


def peer(x, timeout):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_peer, args=(x, q))
    p.start()
    try:
        lab, t_knn = q.get(timeout=timeout)
    except Exception:
        p.kill()
        p.join()
        return None, None
    p.join()
    return lab, t_knn


def storage_stage(n: int, x: np.ndarray, extra: np.ndarray, tmp: Path) -> dict:
    """A synthetic workspace catalog with n embedded faces (one per photo, no image bytes): reading every
    embedding in one query vs keyset chunks vs the memory-mapped sidecar, its build / append / re-open,
    the freshness check, and `faceset status`."""
    import faceset
    from faceset import vectors
    from faceset.status import workspace_status

    ws = faceset.init_workspace(tmp / f"ws{n}")
    c = ws.catalog
    t0 = time.perf_counter()
    with c.tx():
        c.execute("INSERT INTO sources(id, name, kind, license, consent, created_at) "
                  "VALUES (1, 'synthetic', 'folder', 'test-only', 'research_exemption', '2026-01-01')")

    def fill(rows: np.ndarray, first: int) -> None:
        for s0 in range(0, len(rows), 50_000):
            part = rows[s0:s0 + 50_000]
            ids = range(first + s0, first + s0 + len(part))
            with c.tx():
                c.conn.executemany(
                    "INSERT INTO images(id, pixel_sha, sha256, store_key, format, width, height, bytes, source_id, "
                    "status, created_at) VALUES (?, ?, ?, ?, 'jpeg', 100, 100, 1, 1, 'ok', '2026-01-01')",
                    [(i, f"p{i}", f"s{i}", f"k{i}") for i in ids])
                c.conn.executemany(
                    "INSERT INTO faces(id, image_id, idx, x, y, w, h, is_main, quality, embedding, status) "
                    "VALUES (?, ?, 0, 0, 0, 50, 50, 1, 0.9, ?, 'ok')",
                    [(i, i, v.tobytes()) for i, v in zip(ids, part)])

    fill(x, 1)
    rec = {"catalog_build_seconds": round(time.perf_counter() - t0, 2),
           "catalog_mb": round(sum(f.stat().st_size for f in ws.root.glob("catalog.db*")) / 2**20, 1)}
    (_, s, peak, above) = timed(lambda: c.faces.embeddings())
    rec.update(read_one_query_seconds=s, read_one_query_rss_above_mb=above)

    def chunked():
        out = np.empty((n, 128), np.float32)
        i = 0
        for e in c.faces.iter_embeddings():
            out[i:i + len(e.ids)] = e.vectors
            i += len(e.ids)
        return out

    (_, s, peak, above) = timed(chunked)
    rec.update(read_chunked_seconds=s, read_chunked_rss_above_mb=above)
    (_, s, _, _) = timed(lambda: c.faces.embedding_fingerprint())
    rec["freshness_check_seconds"] = s
    (v, s, _, above) = timed(lambda: vectors.sync(ws))
    rec.update(sidecar_build_seconds=s, sidecar_build_rss_above_mb=above, sidecar_rows=len(v))
    (v, s, _, above) = timed(lambda: np.asarray(vectors.sync(ws).vectors).sum())
    rec.update(sidecar_open_and_scan_seconds=s, sidecar_open_rss_above_mb=above)
    fill(extra, n + 1)
    (v, s, _, _) = timed(lambda: vectors.sync(ws))
    rec.update(sidecar_append_10k_seconds=s, sidecar_appended=v.appended)
    (_, s, _, _) = timed(lambda: workspace_status(ws))
    rec["status_seconds"] = s
    ws.close()
    shutil.rmtree(ws.root, ignore_errors=True)
    return rec


class step_timer:
    """Adds the wall seconds and peak RSS MiB (5 ms samples, as measure.timed) of a block to ``steps[name]``."""

    def __init__(self, steps: dict | None, name: str):
        self.steps, self.name = steps, name

    def __enter__(self):
        import threading

        import psutil

        self.proc, self.peak, self.done = psutil.Process(), [0], threading.Event()

        def sample():
            while not self.done.is_set():
                self.peak[0] = max(self.peak[0], self.proc.memory_info().rss)
                time.sleep(0.005)

        self.th = threading.Thread(target=sample, daemon=True)
        self.th.start()
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        s = time.perf_counter() - self.t
        self.done.set()
        self.th.join()
        if self.steps is not None:
            old = self.steps.get(self.name, {"seconds": 0.0, "peak_rss_mb": 0.0, "calls": 0})
            self.steps[self.name] = {"seconds": round(old["seconds"] + s, 2), "calls": old["calls"] + 1,
                                     "peak_rss_mb": max(old["peak_rss_mb"], round(self.peak[0] / 2**20, 1))}
        return False


class step_timers:
    """Time the people stage's steps (the first, outermost call of each): kNN graph + edge arrays
    (``cluster._graph``), the merge engine, the crowd split (``refine.split_crowds``; its re-clusterings
    included). Wrapped with functools.wraps, so the engines keep their attributes."""

    def __init__(self, steps: dict | None):
        self.steps = steps

    def __enter__(self):
        import functools

        from faceset.curate import cluster as C
        from faceset.curate import refine as R

        self.saved = [(C, "_graph", C._graph), (R, "split_crowds", R.split_crowds)] + [
            (C._ENGINES, k, v) for k, v in C._ENGINES.items()]
        depth = [0]

        def wrap(fn, name):
            @functools.wraps(fn)
            def inner(*a, **kw):
                depth[0] += 1
                try:
                    if depth[0] > 1 or self.steps is None:
                        return fn(*a, **kw)
                    with step_timer(self.steps, name):
                        return fn(*a, **kw)
                finally:
                    depth[0] -= 1
            return inner

        C._graph = wrap(C._graph, "knn_graph_and_edges")
        R.split_crowds = wrap(R.split_crowds, "crowd_split")
        for k, v in list(C._ENGINES.items()):
            C._ENGINES[k] = wrap(v, f"merge_{k}")
        return self

    def __exit__(self, *exc):
        for obj, k, v in self.saved:
            if isinstance(obj, dict):
                obj[k] = v
            else:
                setattr(obj, k, v)
        return False


def run_size(n: int, synth, args, flush=lambda rec: None) -> dict:
    """One size's record; ``flush(rec)`` after each stage (a killed run keeps what finished)."""
    from faceset.curate.cluster import DEFAULT, cluster, cluster_incremental
    from faceset.index import VectorIndex

    x_all, t_all = synth.make(n + ADD, seed=n)
    rng = np.random.default_rng(1)
    new_rows = np.sort(rng.choice(len(x_all), ADD, replace=False))
    old_mask = np.ones(len(x_all), bool)
    old_mask[new_rows] = False
    x, truth = np.ascontiguousarray(x_all[old_mask]), t_all[old_mask]
    xn, tn = np.ascontiguousarray(x_all[new_rows]), t_all[new_rows]
    rec: dict = {"faces": n, "people_true": int(len(np.unique(truth))), "calibration": synth.calibration(x, truth)}
    rec["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    print(f"[{n}] synthetic ready: {rec['people_true']} people", flush=True)
    flush(rec)
    if args.storage:
        with tempfile.TemporaryDirectory() as tmp:
            rec["storage"] = storage_stage(n, x, xn, Path(tmp))
        print(f"[{n}] storage {rec['storage']}", flush=True)
        flush(rec)

    from faceset import index as I
    from faceset.curate import cluster as C
    from faceset.privacy.blocklist import distances, unit

    def ann(hnsw=None, steps=None):
        kw = {} if hnsw is None else dict(m=hnsw[0], ef_construction=hnsw[1], ef_search=hnsw[2])
        with step_timer(steps, "index_build"):
            ix = VectorIndex.build(np.arange(len(x)), x, **kw)
        with step_timers(steps):
            return ix, cluster(x, params=DEFAULT, index=ix)

    steps: dict = {}
    cpu0 = os.times()
    (ix, lab), s, peak, above = timed(lambda: ann(steps=steps))
    cpu1 = os.times()
    rec.update(people_steps=steps, people_cpu_seconds=round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 1))
    rec.update(people_seconds=s, people_peak_rss_mb=peak, people_rss_above_start_mb=above,
               people_index="hnsw" if ix.uses_ann else "exact",
               people_engine="rounds" if n >= C.ROUNDS_FROM else "heap",
               hnsw={"M": ix.m, "efConstruction": ix.ef_construction, "efSearch": ix.ef_search},
               pairwise_f=pairwise(lab, truth)["f"], people_quality=pairwise(lab, truth))
    print(f"[{n}] people ANN {s}s peak {peak} MiB F {rec['pairwise_f']}", flush=True)
    flush(rec)
    if args.hnsw:
        hp = tuple(int(v) for v in args.hnsw.split(","))
        (ix2, lab2), s, peak, above = timed(lambda: ann(hp))
        rec["people_ann_alt"] = {"hnsw": {"M": hp[0], "efConstruction": hp[1], "efSearch": hp[2]}, "seconds": s,
                                 "peak_rss_mb": peak, "rss_above_start_mb": above,
                                 "pairwise_f": pairwise(lab2, truth)["f"], "quality": pairwise(lab2, truth)}
        print(f"[{n}] people ANN alt {rec['people_ann_alt']}", flush=True)
        del ix2, lab2
        flush(rec)

    def with_graph(i, d, fn):
        """Run fn with the clustering's kNN graph fixed to (i, d) (faceset.index.knn_graph swapped)."""
        old = I.knn_graph
        # only for the full set: the crowd split (curate/refine.py) re-clusters subsets with their own graph
        I.knn_graph = lambda x_, k, **kw: (i[:, :k], d[:, :k]) if len(x_) == len(i) else old(x_, k, **kw)
        try:
            return fn()
        finally:
            I.knn_graph = old

    if n <= args.exact_max:
        import faiss

        def exact_graph():
            d2, i = faiss.knn(x, x, DEFAULT.k + 1)
            return i[:, 1:], np.sqrt(np.maximum(d2[:, 1:], 0)).astype(np.float32)

        (gi, gd), s_knn, _, _ = timed(exact_graph)
        lab_e, s, peak, above = timed(lambda: with_graph(gi, gd, lambda: cluster(x, params=DEFAULT)))
        rec.update(people_exact_seconds=round(s_knn + s, 2), people_exact_knn_seconds=s_knn,
                   people_exact_peak_rss_mb=peak, pairwise_f_exact=pairwise(lab_e, truth)["f"],
                   people_exact_quality=pairwise(lab_e, truth))
        # ANN graph recall against the exact one, over the edges that can propose merges (< params.edge)
        ai, _ = ix.search(x[:2000], DEFAULT.k, exclude_ids=np.arange(2000))
        te = gd[:2000, :DEFAULT.k] < DEFAULT.edge
        rec["ann_edge_recall"] = round(float(np.mean([len(set(gi[r, :DEFAULT.k][te[r]]) & set(ai[r])) / te[r].sum()
                                                      for r in range(2000) if te[r].any()])), 4)
        print(f"[{n}] people exact {rec['people_exact_seconds']}s F {rec['pairwise_f_exact']}", flush=True)
        del gi, gd
        flush(rec)
    else:
        rec["pairwise_f_exact"] = None

    if n <= args.heap_max:
        gi, gd = I.knn_graph(x, max(DEFAULT.k, DEFAULT.density_k), index=ix)
        for eng in ("rounds", "heap"):
            lab_h, s, peak, above = timed(lambda eng=eng: with_graph(
                gi, gd, lambda: cluster(x, params=DEFAULT, engine=eng)))
            rec.setdefault("engines_same_ann_graph", {})[eng] = {
                "seconds": s, "peak_rss_mb": peak, "rss_above_start_mb": above,
                "pairwise_f": pairwise(lab_h, truth)["f"]}
            print(f"[{n}] engine {eng} {rec['engines_same_ann_graph'][eng]}", flush=True)
            flush(rec)
        del gi, gd, lab_h

    # forget query: 5 selfies of one person, the exact range search forget runs (and HNSW kNN, for comparison)
    from faceset.curate.match import params_for

    person = truth[0]
    mine = x[truth == person][:5]
    selfies = (mine + np.random.default_rng(2).normal(scale=0.01, size=mine.shape)).astype(np.float32)
    mp = params_for(len(selfies))
    reach = max(mp.certain_face, mp.certain_face_in_person, mp.review_face, mp.review_face_in_person)
    (found, s, _, _) = timed(lambda: I.within(selfies, x, reach))
    rec.update(forget_query_seconds=s, forget_query_candidates=int(len(found)), forget_query_reach=reach)
    if ix.uses_ann:
        (_, s, _, _) = timed(lambda: ix.search(selfies, 100))
        rec["forget_query_hnsw_seconds"] = s
    # blocklist: 1000 unit templates, 2000 scanned faces (scan's blocked_mask)
    tpl = unit(synth.make(1000, seed=7)[0])
    radii = np.full(len(tpl), 0.4)
    (_, s, _, _) = timed(lambda: (distances(unit(xn[:2000]), tpl) <= radii[None, :]).any(1))
    rec["blocklist_check_ms_per_face"] = round(1000 * s / 2000, 4)
    # dedup by embedding: 10 nearest other faces of every face, through the index
    (_, s, peak, _) = timed(lambda: I.knn_graph(x, 10, index=ix))
    rec["dedup_embedding_seconds"], rec["dedup_embedding_peak_rss_mb"] = s, peak
    # add 10k: the index grows by the new faces, then incremental clustering against the existing people
    old_labels = lab
    new_ids = np.arange(len(x), len(x) + len(xn))

    def add():
        ix.add(new_ids, xn)
        return cluster_incremental(xn, x, old_labels, params=DEFAULT, index=ix, new_ids=new_ids,
                                   old_ids=np.arange(len(x)))

    res, s, peak, _ = timed(add)
    rec.update(add_10k_seconds=s, add_10k_peak_rss_mb=peak)
    new_lab = np.where(res.labels >= 0, res.labels, old_labels.max() + 1 - res.labels)
    rec["add_10k_pairwise_f"] = pairwise(np.r_[old_labels, new_lab], np.r_[truth, tn])["f"]
    (_, s, _, _) = timed(lambda: ix.remove(new_ids))
    rec["index_remove_10k_seconds"] = s
    if n <= args.rebuild_max:
        (_, s, peak, _) = timed(ix.rebuild)
        rec["index_rebuild_after_remove_seconds"], rec["index_rebuild_peak_rss_mb"] = s, peak
    print(f"[{n}] forget {rec['forget_query_seconds']}s add10k {rec['add_10k_seconds']}s", flush=True)
    flush(rec)

    if n <= args.peer_max:
        (out, s, peak, _) = timed(lambda: peer(x, args.peer_timeout))
        lab_p, t_knn = out
        rec["peer"] = ({"seconds": s, "knn_seconds": round(t_knn, 2), "pairwise_f": pairwise(lab_p, truth)["f"],
                        "quality": pairwise(lab_p, truth), "threshold": PEER_T}
                       if lab_p is not None else {"finished": False, "timeout_s": args.peer_timeout})
        print(f"[{n}] peer {rec['peer']}", flush=True)
    else:
        rec["peer"] = {"skipped": f"above --peer-max {args.peer_max}"}
    rec["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return rec


def project(recs: list[dict]) -> dict:
    done = sorted((r for r in recs if r.get("people_seconds")), key=lambda r: r["faces"])
    if not done:
        return {}
    last = done[-1]
    if len(done) >= 2:
        a, b = done[-2], done[-1]
        g = np.log(b["faces"] / a["faces"])
        e_t = float(np.log(b["people_seconds"] / a["people_seconds"]) / g)
        e_m = float(np.log(b["people_rss_above_start_mb"] / a["people_rss_above_start_mb"]) / g)
        basis = f"measured between {a['faces']} and {b['faces']} faces"
    else:
        e_t, e_m, basis = 1.1, 1.0, "ASSUMED (one size ran): time ~ n^1.1 (HNSW n log n), memory ~ n"
    out = {"basis": basis, "time_exponent": round(e_t, 3), "memory_exponent": round(e_m, 3),
           "people_seconds_per_million": round(last["people_seconds"] * 1e6 / last["faces"], 1),
           "memory_exponent_note": "of the peak RSS above the process's starting RSS"}
    for N in (10**6, 10**7, 10**8):
        f = N / last["faces"]
        out[f"people_seconds_at_{N}"] = round(last["people_seconds"] * f**e_t, 1)
        start = last["people_peak_rss_mb"] - last["people_rss_above_start_mb"]
        out[f"people_peak_rss_mb_at_{N}"] = round(start + last["people_rss_above_start_mb"] * f**e_m, 1)
    return out


# ANN measurements behind faceset.index's choice (the json's meta.ann_choice)
ANN_CHOICE = {"faiss_hnsw_M32_efc80_efs64": {"recall_at_10": 0.989, "build_s_100k": 80.5,
                                             "search_2000_s": 0.64},
              "usearch_hnsw_conn16": {"recall_at_10": 0.981, "build_s_100k": 250.1},
              "faiss_ivfflat_nlist1024": {"recall_at_10_nprobe16": 0.795, "recall_at_10_nprobe32": 0.884,
                                          "build_s_100k": 29.0},
              "note": "measured once on 100k synthetic faces, 2 shared cores, niced",
              "self_join_300k_edges_below_0.62": {
                  "note": "directed recall of the exact kNN edges < params.edge, 3000 sampled rows, "
                          "2 shared cores at load ~7 (times move by 30%)",
                  "hnsw_M16_efc40_efs64_build_plus_search_s": 174.0,
                  "ivfflat_nlist1024": {"build_s": 58.2, "nprobe16": [0.671, 414],
                                        "nprobe32": [0.801, 467], "nprobe64": [0.903, 807],
                                        "format": "[recall, search s]"},
                  "ivfflat_nlist2048": {"build_s": 217.3, "nprobe16": [0.618, 134],
                                        "nprobe32": [0.738, 288], "nprobe64": [0.847, 589]}},
              "nndescent_100k": {"K32_iter10": {"recall": 0.987, "build_s": 179.0},
                                 "K24_iter8": {"recall": 0.958, "build_s": 101.6},
                                 "K20_iter5": {"recall": 0.531, "build_s": 49.7},
                                 "hnsw_M16_efc40_efs64": {"recall": 0.896, "build_plus_search_s": 81.0}},
              "efsearch_100k_pairwise_f": {
                  "note": "same 100k set, M=16 efC=40; F of the shipped clustering on each graph; "
                          "exact graph F 0.8415",
                  "efs64": {"f": 0.8409, "recall": 0.8956}, "efs48": {"f": 0.84, "recall": 0.8709},
                  "efs40": {"f": 0.8394, "recall": 0.8554}, "efs32": {"f": 0.8383, "recall": 0.8366},
                  "M12_efc24_efs40": {"f": 0.8309, "recall": 0.7168}}}


def main() -> None:
    global ANN_MIN, ADD
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", default="100000")
    ap.add_argument("--exact-max", type=int, default=200_000)
    ap.add_argument("--peer-max", type=int, default=200_000)
    ap.add_argument("--peer-timeout", type=float, default=900)
    ap.add_argument("--heap-max", type=int, default=100_000, help="previous heap engine up to this size")
    ap.add_argument("--rebuild-max", type=int, default=100_000, help="time an index rebuild up to this size")
    ap.add_argument("--hnsw", default="", help="M,efConstruction,efSearch of a second ANN run (e.g. 16,40,64)")
    ap.add_argument("--threads", type=int, default=2, help="faiss OpenMP threads")
    ap.add_argument("--big", action="store_true", help="also 10M embeddings (no images)")
    ap.add_argument("--no-storage", dest="storage", action="store_false", help="skip the synthetic catalog stage")
    ap.add_argument("--ann-min", type=int, default=ANN_MIN)
    ap.add_argument("--add", type=int, default=ADD, help="faces added incrementally (10k)")
    ap.add_argument("--out", default=str(OUT / "scale.json"))
    ap.add_argument("--append", action="store_true", help="keep records of other sizes already in --out")
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    ANN_MIN, ADD = args.ann_min, args.add
    from faceset import index as I

    I.EXACT_BELOW = ANN_MIN  # the product's cut-off (default: unchanged)
    sizes = [int(s) for s in args.faces.split(",")] + ([10_000_000] if args.big else [])
    synth = default_synth()
    recs = []
    if args.append and Path(args.out).exists():  # keep the other sizes' records of an earlier run
        recs = [{k: v for k, v in r.items() if k != "meta"} for r in json.loads(Path(args.out).read_text())
                if r["faces"] not in sizes and not r.get("partial")]
    for n in sizes:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        done = list(recs)
        recs.append(run_size(n, synth, args, flush=lambda r, done=done: Path(args.out).write_text(
            json.dumps(done + [{**r, "partial": True}], indent=1))))
        Path(args.out).write_text(json.dumps(recs, indent=1))
    import faiss

    meta = {"machine": f"{platform.machine()} {os.cpu_count()} cores", "python": platform.python_version(),
            "faiss": faiss.__version__, "projection": project(recs),
            "ann_choice": ANN_CHOICE}
    recs.sort(key=lambda r: r["faces"])
    recs[-1]["meta"] = meta
    Path(args.out).write_text(json.dumps(recs, indent=1))
    Path(args.out).with_suffix(".md").write_text(markdown(recs, meta))
    print(json.dumps(meta, indent=1))


def markdown(recs: list[dict], meta: dict) -> str:
    """The table of bench/results/scale.md (the json holds everything)."""
    g = lambda r, *ks: next((r[k] for k in ks if r.get(k) is not None), None)  # noqa: E731

    def cell(v):
        return "-" if v is None else (f"{v:g}" if isinstance(v, (int, float)) else str(v))

    rows = [
        ("people: seconds (ANN graph + rounds engine + crowd split)", "people_seconds"),
        ("people: peak RSS MiB", "people_peak_rss_mb"),
        ("people: pairwise F (ANN)", "pairwise_f"),
        ("people: pairwise F (exact kNN graph)", "pairwise_f_exact"),
        ("people: seconds (exact graph)", "people_exact_seconds"),
        ("ANN edge recall (edges < params.edge, 2000 rows)", "ann_edge_recall"),
        ("forget query seconds (exact range search)", "forget_query_seconds"),
        ("blocklist ms per face (1000 templates)", "blocklist_check_ms_per_face"),
        ("dedup by embedding seconds (10-NN via index)", "dedup_embedding_seconds"),
        ("add 10k seconds (index add + incremental)", "add_10k_seconds"),
        ("add 10k pairwise F", "add_10k_pairwise_f"),
    ]
    out = ["# Scale (bench/scale.py)", "",
           "Synthetic faces from real identities_wild embeddings (bench/scale_synth.py). 2 shared cores: "
           "load averages are in the json (`load_average_at_start` / `_at_end`).", "",
           "| | " + " | ".join(f"{r['faces']:,} faces" for r in recs) + " |",
           "|---|" + "---|" * len(recs)]
    for label, key in rows:
        out.append(f"| {label} | " + " | ".join(cell(g(r, key)) for r in recs) + " |")
    for r in recs:
        if r.get("people_steps"):
            out.append(f"\n{r['faces']:,}, people steps (wall s / peak RSS MiB): " + "; ".join(
                f"{k} {v['seconds']} / {v['peak_rss_mb']}" for k, v in r["people_steps"].items())
                + f"; process CPU {r.get('people_cpu_seconds')} s (2 cores) in {r['people_seconds']} s wall, "
                f"HNSW {r.get('hnsw')}")
        if r.get("people_ann_alt"):
            a = r["people_ann_alt"]
            out.append(f"\n{r['faces']:,}: HNSW {a['hnsw']}: {a['seconds']} s, peak {a['peak_rss_mb']} MiB, "
                       f"F {a['pairwise_f']}")
        if r.get("engines_same_ann_graph"):
            e = r["engines_same_ann_graph"]
            out.append(f"\n{r['faces']:,}, merge engines on the same ANN graph: " + "; ".join(
                f"{k} {v['seconds']} s, {v['rss_above_start_mb']} MiB above start, F {v['pairwise_f']}"
                for k, v in e.items()))
        if isinstance(r.get("peer"), dict) and "pairwise_f" in r["peer"]:
            out.append(f"\n{r['faces']:,}, peer (sklearn brute kNN + dlib Chinese whispers @0.6): "
                       f"{r['peer']['seconds']} s, F {r['peer']['pairwise_f']}")
        out.append(f"\n{r['faces']:,}: load average at start {r.get('load_average_at_start')}, "
                   f"end {r.get('load_average_at_end')}")
    out += ["", "Projection: `" + json.dumps(meta.get("projection", {})) + "`", ""]
    if meta.get("note"):
        out += [meta["note"], ""]
    return "\n".join(out)


if __name__ == "__main__":
    main()
