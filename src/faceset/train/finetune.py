"""Fine-tuning: unfreeze the backbone, train it with the head on augmented crops.

Crops are decoded once into one uint8 tensor (per-epoch JPEG decoding cannot feed a GPU:
docs/train.md), staged on the GPU when it fits; augmentation (mirror, scale/shift/rotation,
brightness/contrast, and toward real photos: colour, resolution, noise) runs on the batch, on
the device. On CUDA: channels_last + bf16 autocast. BatchNorm statistics
stay frozen (eval mode): small batches on CPU would otherwise wreck the ImageNet statistics.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..progress import bar
from .calibrate import EarlyStopping, fit_temperature
from .features import Preprocess


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def augment(x: torch.Tensor, g: torch.Generator, photo: bool = True, res_g: torch.Generator | None = None,
            geometric: bool = True) -> torch.Tensor:
    """x: float NCHW 0-255 -> randomly mirrored, scaled, shifted (+-6%), rotated (+-10 deg), jittered.

    ``photo`` (default) pushes tight dataset chips toward real photos: a wider scale range (0.85-1.2),
    per-channel colour gains (white balance) and saturation, lower resolution (down- then up-sampling by
    0.35-1, which is also what JPEG at low quality and small faces do to detail) and sensor noise.
    ``geometric=False`` leaves out the mirror/scale/shift/rotation (bench/gender.py --aug measures each part).
    Everything runs on the batch, on the device: no per-image PIL work per epoch. Random numbers come from
    ``g`` on ``x``'s device when it lives there (no host-side noise tensors copied per step, no sync).
    """
    res_g = res_g if res_g is not None else (g if g.device.type == "cpu" else None)
    n = x.shape[0]
    gd = g if g.device.type == x.device.type else None  # a CPU generator with a CUDA batch: draw on CPU, copy
    r = ((lambda *s: torch.rand(*s, generator=gd, device=x.device)) if gd is not None  # noqa: E731
         else (lambda *s: torch.rand(*s, generator=g).to(x.device)))
    ang = (r(n) - 0.5) * (2 * math.pi / 18)
    sc = (0.85 + 0.35 * r(n)) if photo else (0.9 + 0.2 * r(n))
    flip = torch.where(r(n) < 0.5, -1.0, 1.0).to(x.device)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = torch.cos(ang) / sc * flip
    theta[:, 0, 1] = -torch.sin(ang) / sc
    theta[:, 1, 0] = torch.sin(ang) / sc * flip
    theta[:, 1, 1] = torch.cos(ang) / sc
    theta[:, :, 2] = (r(n, 2) - 0.5) * 0.12
    if geometric:
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    b = (r(n, 1, 1, 1) - 0.5) * 50
    c = 0.8 + 0.4 * r(n, 1, 1, 1)
    m = x.mean((1, 2, 3), keepdim=True)
    x = (x - m) * c + m + b
    if photo:
        x = x * (0.9 + 0.2 * r(n, 3, 1, 1))  # white balance
        grey = x.mean(1, keepdim=True)
        x = grey + (x - grey) * (0.6 + 0.8 * r(n, 1, 1, 1))  # saturation
        k = 0.35 + 0.65 * float(torch.rand(1, generator=res_g))  # one resolution per batch: one interpolate
        if k < 0.95:
            side = x.shape[-1]
            x = F.interpolate(F.interpolate(x, size=max(16, int(side * k)), mode="bilinear", align_corners=False,
                                            antialias=True), size=side, mode="bilinear", align_corners=False)
        noise = (torch.randn(x.shape, generator=gd, device=x.device) if gd is not None
                 else torch.randn(x.shape, generator=g).to(x.device))
        x = x + noise * (r(n, 1, 1, 1) * 6)
    return x.clamp(0, 255)


def fit(net: torch.nn.Module, head: torch.nn.Module, pre: Preprocess, xtr: torch.Tensor, ytr: torch.Tensor,
        xva: torch.Tensor, yva: torch.Tensor, *, epochs: int = 8, batch: int = 64, lr: float = 1e-4,
        weights: torch.Tensor | None = None, seed: int = 0, patience: int = 2, progress: bool = True) -> dict:
    """Train ``net`` + ``head`` on uint8 NHWC crops; keep the epoch with the lowest val loss. Returns stats."""
    dev = device()
    cuda = dev.type == "cuda"
    g = torch.Generator().manual_seed(seed)  # host: permutation, resolution per batch
    g_dev = torch.Generator(device=dev).manual_seed(seed)  # device: augmentation (no host tensors per step)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(pre, net, head).to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW([{"params": net.parameters(), "lr": lr}, {"params": head.parameters(), "lr": lr * 10}],
                            weight_decay=1e-4)
    steps = epochs * math.ceil(len(xtr) / batch)
    # one-cycle needs a few steps per phase; a tiny run (tests, --quick) keeps a constant rate
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr, lr * 10], total_steps=steps,
                                                 pct_start=min(0.5, max(0.1, 3.0 / steps)))
             if steps >= 10 else torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0))
    w = (weights if weights is not None else torch.ones(len(ytr))).to(dev)
    stop, seen, t_train, hist = EarlyStopping(patience), 0, 0.0, []
    xtr, xva = _stage(xtr, dev), _stage(xva, dev)
    ytr_d = ytr.to(dev)

    def batches(x, idx):
        for i in range(0, len(idx), batch):
            b = idx[i:i + batch]
            xb = x[b].to(dev, non_blocking=True).permute(0, 3, 1, 2).float()
            yield b, (xb.contiguous(memory_format=torch.channels_last) if cuda else xb)

    for ep in range(1, epochs + 1):
        model.train()
        for m in model.modules():  # frozen BatchNorm statistics
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        t0 = time.perf_counter()
        with bar(f"fine-tune epoch {ep}", len(xtr), progress) as pb:
            for b, xb in batches(xtr, torch.randperm(len(xtr), generator=g).to(xtr.device)):
                bd = b.to(dev, non_blocking=True)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                    logits = model(augment(xb, g_dev, res_g=g))
                loss = (F.cross_entropy(logits.float(), ytr_d[bd], reduction="none") * w[bd]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                seen += len(b)
                pb.advance(len(b))
        if cuda:
            torch.cuda.synchronize()
        t_train += time.perf_counter() - t0
        vloss, vacc = _val(model, xva, yva, batches, cuda)
        hist.append({"epoch": ep, "val_loss": vloss, "val_accuracy": vacc})
        if stop.step(vloss, model):
            break
    stop.restore(model)
    model.to("cpu").eval()
    return {"epochs": len(hist), "history": hist, "train_seconds": t_train,
            "images_per_s": seen / t_train if t_train else 0.0, "device": str(dev)}


@torch.no_grad()
def _val(model, xva, yva, batches, cuda) -> tuple[float, float]:
    model.eval()
    ps = []
    for _, xb in batches(xva, torch.arange(len(xva), device=xva.device)):
        with torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=cuda):
            p = (torch.softmax(model(xb).float(), 1) + torch.softmax(model(xb.flip(3)).float(), 1)) / 2
        ps.append(p.cpu())
    p = torch.cat(ps)
    return float(F.nll_loss(torch.log(p.clamp_min(1e-8)), yva)), float((p.argmax(1) == yva).float().mean())


def _stage(x: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """uint8 crops where batches are cut from: on the GPU when they fit in a third of its free memory (no
    host-to-device copy per step: 9.8k crops are 1.5 GB), else pinned host memory for async copies."""
    if dev.type != "cuda":
        return x
    free, _ = torch.cuda.mem_get_info()
    return x.to(dev) if x.numel() < free / 3 else x.pin_memory()


def model_only_rate(net: torch.nn.Module, head: torch.nn.Module, pre: Preprocess, xb: torch.Tensor, *,
                    steps: int = 20, warmup: int = 3, lr: float = 1e-4) -> float:
    """Images/s of forward + backward + step alone on one batch already on the device (copies of the modules).

    Why: the yardstick for the data path. ``fit``'s end-to-end rate (sampling, augmentation, copies) is judged
    against this in the same run (bench/finetune_gpu.py; goal >= 80%).
    """
    import copy

    dev = device()
    cuda = dev.type == "cuda"
    model = torch.nn.Sequential(copy.deepcopy(pre), copy.deepcopy(net), copy.deepcopy(head)).to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    x = xb.to(dev).permute(0, 3, 1, 2).float()
    x = x.contiguous(memory_format=torch.channels_last) if cuda else x
    y = torch.zeros(len(x), dtype=torch.long, device=dev)
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if cuda:
        torch.cuda.synchronize()
    return steps * len(x) / (time.perf_counter() - t0)


def load_crops(samples, idx) -> tuple[torch.Tensor, np.ndarray]:
    """Decode the crops once into uint8 [n, 224, 224, 3]; returns the tensor and which samples had one."""
    crops, ok = [], []
    for i in idx:
        c = samples[i].load()
        if c is not None:
            crops.append(c)
            ok.append(i)
    return torch.from_numpy(np.stack(crops)), np.array(ok, int)


def finetune(ds, bb, head, tr: np.ndarray, va: np.ndarray, y: np.ndarray, *, seed: int = 0, epochs: int = 8,
             weights: np.ndarray | None = None, progress: bool = True) -> tuple[float, int]:
    """Fine-tune ``bb.net`` and ``head`` in place on the dataset's train split; refit temperature on val."""
    from .features import crop_features

    xtr, itr = load_crops(ds.samples, np.flatnonzero(tr))
    xva, iva = load_crops(ds.samples, np.flatnonzero(va))
    w = None
    if weights is not None:  # weights follow the train mask order
        pos = {i: k for k, i in enumerate(np.flatnonzero(tr))}
        w = torch.from_numpy(weights[[pos[i] for i in itr]])
    pre = Preprocess(bb.size, bb.mean, bb.std)
    stats = fit(bb.net, head, pre, xtr, torch.from_numpy(y[itr]), xva, torch.from_numpy(y[iva]), epochs=epochs,
                weights=w, seed=seed, progress=progress)
    bb.net.eval()
    head.eval()
    Xva = crop_features(bb, list(xva.numpy()))
    return fit_temperature(head, Xva, y[iva]), stats["epochs"]
