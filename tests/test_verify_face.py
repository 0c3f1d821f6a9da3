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
