"""Synthetic identity embeddings calibrated on real ones (used by bench/scale.py and tests/test_index.py).

Real data: ``/tmp/faceset_emb/identities_wild.npz`` (``emb``, ``identity``: 300 people, ~7 faces each; what
bench/identity_data.py caches from ../shared/data) and, when present, ``utkface.npz`` (9.7k one-photo people,
the spread of person centres). A synthetic person is a centre drawn from a Gaussian fitted to the real
between-person spread; its faces are the centre plus residuals (face minus its person's mean) of a random real
person, plus a little noise. Two scalars (centre spread, residual scale) are fitted so that the median
intra-person and inter-person distances match the real ones; the json records both distributions' quantiles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

EMB = Path("/tmp/faceset_emb")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def load_real(path: Path = EMB / "identities_wild.npz") -> tuple[np.ndarray, np.ndarray]:
    z = np.load(path)
    _, ident = np.unique(z["identity"], return_inverse=True)
    return z["emb"].astype(np.float32), ident.astype(np.int64)


def pair_distances(x: np.ndarray, ident: np.ndarray, n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(intra-person, inter-person) distances of ``n`` random pairs each."""
    rng = np.random.default_rng(seed)
    order = np.argsort(ident, kind="stable")
    starts = np.searchsorted(ident[order], np.unique(ident))
    counts = np.diff(np.r_[starts, len(ident)])
    multi = np.flatnonzero(counts >= 2)
    p = rng.choice(multi, n)
    a = rng.integers(0, counts[p])
    b = (a + rng.integers(1, counts[p])) % counts[p]
    ia, ib = order[starts[p] + a], order[starts[p] + b]
    intra = np.linalg.norm(x[ia] - x[ib], axis=1)
    i, j = rng.integers(0, len(x), n), rng.integers(0, len(x), n)
    keep = ident[i] != ident[j]
    inter = np.linalg.norm(x[i[keep]] - x[j[keep]], axis=1)
    return intra, inter


class Synth:
    """Fitted generator: ``make(n, seed) -> (vectors float32[n,128], truth int64[n])``."""

    def __init__(self, emb: np.ndarray, ident: np.ndarray, centres_from: np.ndarray | None = None):
        self.emb, self.ident = emb, ident
        labels, inv = np.unique(ident, return_inverse=True)
        mu = np.zeros((len(labels), emb.shape[1]))
        np.add.at(mu, inv, emb)
        cnt = np.bincount(inv).astype(np.float64)
        mu /= cnt[:, None]
        self.sizes = cnt.astype(np.int64)
        # residuals, unbiased (a person's own mean sits closer to its faces than the true centre)
        f = np.sqrt(cnt / np.maximum(cnt - 1, 1))[inv]
        self.resid = ((emb - mu[inv]) * f[:, None]).astype(np.float32)
        self.owner = inv
        self.order = np.argsort(inv, kind="stable")
        self.starts = np.searchsorted(inv[self.order], np.arange(len(labels)))
        # spread of person centres: covariance of person means (or of one-photo people minus the within part)
        src = centres_from if centres_from is not None else mu
        cov = np.cov(src.T)
        if centres_from is not None:
            cov = cov - np.cov(self.resid[cnt[inv] >= 2].T)
        w, v = np.linalg.eigh(cov)
        self.mean = src.mean(0)
        self.root = v * np.sqrt(np.clip(w, 0, None))[None, :]
        self.a_c, self.a_w, self.noise = 1.0, 1.0, 0.01
        self.real = pair_distances(emb, ident)
        self._fit()

    def _raw(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        sizes = self.sizes[rng.integers(0, len(self.sizes), max(1, n // 3))]
        sizes = sizes[: np.searchsorted(np.cumsum(sizes), n) + 1]
        sizes[-1] -= max(0, int(sizes.sum()) - n)
        sizes = sizes[sizes > 0]
        m = len(sizes)
        truth = np.repeat(np.arange(m), sizes)
        centres = self.mean + self.a_c * (rng.standard_normal((m, self.root.shape[1])) @ self.root.T)
        src = rng.integers(0, len(self.sizes), m)  # each new person borrows a real person's residual pattern
        k = np.arange(len(truth)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        real_n = self.sizes[src][truth]
        rows = self.order[self.starts[src][truth] + k % real_n]
        x = centres[truth] + self.a_w * self.resid[rows]
        x += rng.normal(scale=self.noise, size=x.shape)
        return x.astype(np.float32), truth.astype(np.int64)

    def _fit(self, rounds: int = 4) -> None:
        ri, rx = (float(np.median(d)) for d in self.real)
        for _ in range(rounds):
            x, t = self._raw(20000, seed=123)
            si, sx = (float(np.median(d)) for d in pair_distances(x, t))
            self.a_w *= ri / si
            # inter^2 ~ 2 a_c^2 tr(C) + intra^2: fit the centre part
            self.a_c *= np.sqrt(max(rx * rx - ri * ri, 1e-6) / max(sx * sx - si * si, 1e-6))

    def make(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        return self._raw(n, seed)

    def calibration(self, x: np.ndarray, truth: np.ndarray) -> dict:
        """Quantiles of intra/inter distances, real vs synthetic."""
        si, sx = pair_distances(x, truth)
        q = lambda d: [round(float(v), 4) for v in np.quantile(d, QUANTILES)]  # noqa: E731
        return {"quantiles": list(QUANTILES), "real_intra": q(self.real[0]), "synthetic_intra": q(si),
                "real_inter": q(self.real[1]), "synthetic_inter": q(sx),
                "centre_scale": round(self.a_c, 4), "residual_scale": round(self.a_w, 4)}


def default_synth() -> Synth:
    """Centres from the real person means (closer tails than utkface's one-photo spread, measured)."""
    emb, ident = load_real()
    return Synth(emb, ident)
