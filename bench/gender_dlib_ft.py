"""Does partially fine-tuning the dlib ResNet beat the frozen embedding on an unseen source? (issue #16)

    nice -n 5 OMP_NUM_THREADS=2 .venv/bin/python bench/gender_dlib_ft.py [--configs a,b] [--seeds 2] [--cv a,b]
        [--resume]   # keep the rows already in the results JSON (a long run is written after every config)
    -> bench/results/gender_dlib_ft.{json,md}

What is compared (one run, same data, same halves, same weights as bench/gender_heads.py):
- peer: `faceset train`'s default, an MLP256 head on the FROZEN 128-D `face_embedding` of each crop and its
  mirror (the product's own ORT features, bench/out/gender_heads_features.npz);
- frozen pooled features: the 256-D average-pooled output of the last residual block (before the 128-D fc)
  or of the block before it, + the same MLP256 head;
- partial fine-tuning: the last k residual blocks of the dlib ResNet (+ its fc) are trained together with the
  head (warm-started from the frozen default head), AdamW with a small rate for the blocks, the head at 1e-3,
  early stopping on the identity-disjoint UTK val split (the epoch-0 model, i.e. the frozen one, is a
  candidate), then temperature on val, exactly the product's protocol.

Cost trick: the network up to the last 4 blocks is frozen, so the activation entering block 10 (128 x 8 x 8)
of every crop and its mirror is computed ONCE (the product's crop -> central 160 px -> 150 px path, torch on
CPU) and cached as float16 in /tmp/gender_dlib_ft (never in the repo); the k trainable blocks then train on the
cache. No augmentation beyond the mirror (the cache fixes the pixels): this measures the representation, not
the product's augmented `--finetune`.

Protocol (nothing chosen on what is reported): trained on UTKFace only (9,610 faces, class x race weights,
~20% identity-disjoint val by file hash), identities_wild (1,928 LFW photos of 300 people) in two
person-disjoint halves (bench/identity_cv.folds, seed 0); a config is chosen on one half and reported on the
other. A gain counts only when it exceeds ~0.3 points on BOTH halves (one photo is 0.1 point; gender_heads.md).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

import gender_heads as GH  # noqa: E402
from faceset.train.calibrate import EarlyStopping  # noqa: E402
from faceset.train.train import weighted_epoch  # noqa: E402

CACHE = Path("/tmp/gender_dlib_ft")
RESULTS = ROOT / "bench" / "results"
CUT = 10  # cached: the activation entering block CUT (of 14); k <= 14 - CUT blocks can be trained
NOISE = 0.3  # points per half a gain must exceed

CONFIGS: dict[str, dict] = {
    "frozen default (peer): emb128 + mlp256": {"kind": "peer"},
    "frozen pooled256 (pre-fc) + mlp256": {"kind": "pooled", "level": 14},
    "frozen pooled256 of block 12 + mlp256": {"kind": "pooled", "level": 13},
    # head_lr 1e-4 (a UTK-val-only probe: blocks 1e-4 + head 1e-3 sent val loss 0.238 -> 0.32 by epoch 2, blocks
    # 1e-5 + head 1e-4 kept it at 0.234-0.25); k=2 costs ~70 s an epoch on 2 cores (k=1 ~14 s), so it gets 10 epochs and
    # k=3 (2x k=2) is not run
    "ft k=1 lr1e-5": {"kind": "ft", "k": 1, "lr": 1e-5, "head_lr": 1e-4},
    "ft k=1 lr1e-4": {"kind": "ft", "k": 1, "lr": 1e-4, "head_lr": 1e-4},
    "ft k=2 lr1e-5": {"kind": "ft", "k": 2, "lr": 1e-5, "head_lr": 1e-4, "max_epochs": 10},
    "ft k=2 lr1e-4": {"kind": "ft", "k": 2, "lr": 1e-4, "head_lr": 1e-4, "max_epochs": 10},
    # early stopping on UTK val kept epoch 0 (the frozen net) in most k=1 fits: does the representation move the
    # unseen source at all when training simply runs a fixed, a-priori number of epochs?
    "ft k=1 lr1e-5 fixed 8 epochs": {"kind": "ft", "k": 1, "lr": 1e-5, "head_lr": 1e-4, "max_epochs": 8,
                                     "fixed": True},
    "ft k=1 lr1e-4 fixed 4 epochs": {"kind": "ft", "k": 1, "lr": 1e-4, "head_lr": 1e-4, "max_epochs": 4,
                                     "fixed": True},
}


def dlib_net():
    from faceset.train.backbones import create

    return create("face_embedding").net.net.eval()


def trunk(net, crops: np.ndarray) -> torch.Tensor:
    """uint8 [n,224,224,3] crops -> the activation entering block CUT, exactly FaceEmbedding's path."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
    c = F.interpolate(x[:, :, 32:192, 32:192], size=(150, 150), mode="bilinear", align_corners=False)
    h = ((c - net.mean) / 256.0).contiguous(memory_format=torch.channels_last)
    h = F.max_pool2d(F.relu(net.stem(h)), 3, 2)
    return net.blocks[:CUT](h)


