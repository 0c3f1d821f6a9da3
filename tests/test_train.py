"""train / evaluate / predict end to end on real faces: a curated UTKFace workspace, its export, labelled folders."""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import read_labels


@pytest.fixture(scope="module")
def train_ws(tmp_path_factory, utk_ws) -> Path:
    """A copy of utk_ws with people clustered and identity-disjoint splits (60/20/20 so val/test are not tiny)."""
    from faceset import open_workspace
    from faceset.curate import assign_splits, cluster_people, find_duplicates

    root = tmp_path_factory.mktemp("train") / "ws"
    shutil.copytree(utk_ws, root)
    w = open_workspace(root)
    find_duplicates(w, progress=False)
    cluster_people(w)
    assign_splits(w, ratios=(0.6, 0.2, 0.2), seed=0)
    w.close()
    return root


@pytest.fixture(scope="module")
def ws_model(tmp_path_factory, train_ws):
    from faceset.train import train

    out = tmp_path_factory.mktemp("models") / "gender"
    rep = train(train_ws, label="gender", backbone="face_embedding", out=out, onnx=True, progress=False)
    return out, rep


def test_workspace_training_uses_identity_disjoint_splits_and_beats_chance(train_ws, ws_model):
    from faceset import open_workspace
    from faceset.train import load_dataset

    out, rep = ws_model
    ds = load_dataset(train_ws, "gender")
    ws = open_workspace(train_ws)
    # each person on one side only (what makes the test split honest)
    people = {}
    for s in ds.samples:
        pid = ws.catalog.scalar("SELECT person_id FROM faces WHERE id=?", (s.face_id,))
        people.setdefault(pid, set()).add(s.split)
    assert all(len(v) == 1 for v in people.values())
    # counts in the report are the dataset's (every stored crop has a face: none lost)
    assert rep.n == {k: len(ds.split(k)) for k in ("train", "val", "test")} and rep.no_face == 0
    # adults, identity embedding: a broken pipeline sits near 0.5 balanced accuracy
    held = rep.val["balanced_accuracy"] * rep.n["val"] + rep.test["balanced_accuracy"] * rep.n["test"]
    assert held / (rep.n["val"] + rep.n["test"]) > 0.75
    audit = [r["action"] for r in ws.catalog.q("SELECT action FROM audit")]
    assert "train" in audit


def test_model_folder_is_complete_and_card_states_data_and_groups(train_ws, ws_model):
    from faceset.train import load_dataset

    out, rep = ws_model
    meta = json.loads((out / "model.json").read_text())
    assert meta["classes"] == ["female", "male"] and meta["label"] == "gender"
    assert meta["preprocess"]["size"] == 224 and meta["temperature"] > 0
    ds = load_dataset(train_ws, "gender")
    assert meta["data"]["manifest_sha256"] == ds.manifest_sha256()
    card = (out / "MODEL_CARD.md").read_text()
    assert ds.manifest_sha256() in card
    assert "Intended use" in card and "not an identity" in card
    races = {s.groups.get("race") for s in ds.split("test")} - {None, ""}
    assert races and all(f"| {r} |" in card for r in races)
    for f in ("head.pt", "model.onnx"):
        assert (out / f).stat().st_size > 0


def test_evaluate_counts_groups_from_labels_and_draws_plots(train_ws, ws_model, tmp_path):
    from faceset.train import evaluate, load_dataset

    out, _ = ws_model
    rep = evaluate(out, train_ws, by=["race", "age_group"], out=tmp_path)
    d = rep.to_dict()
    test = load_dataset(train_ws, "gender").split("test")
    assert d["n"] == len(test)
    for race, g in d["groups"]["race"]["per_group"].items():
        assert g["n"] == sum(1 for s in test if s.groups["race"] == race)
        assert g["ci95"][0] <= g["accuracy"] <= g["ci95"][1]
    accs = [g["accuracy"] for g in d["groups"]["race"]["per_group"].values()]
    assert d["groups"]["race"]["worst_gap"] == pytest.approx(max(accs) - min(accs))
    assert sum(sum(r) for r in d["confusion"]) == d["n"]
    for p in rep.plots.values():
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 100


