"""scan/embed.py: embedding kinds (flip test-time augmentation, unit norm) on real face chips."""

from __future__ import annotations

import numpy as np
import pytest

from faceset.scan import embed as E


@pytest.fixture(scope="module")
def chips(data_dir):
    """Main-face chips of two photos each of two people (real photos, scan's own decode + alignment)."""
    from faceset.scan.pipeline import analyze_rgb, decode

    out = {}
    for person in ("barack_obama", "angelina_jolie"):
        files = sorted((data_dir / "identities" / person).iterdir())[:2]
        out[person] = [analyze_rgb(decode(f)[0], crops=False, verifier="off")[0].chip for f in files]
    return out


def test_represent_kinds_are_what_they_say():
    rng = np.random.default_rng(0)
    e, f = rng.normal(size=(5, 128)), rng.normal(size=(5, 128))
    assert np.allclose(E.represent(e, f, "raw"), e, atol=1e-6)
    assert np.allclose(E.represent(e, f, "flip_mean"), (e + f) / 2, atol=1e-6)
    assert np.allclose(np.linalg.norm(E.represent(e, None, "unit"), axis=1), E.NORM, atol=1e-5)
    fu = E.represent(e, f, "flip_unit")
    assert np.allclose(np.linalg.norm(fu, axis=1), E.NORM, atol=1e-5)
    assert np.allclose(fu / E.NORM, ((e + f) / np.linalg.norm(e + f, axis=1, keepdims=True)), atol=1e-5)
    with pytest.raises(ValueError):
        E.represent(e, None, "flip_unit")
    with pytest.raises(ValueError):
        E.represent(e, f, "jitter")


def test_flip_kinds_do_not_care_which_way_the_face_looks(chips):
    """The flip embedding of a chip and of its mirror image are the same (that is the augmentation);
    the raw descriptor is not mirror-invariant."""
    c = chips["barack_obama"][0]
    m = np.ascontiguousarray(c[:, ::-1])
    for kind in ("flip_mean", "flip_unit"):
        a, raw_a = E.embed_faces([c], kind)
        b, raw_b = E.embed_faces([m], kind)
        assert np.abs(a - b).max() < 1e-4
        assert np.linalg.norm(raw_a - raw_b) > 0.05  # a mirror moves the plain descriptor
        assert np.allclose(raw_a, E.embed_chips([c]), atol=1e-5)  # the verifier still gets the plain one
    raw, same = E.embed_faces([c], "raw")
    assert raw is same or np.array_equal(raw, same)


def test_flip_unit_keeps_people_apart(chips):
    """On real photos: each person's two photos are closer to each other than to the other person's."""
    x = {p: E.embed_faces(cs, "flip_unit")[0] for p, cs in chips.items()}
    ob, aj = x["barack_obama"], x["angelina_jolie"]
    within = max(np.linalg.norm(ob[0] - ob[1]), np.linalg.norm(aj[0] - aj[1]))
    between = min(np.linalg.norm(a - b) for a in ob for b in aj)
    assert within < 0.6 < between

