"""curate/refine.py: crowds of look-alikes are split, people with many photos are not; constraints and ids hold."""

import numpy as np
import pytest

from faceset.curate import refine
from faceset.curate.cluster import Params, cluster, cluster_incremental

CROWD = dict(crowd_size=10, crowd_frac=0.2, crowd_radius=0.45)


def _sheet(n, seed=0, side=1.0, k=5, dim=128):
    """n different "people" spread evenly over a k-dimensional cube in R^dim: a continuum of look-alikes that
    any threshold cuts into chunks (what utkface's young children are to the dlib embedding)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, k)))[0].T
    uv = rng.uniform(0, side, size=(n, k))
    return (uv @ basis + rng.normal(scale=0.02 / np.sqrt(dim), size=(n, dim))).astype(np.float32)


def _person(n, centre, seed=1, spread=0.3, dim=128):
    """One person with n photos: Gaussian around ``centre`` with RMS distance ``spread`` to it (LFW's typical)."""
    rng = np.random.default_rng(seed)
    return (centre + rng.normal(scale=spread / np.sqrt(dim), size=(n, dim))).astype(np.float32)


def _far(dim=128, seed=2, dist=3.0):
    v = np.random.default_rng(seed).normal(size=dim)
    return v / np.linalg.norm(v) * dist


def test_a_crowd_is_split_and_a_person_with_many_photos_is_not():
    crowd = _sheet(1500)
    person = _person(200, _far())
    x = np.concatenate([crowd, person])
    plain = cluster(x, params=Params(threshold=0.58))
    split = cluster(x, params=Params(threshold=0.58, **CROWD))
    n = len(crowd)
    assert np.bincount(plain[:n]).max() > 30                       # average linkage alone keeps big chunks
    assert np.bincount(split[:n]).max() * 3 <= np.bincount(plain[:n]).max()
    assert len(set(split[n:])) == 1 and not np.isin(split[:n], split[n:]).any()  # the person: whole, alone
    assert (split == cluster(x, params=Params(threshold=0.58, **CROWD))).all()  # deterministic
    assert split[0] == 0 and (np.diff(np.unique(split, return_index=True)[1]) > 0).all()  # numbered by first row


def test_off_by_default_and_small_clusters_untouched():
    x = _sheet(400, seed=3)
    lab = cluster(x, params=Params(threshold=0.58))
    assert (refine.split_crowds(x, lab, Params(threshold=0.58), cluster) == lab).all()
    big = Params(threshold=0.58, crowd_size=10_000, crowd_frac=0.0)
    assert (refine.split_crowds(x, lab, big, cluster) == lab).all()


def test_must_links_survive_a_split_down_to_single_faces():
    x = _sheet(800, seed=4)
    plain = cluster(x, params=Params(threshold=0.58))
    m = np.flatnonzero(plain == np.bincount(plain).argmax())
    ml = [(int(m[0]), int(m[-1])), (int(m[1]), int(m[2]))]
    before = cluster(x, params=Params(threshold=0.58), must_link=ml)
    big = np.flatnonzero(before == before[m[0]])
    inside = sum(before[a] == before[m[0]] for a, _ in ml)
    assert len(big) > CROWD["crowd_size"]
    p = Params(threshold=0.58, crowd_floor=0.57, **CROWD)  # one step: straight to single faces
    lab = cluster(x, params=p, must_link=ml)
    assert all(lab[a] == lab[b] for a, b in ml)
    assert len(set(lab[big].tolist())) == len(big) - inside  # the crowd became single faces, but for the pairs
    cl = [(int(m[3]), int(m[4]))]
    lab = cluster(x, params=p, must_link=ml, cannot_link=cl)
    assert all(lab[a] == lab[b] for a, b in ml) and lab[m[3]] != lab[m[4]]


def test_incremental_splits_only_new_crowds_and_keeps_existing_people():
    person = _person(60, _far(seed=5))
    old_lab = np.zeros(len(person), np.int64) + 7  # an existing person, id 7
    more = _person(20, _far(seed=5), seed=9)        # new photos of that person
    crowd = _sheet(1200, seed=6)
    new = np.concatenate([more, crowd])
    p = Params(threshold=0.58, **CROWD)
    res = cluster_incremental(new, person, old_lab, params=p)
    plain = cluster_incremental(new, person, old_lab, params=Params(threshold=0.58))
    assert (res.labels[:20] == 7).all() and (plain.labels[:20] == 7).all()  # joined the existing person
    got = res.labels[20:]
    assert (got < 0).all()
    assert np.bincount(-got).max() * 3 <= np.bincount(-plain.labels[20:]).max()
    firsts = [-v for v in dict.fromkeys(got.tolist())]
    assert firsts == list(range(1, len(firsts) + 1))  # new ids -1, -2, ... in order of first arrival


@pytest.mark.parametrize("frac", [0.2, 0.3])
def test_real_people_of_the_dev_set_are_islands(scanned_ws, frac):
    """The 24 people of identities/ (real photos, up to 12 each): the crowd step changes nothing there."""
    from faceset import open_workspace

    ws = open_workspace(scanned_ws)
    rows = ws.catalog.q("SELECT embedding FROM faces WHERE is_main=1 AND embedding IS NOT NULL ORDER BY id")
    ws.close()
    x = np.frombuffer(b"".join(r[0] for r in rows), np.float32).reshape(-1, 128)
    assert len(x) > 100
    base = Params(threshold=0.58, density=0.5)
    for size in (5, 10):
        p = base.with_(crowd_size=size, crowd_frac=frac)
        assert (cluster(x, params=p) == cluster(x, params=base)).all()
