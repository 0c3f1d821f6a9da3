"""The pipeline on a local Ray cluster (2 workers) gives the catalog, graph and export files of the local engine.

One Ray is started for the module (``ray.init(num_cpus=2)``); the engines join it instead of starting their
own. The same ~25 real photos (five people, two group shots, a pet) go through ingest + scan + people once
locally and once on Ray; the catalogs are compared table by table (timestamps and run ids left out).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from faceset import init_workspace
from faceset.workspace import open_workspace

PEOPLE = ("angelina_jolie", "barack_obama", "katy_perry", "john_simm", "elon_musk")


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def _photos(tmp: Path, data_dir: Path) -> Path:
    root = tmp / "photos"
    for who in PEOPLE:
        (root / who).mkdir(parents=True)
        for f in sorted((data_dir / "identities" / who).glob("*"))[:4]:
            shutil.copyfile(f, root / who / f.name)
    (root / "other").mkdir()
    for f in (data_dir / "groups" / "couple.jpg", data_dir / "groups" / "obama_and_biden.jpg",
              data_dir / "nonface" / "pets" / "dog.4001.jpg"):
        shutil.copyfile(f, root / "other" / f.name)
    return root


@pytest.fixture(scope="module")
def pipelines(ray_cluster, tmp_path_factory, data_dir) -> dict[str, Path]:
    """{"local": workspace, "ray": workspace} after ingest + scan + people (+ splits) on each engine."""
    from faceset.curate import assign_splits, cluster_people
    from faceset.ingest import ingest
    from faceset.scan import scan

    tmp = tmp_path_factory.mktemp("ray_pipeline")
    src = _photos(tmp, data_dir)
    out = {}
    for name in ("local", "ray"):
        w = init_workspace(tmp / name)
        ingest(w, [src], license="test-only", consent="research_exemption", labels="folder:who", progress=False,
               engine=name, workers=2)
        rep = scan(w, engine=name, workers=2, progress=False)
        assert rep.errors == 0 and rep.faces >= 20
        if name == "local":
            cluster_people(w, progress=False)
        else:  # the CLI, with every kNN of the clustering (however small) through the Ray tasks
            w.close()
            r, used = _people_cli_on_ray(tmp / name)
            assert r.exit_code == 0, r.output
            assert used, "no neighbour search went to Ray"
            w = open_workspace(tmp / name)
        assign_splits(w)
        w.close()
        out[name] = tmp / name
    return out


def _people_cli_on_ray(ws: Path):
    """`faceset people --engine ray` (joins the module's Ray) with the size floor off; counts Ray searches."""
    from typer.testing import CliRunner

    from faceset.cli import app
    from faceset.curate import knn_dist

    used, run, floor = [], knn_dist._run, knn_dist.MIN_PAIRS
    knn_dist._run = lambda *a, **kw: (used.append(len(a[3])), run(*a, **kw))[1]
    knn_dist.MIN_PAIRS = 0
    try:
        r = CliRunner().invoke(app, ["people", "-w", str(ws), "--engine", "ray", "--workers", "2", "--json"])
    finally:
        knn_dist._run, knn_dist.MIN_PAIRS = run, floor
    return r, used


def _catalog(root: Path) -> dict:
    """The rows that make the dataset, without timestamps or run ids. Images keep their ids (ingest commits in
    input order); faces are keyed by (image, index) and people by the set of faces they hold, because face and
    person ids follow the order scan results arrive in, which differs between two local runs too.
    Embeddings are returned apart (compared to 1e-4, as tests/test_engines.py does for scan)."""
    c = sqlite3.connect(root / "catalog.db")
    q = {
        "images": "SELECT id, pixel_sha, sha256, store_key, format, width, height, bytes, status, status_reason, "
                  "dup_of, phash, phash_flip, license, consent FROM images ORDER BY id",
        "files": "SELECT path, sha256, size, image_id, outcome, reason_code FROM files ORDER BY path",
        "labels": "SELECT image_id, name, value, origin FROM labels ORDER BY image_id, name",
    }
    out = {k: c.execute(v).fetchall() for k, v in q.items()}
    rows = c.execute("SELECT image_id, idx, x, y, w, h, score, detector, landmarks, is_main, status, kind, chip_key, "
                     "crop_key, embedding, id, person_id FROM faces ORDER BY image_id, idx").fetchall()
    out["faces"] = [r[:14] for r in rows]
    out["_emb"] = np.stack([np.frombuffer(r[14], np.float32) for r in rows])
    key = {r[15]: (r[0], r[1]) for r in rows}
    members: dict[int, set] = {}
    for r in rows:
        if r[16] is not None:
            members.setdefault(r[16], set()).add(key[r[15]])
    people = {pid: (n, cons, cen) for pid, n, cons, cen in c.execute("SELECT id, n_faces, consent, centroid "
                                                                     "FROM people")}
    out["people"] = sorted((sorted(m), *people[pid][:2]) for pid, m in members.items())
    out["_centroids"] = {tuple(sorted(m)): np.frombuffer(people[pid][2], np.float32) for pid, m in members.items()}
    out["decisions"] = sorted((k, key[a], key[b]) for k, a, b in c.execute("SELECT kind, face_a, face_b "
                                                                           "FROM decisions"))
    c.close()
    return out


def test_ray_ingest_scan_people_give_the_local_catalog(pipelines):
    a, b = _catalog(pipelines["local"]), _catalog(pipelines["ray"])
    assert len(a["faces"]) >= 20 and len(a["people"]) >= len(PEOPLE)
    assert sum(len(p[0]) > 1 for p in a["people"]) >= len(PEOPLE) - 1  # people of several photos were found
    for table in ("images", "files", "labels", "faces", "people", "decisions"):
        assert a[table] == b[table], table
    assert np.abs(a["_emb"] - b["_emb"]).max() < 1e-4
    for k, v in a["_centroids"].items():
        assert np.abs(v - b["_centroids"][k]).max() < 1e-4


def _grown(root: Path, n: int = 3000) -> np.ndarray:
    """The workspace's real face embeddings, jittered (seeded) into ``n`` rows: enough rows that the
    blockwise exact search has several blocks to split over the workers."""
    emb = _catalog(root)["_emb"]
    rng = np.random.default_rng(0)
    x = emb[rng.integers(0, len(emb), n)] + rng.normal(0, 0.02, (n, emb.shape[1])).astype(np.float32)
    return x.astype(np.float32)


def test_ray_knn_and_index_search_equal_local_bit_for_bit(pipelines):
    from faceset import index as I
    from faceset.curate import graph, knn_dist
    from faceset.curate.cluster import cluster
    from faceset.engines import get_engine

    eng = get_engine("ray", 2)
    x = _grown(pipelines["ray"])
    assert len(knn_dist._chunks(len(x), len(x), eng.workers)) > 1
    want = graph.knn(x, x, 30, exclude_self=True)
    got = knn_dist.knn(x, x, 30, exclude_self=True, engine=eng, min_pairs=0)
    assert all(np.array_equal(p, q) for p, q in zip(want, got))
    want = graph.knn(x[:700], x[700:], 10)
    got = knn_dist.knn(x[:700], x[700:], 10, engine=eng, min_pairs=0)
    assert all(np.array_equal(p, q) for p, q in zip(want, got))

    ids = np.arange(len(x), dtype=np.int64) * 3 + 5
    sub = ids[::2]
    for kind in ("hnsw", "exact"):
        ix = I.VectorIndex.build(ids, x, kind=kind)
        assert ix.uses_ann == (kind == "hnsw")
        blob = ix.dumps()
        again = I.VectorIndex.loads(blob)
        assert again.dumps() == blob and again.uses_ann == ix.uses_ann  # the same index bytes travel
        want = I.search_rows(ix, x[::2], 30, sub, exclude_ids=sub)
        got = knn_dist.search_rows(ix, x[::2], 30, sub, exclude_ids=sub, engine=eng, min_pairs=0)
        assert all(np.array_equal(p, q) for p, q in zip(want, got)), kind

    # more queries than index.search_rows takes at once: the tasks' ranges keep to its segments
    ix = I.VectorIndex.build(ids[:2000], x[:2000], kind="exact")
    many = _grown(pipelines["ray"], I.SEARCH_BLOCK + 5000)
    want = I.search_rows(ix, many, 10, ids[:2000])
    got = knn_dist.search_rows(ix, many, 10, ids[:2000], engine=eng, min_pairs=0)
    assert all(np.array_equal(p, q) for p, q in zip(want, got))

    want = cluster(x)  # the whole clustering (graph, crowd split) with its searches routed to Ray
    import threading

    calls, run = [], knn_dist._run
    knn_dist._run = lambda *a, **kw: (calls.append(1), run(*a, **kw))[1]
    seen = []
    try:
        with knn_dist.distributed(eng, min_pairs=0):
            assert graph.ROUTE.get() is not None
            t = threading.Thread(target=lambda: seen.append(graph.ROUTE.get()))  # other threads stay local
            t.start(), t.join()
            got = cluster(x)
    finally:
        knn_dist._run = run
    assert calls and seen == [None]  # the clustering's searches went to Ray, only in this thread
    assert graph.ROUTE.get() is None  # put back
    assert np.array_equal(want, got) and want.max() > 10
    eng.close()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt,what,blur", [("imagefolder", "crops", False), ("zip", "chips", False),
                                           ("webdataset", "images", True), ("parquet", "crops", False)])