def test_onnx_matches_torch_and_predict_handles_bad_input(ws_model, data_dir, tmp_path):
    from faceset.train import load, predict
    from faceset.train.predict import classifier

    out, _ = ws_model
    m = load(out)
    photos = [data_dir / "identities" / r["file"] for r in read_labels(data_dir / "identities")][::20]
    from faceset.train.crops import face_crops
    from faceset.train.data import read_rgb

    crops = [f.crop for p in photos for f in face_crops(read_rgb(p))]
    assert len(crops) >= len(photos)
    pt, po = classifier(m, "torch")(crops), classifier(m, "onnx")(crops)
    assert np.abs(pt - po).max() < 1e-4

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    nonface = data_dir / "nonface" / "skimage" / "coffee.png"
    group = data_dir / "groups" / "kit_with_rose.jpg"
    res = predict(m, [photos[0], bad, nonface, group, tmp_path / "missing.jpg"], runtime="onnx", progress=False)
    assert [r.path for r in res] == [str(p) for p in (photos[0], bad, nonface, group, tmp_path / "missing.jpg")]
    assert res[0].faces and res[0].rejected is None
    assert res[1].rejected.startswith("unreadable") and res[2].rejected == "no face found"
    assert res[4].rejected == "not found"
    n_group = int(next(r for r in read_labels(data_dir / "groups") if r["file"] == "kit_with_rose.jpg")["n_faces"])
    assert len(res[3].faces) == n_group
    for f in res[0].faces + res[3].faces:
        assert f.label in m.classes and 0.5 <= f.confidence <= 1 and abs(sum(f.probs.values()) - 1) < 1e-4
    torch_res = predict(m, [group], runtime="torch", progress=False)[0]
    assert [f.label for f in torch_res.faces] == [f.label for f in res[3].faces]


def test_train_from_export_hashes_the_datasheet(train_ws, tmp_path):
    from faceset import open_workspace
    from faceset.export import export
    from faceset.train import train

    ws = open_workspace(train_ws)
    exp = tmp_path / "exp"
    export(ws, exp, format="imagefolder", what="crops", label="gender", progress=False)
    rows = list(csv.DictReader(open(exp / "manifest.csv", newline="", encoding="utf-8")))
    rep = train(exp, label="gender", backbone="face_embedding", out=tmp_path / "m", progress=False)
    assert sum(rep.n.values()) + rep.no_face == len(rows)
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["data"]["datasheet_sha256"] == hashlib.sha256((exp / "datasheet.md").read_bytes()).hexdigest()
    assert meta["data"]["datasheet_sha256"] in (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert (exp / ".faceset-cache" / "features" / "face_embedding").is_dir()


def test_labelled_folder_chips_cache_then_fine_tune(data_dir, tmp_path):
    """Chips go through detect+align once (crop cache), features once (a second head needs no image);
    --fine-tune runs on CPU and the result predicts."""
    from faceset.train import load_dataset, predict, train

    utk = data_dir / "utkface"
    dups = {r["file"]: r["group"] for r in csv.DictReader(open(utk / "exact_duplicates.csv", newline=""))}
    rows = [r for r in read_labels(utk) if r["gender"] and r["age"].isdigit() and 20 <= int(r["age"]) <= 50][::60]
    dup_rows = [r for r in read_labels(utk) if dups.get(r["file"]) in {"0", "1", "2"}]
    sub = tmp_path / "utk"
    (sub / "images").mkdir(parents=True)
    for r in rows + dup_rows:
        (sub / r["file"]).symlink_to(utk / r["file"])
    with open(sub / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "age", "gender", "race"])
        w.writeheader()
        w.writerows(rows + dup_rows)

    ds = load_dataset(sub, "gender", chips=True, cache_dir=tmp_path / "cache")
    by_file = {Path(r["file"]).name: r for r in rows + dup_rows}
    side = {}
    for s in ds.samples:  # byte-identical files are one "identity": one split
        g = dups.get("images/" + s.load.path.name)
        if g is not None:
            side.setdefault(g, set()).add(s.split)
    assert side and all(len(v) == 1 for v in side.values())
    assert len(ds.samples) == len(by_file)

    rep = train(ds, label="gender", backbone="mobilenet_v2", out=tmp_path / "m1", progress=False)
    from faceset.train.data import crop_cache_path

    crops = list((tmp_path / "cache" / "crops").rglob("*.jpg"))
    assert len(crops) == len({s.key for s in ds.samples})  # byte-identical files share one entry
    assert rep.no_face == sum(1 for s in ds.samples if crop_cache_path(ds.cache_dir, s.key).stat().st_size == 0)

    for s in ds.samples:  # a second head must come from the caches alone
        s.load = _fail
    rep2 = train(ds, label="gender", backbone="mobilenet_v2", out=tmp_path / "m2", hidden=32, progress=False)
    assert rep2.n == rep.n

    ds = load_dataset(sub, "gender", chips=True, cache_dir=tmp_path / "cache")
    ds.samples = [s for s in ds.samples if s.split != "test"][:40] + ds.split("test")
    rep3 = train(ds, label="gender", backbone="mobilenet_v2", out=tmp_path / "ft", fine_tune=True, ft_epochs=1,
                 progress=False)
    meta = json.loads((tmp_path / "ft" / "model.json").read_text())
    assert meta["fine_tuned"] and (tmp_path / "ft" / "backbone.pt").exists() and rep3.n["train"] > 0
    res = predict(tmp_path / "ft", [data_dir / "identities" / "barack_obama" / "obama.jpg"], progress=False)
    assert len(res[0].faces) == 1


