"""Train / evaluate / predict face-attribute classifiers on aligned, identity-disjoint face data.

Library entry points (the CLI in ``cli/train_cmds.py`` only parses and prints):
- :func:`train` (data = workspace, export folder, labelled folder or Dataset) -> :class:`TrainReport`,
- :func:`evaluate` -> :class:`EvalReport` (+ confusion and reliability PNGs),
- :func:`predict` -> list of :class:`PredictResult`,
- :func:`export_onnx` (whole network: preprocessing + backbone + head + flip averaging).
"""

from .artifact import Model, export_onnx, load
from .backbones import create, names
from .data import DataError, Dataset, load_dataset
from .evaluate import EvalReport, evaluate
from .predict import PredictResult, predict
from .train import TrainReport, train

__all__ = ["train", "evaluate", "predict", "export_onnx", "load", "create", "names", "load_dataset", "Dataset",
           "DataError", "Model", "TrainReport", "EvalReport", "PredictResult"]