def test_ray_export_writes_the_local_bytes(pipelines, tmp_path, fmt, what, blur):
    """Same folder, same export id and salt: the Ray export replaces the local one with identical files
    (blurred bystanders re-encoded in the Ray tasks included)."""
    from faceset.export import export

    ws = open_workspace(pipelines["ray"])
    out = tmp_path / "ds"
    a = export(ws, out, format=fmt, what=what, label="who", blur_bystanders=blur, shard_size=7, progress=False)
    local = _tree(out)
    b = export(ws, out, format=fmt, what=what, label="who", blur_bystanders=blur, shard_size=7, progress=False,
               engine="ray", workers=2)
    ws.close()
    assert a.items >= 10 and (a.export_id, a.items, a.files, a.bytes) == (b.export_id, b.items, b.files, b.bytes)
    assert not blur or a.blurred_faces >= 1
    ray_files = _tree(out)
    assert ray_files.keys() == local.keys()
    for k in local:
        if k != "datasheet.md":  # it states the export's date and duration
            assert ray_files[k] == local[k], k


def test_ray_export_losing_the_race_with_erasure_publishes_nothing(pipelines, tmp_path, monkeypatch):
    """The commit-time check is the same on Ray: records erased while the tasks ran stop the export."""
    from faceset.export import ExportError, core, export
    from faceset.privacy import redact

    shutil.copytree(pipelines["ray"], tmp_path / "ws")
    ws = open_workspace(tmp_path / "ws")
    victims = [[it.image_id] for it in core.select_items(ws, what="crops", salt="x").items[:2]]

    def race(w, sel):
        if victims:
            ids = victims.pop(0)
            with w.catalog.tx():
                redact.mark_stale(w, "forget", image_ids=ids)
                gone = redact.erase_images(w, ids)
                redact.journal(w, "forget", keys=gone.keys, derived=True)
            redact.finish_erasures(w)

    monkeypatch.setattr(core, "_before_commit", race)
    with pytest.raises(ExportError, match="erased or redacted while this export was written"):
        export(ws, tmp_path / "out" / "ex", progress=False, engine="ray", workers=2)
    assert not (tmp_path / "out" / "ex").exists() and not list((tmp_path / "out").glob(".ex.*"))
    assert ws.catalog.exports.latest_at(str((tmp_path / "out" / "ex").resolve())) is None
    assert ws.catalog.erasures.counts() == {}
    ws.close()