def _fail():
    raise AssertionError("image decoded although its features are cached")


def test_cli_train_evaluate_predict_json(train_ws, ws_model, data_dir, tmp_path):
    from typer.testing import CliRunner

    from faceset.cli import app

    out, _ = ws_model
    r = CliRunner().invoke(app, ["predict", str(out), str(data_dir / "identities" / "barack_obama" / "obama.jpg"),
                                 str(data_dir / "nonface" / "skimage" / "coffee.png"), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert len(d[0]["faces"]) == 1 and d[1]["rejected"] == "no face found"
    r = CliRunner().invoke(app, ["evaluate", str(out), "--by", "race", "-o", str(tmp_path / "ev"), "--json"])
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.stdout)["groups"]) == {"race"}
    r = CliRunner().invoke(app, ["train", "--label", "no_such_label", "-o", str(tmp_path / "x"), "-w", str(train_ws)])
    assert r.exit_code == 2 and "no_such_label" in r.output


def test_predict_min_confidence_abstains_and_the_card_shows_coverage(ws_model, data_dir, monkeypatch):
    from typer.testing import CliRunner

    from faceset.cli import app
    from faceset.train import predict

    P = importlib.import_module("faceset.train.predict")  # the module: faceset.train.predict is the function
    out, rep = ws_model
    photo = data_dir / "identities" / "barack_obama" / "obama.jpg"
    sure = predict(out, [photo], progress=False)[0].faces[0]
    assert not sure.abstained and sure.label is not None
    # a calibrated 0.7 answer: kept at 0.6, refused at 0.8 (probabilities stay visible either way)
    fixed = lambda crops: np.tile([[0.3, 0.7]], (len(crops), 1))  # noqa: E731
    monkeypatch.setattr(P, "classifier", lambda m, runtime="torch": fixed)
    kept = predict(out, [photo], min_confidence=0.6, progress=False)[0].faces[0]
    assert not kept.abstained and kept.label == "male" and kept.confidence == pytest.approx(0.7)
    refused = predict(out, [photo], min_confidence=0.8, progress=False)[0].faces[0]
    assert refused.abstained and refused.label is None and refused.probs == kept.probs
    r = CliRunner().invoke(app, ["predict", str(out), str(photo), "--min-confidence", "0.8", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["faces"][0]["abstained"] is True
    r = CliRunner().invoke(app, ["predict", str(out), str(photo), "--min-confidence", "1.5"])
    assert r.exit_code == 2
    card = (out / "MODEL_CARD.md").read_text()
    assert "--min-confidence" in card and "coverage" in card and "Must not be used" in card
    assert "never a person's identity" in card
