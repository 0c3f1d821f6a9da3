"""curate/match.py: the forget decision from selfies, face- and person-level evidence."""

import numpy as np
import pytest

from faceset.curate.match import CERTAIN, REVIEW, MatchParams, evidence, match, params_for


def _person(centre, n, spread, rng):
    return centre + rng.normal(scale=spread / np.sqrt(len(centre)), size=(n, len(centre)))


def test_evidence_is_exact():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(2, 8))
    x = rng.normal(size=(6, 8))
    lab = np.array([0, 0, 1, 1, 1, 2])
    d, r, p = evidence(s, x, lab)
    D = np.sqrt(((x[:, None] - s[None]) ** 2).sum(-1))
    assert np.allclose(d, D.min(1), atol=1e-5) and np.allclose(r, np.sqrt((D ** 2).mean(1)), atol=1e-5)
    want1 = np.sqrt((((x[2:5, None] - s[None]) ** 2).sum(-1)).mean())
    assert p[2] == pytest.approx(want1, rel=1e-5) and p[3] == p[4] == p[2]


def test_certain_review_none_and_cluster_evidence():
    rng = np.random.default_rng(1)
    me = rng.normal(size=128)
    me /= np.linalg.norm(me)
    other = -me
    mine = _person(me, 6, 0.2, rng)
    far_of_mine = me + 0.5 * np.eye(128)[0]  # 0.5 from the selfie but in my cluster
    x = np.concatenate([mine, far_of_mine[None], _person(other, 5, 0.2, rng)]).astype(np.float32)
    lab = np.r_[np.zeros(7, int), np.ones(5, int)]
    selfie = me[None]
    p = MatchParams(certain_face=0.3, certain_person=0.35, certain_face_in_person=0.55,
                    review_face=0.6, review_person=0.0, review_face_in_person=0.0)
    m = match(selfie, x, lab, params=p)
    assert set(m.certain) == set(range(7))  # the far face comes in through its person
    assert len(m.review) == 0 and (m.cls[7:] == "").all()
    m = match(selfie, x, None, params=p)  # no clusters: the far face is only a review
    assert m.cls[6] == REVIEW and (m.cls[:6] == CERTAIN).all()


def test_more_selfies_use_rms_for_certainty():
    rng = np.random.default_rng(2)
    me = np.zeros(128)
    x = _person(me, 3, 0.1, rng).astype(np.float32)
    wrong = np.zeros(128)
    wrong[0] = 1.0
    p = MatchParams(0.4, 0.0, 0.0, 0.6, 0.0, 0.0)
    one = match(np.stack([me, wrong]), x, None, params=p)
    assert (one.cls == REVIEW).all()  # one bad selfie cannot make anything certain
    assert (match(np.stack([me, me]), x, None, params=p).cls == CERTAIN).all()


def test_bad_arguments():
    with pytest.raises(ValueError):
        params_for(0)
    with pytest.raises(ValueError):
        match(np.zeros((1, 4)), np.zeros((3, 4)), np.zeros(2))
    assert params_for(7) == params_for(3)


def test_review_max_keeps_the_faces_with_the_most_evidence():
    rng = np.random.default_rng(3)
    me = np.zeros(128)
    x = np.stack([me + d * np.eye(128)[k] for k, d in enumerate(rng.uniform(0.3, 0.6, 20))]).astype(np.float32)
    p = MatchParams(0.25, 0.0, 0.0, 0.65, 0.0, 0.0)
    allrev = match(me[None], x, None, params=p)
    assert len(allrev.review) == 20
    few = match(me[None], x, None, params=p.with_(review_max=5))
    assert set(few.review) == set(np.argsort(allrev.distance)[:5])
    # the certain set never shrinks for the cap
    p2 = p.with_(certain_face=0.45, review_max=3)
    m = match(me[None], x, None, params=p2)
    assert set(m.certain) == set(np.flatnonzero(allrev.distance <= 0.45)) and len(m.review) <= 3
