"""`predict`: every face in each image -> label + calibrated confidence.

Faces come from the same detector/aligner as training crops (crops.face_crops); the
classifier is the model folder's torch network, or its model.onnx through onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import artifact as M
from .crops import face_crops
from .data import read_rgb_scaled
from .features import to_tensor


@dataclass
class FacePrediction:
    box: list[float]  # x, y, w, h in the file's (upright) pixels
    label: str | None  # None = abstained: confidence below min_confidence, the model refuses to guess
    confidence: float
    probs: dict[str, float]
    abstained: bool = False

    def to_dict(self) -> dict:
        return {"box": self.box, "label": self.label, "confidence": round(self.confidence, 6),
                "probs": {k: round(v, 6) for k, v in self.probs.items()}, "abstained": self.abstained}


@dataclass
class PredictResult:
    path: str
    faces: list[FacePrediction] = field(default_factory=list)
    rejected: str | None = None  # why there is no prediction: unreadable file, no face found

    def to_dict(self) -> dict:
        return {"path": self.path, "faces": [f.to_dict() for f in self.faces], "rejected": self.rejected}


class OnnxClassifier:
    def __init__(self, path: Path):
        import onnxruntime as ort

        self.sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        return self.sess.run(None, {"crops": to_tensor(crops).numpy()})[0]


class TorchClassifier:
    def __init__(self, model: M.Model):
        self.clf = model.classifier()

    def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.clf(to_tensor(crops)).numpy()


def classifier(model: M.Model, runtime: str = "torch"):
    """A callable list-of-224px-crops -> probabilities [n, classes] for ``runtime`` torch | onnx."""
    if runtime == "onnx":
        p = model.path / "model.onnx"
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist: run `faceset export-onnx {model.path}` first")
        return OnnxClassifier(p)
    if runtime != "torch":
        raise ValueError(f"runtime must be torch or onnx, not {runtime!r}")
    return TorchClassifier(model)


def predict(model, images: list[str | Path], *, runtime: str = "torch", min_confidence: float = 0.0,
            progress: bool = True) -> list[PredictResult]:
    """Classify every detected face of each image; a bad or faceless image is a rejection, the batch goes on.

    ``min_confidence``: a face whose calibrated confidence is below it gets ``label=None, abstained=True``
    (refuse to guess where the model is weak: MODEL_CARD.md lists coverage vs accuracy per group).
    """
    from ..errors import UsageError
    from ..progress import bar

    if not 0.0 <= min_confidence <= 1.0:
        raise UsageError(f"min_confidence must be within 0-1, not {min_confidence}")

    m = model if isinstance(model, M.Model) else M.load(model)
    run = classifier(m, runtime)
    out = []
    with bar("predict", len(images), progress) as b:
        for p in images:
            res = PredictResult(str(p))
            try:
                rgb, k = read_rgb_scaled(p)
            except FileNotFoundError:
                res.rejected = "not found"
            except Exception as e:  # any undecodable file: one line, keep going
                res.rejected = f"unreadable: {type(e).__name__}: {e}"[:200]
            else:
                faces = face_crops(rgb)
                if not faces:
                    res.rejected = "no face found"
                else:
                    probs = run([f.crop for f in faces])
                    for f, pr in zip(faces, probs):
                        i = int(pr.argmax())
                        abstain = float(pr[i]) < min_confidence
                        res.faces.append(FacePrediction([round(v * k, 1) for v in f.box],
                                                        None if abstain else m.classes[i], float(pr[i]),
                                                        dict(zip(m.classes, map(float, pr))), abstain))
            out.append(res)
            b.advance()
    return out
