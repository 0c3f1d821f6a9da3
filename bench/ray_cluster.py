"""A real two-node Ray cluster on this one machine (`ray start --head` + `ray start --address`) against the
local engine: scan images/s, the single writer's share of the driver's time, the neighbour graph and export.

    python bench/ray_cluster.py [--images 120] [--rounds 2]

Writes bench/results/ray_cluster.json and .md. The two "nodes" are two raylets with one CPU each and their own
object stores on the same 2 cores, so this measures what the cluster path COSTS (task and transfer overhead,
the driver as the single writer), not a speed-up: on a real cluster each node brings its own cores.
The cluster's processes are found by this run's own --temp-dir and stopped by id (never `ray stop`, which
would stop every Ray on the machine).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACESET_DATA", ROOT.parent / "shared" / "data"))
RAY = str(Path(sys.executable).with_name("ray"))
# Ray >= 2.5x authenticates every connection with a token: one of our own for this run, given to both nodes and
# to every driver through the environment (on a real cluster: the same two variables on every machine)
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}

# one child per measurement (a fresh driver, as a user's command would be); the single writer is timed by
# wrapping scan's _write (store puts + the catalog transaction), everything else the driver does is the rest
_SCAN = r"""
import json, sys, time
import faceset.scan as S
from faceset.workspace import open_workspace
spent = [0.0]
orig = S._write
def timed(*a, **k):
    t = time.perf_counter(); orig(*a, **k); spent[0] += time.perf_counter() - t
S._write = timed
ws = open_workspace(sys.argv[1])
addr = sys.argv[3] or None
t = time.perf_counter()
rep = S.scan(ws, engine=sys.argv[2], workers=2, ray_address=addr, progress=False)
total = time.perf_counter() - t
print(json.dumps({"images": rep.scanned, "faces": rep.faces, "seconds": round(total, 2),
                  "images_per_s": round(rep.scanned / total, 3), "write_seconds": round(spent[0], 3),
                  "write_share": round(spent[0] / total, 4)}))
"""

_KNN = r"""
import json, sys, time
import numpy as np
from faceset.curate import graph, knn_dist
from faceset.engines import get_engine
x = np.load(sys.argv[1])
t = time.perf_counter(); want = graph.knn(x, x, 30, exclude_self=True); local = time.perf_counter() - t
eng = get_engine("ray", 2, sys.argv[2])
import ray
nodes = [n for n in ray.nodes() if n["Alive"]]
times = []
for _ in range(2):  # the first search also starts a worker process on each node
    t = time.perf_counter(); got = knn_dist.knn(x, x, 30, exclude_self=True, engine=eng, min_pairs=0)
    times.append(round(time.perf_counter() - t, 2))
same = all(np.array_equal(a, b) for a, b in zip(want, got))
from faceset import index as I
ix = I.VectorIndex.build(np.arange(len(x)), x, kind="hnsw")
rows = np.arange(len(x))
t = time.perf_counter(); want = I.search_rows(ix, x, 30, rows, exclude_ids=rows); h_local = time.perf_counter() - t
t = time.perf_counter(); blob = ix.dumps(); h_dump = time.perf_counter() - t
t = time.perf_counter(); got = knn_dist.search_rows(ix, x, 30, rows, exclude_ids=rows, engine=eng, min_pairs=0)
h_ray = time.perf_counter() - t
hnsw = {"local_seconds": round(h_local, 2), "ray_seconds": round(h_ray, 2), "dumps_seconds": round(h_dump, 3),
        "index_bytes_per_row": round(len(blob) / len(x)),
        "identical": all(np.array_equal(a, b) for a, b in zip(want, got))}
where = ray.remote(num_cpus=1)(lambda i: (time.sleep(0.2), ray.get_runtime_context().get_node_id())[1])
used = len(set(ray.get([where.remote(i) for i in range(8)])))
print(json.dumps({"rows": len(x), "k": 30, "local_seconds": round(local, 2), "ray_seconds_cold": times[0],
                  "ray_seconds": times[1], "identical": same, "hnsw": hnsw, "alive_nodes": len(nodes),
                  "nodes_running_tasks": used,
                  "cpus": sum(n["Resources"].get("CPU", 0) for n in nodes)}))
"""

_EXPORT = r"""
import json, sys, time
from faceset.export import export
from faceset.workspace import open_workspace
ws = open_workspace(sys.argv[1])
out = {}
for what, blur in (("crops", False), ("images", True)):
    for eng in ("local", "ray", "local", "ray"):
        t = time.perf_counter()
        r = export(ws, sys.argv[3] + "/" + what, what=what, blur_bystanders=blur, progress=False, engine=eng,
                   workers=2, ray_address=sys.argv[2] if eng == "ray" else None)
        out.setdefault(what, {}).setdefault(eng, []).append(round(time.perf_counter() - t, 3))
        out[what]["items"] = r.items
print(json.dumps(out))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args, timeout=1800) -> str:
    r = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"{args[:3]} failed: {r.stderr[-2000:]}")
    return r.stdout


def _child(code: str, *argv: str) -> dict:
    return json.loads(_run([sys.executable, "-c", code, *argv]).strip().splitlines()[-1])