def test_engine_options_are_checked_before_work(tmp_path, data_dir):
    """Curate and export refuse an unknown engine or a lone --ray-address in one line, exit 2 (no Ray needed)."""
    from typer.testing import CliRunner

    from faceset.cli import app

    init_workspace(tmp_path / "ws").close()
    run = CliRunner().invoke
    for cmd in (["people"], ["dedup"], ["export", str(tmp_path / "out")]):
        r = run(app, [*cmd, "-w", str(tmp_path / "ws"), "--engine", "spark"])
        assert r.exit_code == 2 and "spark" in r.output, (cmd, r.output)
        r = run(app, [*cmd, "-w", str(tmp_path / "ws"), "--ray-address", "ray://nowhere:1"])
        assert r.exit_code == 2 and "--ray-address needs --engine ray" in r.output, (cmd, r.output)
    assert not (tmp_path / "out").exists()


def test_a_lost_knn_worker_is_recomputed_by_the_driver(scanned_ws):
    """A task whose worker died (WorkerLost after the engine's retries) is searched in the driver: same answer.
    An in-process stand-in engine loses every second task; no Ray needed."""
    from faceset.curate import graph, knn_dist
    from faceset.engines import WorkerLost

    x = _grown(scanned_ws, 2500)

    class Flaky:
        workers, calls = 2, 0

        def put(self, obj):
            return obj

        def submit(self, fn, *args):
            return fn, args

        def result(self, handle):
            Flaky.calls += 1
            if Flaky.calls % 2 == 0:
                raise WorkerLost("worker died")
            fn, args = handle
            return fn(*args)

    got = knn_dist.knn(x, x, 10, exclude_self=True, engine=Flaky(), min_pairs=0)
    want = graph.knn(x, x, 10, exclude_self=True)
    assert Flaky.calls >= 2 and all(np.array_equal(p, q) for p, q in zip(want, got))


