"""Honest metrics: overall, per class, per group with 95% Wilson intervals, worst-group gap, calibration.

Why Wilson: small groups (e.g. 40 test faces of one race) make the normal interval
lie; Wilson stays inside [0, 1] and is right for small n. Faces the detector could
not find are reported (``no_face``) and never silently dropped from the counts shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import AGE_GROUPS, Dataset, load_dataset


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, min(c - h, p)), min(1.0, max(c + h, p)))  # contains p despite rounding at k = 0 or n


def ece(conf: np.ndarray, correct: np.ndarray, bins: int = 15) -> tuple[float, list[dict]]:
    """Expected calibration error (equal-width confidence bins) and the per-bin table for the plot."""
    edges = np.linspace(0, 1, bins + 1)
    rows, err = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            acc, c = float(correct[m].mean()), float(conf[m].mean())
            err += m.mean() * abs(acc - c)
            rows.append({"lo": float(lo), "hi": float(hi), "n": int(m.sum()), "accuracy": acc, "confidence": c})
    return float(err), rows


def metrics(y: np.ndarray, proba: np.ndarray, classes: list[str], groups: dict[str, list[str]] | None = None) -> dict:
    """All numbers for one labelled set. ``y`` are class indices, ``groups`` maps a column to per-sample values."""
    pred = proba.argmax(1)
    correct = pred == y
    n = len(y)
    cm = np.zeros((len(classes), len(classes)), int)
    np.add.at(cm, (y, pred), 1)
    per_class = {}
    for i, c in enumerate(classes):
        tp, support, predicted = cm[i, i], cm[i].sum(), cm[:, i].sum()
        per_class[c] = {"precision": float(tp / predicted) if predicted else 0.0,
                        "recall": float(tp / support) if support else 0.0, "support": int(support)}
    recalls = [v["recall"] for v in per_class.values() if v["support"]]
    e, bins = ece(proba.max(1), correct)
    out = {"n": int(n), "accuracy": float(correct.mean()) if n else 0.0,
           "accuracy_ci95": list(wilson(int(correct.sum()), n)),
           "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0,
           "per_class": per_class, "confusion": cm.tolist(), "ece": e, "reliability": bins, "groups": {}}
    for col, vals in (groups or {}).items():
        vals_a = np.array(vals, dtype=object)
        g = {}
        order = [name for _, _, name in AGE_GROUPS]
        for v in sorted(set(vals) - {""}, key=lambda v: (order.index(v), "") if v in order else (len(order), v)):
            m = vals_a == v
            k = int(correct[m].sum())
            lo, hi = wilson(k, int(m.sum()))
            g[v] = {"n": int(m.sum()), "accuracy": k / int(m.sum()), "ci95": [lo, hi],
                    "ece": ece(proba[m].max(1), correct[m])[0],  # per-group calibration: one temperature for all
                    "mean_confidence": float(proba[m].max(1).mean())}
        accs = [x["accuracy"] for x in g.values()]
        out["groups"][col] = {"per_group": g, "worst": min(g, key=lambda v: g[v]["accuracy"]) if g else None,
                              "best": max(g, key=lambda v: g[v]["accuracy"]) if g else None,
                              "worst_gap": (max(accs) - min(accs)) if accs else 0.0}
    out["abstention"] = abstention(proba, correct, groups or {})
    return out


ABSTAIN_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def abstention(proba: np.ndarray, correct: np.ndarray, groups: dict[str, list[str]], *,
               thresholds: tuple[float, ...] = ABSTAIN_THRESHOLDS, coverage: float = 0.95) -> dict:
    """Coverage vs accuracy when predictions below a confidence are refused (``predict --min-confidence``).

    Why per group: a threshold that keeps 95% of faces overall may refuse most young children; the table
    shows where the model abstains and what accuracy is left on what it answers.
    ``at_coverage`` is the threshold that keeps ``coverage`` of all faces (the overall quantile).
    """
    conf = proba.max(1) if len(proba) else np.zeros(0)

    def row(m: np.ndarray, t: float) -> dict:
        kept = m & (conf >= t)
        n, k = int(m.sum()), int(kept.sum())
        return {"threshold": round(float(t), 4), "coverage": k / n if n else 0.0,
                "accuracy": float(correct[kept].mean()) if k else None, "n": n}

    allm = np.ones(len(conf), bool)
    t95 = float(np.quantile(conf, 1 - coverage)) if len(conf) else 0.5
    out: dict = {"overall": [row(allm, t) for t in thresholds],
                 "at_coverage": {"coverage_target": coverage, **row(allm, t95), "groups": {}}, "by_group": {}}
    for col, vals in groups.items():
        vals_a = np.array(vals, dtype=object)
        order = [name for _, _, name in AGE_GROUPS]
        per = {}
        for v in sorted(set(vals) - {""}, key=lambda v: (order.index(v), "") if v in order else (len(order), v)):
            per[v] = row(vals_a == v, t95)
        # coverage vs accuracy per group at each fixed threshold (the card's per-group abstention curve)
        out["by_group"][col] = {v: [row(vals_a == v, t) for t in thresholds] for v in per}
        accs = [r["accuracy"] for r in per.values() if r["accuracy"] is not None]
        out["at_coverage"]["groups"][col] = {"per_group": per,
                                             "worst_gap": (max(accs) - min(accs)) if accs else 0.0}
    return out


@dataclass
class EvalReport:
    model: str
    data: str
    split: str
    label: str
    classes: list[str]
    no_face: int
    metrics: dict
    plots: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"model": self.model, "data": self.data, "split": self.split, "label": self.label,
                "classes": self.classes, "no_face": self.no_face, **self.metrics, "plots": self.plots}


def evaluate(model, data=None, *, by: list[str] | tuple[str, ...] = ("race", "age_group"), split: str = "test",
             out: str | Path | None = None, progress: bool = True) -> EvalReport:
    """Evaluate ``model`` (folder or Model) on ``split`` of ``data`` (default: the data it was trained on)."""
    from . import artifact as M
    from .features import extract

    m = model if isinstance(model, M.Model) else M.load(model)
    ds = data if isinstance(data, Dataset) else load_dataset(data or m.meta["data"]["path"], m.meta["label"],
                                                              **m.meta["data"].get("options", {}))
    idx = [i for i, s in enumerate(ds.samples) if split == "all" or s.split == split]
    if not idx:
        raise ValueError(f"no samples in split {split!r} of {ds.root}")
    sub = Dataset(ds.kind, ds.root, ds.label, [ds.samples[i] for i in idx], ds.cache_dir, ds.datasheet_sha256)
    X, found = extract(sub, feature_backbone(m), progress=progress)
    unknown = {s.label for s in sub.samples} - set(m.classes)
    keep = [i for i in range(len(sub.samples)) if found[i] and sub.samples[i].label in m.classes]
    y = np.array([m.classes.index(sub.samples[i].label) for i in keep], int)
    proba = m.proba_from_features(X[keep]) if keep else np.zeros((0, len(m.classes)))
    groups = {c: [sub.samples[i].groups.get(c, "") for i in keep] for c in by}
    res = metrics(y, proba, m.classes, groups)
    if unknown:
        res["unknown_labels"] = sorted(unknown)
    rep = EvalReport(str(m.path), str(ds.root), split, m.meta["label"], m.classes, int((~found).sum()), res)
    out_dir = Path(out) if out else m.path / "eval"
    rep.plots = plots(res, m.classes, out_dir, title=f"{m.meta['label']} / {split}")
    return rep


def feature_backbone(m):
    """The backbone whose features the head expects; a fine-tuned one gets its own cache name."""
    bb = m.backbone
    if m.meta.get("fine_tuned"):
        bb.name = m.meta["feature_cache"]
        bb.parts = ()
    return bb


def plots(res: dict, classes: list[str], out_dir: Path, title: str = "") -> dict[str, str]:
    """Confusion matrix and reliability diagram as PNGs (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    cm = np.array(res["confusion"])
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(classes), 1 + 0.8 * len(classes)), dpi=110)
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}  acc {res['accuracy']:.3f}")
    fig.tight_layout()
    cpath = out_dir / "confusion.png"
    fig.savefig(cpath)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    rb = res["reliability"]
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    if rb:
        ax.bar([(b["lo"] + b["hi"]) / 2 for b in rb], [b["accuracy"] for b in rb], width=1 / 15 * 0.9,
               alpha=0.7, label="accuracy")
        ax.plot([b["confidence"] for b in rb], [b["accuracy"] for b in rb], "o-", color="C1", label="per bin")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability  ECE {res['ece']:.3f}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    rpath = out_dir / "reliability.png"
    fig.savefig(rpath)
    plt.close(fig)
    return {"confusion": str(cpath), "reliability": str(rpath)}