class Cluster:
    """Head + one worker node, one CPU each, under a temp dir of our own."""

    def __init__(self, tmp: Path):
        self.temp = tmp / "ray"
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"

    def start(self) -> float:
        t = time.perf_counter()
        common = ["--num-cpus=1", "--object-store-memory=300000000", "--disable-usage-stats"]
        _run([RAY, "start", "--head", f"--port={self.port}", "--node-ip-address=127.0.0.1",
              "--include-dashboard=false", f"--temp-dir={self.temp}", *common])
        _run([RAY, "start", f"--address={self.address}", "--node-ip-address=127.0.0.1", *common])
        return time.perf_counter() - t

    def pids(self) -> list[int]:
        """Processes of this cluster: their command line names our temp dir, or their parent is one of them."""
        ps = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout.splitlines()
        rows = [(int(p), int(pp), a) for p, pp, a in (line.strip().split(None, 2) for line in ps if line.strip())]
        mine = {p for p, _, a in rows if str(self.temp) in a}
        grew = True
        while grew:
            more = {p for p, pp, _ in rows if pp in mine} - mine
            grew, mine = bool(more), mine | more
        return sorted(mine - {os.getpid()})

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in self.pids():
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            time.sleep(3)
        # `ray start --head` records its address for later ray.init() calls; `ray stop` would remove the
        # record, killing by id does not: a stale one makes every later local ray.init(num_cpus=...) fail
        for rec in (Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster", self.temp / "ray_current_cluster"):
            try:
                if rec.read_text().strip().endswith(f":{self.port}"):
                    rec.unlink()
            except OSError:
                pass


def _workspace(tmp: Path, n: int) -> Path:
    from faceset import init_workspace
    from faceset.ingest import ingest

    utk = DATA / "utkface"
    with open(utk / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    manifest = tmp / "utk.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path"])
        w.writerows([[str(utk / r["file"])] for r in rows])
    root = tmp / "base"
    ws = init_workspace(root)
    ingest(ws, [manifest], license="UTKFace research-only", consent="research_exemption", labels="utkface",
           progress=False)
    ws.close()
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ray_cluster.json")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="faceset-raycl-"))
    base = _workspace(tmp, a.images)
    cl = Cluster(tmp)
    res: dict = {"images": a.images, "cpus": len(os.sched_getaffinity(0)), "nodes": 2, "cpus_per_node": 1}
    try:
        res["cluster_start_seconds"] = round(cl.start(), 1)
        runs: dict[str, list] = {"local": [], "ray_cluster": []}
        for r in range(a.rounds):  # interleaved: the shared machine's load hits both alike
            for name, eng, addr in (("local", "local", ""), ("ray_cluster", "ray", cl.address)):
                ws = tmp / f"{name}{r}"
                shutil.copytree(base, ws)
                runs[name].append(_child(_SCAN, str(ws), eng, addr))
                if r < a.rounds - 1:
                    shutil.rmtree(ws)
        res["scan"] = {k: {"runs": v, "median_images_per_s": float(np.median([x["images_per_s"] for x in v])),
                           "median_write_share": float(np.median([x["write_share"] for x in v]))}
                       for k, v in runs.items()}
        emb = tmp / "emb.npy"
        src = Path("/tmp/faceset_emb")
        if (src / "utkface.npz").exists():
            x = np.concatenate([np.load(src / f"{n}.npz")["emb"] for n in ("utkface", "identities_wild")])
        else:  # the scanned workspace's own faces
            import sqlite3

            c = sqlite3.connect(tmp / f"ray_cluster{a.rounds - 1}" / "catalog.db")
            x = np.stack([np.frombuffer(e, np.float32) for (e,) in c.execute("SELECT embedding FROM faces")])
        np.save(emb, x.astype(np.float32))
        res["knn_graph"] = _child(_KNN, str(emb), cl.address)
        from faceset.curate import assign_splits, cluster_people
        from faceset.workspace import open_workspace

        ws = open_workspace(tmp / f"ray_cluster{a.rounds - 1}")
        cluster_people(ws, progress=False)
        assign_splits(ws)
        ws.close()
        res["export"] = _child(_EXPORT, str(tmp / f"ray_cluster{a.rounds - 1}"), cl.address, str(tmp / "out"))
    finally:
        cl.stop()
        left = cl.pids()
        res["left_processes"] = len(left)
        shutil.rmtree(tmp, ignore_errors=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    s = res["scan"]
    lines = ["# Ray: a two-node cluster on this machine vs the local engine", "",
             f"`python bench/ray_cluster.py --images {a.images} --rounds {a.rounds}`: {a.images} UTKFace photos, "
             f"{res['cpus']} shared cores; head + 1 worker node, 1 CPU each (start {res['cluster_start_seconds']} s)",
             "", "| stage | local engine (2 processes) | Ray cluster (2 nodes x 1 CPU) |", "|---|---|---|",
             f"| scan images/s (median of {a.rounds}) | {s['local']['median_images_per_s']:.2f} | "
             f"{s['ray_cluster']['median_images_per_s']:.2f} |",
             f"| single writer: share of scan wall time | {s['local']['median_write_share']:.1%} | "
             f"{s['ray_cluster']['median_write_share']:.1%} |",
             f"| exact kNN graph, {res['knn_graph']['rows']} rows, k=30 (s) | {res['knn_graph']['local_seconds']} | "
             f"{res['knn_graph']['ray_seconds']} warm, {res['knn_graph']['ray_seconds_cold']} cold "
             f"(identical: {res['knn_graph']['identical']}) |",
             f"| HNSW kNN graph, same rows, k=30 (s; index {res['knn_graph']['hnsw']['index_bytes_per_row']} B/row) | "
             f"{res['knn_graph']['hnsw']['local_seconds']} | {res['knn_graph']['hnsw']['ray_seconds']} "
             f"(identical: {res['knn_graph']['hnsw']['identical']}) |",
             f"| nodes alive / running tasks | - | {res['knn_graph']['alive_nodes']} / "
             f"{res['knn_graph']['nodes_running_tasks']} |"]
    for what, d in res["export"].items():
        lines.append(f"| export {what} ({d['items']} records), s, best of 2 | {min(d['local'])} | {min(d['ray'])} |")
    a.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
