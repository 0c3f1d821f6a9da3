"""Review app speed on a synthetic workspace: p95 server time per page view vs the bare queries (the floor).

    .venv/bin/python bench/serve.py [--faces 100000] [--people 20000] [--views 60] [--out bench/results/serve.json]

Builds (once, cached under /tmp/faceset-bench-serve-<faces>-<people>) a workspace with ``faces`` faces in
``faces/2`` photos and ``people`` people (random unit embeddings around per-person centres, labels,
splits, a few near-duplicate groups), then times, in process (Starlette TestClient, no network):
grid pages (first, deep keyset pages, filtered), people pages (by size and by doubt, deep pages), person
pages and image pages. "floor" is the same catalog queries run bare, without rendering. The target
(issue #12) is p95 <= 300 ms for grid, people and image pages.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from faceset import init_workspace, open_workspace  # noqa: E402


def build(root: Path, n_faces: int, n_people: int, seed: int = 0) -> None:
    if (root / "faceset.json").exists() and (root / ".built").exists():
        return
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    ws = init_workspace(root)
    ws.close()
    rng = np.random.default_rng(seed)
    db = sqlite3.connect(root / "catalog.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=OFF")
    t = "2026-01-01T00:00:00+00:00"
    db.execute("INSERT INTO sources(id, name, kind, uri, license, consent, created_at) VALUES "
               "(1, 'synthetic', 'folder', '/data/synthetic', 'cc-by', 'consent', ?)", (t,))
    n_images = max(1, n_faces // 2)
    db.executemany(
        "INSERT INTO images(id, pixel_sha, sha256, store_key, format, width, height, bytes, source_id, status, "
        "created_at, scanned_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        ((i, f"p{i:064d}", f"s{i:064d}", f"{i:064x}", "jpeg", 640, 480, 50_000, 1,
          "ok" if i % 23 else "no_face", t, t) for i in range(1, n_images + 1)))
    db.executemany("INSERT INTO files(source_id, path, sha256, size, image_id, outcome, seen_at) "
                   "VALUES (?,?,?,?,?,?,?)",
                   ((1, f"person/{i}.jpg", f"s{i:064d}", 50_000, i, "added", t) for i in range(1, n_images + 1)))
    splits = ("train", "val", "test")
    db.executemany("INSERT INTO people(id, created_at, n_faces, split) VALUES (?,?,0,?)",
                   ((p, t, splits[p % 10 // 8] if p % 10 >= 8 else "train") for p in range(1, n_people + 1)))
    centres = rng.standard_normal((n_people, 128)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # Zipf-ish sizes: a few big people, many small ones
    weights = 1.0 / np.arange(1, n_people + 1) ** 0.8
    person_of = rng.choice(n_people, size=n_faces, p=weights / weights.sum()) + 1
    rows = []
    for fid in range(1, n_faces + 1):
        img = (fid - 1) // 2 + 1
        p = int(person_of[fid - 1])
        e = centres[p - 1] + rng.standard_normal(128).astype(np.float32) * 0.04
        e /= np.linalg.norm(e)
        rows.append((fid, img, (fid - 1) % 2, 100.0 + 50 * ((fid - 1) % 2), 80.0, 120.0, 120.0, 0.99, "hog",
                     int((fid - 1) % 2 == 0), 120.0, 200.0, 120.0, 5.0, float(rng.random()), e.tobytes(),
                     f"c{fid:063x}", f"k{fid:063x}", p, "ok" if fid % 11 else "low_quality"))
    db.executemany(
        "INSERT INTO faces(id, image_id, idx, x, y, w, h, score, detector, is_main, size, blur, brightness, yaw, "
        "quality, embedding, chip_key, crop_key, person_id, status) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows)
    db.execute("UPDATE people SET n_faces=(SELECT COUNT(*) FROM faces f WHERE f.person_id=people.id)")
    db.executemany("INSERT INTO labels(image_id, name, value, origin, updated_at) VALUES (?,?,?,?,?)",
                   ((i, "identity", f"id{i % 997}", "folder", t) for i in range(1, n_images + 1)))
    db.executemany("UPDATE images SET dup_of=? WHERE id=?", ((i - 1, i) for i in range(3, n_images, 97)))
    db.commit()
    db.close()
    (root / ".built").write_text("ok\n")


def p95(xs: list[float]) -> float:
    return float(np.percentile(np.array(xs) * 1000, 95)) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--people", type=int, default=20_000)
    ap.add_argument("--views", type=int, default=60)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    root = Path(f"/tmp/faceset-bench-serve-{a.faces}-{a.people}")
    t0 = time.perf_counter()
    build(root, a.faces, a.people)
    print(f"workspace: {root} (built/opened in {time.perf_counter() - t0:.1f}s)")

    from fastapi.testclient import TestClient

    from faceset.catalog.review import Review
    from faceset.serve import create_app

    ws = open_workspace(root)
    rv = Review(ws.catalog)
    client = TestClient(create_app(ws))
    rnd = random.Random(0)
    max_img = ws.catalog.scalar("SELECT MAX(id) FROM images")
    people = [r[0] for r in ws.catalog.q("SELECT id FROM people WHERE n_faces > 0")]
    sizes = dict(ws.catalog.q("SELECT id, n_faces FROM people"))

    t = time.perf_counter()
    client.get("/people?sort=doubt")  # builds the doubt order once (cached until people change)
    warm_doubt = time.perf_counter() - t

    def deep_people_key():
        p = rnd.choice(people)
        return f"{sizes[p]}.{p}"

    views = {
        "grid": (lambda: f"/images?after={rnd.randrange(0, max_img)}",
                 lambda u: rv.images_page(after=int(u.split("=")[1]), limit=60)),
        "grid filtered (split+status)": (lambda: f"/images?status=ok&split=train&after={rnd.randrange(0, max_img)}",
                                         lambda u: rv.images_page(after=int(u.rsplit("=", 1)[1]), limit=60,
                                                                  status="ok", split="train")),
        "grid by person": (lambda: f"/images?person={rnd.choice(people)}",
                           lambda u: rv.images_page(person_id=int(u.split("=")[1]), limit=60)),
        "people by size": (lambda: f"/people?sort=size&after={deep_people_key()}",
                           lambda u: rv.mosaic([c.id for c in rv.people_by_size(
                               after=tuple(int(x) for x in u.rsplit("=", 1)[1].split(".")), limit=48)])),
        "people by doubt": (lambda: f"/people?sort=doubt&after={rnd.choice(people)}", None),
        "person": (lambda: f"/person/{rnd.choice(people)}",
                   lambda u: rv.person_faces(int(u.rsplit("/", 1)[1]), limit=120)),
        "image": (lambda: f"/image/{rnd.randrange(1, max_img + 1)}",
                  lambda u: (rv.image(int(u.rsplit("/", 1)[1])), rv.image_face_details(int(u.rsplit("/", 1)[1])))),
    }
    results = {}
    for name, (make, bare) in views.items():
        srv, floor = [], []
        for _ in range(a.views):
            u = make()
            t = time.perf_counter()
            r = client.get(u, headers={"accept": "text/html"})
            srv.append(time.perf_counter() - t)
            assert r.status_code == 200, (u, r.status_code, r.text[:200])
            if bare is not None:
                t = time.perf_counter()
                bare(u)
                floor.append(time.perf_counter() - t)
        results[name] = {"p95_ms": round(p95(srv), 1), "median_ms": round(float(np.median(srv) * 1000), 1),
                         "floor_p95_ms": round(p95(floor), 1) if floor else None}
        print(f"{name:30s} p95 {results[name]['p95_ms']:7.1f} ms   median {results[name]['median_ms']:7.1f} ms   "
              f"floor p95 {results[name]['floor_p95_ms'] if floor else '-'} ms")
    print(f"doubt order built once in {warm_doubt * 1000:.0f} ms")
    # /review computes its questions from every face (not a catalog page): timed apart, first view then later ones
    review = []
    for _ in range(4):
        t = time.perf_counter()
        r = client.get("/review", headers={"accept": "text/html"})
        review.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text[:200]
    review_ms = {"first_ms": round(review[0] * 1000), "later_median_ms": round(float(np.median(review[1:])) * 1000)}
    print(f"review page: first view {review_ms['first_ms']} ms, later views {review_ms['later_median_ms']} ms")
    out = {"faces": a.faces, "people": a.people, "views_per_page": a.views, "doubt_build_ms": round(warm_doubt * 1000),
           "pages": results, "review_page": review_ms, "target_p95_ms": 300,
           "ok": all(v["p95_ms"] <= 300 for v in results.values())}
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({"ok": out["ok"]}))


if __name__ == "__main__":
    main()
