"""`faceset train`, `evaluate`, `predict`, `export-onnx`: thin wrappers over faceset.train."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import JsonOpt, WorkspaceOpt, console, emit, err, fail, table

DataOpt = typer.Option(None, "--data", help="Workspace, export folder (manifest.csv) or labelled folder (labels.csv); "
                                            "default: the workspace (-w).")


def register(app: typer.Typer) -> None:
    app.command(name="train")(train_cmd)
    app.command(name="evaluate")(evaluate_cmd)
    app.command(name="predict")(predict_cmd)
    app.command(name="export-onnx")(export_onnx_cmd)


def _data(data: Optional[Path], workspace: Optional[Path]) -> Path:
    from ..workspace import default_path

    return data or workspace or default_path()


def train_cmd(
    label: str = typer.Option(..., "--label", help="Label to predict (e.g. gender)."),
    out: Path = typer.Option(..., "-o", "--out", help="Model folder to write."),
    backbone: Optional[str] = typer.Option(None, "--backbone",
                                           help="face_embedding | fusion | mobilenet_v2 | efficientnet_lite0 | "
                                                "efficientnet_lite2; default: the measured best (docs/train.md)"),
    data: Optional[Path] = DataOpt,
    fine_tune: bool = typer.Option(False, "--fine-tune", help="Unfreeze the backbone (GPU when torch sees one)."),
    epochs: int = typer.Option(8, "--epochs", help="Fine-tuning epochs (early stopping on val)."),
    hidden: Optional[int] = typer.Option(None, "--hidden", help="Hidden units of an MLP head (0 = linear; "
                                                                  "default: the measured best, 256)."),
    balance_by: str = typer.Option("default", "--balance-by",
                                   help="Weight samples per (class, group): a column (race), columns (race,age_group), "
                                        "race@13+ (by race over ages 13+, younger faces pooled), none; default: the "
                                        "measured best (race; class weights when the data has no race)."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="Labelled folder: column that names the person."),
    chips: bool = typer.Option(False, "--chips",
                               help="Labelled folder: the files are face chips (pad before detecting)."),
    by: str = typer.Option("race,age_group", "--by", help="Group columns for the model card's per-group metrics."),
    seed: int = typer.Option(0, "--seed", help="Seed of the head's initialisation and shuffling."),
    onnx: bool = typer.Option(False, "--onnx", help="Also write model.onnx."),
    max_yaw: Optional[float] = typer.Option(None, "--max-yaw", help="Workspace: leave out faces turned more than "
                                                                    "this (degrees; default: the split's)."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
):
    """Cache frozen backbone features of aligned face crops once, train a calibrated head (or fine-tune)."""
    from ..train import DataError, names, train
    from ..train.backbones import DEFAULT_BACKBONE, DEFAULT_HIDDEN
    from ..workspace import WorkspaceError

    backbone = backbone or DEFAULT_BACKBONE
    hidden = DEFAULT_HIDDEN if hidden is None else hidden
    if backbone not in names():
        fail(f"unknown backbone {backbone!r}: choose one of {', '.join(names())}")
    try:
        rep = train(_data(data, workspace), label=label, backbone=backbone, out=out, fine_tune=fine_tune, seed=seed,
                    hidden=hidden, balance_by=balance_by, by=tuple(c for c in by.split(",") if c), ft_epochs=epochs,
                    onnx=onnx, data_options={"group_by": group_by, "chips": chips, "seed": seed, "max_yaw": max_yaw}
                    if group_by or chips or max_yaw is not None else None, progress=not as_json)
    except (DataError, WorkspaceError, ValueError, FileNotFoundError) as e:  # compat(#9): train raises plain
        fail(str(e))  # ValueError (< 2 classes, empty split) and FileNotFoundError (missing data) for user mistakes
    d = rep.to_dict()

    def human():
        rows = [["train / val / test faces", f"{rep.n['train']} / {rep.n['val']} / {rep.n['test']}"],
                ["no face found", rep.no_face], ["head epochs", rep.epochs], ["temperature", f"{rep.temperature:.3f}"]]
        for name, m in (("val", rep.val), ("test", rep.test)):
            if m:
                rows.append([f"{name} accuracy", f"{m['accuracy']:.4f} (balanced {m['balanced_accuracy']:.4f}, "
                                                  f"ECE {m['ece']:.4f})"])
        rows.append(["seconds", ", ".join(f"{k} {v}" for k, v in rep.seconds.items())])
        console.print(table(f"{rep.label} classifier ({rep.backbone}) -> {rep.model}", ["", "value"], rows))

    emit(as_json, d, human)


def evaluate_cmd(
    model: Path = typer.Argument(..., help="Model folder."),
    data: Optional[Path] = typer.Option(None, "--data", help="Export folder or labelled folder (default: -w, "
                                                             "else the model's training data)."),
    by: str = typer.Option("race,age_group", "--by", help="Comma-separated group columns (labels, age_group)."),
    split: str = typer.Option("test", "--split", help="train | val | test | all"),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Folder for the PNGs (default MODEL/eval)."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", "-w", envvar="FACESET_WORKSPACE",
                                             help="Workspace to evaluate on (--data wins; default: training data)."),
    as_json: bool = JsonOpt,
):
    """Accuracy, balanced accuracy, per-class P/R, per-group accuracy with 95% CIs, ECE; confusion + reliability
    PNGs."""
    from ..train import DataError, evaluate

    try:
        rep = evaluate(model, data or workspace, by=[c for c in by.split(",") if c], split=split, out=out,
                       progress=not as_json)
    except (DataError, ValueError, FileNotFoundError) as e:  # compat(#9): evaluate raises plain ValueError
        fail(str(e))  # (empty split) and FileNotFoundError (not a model folder) for user mistakes
    d = rep.to_dict()

    def human():
        lo, hi = d["accuracy_ci95"]
        console.print(f"[bold]{rep.label}[/bold] on {rep.split} ({d['n']} faces, {rep.no_face} without a face): "
                      f"accuracy {d['accuracy']:.4f} [{lo:.4f}, {hi:.4f}], balanced {d['balanced_accuracy']:.4f}, "
                      f"ECE {d['ece']:.4f}")
        console.print(table("per class", ["class", "precision", "recall", "n"],
                            [[c, f"{v['precision']:.4f}", f"{v['recall']:.4f}", v["support"]]
                             for c, v in d["per_class"].items()]))
        for col, g in d["groups"].items():
            console.print(table(f"per {col} (worst-group gap {g['worst_gap'] * 100:.2f} points)",
                                [col, "n", "accuracy", "95% CI", "ECE"],
                                [[k, v["n"], f"{v['accuracy']:.4f}", f"{v['ci95'][0]:.4f}-{v['ci95'][1]:.4f}",
                                  f"{v['ece']:.4f}"] for k, v in g["per_group"].items()]))
        at = d.get("abstention", {}).get("at_coverage")
        if at:
            console.print(f"abstaining below confidence {at['threshold']:.3f} answers {at['coverage'] * 100:.1f}% "
                          f"of faces (accuracy {at['accuracy'] or 0:.4f}); per group: "
                          + "; ".join(f"{col} worst gap {g['worst_gap'] * 100:.2f} points"
                                      for col, g in at["groups"].items()))
        console.print(f"plots: {rep.plots['confusion']}  {rep.plots['reliability']}")

    emit(as_json, d, human)


def predict_cmd(
    model: Path = typer.Argument(..., help="Model folder."),
    images: List[Path] = typer.Argument(..., help="Image files."),
    runtime: str = typer.Option("torch", "--runtime", help="torch | onnx (needs MODEL/model.onnx)."),
    min_confidence: float = typer.Option(0.0, "--min-confidence",
                                         help="Abstain (label null) below this calibrated confidence; MODEL_CARD.md "
                                              "shows coverage vs accuracy per group."),
    as_json: bool = JsonOpt,
):
    """Detect every face and classify it; images without a face say so."""
    from ..train import predict

    if runtime not in ("torch", "onnx"):
        fail("--runtime must be torch or onnx")
    if not 0.0 <= min_confidence <= 1.0:
        fail("--min-confidence must be within 0 and 1")
    try:
        res = predict(model, images, runtime=runtime, min_confidence=min_confidence, progress=not as_json)
    except FileNotFoundError as e:  # compat(#9): "not a model folder" / "run export-onnx first"
        fail(str(e))
    d = [r.to_dict() for r in res]

    def human():
        rows = []
        for r in res:
            if r.rejected:
                rows.append([r.path, "-", "-", r.rejected])
            for f in r.faces:
                rows.append([r.path, f.label if not f.abstained else "(abstain)", f"{f.confidence:.3f}",
                             ",".join(str(round(v)) for v in f.box)])
        console.print(table("predictions", ["image", "label", "confidence", "box / reason"], rows))
        n_rej = sum(1 for r in res if r.rejected)
        if n_rej:
            err.print(f"{n_rej} of {len(res)} images without a prediction")

    emit(as_json, d, human)


def export_onnx_cmd(model: Path = typer.Argument(..., help="Model folder."), as_json: bool = JsonOpt):
    """Write MODEL/model.onnx: preprocessing + backbone + head + flip averaging, one graph."""
    from ..train import export_onnx, load

    try:
        p = export_onnx(load(model))
    except FileNotFoundError as e:  # compat(#9): "not a faceset model folder"
        fail(str(e))
    emit(as_json, {"onnx": str(p)}, lambda: console.print(f"wrote {p}"))
