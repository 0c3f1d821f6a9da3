"""Pose: the stored yaw tells profiles from frontal faces, and a dataset can filter by it (rule ``pose``).

Real images only: the profiles are the ``nonface_hard`` photos whose label note says "profile", the
frontal side is a spread of ``identities`` photos; the filter runs on the session's curated workspace
(identities + groups) with a cut taken from that workspace's own yaw values.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import read_labels


def _main_yaws(paths):
    """(scan's yaw, the old dlib-point yaw) of each image's main face; images without a face are skipped."""
    from PIL import Image, ImageOps

    from faceset.scan import analyze
    from faceset.scan.quality import yaw_degrees

    out = []
    for p in paths:
        with Image.open(p) as im:
            rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        faces = analyze(rgb)
        if faces:
            out.append((faces[0].quality["yaw"], yaw_degrees(faces[0].landmarks)))
    return np.abs(np.array(out, dtype=np.float64))


@pytest.fixture(scope="module")
def pose_sets(data_dir):
    hard = data_dir / "nonface_hard"
    profiles = [hard / r["file"] for r in read_labels(hard) if r["has_face"] == "yes" and "profile" in r["note"]]
    ids = data_dir / "identities"
    frontal = [ids / r["file"] for r in read_labels(ids)][::4]
    assert len(profiles) >= 8 and len(frontal) >= 20
    return _main_yaws(profiles), _main_yaws(frontal)


def test_profiles_read_as_turned_and_portraits_as_frontal(pose_sets):
    prof, front = pose_sets
    assert len(prof) >= 6  # the detector finds most profiles
    # scan's yaw: profiles far from frontal, portraits near it
    assert np.median(prof[:, 0]) > 45
    assert (prof[:, 0] > 30).mean() >= 2 / 3
    assert (front[:, 0] <= 30).mean() >= 0.9
    # ranking: a random profile reads as turned further than a random portrait (two "profiles" are not
    # full profiles: a face looking up, a tiny volleyball player), so the AUC is not 1
    auc = (prof[:, 0][:, None] > front[:, 0][None, :]).mean()
    assert auc >= 0.75
    # and better than the previous estimate from dlib's frontal 5-point fit, on the same faces
    auc_dlib = (prof[:, 1][:, None] > front[:, 1][None, :]).mean()
    assert auc > auc_dlib
    assert (prof[:, 0] > 30).sum() > (prof[:, 1] > 30).sum()


def test_yaw_cnn_geometry():
    from faceset.scan.quality import yaw_cnn

    # eye centres, nose tip, mouth corners (image-left first), a frontal face 40 px between the eyes
    front = np.array([[40.0, 50], [80, 50], [60, 70], [45, 90], [75, 90]])
    assert abs(yaw_cnn(front)) < 1
    turned = front.copy()
    turned[2, 0] -= 10  # nose toward image-left
    mirrored = turned.copy()
    mirrored[:, 0] = 120 - mirrored[:, 0]
    mirrored = mirrored[[1, 0, 2, 4, 3]]  # image-left first again
    assert yaw_cnn(turned) > 20 and abs(yaw_cnn(turned) + yaw_cnn(mirrored)) < 1e-6
    profile = front.copy()
    profile[[0, 1, 3, 4], 0] = [62, 72, 62, 70]  # eyes squeezed together, nose tip beyond them
    profile[2, 0] = 52
    assert abs(yaw_cnn(profile)) > 60
    rolled = front @ np.array([[np.cos(0.4), np.sin(0.4)], [-np.sin(0.4), np.cos(0.4)]])
    assert abs(yaw_cnn(rolled)) < 1  # in-plane roll is not yaw


def _yaw_by_face(ws):
    return {c.face_id: c.yaw for c in ws.catalog.selection.candidates("face", None) if c.face_id is not None}


def test_max_yaw_leaves_turned_faces_out_and_counts_them(curated_ws, tmp_path):
    from faceset import open_workspace
    from faceset.catalog.selection import Spec
    from faceset.curate.splits import dataset_faces

    root = tmp_path / "ws"
    shutil.copytree(curated_ws, root)
    ws = open_workspace(root)
    yaw = _yaw_by_face(ws)
    everyone = [r["face_id"] for r in dataset_faces(ws)]
    cut = float(np.median([abs(yaw[f]) for f in everyone]))
    want = {f for f in everyone if abs(yaw[f]) <= cut}
    assert 0 < len(want) < len(everyone)
    got = [r["face_id"] for r in dataset_faces(ws, max_yaw=cut)]
    assert set(got) == want
    res = ws.catalog.selection.apply(Spec(unit="face", faces="all", max_yaw=cut), export=False)
    assert res.left_out["pose"] >= len(everyone) - len(want)
    assert all(abs(c.yaw) <= cut for c in res.kept)
    assert ws.catalog.selection.apply(Spec(unit="face", faces="all"), export=False).left_out["pose"] == 0
    ws.close()


def test_cli_split_export_and_train_take_max_yaw(curated_ws, tmp_path):
    from typer.testing import CliRunner

    from faceset import open_workspace
    from faceset.cli import app
    from faceset.curate.splits import dataset_faces
    from faceset.train.data import load_dataset

    root = tmp_path / "ws"
    shutil.copytree(curated_ws, root)
    ws = open_workspace(root)
    yaw = _yaw_by_face(ws)
    main = [r["face_id"] for r in dataset_faces(ws, label="identity")]
    cut = float(np.percentile([abs(yaw[f]) for f in main], 75))
    keep = [f for f in main if abs(yaw[f]) <= cut]
    ws.close()
    run = CliRunner().invoke
    r = run(app, ["split", "-w", str(root), "--max-yaw", f"{cut}", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["max_yaw"] == pytest.approx(cut)
    out = tmp_path / "out"
    r = run(app, ["export", str(out), "-w", str(root), "--label", "identity", "--json"])  # the split's cut
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["items"] == len(keep) and d["skipped"].get("pose", 0) >= len(main) - len(keep)
    sheet = (out / "datasheet.md").read_text(encoding="utf-8")
    assert "pose filter" in sheet and "max_yaw" in sheet
    r = run(app, ["export", str(tmp_path / "all"), "-w", str(root), "--label", "identity", "--max-yaw", "90",
                  "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["items"] == len(main)
    r = run(app, ["export", str(tmp_path / "bad"), "-w", str(root), "--max-yaw", "120"])
    assert r.exit_code == 2 and "max_yaw" in r.output
    assert len(load_dataset(root, "identity").samples) == len(keep)  # train reads the split's cut too
    ds = load_dataset(root, "identity", max_yaw=90)
    assert len(ds.samples) == len(main)
