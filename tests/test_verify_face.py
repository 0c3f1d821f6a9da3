"""The real-human-face verifier's feature blocks and fallbacks (scan/verify.py, issue #11).

Accuracy lives in bench/results/face_verifier.md (held-out CV); these check behaviour on real images.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceset.scan import verify


def _rgb(p) -> np.ndarray:
    with Image.open(p) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def portrait(data_dir) -> np.ndarray:
    return _rgb(data_dir / "identities" / "barack_obama" / "obama.jpg")


def test_context_crop_is_centred_on_the_box_and_black_outside(portrait):
    h, w = portrait.shape[:2]
    box = (w - 60, h - 60, w, h)   # a box in the corner: most of its 2.5x square lies outside the image
    c = verify.context_crop(portrait, box)
    assert c.shape == (224, 224, 3) and c.dtype == np.uint8
    assert c[:20, -20:].max() == 0 and c[-20:, -20:].max() == 0   # right of / below the image: black
    assert c[60:100, 60:100].std() > 0   # the image part carries the photo
    sq = (40, 30, 140, 130)   # a square box at scale 1: exactly that region, resized
    ref = np.asarray(Image.fromarray(portrait).crop(sq).resize((224, 224), Image.BILINEAR))
    assert np.array_equal(verify.context_crop(portrait, sq, scale=1.0), ref)
    assert verify.image_thumb(portrait).shape == (224, 224, 3)


def test_context_blocks_need_the_image(portrait):
    pytest.importorskip("torch")
    crop = np.asarray(Image.fromarray(portrait).resize((224, 224)))
    with pytest.raises(verify.VerifierUnavailable, match="image"):
        verify.cnn_blocks(("mobilenet_ctx",), [crop])
    with pytest.raises(verify.VerifierUnavailable, match="crop"):
        verify.cnn_blocks(("effnet",), [None])
    got = verify.cnn_blocks(("mobilenet_tta", "mobilenet_img"), [crop, crop[:, ::-1].copy()], portrait,
                            [(0, 0, 50, 50), (10, 10, 60, 60)])
    assert got["mobilenet_tta"].shape == (2, 1280) and got["mobilenet_img"].shape == (2, 1280)
    # the mirror of the mirror: TTA features of a crop and of its mirror are the same
    assert np.allclose(got["mobilenet_tta"][0], got["mobilenet_tta"][1], atol=1e-4)
    assert np.array_equal(got["mobilenet_img"][0], got["mobilenet_img"][1])   # once per image


def test_shipped_full_verifier_on_real_and_drawn_faces(portrait, data_dir):
    pytest.importorskip("torch")
    from faceset.scan import analyze

    v = verify.load()
    assert v.n_features == sum(verify.BLOCK_DIMS[b] for b in v.blocks)
    faces = analyze(portrait, verifier="full")
    assert len(faces) == 1 and faces[0].kind == "real" and faces[0].p_real >= v.threshold
    dog = analyze(_rgb(data_dir / "nonface" / "pets" / "dog.4008.jpg"), verifier="full")
    assert dog and all(f.status == "not_real_face" and f.kind != "real" for f in dog)
    assert max(f.p_real for f in dog) < faces[0].p_real


def test_without_torch_full_falls_back_to_fast(portrait, monkeypatch):
    from faceset.scan import analyze, pipeline

    fast = analyze(portrait, verifier="fast")
    monkeypatch.setattr(pipeline, "_torch_ok", lambda: False)
    for mode in ("full", "auto"):
        f = analyze(portrait, verifier=mode)
        assert len(f) == 1 and f[0].kind == "real" and f[0].p_real == pytest.approx(fast[0].p_real)


def test_stacked_head_adds_the_fast_heads_evidence_and_survives_a_round_trip(portrait, data_dir, tmp_path):
    """The shipped full head carries the fast head (Verifier.stack): P(real) = sigmoid(a logit fast +
    (1 - a) logit full), computed from the leading embedding+stats features of the full feature vector."""
    pytest.importorskip("torch")
    from faceset.scan.pipeline import analyze_rgb

    v = verify.load()
    if v.stack is None:
        pytest.skip("the shipped full head is not stacked (bench/train_face_verifier.py --no-stack)")
    sub, a = v.stack
    fast = verify.load(str(verify.WEIGHTS_FAST))
    assert sub.blocks == fast.blocks == v.blocks[:len(sub.blocks)]
    rows = []
    for rgb in (portrait, _rgb(data_dir / "nonface" / "pets" / "dog.4008.jpg")):
        for f in analyze_rgb(rgb, verifier="off"):
            l, t, w, h = f.box
            rows.append(verify.face_features(f.chip, f.crop, f.embedding, v.blocks, rgb=rgb, box=(l, t, l + w, t + h)))
    X = np.stack(rows)
    own = v.proba(X)[:, v.classes.index("real")]
    p_sub = sub.p_real(X[:, :sub.n_features])
    assert np.allclose(p_sub, fast.p_real(X[:, :fast.n_features]), atol=1e-4)  # the same head as the fast file
    z = a * np.log(p_sub / (1 - p_sub)) + (1 - a) * np.log(own / (1 - own))
    assert np.allclose(v.p_real(X), 1 / (1 + np.exp(-z)), atol=1e-6)
    assert v.p_real(X)[0] >= v.threshold > v.p_real(X)[-1]  # Obama is real, the dog's face is not
    v.save(tmp_path / "v.npz")
    w = verify.Verifier.from_file(tmp_path / "v.npz")
    assert w.stack is not None and w.stack[1] == a
    assert np.allclose(w.p_real(X), v.p_real(X), atol=1e-5)
    assert [r[:2] for r in w.predict(X)] == [r[:2] for r in v.predict(X)]
