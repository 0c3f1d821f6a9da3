"""Fine-tuning's data path: crops decoded once into one uint8 tensor, augmentation on the batch, no PIL per epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import read_labels


@pytest.fixture(scope="module")
def chips(data_dir):
    """24 real UTKFace chips of adults (12 per gender) at 224 px, uint8 NHWC, and their labels."""
    rows = [r for r in read_labels(data_dir / "utkface") if r["age"].isdigit() and 20 <= int(r["age"]) <= 50]
    pick = [r for r in rows if r["gender"] == "female"][:12] + [r for r in rows if r["gender"] == "male"][:12]
    ims = [np.array(Image.open(data_dir / "utkface" / r["file"]).convert("RGB").resize((224, 224))) for r in pick]
    return ims, np.array([r["gender"] == "male" for r in pick], np.int64)


def _tiny():
    from faceset.train.artifact import Head
    from faceset.train.backbones import IMAGENET_MEAN, IMAGENET_STD
    from faceset.train.features import Preprocess

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 7, stride=8), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten())
    return net, Head(8, 2), Preprocess(224, IMAGENET_MEAN, IMAGENET_STD)


def test_load_crops_decodes_once_into_one_uint8_tensor(chips):
    from faceset.train.finetune import load_crops

    ims, _ = chips
    calls = []

    class S:
        def __init__(self, im):
            self.im = im

        def load(self):
            calls.append(1)
            return self.im

    samples = [S(ims[0]), S(None), S(ims[1]), S(ims[2])]  # None = no face found: left out, index kept
    x, ok = load_crops(samples, [0, 1, 2, 3])
    assert x.dtype == torch.uint8 and tuple(x.shape) == (3, 224, 224, 3)
    assert ok.tolist() == [0, 2, 3] and len(calls) == 4
    assert torch.equal(x[1], torch.from_numpy(ims[1]))


def test_fit_trains_on_uint8_crops_without_decoding_per_epoch(chips, monkeypatch):
    """Two epochs on real chips: the weights move, the rate is measured, and no image is decoded or resized."""
    from faceset.train import finetune as FT

    ims, y = chips
    x = torch.from_numpy(np.stack(ims))
    assert x.dtype == torch.uint8
    net, head, pre = _tiny()
    before = [p.detach().clone() for p in net.parameters()]

    def no_pil(*a, **k):
        raise AssertionError("PIL used inside the training loop")

    monkeypatch.setattr(Image, "open", no_pil)
    monkeypatch.setattr(Image, "fromarray", no_pil)
    monkeypatch.setattr(Image.Image, "resize", no_pil)
    staged = []
    real_stage = FT._stage
    monkeypatch.setattr(FT, "_stage", lambda t, dev: staged.append(t.dtype) or real_stage(t, dev))
    tr = np.arange(24) % 4 != 0
    stats = FT.fit(net, head, pre, x[tr], torch.from_numpy(y[tr]), x[~tr], torch.from_numpy(y[~tr]), epochs=2,
                   batch=6, lr=1e-2, patience=5, progress=False)
    assert staged == [torch.uint8, torch.uint8]  # what is kept for batches is the uint8 tensor, never floats
    assert stats["epochs"] == 2 and stats["images_per_s"] > 0 and stats["device"] == "cpu"
    assert len(stats["history"]) == 2 and all(np.isfinite(h["val_loss"]) for h in stats["history"])
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_augment_is_seeded_stays_in_range_and_changes_real_faces(chips):
    from faceset.train.finetune import augment

    ims, _ = chips
    x = torch.from_numpy(np.stack(ims[:8])).permute(0, 3, 1, 2).float()
    a = augment(x, torch.Generator().manual_seed(3))
    b = augment(x, torch.Generator().manual_seed(3))
    c = augment(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 255
    assert float((a - x).abs().mean()) > 2.0  # a real change, not a no-op
    plain = augment(x, torch.Generator().manual_seed(3), photo=False)
    assert not torch.equal(plain, a)


def test_model_only_rate_leaves_the_modules_untouched(chips):
    from faceset.train.finetune import model_only_rate

    ims, _ = chips
    net, head, pre = _tiny()
    before = [p.detach().clone() for p in net.parameters()]
    rate = model_only_rate(net, head, pre, torch.from_numpy(np.stack(ims[:4])), steps=2, warmup=1)
    assert rate > 0
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # it trains copies
