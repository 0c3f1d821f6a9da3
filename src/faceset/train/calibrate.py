"""What the head trainer and the fine-tuner share: early stopping on val loss and temperature scaling.

Its own module so ``train`` and ``finetune`` both import it and never each other in a cycle.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from .artifact import Head

MIN_CALIBRATION = 20  # val faces needed before a temperature is fitted


class EarlyStopping:
    """Keep the weights of the best validation loss; say stop after ``patience`` epochs without a gain."""

    def __init__(self, patience: int, min_delta: float = 1e-4):
        self.patience, self.min_delta = patience, min_delta
        self.best, self.state, self.bad = float("inf"), None, 0

    def step(self, loss: float, model: torch.nn.Module) -> bool:
        if loss < self.best - self.min_delta:
            self.best, self.state, self.bad = loss, copy.deepcopy(model.state_dict()), 0
            return False
        self.bad += 1
        return self.bad >= self.patience

    def restore(self, model: torch.nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


@torch.no_grad()
def fit_temperature(head: Head, Xva: np.ndarray, yva: np.ndarray) -> float:
    """Temperature minimising val NLL of the flip-averaged probabilities (grid search: robust, no optimiser state).

    Fewer than MIN_CALIBRATION val faces cannot calibrate anything: keep 1.0 rather than overfit.
    """
    n, v, d = Xva.shape
    if n < MIN_CALIBRATION:
        return 1.0
    logits = head(torch.from_numpy(Xva).reshape(n * v, d)).reshape(n, v, -1)
    yv = torch.from_numpy(yva)
    best_t, best = 1.0, float("inf")
    for t in np.exp(np.linspace(np.log(0.25), np.log(8.0), 61)):
        p = torch.softmax(logits / float(t), 2).mean(1)
        nll = float(F.nll_loss(torch.log(p.clamp_min(1e-8)), yv))
        if nll < best:
            best, best_t = nll, float(t)
    return best_t
