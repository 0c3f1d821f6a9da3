"""Self-contained fine-tuning benchmark: UTKFace gender, backbone unfrozen, sized for <= 5 minutes on one H100.

    python bench/finetune_gpu.py                 # GPU: all 9.8k chips, up to 6 epochs
    python bench/finetune_gpu.py --quick         # CPU smoke run: 160 images, 1 epoch (proves it works)

Decodes the chips ONCE into a uint8 tensor (per-epoch JPEG decoding cannot feed a GPU: docs/train.md),
resized to 224 px (no detector: the chips are already aligned faces, and the GPU box has no crop cache).
Split: identity-disjoint by exact bytes, the same rule as faceset's labelled-folder loader.
Training: faceset.train.finetune.fit (augmentation on the device, channels_last + bf16 autocast on CUDA).
Peer in the same run: the classic retrain (frozen features + the same head) on the same split; the table
reports fine-tuned / frozen accuracy, and training images/s end to end (sampling, augmentation, copies,
forward, backward, step) against the model-only rate (forward + backward + step on one batch already on
the device, `faceset.train.finetune.model_only_rate`) in the same run: goal end to end >= 80% of model-only.
Writes bench/results/finetune_gpu{,_quick}.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACESET_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"


def _decode(path: str) -> tuple[np.ndarray, str]:
    from PIL import Image

    b = Path(path).read_bytes()
    import io

    with Image.open(io.BytesIO(b)) as im:
        return np.asarray(im.convert("RGB").resize((224, 224), Image.BILINEAR)), hashlib.sha256(b).hexdigest()


def load(limit: int | None, workers: int):
    from faceset.train.data import split_of

    with open(DATA / "utkface" / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["gender"]]
    if limit:
        rows = rows[:: max(1, len(rows) // limit)][:limit]
    t = time.perf_counter()
    with ProcessPoolExecutor(workers) as ex:
        dec = list(ex.map(_decode, [str(DATA / "utkface" / r["file"]) for r in rows], chunksize=64))
    x = np.stack([d[0] for d in dec])
    y = np.array([r["gender"] == "male" for r in rows], np.int64)
    split = np.array([split_of(d[1], 0, (0.8, 0.1, 0.1)) for d in dec])
    return x, y, split, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="CPU smoke run: 160 images, 1 epoch")
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 2))
    args = ap.parse_args()

    import torch

    from faceset.train.artifact import Head
    from faceset.train.backbones import create
    from faceset.train.features import Preprocess, crop_features
    from faceset.train.finetune import device, fit, model_only_rate
    from faceset.train.train import fit_head

    limit, epochs, batch = (160, 1, 32) if args.quick else (None, args.epochs, args.batch)
    t0 = time.perf_counter()
    x, y, split, t_decode = load(limit, args.workers)
    tr, va, te = (split == "train"), (split == "val"), (split == "test")
    dev = device()

    # peer: frozen features + the same head (the classic retrain), same split
    bb = create(args.backbone)
    t = time.perf_counter()
    F_ = crop_features(bb, list(x), batch=128)
    frozen_head, _ = fit_head(F_[tr], y[tr], np.ones(tr.sum(), np.float32), F_[va], y[va], 2, max_epochs=100)
    t_frozen = time.perf_counter() - t
    with torch.no_grad():
        p = torch.softmax(frozen_head(torch.from_numpy(F_[te]).reshape(-1, bb.dim)), 1).reshape(-1, 2, 2).mean(1)
    frozen_acc = float((p.argmax(1).numpy() == y[te]).mean())

    bb = create(args.backbone)
    head = Head(bb.dim, 2)
    head.load_state_dict(frozen_head.state_dict())  # linear probe, then fine-tune (LP-FT)
    xt = torch.from_numpy(x)
    pre = Preprocess(bb.size, bb.mean, bb.std)
    model_only = model_only_rate(bb.net, head, pre, xt[tr][:batch], steps=3 if args.quick else 30)
    stats = fit(bb.net, head, Preprocess(bb.size, bb.mean, bb.std), xt[tr], torch.from_numpy(y[tr]), xt[va],
                torch.from_numpy(y[va]), epochs=epochs, batch=batch, lr=3e-4 if not args.quick else 1e-4,
                patience=3, progress=False)
    model = torch.nn.Sequential(Preprocess(bb.size, bb.mean, bb.std), bb.net, head).eval()
    with torch.no_grad():
        xs = xt[te].permute(0, 3, 1, 2).float()
        p = (torch.softmax(model(xs), 1) + torch.softmax(model(xs.flip(3)), 1)) / 2
    ft_acc = float((p.argmax(1).numpy() == y[te]).mean())
    res = {"device": str(dev), "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else None,
           "quick": args.quick, "backbone": args.backbone, "images": len(y),
           "n": {"train": int(tr.sum()), "val": int(va.sum()), "test": int(te.sum())},
           "decode_seconds": round(t_decode, 2), "epochs_run": stats["epochs"], "history": stats["history"],
           "train_seconds": round(stats["train_seconds"], 2), "train_images_per_s": round(stats["images_per_s"], 1),
           "model_only_images_per_s": round(model_only, 1),
           "end_to_end_vs_model_only": round(stats["images_per_s"] / model_only, 3) if model_only else None,
           "decode_images_per_s": round(len(y) / t_decode, 1) if t_decode else None,
           "finetuned_test_accuracy": ft_acc, "frozen_peer_test_accuracy": frozen_acc,
           "frozen_peer_seconds": round(t_frozen, 2),
           "accuracy_ratio_finetuned_vs_frozen": round(ft_acc / frozen_acc, 4) if frozen_acc else None,
           "total_seconds": round(time.perf_counter() - t0, 1)}
    name = "finetune_gpu_quick" if args.quick else "finetune_gpu"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    md = [f"# Fine-tuning benchmark ({'quick CPU smoke run' if args.quick else 'full'}; {res['device']}"
          f"{' ' + res['gpu'] if res['gpu'] else ''})", "",
          f"Command: `python bench/finetune_gpu.py{' --quick' if args.quick else ''}`", "",
          "| | fine-tuned (faceset) | frozen features + head (peer) | ratio |", "|---|---|---|---|",
          f"| test accuracy | {ft_acc:.4f} | {frozen_acc:.4f} | {res['accuracy_ratio_finetuned_vs_frozen']} |",
          f"| seconds | {res['train_seconds']} ({res['epochs_run']} epochs, {res['train_images_per_s']} img/s) | "
          f"{res['frozen_peer_seconds']} | |",
          f"| training images/s, end to end vs model-only (same run) | {res['train_images_per_s']} | "
          f"{res['model_only_images_per_s']} (model-only) | {res['end_to_end_vs_model_only']} |", "",
          f"{res['images']} images (train {res['n']['train']}, val {res['n']['val']}, test {res['n']['test']}), "
          f"decoded once in {res['decode_seconds']} s; total {res['total_seconds']} s.", ""]
    (RESULTS / f"{name}.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
