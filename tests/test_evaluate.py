"""Metric definitions (Wilson, ECE, per-group gap) and backbone weights that are real ImageNet features."""

from __future__ import annotations

import numpy as np
import pytest


def test_wilson_interval_matches_reference_values():
    from faceset.train.evaluate import wilson

    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 5)[0] == 0.0 and wilson(5, 5)[1] == pytest.approx(1.0)
    assert wilson(0, 0) == (0.0, 1.0)


def test_ece_is_zero_when_confidence_equals_accuracy_and_positive_when_overconfident():
    from faceset.train.evaluate import ece

    conf = np.full(100, 0.8)
    correct = np.arange(100) < 80
    assert ece(conf, correct)[0] == pytest.approx(0.0)
    assert ece(np.full(100, 0.99), correct)[0] == pytest.approx(0.19)


def test_metrics_per_group_and_balanced_accuracy():
    from faceset.train.evaluate import metrics

    y = np.array([0, 0, 0, 1, 1, 1])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8], [0.4, 0.6], [0.6, 0.4]])
    m = metrics(y, proba, ["a", "b"], {"race": ["x", "x", "y", "x", "y", "y"]})
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    assert m["per_class"]["a"] == {"precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3), "support": 3}
    g = m["groups"]["race"]
    assert g["per_group"]["x"]["accuracy"] == 1.0 and g["per_group"]["y"]["accuracy"] == pytest.approx(1 / 3)
    assert g["worst"] == "y" and g["worst_gap"] == pytest.approx(2 / 3)
    assert m["confusion"] == [[2, 1], [1, 2]]


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0", "efficientnet_lite2"])
def test_imagenet_backbones_load_strictly_and_recognise_the_cat(name):
    """strict=True loading plus a real top-1: chelsea is a cat (ImageNet 281-285), coffee an espresso (967)."""
    import torch
    from PIL import Image
    from skimage import data

    from faceset.train.backbones import create
    from faceset.train.features import Preprocess

    bb = create(name)
    pre = Preprocess(bb.size, bb.mean, bb.std)
    clf = bb.net.net
    x = torch.stack([torch.from_numpy(np.array(Image.fromarray(im).resize((224, 224)))).permute(2, 0, 1).float()
                     for im in (data.chelsea(), data.coffee())])
    with torch.no_grad():
        top = clf(pre(x)).argmax(1).tolist()
    assert 281 <= top[0] <= 285 and top[1] == 967
    assert bb.net(pre(x)).shape == (2, bb.dim)


def test_unknown_backbone_is_a_clear_error():
    from faceset.train.backbones import create

    with pytest.raises(ValueError, match="unknown backbone"):
        create("resnet9000")


def test_abstention_reports_coverage_and_accuracy_per_group():
    from faceset.train.evaluate import metrics

    # group a: confident and right; group b: unsure and half wrong -> abstaining helps b's answered accuracy
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    proba = np.array([[0.99, 0.01], [0.02, 0.98], [0.97, 0.03], [0.01, 0.99],
                      [0.55, 0.45], [0.58, 0.42], [0.45, 0.55], [0.2, 0.8]])
    m = metrics(y, proba, ["f", "m"], {"g": ["a"] * 4 + ["b"] * 4})
    ab = m["abstention"]
    by_t = {r["threshold"]: r for r in ab["overall"]}
    assert by_t[0.5]["coverage"] == 1.0 and by_t[0.5]["accuracy"] == pytest.approx(6 / 8)
    assert by_t[0.6]["coverage"] == pytest.approx(5 / 8) and by_t[0.6]["accuracy"] == 1.0
    at = ab["at_coverage"]
    assert at["coverage_target"] == 0.95 and at["coverage"] >= 7 / 8
    per = at["groups"]["g"]["per_group"]
    assert per["a"]["coverage"] == 1.0 and per["a"]["accuracy"] == 1.0 and per["b"]["n"] == 4
    # coverage vs accuracy per group at each threshold: b answers 1 of 4 at 0.6 (and gets it right), all at 0.5
    curve = {r["threshold"]: r for r in ab["by_group"]["g"]["b"]}
    assert curve[0.5]["coverage"] == 1.0 and curve[0.5]["accuracy"] == 0.5
    assert curve[0.6]["coverage"] == 0.25 and curve[0.6]["accuracy"] == 1.0
    assert all(r["coverage"] == 1.0 for r in ab["by_group"]["g"]["a"][:5])
    # per-group calibration sits next to accuracy
    g = m["groups"]["g"]["per_group"]
    assert g["a"]["ece"] < 0.05 and g["b"]["ece"] > 0.1


def test_fusion_backbone_is_the_concatenation_of_its_parts():
    import torch

    from faceset.train.backbones import create
    from faceset.train.features import Preprocess

    fu = create("fusion")
    assert fu.parts == ("face_embedding", "mobilenet_v2") and fu.dim == 128 + 1280
    x = torch.rand(2, 3, 224, 224) * 255
    with torch.no_grad():
        parts = [create(n) for n in fu.parts]
        want = torch.cat([p.net(Preprocess(p.size, p.mean, p.std)(x)) for p in parts], 1)
        got = fu.net(Preprocess(fu.size, fu.mean, fu.std)(x))
    assert torch.allclose(got, want, atol=1e-4)


def test_default_backbone_is_the_measured_winner():
    """`faceset train` without --backbone must give the model that won the recorded comparison."""
    import inspect
    import json
    from pathlib import Path

    from faceset.cli.train_cmds import train_cmd
    from faceset.train import train
    from faceset.train.backbones import DEFAULT_BACKBONE, names

    res = json.loads((Path(__file__).resolve().parents[1] / "bench" / "results" / "gender_cv.json").read_text())
    assert res["winner"]["backbone"] == DEFAULT_BACKBONE in names()
    assert inspect.signature(train).parameters["backbone"].default == DEFAULT_BACKBONE
    assert inspect.signature(train_cmd).parameters["backbone"].default.default is None  # resolved to the default


def test_balance_cells_pool_children_and_default_resolves_to_data_columns():
    """race@13+ weights (class, race) over ages 13+ and pools younger faces; missing columns -> class weights."""
    import numpy as np

    from faceset.train.train import DEFAULT_BALANCE_BY, balance_cells, resolve_balance, sample_weights

    groups = [{"race": "Asian", "age_group": "3-12"}, {"race": "Asian", "age_group": "20-39"},
              {"race": "White", "age_group": "20-39"}, {"race": "White", "age_group": "0-2"}, {"race": "Black"}]
    assert balance_cells(groups, "race@13+") == ["under-13", "Asian", "White", "under-13", "Black"]
    assert balance_cells(groups, "race,age_group") == ["Asian|3-12", "Asian|20-39", "White|20-39", "White|0-2",
                                                       "Black|"]
    assert resolve_balance("default", groups) == DEFAULT_BALANCE_BY
    assert resolve_balance("default", [{"age": "30"}]) is None and resolve_balance("none", groups) is None
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    cells = balance_cells([{"race": "A", "age_group": "20-39"}] * 5 + [{"race": "B", "age_group": "40-59"}]
                          + [{"race": "A", "age_group": "0-2"}, {"race": "B", "age_group": "0-2"}], "race@13+")
    w = sample_weights(y, ["f", "m"], cells)
    assert w[5] == pytest.approx(5 * w[0])  # the lone B adult counts as much as the five A adults
    assert w[6] == w[7] == pytest.approx(w[5] / 2)  # the two children of two races share one pooled cell


def test_default_balancing_is_the_measured_winner():
    """`faceset train` without --balance-by weights the cells that won the recorded fairness comparison."""
    import inspect
    import json
    from pathlib import Path

    from faceset.cli.train_cmds import train_cmd
    from faceset.train import train
    from faceset.train.train import DEFAULT_BALANCE_BY

    res = json.loads((Path(__file__).resolve().parents[1] / "bench" / "results" / "gender_fairness.json").read_text())
    kind, _, cells = res["winner"].partition(":")
    assert kind == "reweight" and cells == DEFAULT_BALANCE_BY  # sampling / oracles would need code, not a constant
    assert inspect.signature(train).parameters["balance_by"].default == "default"
    assert inspect.signature(train_cmd).parameters["balance_by"].default.default == "default"
