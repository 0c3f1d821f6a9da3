"""Export throughput: faceset's four writers vs the obvious peer for each format, same data, same run.

The workspace is filled straight from real UTKFace JPEGs (each 200 px chip stored as a face's crop,
gender from labels.csv, one person each, 80/10/10 splits), bypassing scan, so the numbers measure
export alone: read from the store, metadata check, write the layout + manifest + datasheet.

Peers (what one would write without faceset):
  imagefolder  shutil.copyfile from the store into split/class folders (no checks, no manifest)
  zip          shutil.make_archive over that folder tree (one zip, not per-class shards)
  webdataset   webdataset.ShardWriter with the same samples
  parquet      datasets.Dataset.from_dict({image bytes, label, split}).to_parquet()

    python bench/export.py [-n 2000]     # writes bench/results/export.json and export.md
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACESET_DATA", ROOT.parent / "shared" / "data"))


def fill(ws, n: int) -> list[dict]:
    from faceset.catalog import now

    rows = [r for r in csv.DictReader(open(DATA / "utkface" / "labels.csv", newline="")) if r["gender"]][:n]
    out = []
    with ws.catalog.tx() as c:
        c.execute("INSERT INTO sources(name, kind, license, consent, created_at) VALUES "
                  "('utkface', 'folder', 'research-only', 'research_exemption', ?)", (now(),))
        for i, r in enumerate(rows):
            data = (DATA / "utkface" / r["file"]).read_bytes()
            key = ws.store.put(data)
            iid = c.execute(
                "INSERT INTO images(pixel_sha, sha256, store_key, format, width, height, bytes, source_id, status, "
                "created_at) VALUES (?,?,?,?,?,?,?,1,'ok',?)",
                (f"bench{i}", key, key, "JPEG", 200, 200, len(data), now())).lastrowid
            split = ("train",) * 8 + ("val", "test")
            pid = c.execute("INSERT INTO people(created_at, n_faces, split) VALUES (?,1,?)",
                            (now(), split[int(hashlib.sha256(str(i).encode()).hexdigest(), 16) % 10])).lastrowid
            c.execute("INSERT INTO faces(image_id, idx, x, y, w, h, is_main, quality, crop_key, person_id, status) "
                      "VALUES (?,0,0,0,200,200,1,1.0,?,?,'ok')", (iid, key, pid))
            c.execute("INSERT INTO labels VALUES (?, 'gender', ?, 'manifest', ?)", (iid, r["gender"], now()))
            out.append({"key": key, "gender": r["gender"],
                        "split": split[int(hashlib.sha256(str(i).encode()).hexdigest(), 16) % 10]})
    return out


def peer(fmt: str, ws, recs: list[dict], out: Path) -> None:
    if fmt in ("imagefolder", "zip"):
        tree = out / "tree"
        for i, r in enumerate(recs):
            d = tree / r["split"] / r["gender"]
            d.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ws.store.path(r["key"]), d / f"{i}.jpg")
        if fmt == "zip":
            shutil.make_archive(str(out / "all"), "zip", tree)
    elif fmt == "webdataset":
        import webdataset as wds

        with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=1000, verbose=0) as w:
            for i, r in enumerate(recs):
                w.write({"__key__": f"{i:08d}", "jpg": ws.store.get(r["key"]),
                         "json": {"split": r["split"], "label": r["gender"]}})
    elif fmt == "parquet":
        import datasets

        datasets.disable_progress_bars()
        # Bytes, not paths: a path-only Parquet file is not a self-contained dataset.
        feats = datasets.Features({"image": datasets.Image(), "label": datasets.Value("string"),
                                   "split": datasets.Value("string")})
        ds = datasets.Dataset.from_dict({"image": [{"bytes": ws.store.get(r["key"]), "path": None} for r in recs],
                                         "label": [r["gender"] for r in recs], "split": [r["split"] for r in recs]},
                                        features=feats)
        ds.to_parquet(str(out / "all.parquet"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from faceset.export import FORMATS, export
    from faceset.workspace import init_workspace

    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        ws = init_workspace(tmp / "ws")
        recs = fill(ws, a.n)
        results = []
        for fmt in FORMATS:
            best_f = best_p = float("inf")
            for k in range(a.repeats):
                t = time.perf_counter()
                rep = export(ws, tmp / f"f-{fmt}-{k}", format=fmt, what="crops", label="gender", progress=False)
                best_f = min(best_f, time.perf_counter() - t)
                (tmp / f"p-{fmt}-{k}").mkdir()
                t = time.perf_counter()
                peer(fmt, ws, recs, tmp / f"p-{fmt}-{k}")
                best_p = min(best_p, time.perf_counter() - t)
            results.append({"format": fmt, "items": rep.items, "faceset_s": round(best_f, 3),
                            "faceset_items_per_s": round(rep.items / best_f, 1), "peer_s": round(best_p, 3),
                            "peer_items_per_s": round(len(recs) / best_p, 1),
                            "ratio_faceset_over_peer": round((rep.items / best_f) / (len(recs) / best_p), 2),
                            "mb": round(rep.bytes / 1e6, 1)})
            print(results[-1], flush=True)
        meta = {"n": a.n, "repeats": a.repeats, "machine": platform.platform(), "cpus": os.cpu_count(),
                "command": f"python bench/export.py -n {a.n}"}
        res_dir = ROOT / "bench" / "results"
        res_dir.mkdir(parents=True, exist_ok=True)
        (res_dir / "export.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        md = [f"# Export throughput ({a.n} real UTKFace crops, best of {a.repeats}, {os.cpu_count()} CPUs)", "",
              f"`{meta['command']}`", "",
              "| format | faceset items/s | peer | peer items/s | ratio (faceset/peer) | MB |",
              "|---|---|---|---|---|---|"]
        peers = {"imagefolder": "shutil.copyfile", "zip": "shutil.make_archive", "webdataset": "wds.ShardWriter",
                 "parquet": "datasets.to_parquet"}
        for r in results:
            md.append(f"| {r['format']} | {r['faceset_items_per_s']} | {peers[r['format']]} | {r['peer_items_per_s']} "
                      f"| {r['ratio_faceset_over_peer']} | {r['mb']} |")
        md += ["", "faceset also checks every image for metadata, writes manifest.csv/jsonl and datasheet.md, "
               "and records export_items; the peers do none of that."]
        (res_dir / "export.md").write_text("\n".join(md) + "\n")
        print("\n".join(md))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