@torch.no_grad()
def build_cache(net, name: str, loaders, batch: int = 64) -> np.ndarray:
    """float16 [n, 2, 128, 8, 8] (crop, mirror) for every loader, computed once into CACHE/name.npy."""
    p = CACHE / f"{name}.npy"
    if p.exists():
        return np.load(p, mmap_mode="r")
    from faceset.progress import bar

    CACHE.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    out = np.lib.format.open_memmap(p.with_suffix(".tmp.npy"), "w+", np.float16, (len(loaders), 2, 128, 8, 8))
    with bar(f"block-{CUT} activations ({name})", len(loaders), True) as b:
        for i in range(0, len(loaders), batch):
            crops = np.stack([ld() for ld in loaders[i:i + batch]])
            a = trunk(net, np.concatenate([crops, crops[:, :, ::-1]]))
            n = len(crops)
            out[i:i + n] = torch.stack([a[:n], a[n:]], 1).numpy().astype(np.float16)
            b.advance(n)
    out.flush()
    del out
    p.with_suffix(".tmp.npy").replace(p)
    built = CACHE / "build_seconds.json"  # the one-off cost, reported by later runs that reuse the cache
    prev = json.loads(built.read_text()) if built.exists() else {}
    built.write_text(json.dumps({**prev, name: round(time.perf_counter() - t0, 1)}))
    return np.load(p, mmap_mode="r")


@torch.no_grad()
def forward_from(net, A: np.ndarray, start: int, stop: int, batch: int = 512) -> np.ndarray:
    """Run frozen blocks [start, stop) on cached activations [n, 2, C, H, W] (float16 ok) -> float32."""
    out = []
    for i in range(0, len(A), batch):
        a = torch.from_numpy(np.asarray(A[i:i + batch], np.float32))
        n, v = a.shape[:2]
        h = net.blocks[start:stop](a.reshape(n * v, *a.shape[2:]))
        out.append(h.reshape(n, v, *h.shape[1:]).numpy())
    return np.concatenate(out)


class Tail(torch.nn.Module):
    """The last k blocks + fc of the dlib ResNet + the classification head: activation -> logits."""

    def __init__(self, net, k: int, head):
        super().__init__()
        self.blocks = copy.deepcopy(net.blocks[len(net.blocks) - k:])
        self.fc = copy.deepcopy(net.fc)
        self.head = copy.deepcopy(head)

    def embed(self, a):
        return self.fc(self.blocks(a).mean((2, 3)))

    def forward(self, a):
        return self.head(self.embed(a))


def tail_logits(model, A: torch.Tensor, batch: int = 512) -> torch.Tensor:
    model.eval()
    n, v = A.shape[:2]
    flat = A.reshape(n * v, *A.shape[2:])
    with torch.no_grad():
        L = torch.cat([model(flat[i:i + batch]) for i in range(0, len(flat), batch)])
    return L.reshape(n, v, -1)


