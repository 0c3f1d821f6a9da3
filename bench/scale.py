"""Scale: people clustering, forget query, blocklist check and incremental add on synthetic workspaces.

Synthetic faces come from real embeddings (/tmp/faceset_emb/identities_wild.npz, see bench/scale_synth.py),
jittered into new people and calibrated so the intra- and inter-person distance distributions match the real
ones (their quantiles are in the json). Per size, each stage is timed with its peak RSS (sampled every 5 ms):

- people (ANN): ``curate.cluster.cluster`` (pure, the clustering under test) with its kNN graph served by
  ``faceset.index`` (HNSW above the cut-off; the HNSW build is included). cluster.py is not edited: the bench
  swaps ``cluster.knn`` for the index for the duration of the call (the integration point for people.py);
- people (exact): the same clustering, blockwise exact kNN (skipped above ``--exact-max``);
- peer: scikit-learn ``NearestNeighbors`` (k=20, brute) + dlib Chinese whispers at 0.6 (above ``--peer-max``
  skipped; it runs as far as it finishes within ``--peer-timeout`` seconds in a child process);
- forget query: 5 "selfies" of one person against every face (exact, what forget does) and through HNSW;
- blocklist check: per scanned face against 1000 templates;
- dedup by embedding: each face's nearest other face through the index (k=2);
- add 10k: ``cluster_incremental`` of 10k held-out faces (existing and new people) against the rest,
  with the old faces' index extended (``index.add``) and used for new -> old neighbours.

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
from contextlib import contextmanager
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


@contextmanager
def index_knn(cache: dict):
    """cluster.knn served by faceset.index: the all-rows graph via HNSW, new -> old via the cached old index."""
    from faceset.curate import cluster as C
    from faceset.curate.graph import knn as exact
    from faceset.index import VectorIndex, knn_graph

    def patched(query, base, k, *, exclude_self=False, on_rows=None):
        ix = cache.get(id(base))
        if ix is None:
            if len(base) < ANN_MIN:
                return exact(query, base, k, exclude_self=exclude_self)
            ix = VectorIndex.build(np.arange(len(base)), base, kind="hnsw")
            cache[id(base)] = ix
            cache["last"] = ix
        if exclude_self and query is base:
            return knn_graph(base, k, index=ix)
        return ix.search(query, k)

    old = C.knn
    C.knn = patched
    try:
        yield
    finally:
        C.knn = old


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

    cache: dict = {}
    with index_knn(cache):
        lab, s, peak, above = timed(lambda: cluster(x, params=DEFAULT))
    ix: VectorIndex = cache.get("last")
    rec.update(people_seconds=s, people_peak_rss_mb=peak, people_rss_above_start_mb=above,
               people_index="hnsw" if ix is not None and ix.uses_ann else "exact",
               pairwise_f=pairwise(lab, truth)["f"], people_quality=pairwise(lab, truth))
    print(f"[{n}] people ANN {s}s peak {peak} MiB F {rec['pairwise_f']}", flush=True)
    flush(rec)

    if n <= args.exact_max:
        lab_e, s, peak, above = timed(lambda: cluster(x, params=DEFAULT))
        rec.update(people_exact_seconds=s, people_exact_peak_rss_mb=peak, pairwise_f_exact=pairwise(lab_e, truth)["f"],
                   people_exact_quality=pairwise(lab_e, truth))
        print(f"[{n}] people exact {s}s F {rec['pairwise_f_exact']}", flush=True)
        flush(rec)
    else:
        rec["pairwise_f_exact"] = None

    # forget query: 5 selfies of one person against every face (exact), and through the HNSW
    person = truth[0]
    mine = x[truth == person][:5]
    selfies = (mine + np.random.default_rng(2).normal(scale=0.01, size=mine.shape)).astype(np.float32)
    exact_ix = VectorIndex.build(np.arange(len(x)), x, kind="exact")
    (_, s, _, _) = timed(lambda: exact_ix.search(selfies, 100))
    rec["forget_query_seconds"] = s
    if ix is not None and ix.uses_ann:
        (_, s, _, _) = timed(lambda: ix.search(selfies, 100))
        rec["forget_query_hnsw_seconds"] = s
    # blocklist: 1000 templates, 2000 scanned faces
    tpl = VectorIndex.build(np.arange(1000), synth.make(1000, seed=7)[0], kind="exact")
    (_, s, _, _) = timed(lambda: tpl.search(xn[:2000], 1))
    rec["blocklist_check_ms_per_face"] = round(1000 * s / 2000, 4)
    # dedup by embedding: nearest other face of every face
    if ix is not None:
        from faceset.index import knn_graph

        (_, s, peak, _) = timed(lambda: knn_graph(x, 2, index=ix))
        rec["dedup_embedding_seconds"], rec["dedup_embedding_peak_rss_mb"] = s, peak
    # add 10k: extend the old index, then incremental clustering against the existing people
    old_labels = lab

    def add():
        if ix is not None:
            cache[id(x)] = ix
        with index_knn(cache):
            return cluster_incremental(xn, x, old_labels, params=DEFAULT)

    res, s, peak, _ = timed(add)
    rec.update(add_10k_seconds=s, add_10k_peak_rss_mb=peak)
    # quality of the grown clustering: new labels -1.. mapped past the old ones
    new_lab = np.where(res.labels >= 0, res.labels, old_labels.max() + 1 - res.labels)
    rec["add_10k_pairwise_f"] = pairwise(np.r_[old_labels, new_lab], np.r_[truth, tn])["f"]
    rec["add_10k_index_add_seconds"] = None
    if ix is not None:
        (_, s, _, _) = timed(lambda: ix.add(np.arange(len(x), len(x) + ADD), xn))
        rec["add_10k_index_add_seconds"] = s
        (_, s, _, _) = timed(lambda: ix.remove(np.arange(len(x), len(x) + ADD)))
        rec["index_remove_10k_seconds"] = s
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


def main() -> None:
    global ANN_MIN, ADD
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", default="100000")
    ap.add_argument("--exact-max", type=int, default=200_000)
    ap.add_argument("--peer-max", type=int, default=200_000)
    ap.add_argument("--peer-timeout", type=float, default=900)
    ap.add_argument("--big", action="store_true", help="also 10M embeddings (no images)")
    ap.add_argument("--no-storage", dest="storage", action="store_false", help="skip the synthetic catalog stage")
    ap.add_argument("--ann-min", type=int, default=ANN_MIN)
    ap.add_argument("--add", type=int, default=ADD, help="faces added incrementally (10k)")
    ap.add_argument("--out", default=str(OUT / "scale.json"))
    args = ap.parse_args()
    ANN_MIN, ADD = args.ann_min, args.add
    sizes = [int(s) for s in args.faces.split(",")] + ([10_000_000] if args.big else [])
    synth = default_synth()
    recs = []
    for n in sizes:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        done = list(recs)
        recs.append(run_size(n, synth, args, flush=lambda r, done=done: Path(args.out).write_text(
            json.dumps(done + [{**r, "partial": True}], indent=1))))
        Path(args.out).write_text(json.dumps(recs, indent=1))
    import faiss

    meta = {"machine": f"{platform.machine()} {os.cpu_count()} cores", "python": platform.python_version(),
            "faiss": faiss.__version__, "projection": project(recs),
            "ann_choice": {"faiss_hnsw_M32_efc80_efs64": {"recall_at_10": 0.989, "build_s_100k": 80.5,
                                                          "search_2000_s": 0.64},
                           "usearch_hnsw_conn16": {"recall_at_10": 0.981, "build_s_100k": 250.1},
                           "faiss_ivfflat_nlist1024": {"recall_at_10_nprobe16": 0.795, "recall_at_10_nprobe32": 0.884,
                                                       "build_s_100k": 29.0},
                           "note": "measured once on 100k synthetic faces, 2 shared cores, niced"}}
    recs[-1]["meta"] = meta
    Path(args.out).write_text(json.dumps(recs, indent=1))
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
