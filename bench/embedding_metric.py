"""Can a metric learned on top of the dlib embedding separate unseen people better? (issue #10, representation)

Within-class covariance normalisation (WCCN) and LDA (between = the training people plus 3,000 UTKFace faces,
within = the training people's own spread), each fitted on one person-disjoint half of identities_wild (the
same gender-stratified halves as bench/people.py) and applied to the other. Measured on the held-out half: TAR at
FAR 1e-3 and 1e-4, impostors = the held-out half's different-person pairs plus every pair with 1,500 UTKFace faces
not used in fitting. Shrinkage of the within-class covariance towards its mean eigenvalue: 0.05 / 0.2 / 0.5.

Reads the cached embeddings of bench/identity_data.py (``python bench/identity_data.py`` makes them).

    python bench/embedding_metric.py          # writes bench/results/embedding_metric.{json,md}, ~1 min
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import identity_cv as C  # noqa: E402
from identity_data import load  # noqa: E402

OUT = ROOT / "bench" / "results"
SHRINK = (0.05, 0.2, 0.5)
FARS = (1e-3, 1e-4)


def tar_at(A: np.ndarray, ids: np.ndarray, D: np.ndarray) -> list[float]:
    d = np.sqrt(((A[:, None] - A[None]) ** 2).sum(-1))
    iu = np.triu_indices(len(A), 1)
    same = (ids[:, None] == ids[None])[iu]
    gen, imp = d[iu][same], d[iu][~same]
    imp = np.sort(np.concatenate([imp, np.sqrt(((A[:, None] - D[None]) ** 2).sum(-1)).ravel()]))
    return [round(float((gen <= imp[int(f * len(imp))]).mean()), 4) for f in FARS]


def fit(A: np.ndarray, ids: np.ndarray, kind: str, shrink: float, background: np.ndarray):
    """x -> (x - mean) W, W from the within-class covariance (WCCN) or the between/within eigenproblem (LDA)."""
    from scipy.linalg import eigh

    mu, dim = A.mean(0), A.shape[1]
    Sw = np.zeros((dim, dim))
    for p in set(ids):
        x = A[ids == p] - A[ids == p].mean(0)
        Sw += x.T @ x
    Sw /= len(A)
    Sw = (1 - shrink) * Sw + shrink * np.trace(Sw) / dim * np.eye(dim)
    if kind == "wccn":
        ev, V = np.linalg.eigh(Sw)
        W = V @ np.diag(ev ** -0.5) @ V.T
    else:
        ev, V = eigh(np.cov(background.T) + 1e-6 * np.eye(dim), Sw)
        W = V[:, ::-1] * np.sqrt(np.maximum(ev[::-1], 0))
    return lambda X: (X - mu) @ W


def main() -> dict:
    w, u = load("identities_wild"), load("utkface")
    ok = w["status"] == "ok"
    E, ids, g = w["emb"][ok].astype(np.float64), w["identity"][ok], w["gender"][ok]
    U = u["emb"][u["status"] == "ok"].astype(np.float64)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(U))
    D, bg = U[perm[:1500]], U[perm[1500:4500]]
    halves = C.folds(ids, g)
    rows = {}
    for test in halves:
        te = np.array([p in test for p in ids])
        tr = ~te
        rows.setdefault("dlib (as stored)", []).append(tar_at(E[te], ids[te], D))
        for kind in ("wccn", "lda"):
            for s in SHRINK:
                f = fit(E[tr], ids[tr], kind, s, np.vstack([E[tr], bg]))
                rows.setdefault(f"{kind.upper()} shrink {s}", []).append(tar_at(f(E[te]), ids[te], f(D)))
    res = {"faces": int(len(E)), "people": int(len(set(ids))), "distractors": len(D), "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "embedding_metric.json").write_text(json.dumps(res, indent=1))
    lines = ["# A learned metric on the dlib embedding (`python bench/embedding_metric.py`)", "",
             f"{res['faces']} identities_wild faces of {res['people']} people, fitted on one person-disjoint half and "
             f"measured on the other; impostors include {res['distractors']} UTKFace faces.", "",
             "| representation | TAR@FAR1e-3 half 0 / 1 | TAR@FAR1e-4 half 0 / 1 |", "|---|---|---|"]
    for name, (a, b) in rows.items():
        lines.append(f"| {name} | {a[0]:.4f} / {b[0]:.4f} | {a[1]:.4f} / {b[1]:.4f} |")
    (OUT / "embedding_metric.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return res


if __name__ == "__main__":
    main()