def tail_fit(net, k, head0, Atr, ytr, wtr, Ava, yva, *, seed, lr, head_lr=1e-3, wd=1e-4, batch=128,
             max_epochs=30, patience=4, fixed=False):
    """Train the last k blocks (+ fc) at ``lr`` and the warm-started head at ``head_lr`` on both views of each
    face; keep the epoch (0 = the frozen model) with the lowest flip-averaged val loss (``fixed``: no early
    stopping, the model after ``max_epochs`` epochs)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = Tail(net, k, head0)
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW([{"params": list(model.blocks.parameters()) + list(model.fc.parameters()), "lr": lr,
                              "weight_decay": wd},
                             {"params": model.head.parameters(), "lr": head_lr, "weight_decay": 1e-3}])
    xt = Atr.reshape(-1, *Atr.shape[2:])
    yt = torch.from_numpy(np.repeat(ytr, 2))
    wt = torch.from_numpy(np.repeat(wtr, 2).astype(np.float32))
    yv = torch.from_numpy(yva)

    def vloss():
        p = torch.softmax(tail_logits(model, Ava), -1).mean(1)
        return float(F.nll_loss(torch.log(p.clamp_min(1e-8)), yv))

    stop = EarlyStopping(patience)
    stop.step(vloss(), model)
    best_epoch, epochs = 0, 0
    for ep in range(1, max_epochs + 1):
        weighted_epoch(model, xt, yt, wt, opt, g, batch)
        epochs = ep
        before = stop.best
        if stop.step(vloss(), model) and not fixed:
            break
        if stop.best < before:
            best_epoch = ep
    if fixed:
        return model.eval(), {"epochs": epochs, "best_epoch": epochs, "val_loss": vloss(),
                              "best_val_epoch": best_epoch}
    stop.restore(model)
    return model.eval(), {"epochs": epochs, "best_epoch": best_epoch, "val_loss": stop.best}


def calibrated(L_va, yva, Ls):
    T = GH.temperature(L_va, yva)
    return [torch.softmax(L / T, -1).mean(1).numpy() for L in Ls], T


def main():
    import identity_cv
    from faceset.train.train import balance_cells, sample_weights

    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="", help="comma-separated names (default: all)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds averaged (mean probability) per config")
    ap.add_argument("--cv", default="", help="configs (comma-separated, or 'all') that also get UTK 5-fold CV")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1,500 UTK faces, 1 seed, 3 epochs")
    ap.add_argument("--out", default="gender_dlib_ft")
    ap.add_argument("--resume", action="store_true", help="keep the rows already in the results JSON, run the rest")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    D = GH.load_features(argparse.Namespace(workers=2))
    X, y, XW, fw, yw, race, adult, sha, ident = (D[k] for k in ("X", "y", "XW", "fw", "yw", "race", "adult", "sha",
                                                                 "ident"))
    net = dlib_net()
    for p in net.parameters():
        p.requires_grad_(False)
    t_cache = time.perf_counter()
    AU, AW = load_cache(net, sha)
    t_cache = time.perf_counter() - t_cache
    if (CACHE / "build_seconds.json").exists():
        t_cache = sum(json.loads((CACHE / "build_seconds.json").read_text()).values())
    # sanity: the cache + frozen blocks reproduce the product's (ORT, float16-cached) features
    chk = forward_from(net, AU[:256], CUT, 14).mean((3, 4))
    emb_chk = chk @ net.fc.weight.numpy().T
    diff = float(np.abs(emb_chk - X[:256]).max())
    print(f"cache vs product features: max abs diff {diff:.4f} (cache {t_cache:.0f} s)", file=sys.stderr, flush=True)

    classes = ["female", "male"]
    w = sample_weights(y, classes, balance_cells([{"race": r} for r in race], "race"))
    va = np.array([hashlib.sha256(f"0:{h}".encode()).digest()[0] < 51 for h in sha])  # gender_heads' val split
    a, b = np.flatnonzero(~va), np.flatnonzero(va)
    if args.quick:
        a = np.random.default_rng(0).permutation(a)[:1200]
        b = np.random.default_rng(0).permutation(b)[:300]
        args.seeds = 1
    wa = w[a] / w[a].mean()
    halves = identity_cv.folds(ident, np.array(["m" if v else "f" for v in yw]), seed=0)
    H = [np.array([p in h for p in ident]) for h in halves]
    ug = sorted(set(sha))
    fo = dict(zip(ug, np.random.default_rng(0).integers(0, 5, len(ug))))
    fold = np.array([fo[h] for h in sha])

    # frozen activations at each level the configs need, computed once from the cache
    levels: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def level(L):
        """[n,2,C,H,W] float32 activations entering block L (L = 14: the last block's output)."""
        if L not in levels:
            src = max([l for l in levels if l <= L], default=CUT)
            AUs, AWs = (AU, AW) if src == CUT else levels[src]
            levels[L] = (forward_from(net, AUs, src, L), forward_from(net, AWs, src, L))
        return levels[L]

    def emb_of(L14):
        return L14.mean((3, 4)) @ net.fc.weight.numpy().T

    names = [n for n in CONFIGS if not args.configs or n in args.configs.split(",")]
    if names[0] != next(iter(CONFIGS)):
        names.insert(0, next(iter(CONFIGS)))  # the peer row is always in the run
    cv_names = names if args.cv == "all" else [n for n in args.cv.split(",") if n]
    runs: dict = {}
    resumed = False
    prev = RESULTS / f"{args.out}{'_quick' if args.quick else ''}.json"
    if args.resume and prev.exists():  # same data, halves and seeds: rows of an earlier (interrupted) run
        old = json.loads(prev.read_text())
        if old["seeds"] == args.seeds:
            runs.update({n: x for n, x in old["runs"].items() if n in names})
            t0 -= old["seconds"]
            resumed = old.get("resumed", False) or bool(runs)

    def write(final: bool) -> dict:
        peer = names[0]
        chosen = []
        for i in range(2):
            pick = max(runs, key=lambda n: (round(runs[n]["halves"][i], 4), n == peer))
            chosen.append({"chosen_on_half": i, "config": pick, "chosen_half_acc": runs[pick]["halves"][i],
                           "reported_half": 1 - i, "reported_acc": runs[pick]["halves"][1 - i],
                           "peer_on_reported_half": runs[peer]["halves"][1 - i]})
        res = {"n_utk": int(len(y)), "n_train": int(len(a)), "n_val": int(len(b)), "n_wild": int(len(yw)),
               "wild_found": int(fw.sum()), "half_sizes": [int(h.sum()) for h in H], "seeds": args.seeds,
               "quick": args.quick, "threads": args.threads, "cache_check_max_abs_diff": round(diff, 5),
               "cache_seconds": round(t_cache, 1), "configs": {n: CONFIGS[n] for n in names}, "complete": final,
               "runs": {n: {k: v for k, v in r.items() if k != "p_wild"} for n, r in runs.items()},
               "chosen": chosen, "seconds": round(time.perf_counter() - t0, 1), "resumed": resumed}
        res["verdict"] = verdict(res)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = args.out + ("_quick" if args.quick else "")
        (RESULTS / f"{out}.json").write_text(json.dumps(res, indent=1) + "\n")
        (RESULTS / f"{out}.md").write_text(markdown(res))
        return res

    for name in names:
        if name in runs:
            continue
        cfg, t = CONFIGS[name], time.perf_counter()
        PW, info = [], []
        for s in range(args.seeds):
            P, extra = fit_one(cfg, net, level, emb_of, X, XW, y, w, a, wa, b, s, args.quick)
            PW.append(P)
            info.append(extra)
        PW = np.mean(PW, 0)
        cw = (PW.argmax(1) == yw) & fw
        r = {"wild_acc": float(cw.mean()), "wild_ece": GH.ece(PW.max(1)[fw], cw[fw]),
             "halves": [float(cw[h].mean()) for h in H], "female": float(cw[yw == 0].mean()),
             "male": float(cw[yw == 1].mean()), "fits": info, "p_wild": PW[:, 1]}
        if name in cv_names:
            P = np.zeros((len(y), 2))
            for k in range(5):
                idx = np.flatnonzero(fold != k)
                vk = fold[idx] == (k + 1) % 5
                tr_k, te = idx[~vk], np.flatnonzero(fold == k)
                P[te] = fit_one(cfg, net, level, emb_of, X, X, y, w, tr_k, w[tr_k] / w[tr_k].mean(), idx[vk], 0,
                                args.quick, test=te)[0]
            c = P.argmax(1) == y
            r.update(utk_acc=float(c.mean()), utk_acc13=float(c[adult].mean()),
                     utk_gap13=GH.race_gap(c, race, adult), utk_ece=GH.ece(P.max(1), c))
        r["seconds"] = round(time.perf_counter() - t, 1)
        r["error_people"] = len(set(ident[~cw]))
        runs[name] = r
        print(name, json.dumps({k: (np.round(v, 4).tolist() if isinstance(v, (list, float)) else v)
                                for k, v in r.items() if k not in ("p_wild", "fits")}), r["fits"], file=sys.stderr,
              flush=True)
        write(False)


    print(markdown(write(True)))


def load_cache(net, sha):
    """Block-CUT activations of every UTK face (gender_heads' order, checked by file hash) and wild photo."""
    import gender
    from faceset.train.data import from_folder

    ds = from_folder(gender.DATA / "utkface", "gender", chips=True, cache_dir=gender.OUT / "utkface-cache")
    wild = gender.wild_dataset(10, gender.OUT / "wild-cache")
    AU = AW = None
    if (CACHE / "utk.npy").exists() and (CACHE / "wild.npy").exists():
        AU, AW = np.load(CACHE / "utk.npy", mmap_mode="r"), np.load(CACHE / "wild.npy", mmap_mode="r")
        if len(AU) == len(sha) and len(AW) == len(wild.samples):
            return AU, AW
    by_sha: dict[str, list] = {}
    for s in ds.samples:  # UTK chips with the same bytes have the same crop
        by_sha.setdefault(hashlib.sha256(s.load.path.read_bytes()).hexdigest(), []).append(s)
    utk_loaders = []
    for h in sha:
        s = by_sha[h][0]
        utk_loaders.append(lambda s=s: s.load())
    for ld in utk_loaders[:3] + [lambda s=s: s.load() for s in wild.samples[:3]]:
        if ld() is None:
            raise SystemExit("a cached crop is missing: run bench/gender.py (or gender_heads.py) first")
    AU = build_cache(net, "utk", utk_loaders)
    AW = build_cache(net, "wild", [lambda s=s: s.load() for s in wild.samples])
    return AU, AW


def fit_one(cfg, net, level, emb_of, X, XW, y, w, a, wa, b, seed, quick, test=None):
    """Probabilities [n_test, 2] for one seed of one config; ``test`` indexes UTK (CV) instead of wild."""
    kind = cfg["kind"]
    epochs = 3 if quick else cfg.get("max_epochs", 30)
    if kind == "peer":
        Xt = XW if test is None else X[test]
        return GH.fit_predict({}, X[a], y[a], wa, X[b], y[b], [Xt], seed)[0], {}
    if kind == "pooled":
        LU, LWd = level(cfg["level"])
        PU, PWd = LU.mean((3, 4)), LWd.mean((3, 4))
        Xt = PWd if test is None else PU[test]
        return GH.fit_predict({}, PU[a], y[a], wa, PU[b], y[b], [Xt], seed)[0], {}
    k = cfg["k"]
    start = 14 - k
    AUs, AWs = level(start)
    EU = emb_of(level(14)[0])
    head0 = GH.head_fit(EU[a], y[a], wa, EU[b], y[b], seed=seed * 100)  # the frozen default head: warm start
    At = torch.from_numpy(AUs)
    model, info = tail_fit(net, k, head0, At[a], y[a], wa, At[b], y[b], seed=seed, lr=cfg["lr"],
                             head_lr=cfg.get("head_lr", 1e-3), max_epochs=epochs, fixed=cfg.get("fixed", False))
    Ltest = tail_logits(model, torch.from_numpy(AWs) if test is None else At[test])
    (P,), T = calibrated(tail_logits(model, At[b]), y[b], [Ltest])
    return P, {**info, "T": round(T, 3)}


def verdict(r) -> dict:
    peer = next(iter(r["runs"].values()))
    wins = [n for n, x in list(r["runs"].items())[1:]
            if all(100 * (x["halves"][i] - peer["halves"][i]) > NOISE for i in range(2))]
    return {"wins_on_both_halves_by_more_than_noise": wins, "noise_points_per_half": NOISE}


def markdown(r):
    peer_name, peer = next(iter(r["runs"].items()))
    cv = any("utk_acc" in x for x in r["runs"].values())
    lines = ["# Partial fine-tuning of the dlib ResNet for gender vs the frozen embedding (issue #16)", "",
             f"Command: `nice -n 5 python bench/gender_dlib_ft.py` ({r['seconds']} s"
             f"{' over a run and its --resume' if r.get('resumed') else ''} on the shared 2-core CPU, "
             f"{r['threads']} threads{'; QUICK smoke run' if r['quick'] else ''}). Trained on UTKFace only "
             f"({r['n_train']} train / {r['n_val']} identity-disjoint val faces, class x race weights; early stopping "
             f"and temperature on val); identities_wild {r['n_wild']} photos ({r['wild_found']} with a face; no face "
             f"= error) in two person-disjoint halves ({r['half_sizes'][0]} / {r['half_sizes'][1]} photos). Each row: "
             f"mean probability of {r['seeds']} seeds. Fine-tuned rows train the last k residual blocks + fc of the "
             "dlib ResNet and the warm-started MLP256 head on cached block activations of each crop and its mirror "
             f"(no other augmentation); cache built once in {r['cache_seconds']} s, its frozen forward reproduces the "
             f"product's features to {r['cache_check_max_abs_diff']} (max abs, float16 caches). Best epoch 0 = "
             "early stopping kept the frozen network.", "",
             "| config | wild half A | wild half B | wild all | female / male | wild ECE | vs peer A / B (points) | "
             "epochs (best) per seed | UTK val loss per seed |" + (" UTK CV acc | UTK 13+ | race gap 13+ | UTK ECE |"
                                                                    if cv else "") + " s |",
             "|---|---|---|---|---|---|---|---|---|" + ("---|---|---|---|" if cv else "") + "---|"]
    for n, x in r["runs"].items():
        d = [100 * (x["halves"][i] - peer["halves"][i]) for i in range(2)]
        fits = [f for f in x["fits"] if f]
        ep = ", ".join(f"{f['epochs']} ({f['best_epoch']})" for f in fits) or "-"
        vl = ", ".join(f"{f['val_loss']:.4f}" for f in fits) or "-"
        utk = (f" {x.get('utk_acc', float('nan')):.4f} | {x.get('utk_acc13', float('nan')):.4f} | "
               f"{x.get('utk_gap13', float('nan')):.2f} | {x.get('utk_ece', float('nan')):.4f} |" if cv else "")
        lines.append(f"| {n} | {x['halves'][0]:.4f} | {x['halves'][1]:.4f} | {x['wild_acc']:.4f} | "
                     f"{x['female']:.4f} / {x['male']:.4f} | {x['wild_ece']:.4f} | {d[0]:+.1f} / {d[1]:+.1f} | {ep} | "
                     f"{vl} |{utk} {x['seconds']} |")
    es = [f for n, x in r["runs"].items() if not r["configs"][n].get("fixed") for f in x["fits"] if f]
    if es:
        lines += ["", f"Early stopping on the UTK val split kept epoch 0 (the frozen network + warm head) in "
                  f"{sum(f['best_epoch'] == 0 for f in es)} of {len(es)} fine-tuning fits. `fixed` rows "
                  "skip early stopping (a preset number of epochs). Seconds are wall time on a CPU shared with "
                  "other jobs (load 3-5): compare them loosely."]
    lines += ["", "Chosen on one half, reported on the other:", ""]
    for c in r["chosen"]:
        lines.append(f"- chosen on half {'AB'[c['chosen_on_half']]}: `{c['config']}` ({c['chosen_half_acc']:.4f} "
                     f"there) -> half {'AB'[c['reported_half']]}: {c['reported_acc']:.4f} (peer "
                     f"{c['peer_on_reported_half']:.4f})")
    v = r["verdict"]
    lines += ["", f"Better than the peer (`{peer_name}`) by more than {v['noise_points_per_half']} points on BOTH "
              f"halves: {', '.join(v['wins_on_both_halves_by_more_than_noise']) or 'none'}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
