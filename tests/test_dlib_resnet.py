"""The torch port of dlib's face embedding must reproduce dlib's own descriptors on real chips."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import read_labels

dlib = pytest.importorskip("dlib")
torch = pytest.importorskip("torch")

from faceset.model_files import face_model  # noqa: E402
from faceset.scan.dlib_resnet import (  # noqa: E402
    DlibFormatError,
    embed_chips_torch,
    parse_dlib_resnet,
)

THRESHOLD = 0.6  # dlib's same-person cut-off (also stored in the model file)


def _chip(img: np.ndarray, det, sp) -> np.ndarray | None:
    """Largest HOG face, 5-point aligned, 150 px chip exactly as dlib's face_recognition does it."""
    scale = min(1.0, 640 / max(img.shape[:2]))
    if scale < 1:
        from PIL import Image

        img = np.asarray(Image.fromarray(img).resize((round(img.shape[1] * scale), round(img.shape[0] * scale))))
    for up in (0, 1):
        dets = det(img, up)
        if len(dets):
            d = max(dets, key=lambda r: r.area())
            return dlib.get_face_chip(img, sp(img, d), size=150)
    return None


@pytest.fixture(scope="session")
def chips(data_dir):
    """Real aligned chips: identities photos (2 per person), dlib's own 150 px johns chips, UTKFace."""
    from PIL import Image

    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(face_model("landmarks5")))
    out, who = [], []

    per_person: dict[str, int] = {}
    for row in read_labels(data_dir / "identities"):
        if row["note"] or per_person.get(row["identity"], 0) >= 2:
            continue
        img = np.asarray(Image.open(data_dir / "identities" / row["file"]).convert("RGB"))
        if img.shape[:2] == (150, 150):  # dlib's johns chips are already aligned
            c = img
        else:
            c = _chip(img, det, sp)
        if c is not None:
            out.append(c)
            who.append(row["identity"])
            per_person[row["identity"]] = per_person.get(row["identity"], 0) + 1

    utk = read_labels(data_dir / "utkface")
    for row in utk[:: max(1, len(utk) // 16)][:16]:
        c = _chip(np.asarray(Image.open(data_dir / "utkface" / row["file"]).convert("RGB")), det, sp)
        if c is not None:
            out.append(c)
            who.append("utk:" + row["file"])
    return np.stack(out), who


@pytest.fixture(scope="session")
def dlib_descriptors(chips):
    rec = dlib.face_recognition_model_v1(str(face_model("resnet")))
    return np.array([np.asarray(rec.compute_face_descriptor(c), np.float32) for c in chips[0]])


def test_parser_reads_anet_type():
    net = parse_dlib_resnet(face_model("resnet"))
    kinds = [l.kind for l in net.layers]
    # anet_type: stem conv + 14 residual blocks of two convs each, 4 of them downsampling.
    assert kinds.count("con") == 1 + 2 * 14
    assert kinds.count("affine") == kinds.count("con")
    assert kinds.count("add_prev") == 14 and kinds.count("tag2") == 4
    assert np.allclose(net.avg_rgb, (122.782, 117.001, 104.298), atol=1e-3)
    assert net.distance_threshold == pytest.approx(THRESHOLD)
    fc = net.layers[-1]
    assert fc.kind == "fc" and fc.params["w"].shape == (256, 128)
    convs = [l for l in net.layers if l.kind == "con"]
    assert convs[0].params["w"].shape == (32, 3, 7, 7) and convs[-1].params["w"].shape == (256, 256, 3, 3)
    assert all(np.isfinite(l.params["w"]).all() for l in convs)


def test_matches_dlib_descriptors(chips, dlib_descriptors, data_dir, capsys):
    arr, who = chips
    people = {r["identity"] for r in read_labels(data_dir / "identities")}
    # HOG misses some photos; still at least half of the people and dozens of chips.
    assert len(arr) >= 40 and len({w for w in who if not w.startswith("utk:")}) >= len(people) // 2
    ours = embed_chips_torch(arr, batch_size=16)
    diff = np.abs(ours - dlib_descriptors)
    with capsys.disabled():
        print(f"\n[dlib_resnet] {len(arr)} chips: max |torch - dlib| = {diff.max():.3g}")
    assert ours.dtype == np.float32 and ours.shape == (len(arr), 128)
    assert diff.max() < 1e-3

    # Same/different decisions at dlib's 0.6 threshold must agree on every pair.
    def dist(e):
        return np.linalg.norm(e[:, None, :] - e[None, :, :], axis=-1)

    d_ref, d_ours = dist(dlib_descriptors), dist(ours)
    iu = np.triu_indices(len(arr), 1)
    assert np.array_equal(d_ref[iu] < THRESHOLD, d_ours[iu] < THRESHOLD)
    # The data itself exercises both sides of the threshold (same person photos and others).
    same = [(i, j) for i, j in itertools.combinations(range(len(arr)), 2) if who[i] == who[j]]
    assert same and np.mean([d_ref[i, j] < THRESHOLD for i, j in same]) > 0.5
    assert (d_ref[iu] >= THRESHOLD).sum() > len(iu[0]) // 2


def test_batching_does_not_change_results(chips):
    arr = chips[0][:9]
    one = np.concatenate([embed_chips_torch(arr[i : i + 1]) for i in range(len(arr))])
    many = embed_chips_torch(list(arr), batch_size=4)
    assert np.abs(one - many).max() < 1e-5


def test_rejects_bad_input():
    assert embed_chips_torch(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)
    with pytest.raises(ValueError, match="150"):
        embed_chips_torch(np.zeros((2, 160, 160, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        embed_chips_torch(np.zeros((1, 150, 150, 3), np.float32))


def test_bad_model_file_is_a_clear_error(tmp_path):
    good = face_model("resnet").read_bytes()
    cut = tmp_path / "truncated.dat"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(DlibFormatError, match="file ends"):
        parse_dlib_resnet(cut)
    other = tmp_path / "landmarks.dat"
    other.write_bytes(face_model("landmarks5").read_bytes())
    with pytest.raises(DlibFormatError):
        parse_dlib_resnet(other)