def test_ray_export_of_a_damaged_object_fails_like_local(pipelines, tmp_path):
    """A stored crop that no longer decodes: the same one-line error on both engines, nothing published."""
    from faceset.export import core, export
    from faceset.store import StoreError

    shutil.copytree(pipelines["ray"], tmp_path / "ws")
    ws = open_workspace(tmp_path / "ws")
    victim = core.select_items(ws, what="crops", salt="x").items[3].key
    ws.store.path(victim).write_bytes(b"not an image at all")
    errors = []
    for engine in ("local", "ray"):
        with pytest.raises(StoreError, match="is damaged") as e:
            export(ws, tmp_path / engine, progress=False, engine=engine, workers=2)
        errors.append(str(e.value))
        assert not (tmp_path / engine).exists() and not list(tmp_path.glob(f".{engine}.*"))
    ws.close()
    assert errors[0] == errors[1] and victim[:12] in errors[0] and "\n" not in errors[0]


def test_build_on_ray_gives_the_local_catalog_and_dataset(ray_cluster, tmp_path, data_dir):
    """`faceset build --engine ray`: every stage that can use Ray does (ingest, scan, the neighbour searches,
    export encoding), and the workspace and dataset equal a local build's (ids salted per export aside)."""
    from faceset.build import build
    from faceset.curate import knn_dist

    src = _photos(tmp_path, data_dir)
    reps = {}
    floor = knn_dist.MIN_PAIRS
    knn_dist.MIN_PAIRS = 0  # route even these small searches to Ray
    try:
        for name in ("local", "ray"):
            reps[name] = build([src], tmp_path / name, license="test-only", consent="research_exemption",
                               labels="folder:who", label="who", engine=name, progress=False)
    finally:
        knn_dist.MIN_PAIRS = floor
    a, b = _catalog(tmp_path / "local" / "workspace"), _catalog(tmp_path / "ray" / "workspace")
    for table in ("images", "files", "labels", "faces", "people"):
        assert a[table] == b[table], table
    assert reps["local"].items == reps["ray"].items >= 10
    assert reps["local"].classes == reps["ray"].classes

    def split_class_files(root):  # split/class folder of every exported image
        return sorted(str(p.relative_to(root).parent) for p in root.rglob("*") if p.suffix in (".png", ".jpg"))

    local = split_class_files(tmp_path / "local" / "dataset")
    assert len(local) == reps["local"].items
    assert local == split_class_files(tmp_path / "ray" / "dataset")
