"""`train`: the classic retrain done properly, on aligned faces with identity-disjoint splits.

Frozen path: bottleneck features of every crop (and its mirror) are cached once, then a
head is fit in seconds: standardised features, class (or class x group) weights, early
stopping on the validation split, temperature scaling on validation for calibration.
``fine_tune=True`` then unfreezes the backbone with augmentation (GPU when torch sees one).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from ..catalog import now
from . import artifact as M
from .backbones import DEFAULT_BACKBONE, DEFAULT_HIDDEN, create
from .calibrate import MIN_CALIBRATION, EarlyStopping, fit_temperature  # noqa: F401 (re-exported)
from .data import Dataset, load_dataset, prepare_crops
from .evaluate import metrics
from .features import extract


@dataclass
class TrainReport:
    model: str
    label: str
    backbone: str
    classes: list[str]
    n: dict[str, int]
    no_face: int
    skipped: dict[str, int]
    epochs: int
    temperature: float
    val: dict
    test: dict
    seconds: dict[str, float] = field(default_factory=dict)
    onnx: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def train(data, *, label: str, backbone: str = DEFAULT_BACKBONE, out: str | Path, fine_tune: bool = False,
          seed: int = 0, hidden: int = DEFAULT_HIDDEN, balance_by: str | None = "default",
          by: tuple[str, ...] = ("race", "age_group"),
          max_epochs: int = 300, patience: int = 15, ft_epochs: int = 8, onnx: bool = False,
          data_options: dict | None = None, workers: int = 2, progress: bool = True) -> TrainReport:
    """Train a ``label`` classifier on ``data`` (workspace, export, labelled folder or Dataset) into folder ``out``.

    ``balance_by``: weighting cells beside the class (see :func:`balance_cells`); ``"default"`` is
    DEFAULT_BALANCE_BY, None class weights only. Columns the data does not carry are ignored (class weights).
    """
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    np.random.seed(seed)
    ds = data if isinstance(data, Dataset) else load_dataset(data, label, **(data_options or {}))
    classes = ds.classes
    if len(classes) < 2:
        raise ValueError(f"label {label!r} has {len(classes)} value(s) in {ds.root}: need at least 2 to classify")
    balance_by = resolve_balance(balance_by, [s.groups for s in ds.samples])
    bb = create(backbone)
    if ds.kind == "folder":
        prepare_crops(ds, workers=workers, progress=progress)
    t_crops = time.perf_counter()
    X, found = extract(ds, bb, progress=progress)
    t_feat = time.perf_counter()
    y = np.array([classes.index(s.label) for s in ds.samples], int)
    split = np.array([s.split for s in ds.samples])
    tr, va, te = ((split == k) & found for k in ("train", "val", "test"))
    if tr.sum() == 0 or va.sum() == 0:
        raise ValueError(f"need faces in both train and val splits (train {int(tr.sum())}, val {int(va.sum())})")

    w = sample_weights(y[tr], classes, balance_cells([ds.samples[i].groups for i in np.flatnonzero(tr)], balance_by)
                       if balance_by else None)
    head, epochs = fit_head(X[tr], y[tr], w, X[va], y[va], len(classes), hidden=hidden, seed=seed,
                            max_epochs=max_epochs, patience=patience)
    T = fit_temperature(head, X[va], y[va])
    t_head = time.perf_counter()

    meta = {"label": label, "classes": classes, "backbone": backbone, "preprocess": bb.preprocess_config(),
            "head": {"hidden": hidden, "balance_by": balance_by, "class_weights": True}, "temperature": T,
            "seed": seed, "epochs": epochs, "feature_cache": backbone, "created_at": now(),
            "faceset_version": __version__,
            "data": {**ds.fingerprint(), "options": ds.options,
                     "n": {k: int(m.sum()) for k, m in (("train", tr), ("val", va), ("test", te))}}}
    if fine_tune:
        from .finetune import finetune

        T, ft_epochs_run = finetune(ds, bb, head, tr, va, y, seed=seed, epochs=ft_epochs, weights=w,
                                    progress=progress)
        meta["temperature"] = T
        meta["fine_tune"] = {"epochs": ft_epochs_run, "device": "cuda" if torch.cuda.is_available() else "cpu"}
        digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes()
                                         for p in bb.net.state_dict().values())).hexdigest()
        meta["feature_cache"] = bb.name = f"{backbone}-ft-{digest[:12]}"
        bb.parts = ()  # fine-tuned parts differ from the shared caches: cache the whole network
        X, found = extract(ds, bb, progress=progress)
        tr, va, te = ((split == k) & found for k in ("train", "val", "test"))

    out = Path(out)
    M.save(out, meta, bb, head, fine_tuned=fine_tune)
    model = M.load(out) if not fine_tune else M.Model(out, {**meta, "fine_tuned": True}, bb, head)

    def score(mask):
        groups = {c: [ds.samples[i].groups.get(c, "") for i in np.flatnonzero(mask)] for c in by}
        return metrics(y[mask], model.proba_from_features(X[mask]), classes, groups) if mask.any() else {}

    val, test = score(va), score(te)
    meta["metrics"] = {"val": _brief(val), "test": _brief(test)}
    M.save(out, meta, bb, head, fine_tuned=fine_tune)
    from .card import write_card

    write_card(out, meta, test or val, "test" if test else "val")
    onnx_path = None
    if onnx:
        onnx_path = str(M.export_onnx(M.load(out)))
    if ds.kind == "workspace":
        from ..workspace import open_workspace

        ws = open_workspace(ds.root)
        with ws.catalog.tx():
            ws.catalog.audit("train", label=label, backbone=backbone, fine_tune=fine_tune,
                             n_train=int(tr.sum()), n_val=int(va.sum()), n_test=int(te.sum()))
    rep = TrainReport(str(out), label, backbone, classes,
                      {k: int(m.sum()) for k, m in (("train", tr), ("val", va), ("test", te))},
                      int((~found).sum()), ds.skipped, epochs, meta["temperature"], _brief(val), _brief(test),
                      {"crops": round(t_crops - t0, 2), "features": round(t_feat - t_crops, 2),
                       "head": round(t_head - t_feat, 2), "total": round(time.perf_counter() - t0, 2)}, onnx_path)
    return rep


def _brief(m: dict) -> dict:
    """Metrics without the bulky per-bin tables (kept in evaluate's output)."""
    return {k: v for k, v in m.items() if k not in ("reliability", "confusion")}


ADULT_AGE_GROUPS = ("13-19", "20-39", "40-59", "60+")
# Chosen by person-disjoint CV on all UTKFace (2 repeats) against class weights only, balanced sampling by
# (class, race), (class, race) weights over ages 13+ and per-race thresholds / temperatures (oracles):
# lowest ages-13+ worst race gap (2.1 vs 2.9 points) at -0.1 points of 13+ accuracy (bench/results/gender_fairness.md).
DEFAULT_BALANCE_BY = "race"


def resolve_balance(balance_by: str | None, groups: list[dict[str, str]]) -> str | None:
    """``"default"`` -> DEFAULT_BALANCE_BY; ``"none"``/``"class"`` -> None; None when no sample carries a column."""
    if balance_by == "default":
        balance_by = DEFAULT_BALANCE_BY
    if not balance_by or balance_by in ("none", "class"):
        return None
    cols = balance_by.removesuffix("@13+").split(",")
    return balance_by if any(g.get(c) for g in groups for c in cols) else None


def balance_cells(groups: list[dict[str, str]], balance_by: str) -> list[str]:
    """The group part of each sample's (class, group) weighting cell for ``balance_by``.

    ``"race"``: one cell per value; ``"race,age_group"``: per combination; ``"race@13+"``: per value over
    ages 13+, with every younger face in one pooled cell (gender is near chance from a child's face, so
    balancing children by group spends weight on faces no head can learn from). In CV the pooled form tied
    plain ``race`` on the 13+ gap (2.2 +- 0.2 vs 2.1 +- 0.1 points) with slightly better 13+ accuracy and
    identities_wild transfer (bench/results/gender_fairness.md). A face without an age keeps its group.
    """
    cols, adults_only = balance_by.removesuffix("@13+"), balance_by.endswith("@13+")
    out = []
    for g in groups:
        if adults_only and g.get("age_group") and g["age_group"] not in ADULT_AGE_GROUPS:
            out.append("under-13")
            continue
        out.append("|".join(g.get(c, "") for c in cols.split(",")))
    return out


def sample_weights(y: np.ndarray, classes: list[str], groups: list[str] | None) -> np.ndarray:
    """Inverse-frequency weights per class, or per (class, group) cell so small groups count as much."""
    keys = [f"{c}\t{g}" for c, g in zip(y, groups)] if groups else [str(c) for c in y]
    uniq, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    w = (len(y) / (len(uniq) * counts))[inv]
    if groups:  # a tiny cell must not dominate: cap at 10x the mean weight
        w = np.minimum(w, 10.0)
    return (w / w.mean()).astype(np.float32)


def weighted_epoch(model: torch.nn.Module, xt: torch.Tensor, yt: torch.Tensor, wt: torch.Tensor, opt,
                   g: torch.Generator, batch: int) -> None:
    """One pass over the training rows in a seeded random order: per-sample weighted cross-entropy, one step a batch."""
    model.train()
    perm = torch.randperm(len(xt), generator=g)
    for i in range(0, len(perm), batch):
        b = perm[i:i + batch]
        loss = (F.cross_entropy(model(xt[b]), yt[b], reduction="none") * wt[b]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def fit_head(Xtr: np.ndarray, ytr: np.ndarray, wtr: np.ndarray, Xva: np.ndarray, yva: np.ndarray, n_classes: int, *,
             hidden: int = 0, seed: int = 0, max_epochs: int = 300, patience: int = 15, lr: float = 1e-3,
             weight_decay: float = 1e-3, batch: int = 256) -> tuple[M.Head, int]:
    """Mini-batch AdamW on both views of each face; keep the epoch with the lowest val loss."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    d = Xtr.shape[-1]
    head = M.Head(d, n_classes, hidden)
    flat = torch.from_numpy(Xtr.reshape(-1, d))
    head.mu.copy_(flat.mean(0))
    head.sigma.copy_(flat.std(0).clamp_min(1e-6))
    xt = flat
    yt = torch.from_numpy(np.repeat(ytr, 2))
    wt = torch.from_numpy(np.repeat(wtr, 2))
    xv, yv = torch.from_numpy(Xva), torch.from_numpy(yva)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    stop, epoch = EarlyStopping(patience), 0
    for epoch in range(1, max_epochs + 1):  # noqa: B007 (the last epoch run is returned)
        weighted_epoch(head, xt, yt, wt, opt, g, batch)
        head.eval()
        with torch.no_grad():
            n = len(xv)
            p = torch.softmax(head(xv.reshape(n * 2, d)), 1).reshape(n, 2, -1).mean(1)
            vloss = float(F.nll_loss(torch.log(p.clamp_min(1e-8)), yv))
        if stop.step(vloss, head):
            break
    stop.restore(head)
    return head.eval(), epoch
