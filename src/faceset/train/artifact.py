"""The model artefact: one folder that is everything needed to predict and to judge the model.

``model.json`` (label map, backbone, preprocessing, temperature, data fingerprint incl. the
datasheet/manifest hash, metrics), ``head.pt`` (+ ``backbone.pt`` after fine-tuning),
``MODEL_CARD.md``, optionally ``model.onnx`` (preprocessing + backbone + head + flip averaging).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .backbones import Backbone, create
from .features import Preprocess

FORMAT = 1


class Head(nn.Module):
    """Standardise features (train statistics), then linear or one-hidden-layer MLP -> logits."""

    def __init__(self, dim: int, n_classes: int, hidden: int = 0, dropout: float = 0.2):
        super().__init__()
        self.register_buffer("mu", torch.zeros(dim))
        self.register_buffer("sigma", torch.ones(dim))
        self.hidden = hidden
        self.net = (nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, n_classes)) if hidden else
                    nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, n_classes)))

    def forward(self, f):
        return self.net((f - self.mu) / self.sigma)


class Classifier(nn.Module):
    """224 px crops (float 0-255, NCHW) -> calibrated class probabilities, averaged with the mirror image."""

    def __init__(self, pre: Preprocess, net: nn.Module, head: Head, temperature: float):
        super().__init__()
        self.pre, self.net, self.head = pre, net, head
        self.register_buffer("inv_t", torch.tensor(1.0 / temperature))

    def logits(self, x):
        return self.head(self.net(self.pre(x)))

    def forward(self, x):
        x = torch.cat([x, x.flip(3)])
        p = torch.softmax(self.logits(x) * self.inv_t, 1)
        n = p.shape[0] // 2
        return (p[:n] + p[n:]) / 2


@dataclass
class Model:
    path: Path
    meta: dict
    backbone: Backbone
    head: Head
    metrics: dict = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    @property
    def temperature(self) -> float:
        return float(self.meta["temperature"])

    def classifier(self) -> Classifier:
        pre = Preprocess(self.backbone.size, self.backbone.mean, self.backbone.std)
        return Classifier(pre, self.backbone.net, self.head, self.temperature).eval()

    @torch.no_grad()
    def proba_from_features(self, X: np.ndarray) -> np.ndarray:
        """X [n, 2, D] cached features -> probabilities averaged over the crop and its mirror (as Classifier)."""
        self.head.eval()
        t = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        n, v, d = t.shape
        p = torch.softmax(self.head(t.reshape(n * v, d)) / self.temperature, 1).reshape(n, v, -1)
        return p.mean(1).numpy()


def save(path: Path, meta: dict, backbone: Backbone, head: Head, fine_tuned: bool) -> None:
    path.mkdir(parents=True, exist_ok=True)
    torch.save({"state": head.state_dict(), "dim": backbone.dim, "n_classes": len(meta["classes"]),
                "hidden": head.hidden}, path / "head.pt")
    if fine_tuned:
        torch.save(backbone.net.state_dict(), path / "backbone.pt")
    meta = {"format": FORMAT, **meta, "fine_tuned": fine_tuned}
    (path / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load(path: str | Path) -> Model:
    path = Path(path)
    if not (path / "model.json").exists():
        raise FileNotFoundError(f"{path}: not a faceset model folder (no model.json)")
    meta = json.loads((path / "model.json").read_text())
    bb = create(meta["backbone"], pretrained=not meta.get("fine_tuned"))
    if meta.get("fine_tuned"):
        bb.net.load_state_dict(torch.load(path / "backbone.pt", map_location="cpu", weights_only=True), strict=True)
    bb.net.eval()
    h = torch.load(path / "head.pt", map_location="cpu", weights_only=True)
    head = Head(h["dim"], h["n_classes"], h["hidden"])
    head.load_state_dict(h["state"])
    head.eval()
    return Model(path, meta, bb, head, meta.get("metrics", {}))


def export_onnx(model: Model, out: Path | None = None) -> Path:
    """Whole network (preprocessing, backbone, head, temperature, flip averaging) -> model.onnx."""
    out = out or model.path / "model.onnx"
    clf = model.classifier()
    x = torch.zeros(2, 3, 224, 224)
    with warnings.catch_warnings():  # tracer warnings about shape arithmetic: the input is always 224 px
        warnings.simplefilter("ignore")
        torch.onnx.export(clf, (x,), str(out), input_names=["crops"], output_names=["probs"],
                          dynamic_axes={"crops": {0: "n"}, "probs": {0: "n"}}, opset_version=17, dynamo=False)
    return out
