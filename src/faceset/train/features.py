"""Bottleneck features: computed once per (backbone, face), cached as .npy files.

Cache layout (documented for erasure): ``<cache_dir>/features/<backbone>/<key[:2]>/<key>.npy``
where ``key`` is the face's crop_key in a workspace (sha256 of the file for exports and
labelled folders). Each file holds float16 ``[2, D]``: features of the crop and of its
mirror image (flip augmentation for training, flip averaging at test time); ``[0, D]``
records "no face found" so reruns skip the detector. Erasure shreds the whole cache
(``privacy.redact.wipe_derived``): every entry is rebuildable.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..progress import bar
from .backbones import Backbone
from .data import Dataset


class Preprocess(nn.Module):
    """uint8-range float NCHW 224 px crops -> the backbone's normalised input (inside ONNX too)."""

    def __init__(self, size: int, mean, std):
        super().__init__()
        self.size = size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

    def forward(self, x):
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std


def to_tensor(crops: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    a = np.ascontiguousarray(np.stack(crops) if isinstance(crops, list) else crops)
    return torch.from_numpy(a).permute(0, 3, 1, 2).float()


class Runner:
    """Backbone inference: torch on a GPU; on CPU the same graph through onnxruntime.

    Why ORT on CPU: measured 12 ms vs 55 ms per 224 px MobileNetV2 image on this 2-core box
    (docs/train.md), which is what keeps 9.8k faces x 2 views inside the 10-minute budget.
    """

    def __init__(self, bb: Backbone):
        self.pre = Preprocess(bb.size, bb.mean, bb.std)
        self.net = nn.Sequential(self.pre, bb.net).eval()
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            self.net = self.net.cuda().to(memory_format=torch.channels_last)
            return
        import io

        import onnxruntime as ort

        buf = io.BytesIO()
        with warnings.catch_warnings():  # tracer warnings about shape arithmetic: shapes are fixed (224 px)
            warnings.simplefilter("ignore")
            torch.onnx.export(self.net, (torch.zeros(1, 3, 224, 224),), buf, input_names=["x"], output_names=["f"],
                              dynamic_axes={"x": {0: "n"}, "f": {0: "n"}}, opset_version=17, dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = torch.get_num_threads()
        self.sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> np.ndarray:
        if self.cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self.net(x.cuda().to(memory_format=torch.channels_last)).float().cpu().numpy()
        return self.sess.run(None, {"x": x.numpy()})[0]


def crop_features(bb: Backbone, crops: list[np.ndarray], batch: int = 64, runner: Runner | None = None) -> np.ndarray:
    """float32 [n, 2, D]: features of each crop and its mirror."""
    run = runner or Runner(bb)
    out = []
    for i in range(0, len(crops), batch):
        x = to_tensor(crops[i:i + batch])
        f = run(torch.cat([x, x.flip(3)]))
        n = x.shape[0]
        out.append(np.stack([f[:n], f[n:]], 1))
    return np.concatenate(out) if out else np.zeros((0, 2, bb.dim), np.float32)


def cache_path(cache_dir: Path, backbone: str, key: str) -> Path:
    return Path(cache_dir) / "features" / backbone / key[:2] / f"{key}.npy"


def _save(p: Path, a: np.ndarray) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp.npy")
    np.save(tmp, a.astype(np.float16))
    tmp.replace(p)  # atomic: an interrupted run never leaves half a cache entry


def extract(ds: Dataset, bb: Backbone, *, progress: bool = True, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(features float32 [n, 2, D], found bool [n]) for every sample, computing only what is not cached."""
    if bb.parts:  # fusion: concatenate the parts' own caches (each computed once, shared with single-part heads)
        from .backbones import create

        got = [extract(ds, create(name), progress=progress, batch=batch) for name in bb.parts]
        return np.concatenate([x for x, _ in got], 2), np.logical_and.reduce([f for _, f in got])
    X = np.zeros((len(ds.samples), 2, bb.dim), np.float32)
    found = np.zeros(len(ds.samples), bool)
    todo = []
    for i, s in enumerate(ds.samples):
        p = cache_path(ds.cache_dir, bb.name, s.key)
        if p.exists():
            a = np.load(p)
            if len(a):
                X[i], found[i] = a, True
        else:
            todo.append(i)
    runner = Runner(bb) if todo else None
    with bar(f"features ({bb.name})", len(todo), progress) as b:
        for j in range(0, len(todo), batch):
            idx, crops = [], []
            for i in todo[j:j + batch]:
                crop = ds.samples[i].load()
                if crop is None:
                    _save(cache_path(ds.cache_dir, bb.name, ds.samples[i].key), np.zeros((0, bb.dim), np.float32))
                else:
                    idx.append(i)
                    crops.append(crop)
            if crops:
                for i, f in zip(idx, crop_features(bb, crops, batch, runner)):
                    X[i], found[i] = f, True
                    _save(cache_path(ds.cache_dir, bb.name, ds.samples[i].key), f)
            b.advance(len(todo[j:j + batch]))
    return X, found
