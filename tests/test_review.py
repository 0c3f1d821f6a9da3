"""curate/review.py on real embeddings (the dev set's dlib descriptors, scanned once per session): the questions
find a face put among strangers, every adjacent cluster is asked about, a "no" to "is this one person?" splits a
mixed cluster, a simulated curator's answers repair a damaged clustering, and `people.answer` applies a cluster
answer as decisions a later clustering keeps."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from faceset import open_workspace
from faceset.curate import cluster_people
from faceset.curate import review as R
from faceset.curate.cluster import DEFAULT
from faceset.curate.decisions import merge_people
from faceset.curate.people import answer, review_questions


@pytest.fixture(scope="module")
def real(curated_ws):
    ws = open_workspace(curated_ws)
    try:
        fids, pids, emb = ws.catalog.review.person_vectors()
    finally:
        ws.close()
    _, lab = np.unique(pids, return_inverse=True)
    assert len(fids) > 50 and lab.max() >= 10
    return fids, lab.astype(np.int64), emb.astype(np.float64)



def _big_people(lab, n=4):
    sizes = np.bincount(lab)
    return [int(p) for p in np.argsort(-sizes, kind="stable") if sizes[p] >= n]


def _pairwise_f(y, lab) -> float:
    same_y, same_l = y[:, None] == y[None], lab[:, None] == lab[None]
    iu = np.triu_indices(len(y), 1)
    tp = (same_y & same_l)[iu].sum()
    p, r = tp / max(same_l[iu].sum(), 1), tp / max(same_y[iu].sum(), 1)
    return 2 * p * r / (p + r) if p + r else 0.0


def test_a_face_put_among_strangers_is_asked_back_to_its_person(real):
    _, y, x = real
    p = _big_people(y)[0]
    f = int(np.flatnonzero(y == p)[0])
    # the other person closest to f (RMS): where a clustering would most plausibly have put it
    others = [q for q in np.unique(y) if q != p]
    rms = [np.sqrt(((x[y == q] - x[f]) ** 2).sum(1).mean()) for q in others]
    host = others[int(np.argmin(rms))]
    lab = y.copy()
    lab[f] = host
    qs = R.questions(x, lab, limit=4)
    join = [q for q in qs if q.kind in ("move", "merge")]
    assert join and join[0].kind == "move" and join[0].a == f and y[join[0].b] == p
    # the truth's yes puts it back: the clustering is the truth again
    assert (R.apply_answer(lab, join[0], True) == y).all()
    # a face a human placed (a yes tying it to its cluster) is not asked to move or split off again, however
    # strong the evidence against: here the human (wrongly) said f belongs with its host
    placed = R.Answers(must_link=[(f, int(np.flatnonzero(lab == host)[0]))])
    later = R.questions(x, lab, limit=200, answers=placed)
    assert later and not any(q.a == f and q.kind in ("move", "split") for q in later)


def test_every_adjacent_cluster_within_the_band_is_a_move_candidate(real):
    _, y, x = real
    c = R.candidates(x, y, DEFAULT)
    mv = c.kind == "move"
    assert (c.ca[mv] != c.cb[mv]).all() and (c.L[mv] < DEFAULT.threshold + R.REVIEW_DEFAULT.band).all()
    ri = R.MOVE_FEATURES.index("rank_a")
    rank = c.X[mv, ri]
    # faces with two or more clusters in reach are asked about each (the former candidates: the closest only)
    assert (rank >= 1).any()
    per_face = np.bincount(c.a[mv])
    assert per_face.max() >= 2
    # each (face, cluster) once, and the closest first in rank
    keys = c.a[mv] * (y.max() + 1) + c.cb[mv]
    assert len(np.unique(keys)) == mv.sum()
    for a in np.flatnonzero(per_face >= 2)[:20]:
        k = np.flatnonzero(mv & (c.a == a))
        assert c.L[k[np.argmin(c.X[k, ri])]] == c.L[k].min()


def test_no_to_is_this_one_person_splits_a_mixed_cluster_and_yes_pins_it(real):
    _, y, x = real
    p, q = _big_people(y)[:2]
    lab = y.copy()
    lab[y == q] = p  # two people in one cluster
    rp = replace(R.REVIEW_DEFAULT, cluster_share=1.0, cluster_min=4)
    qs = R.questions(x, lab, limit=50, review=rp)
    cq = [k for k in qs if k.kind == "cluster" and lab[k.a] == p]
    assert cq, "the mixed cluster is asked about"
    ask = cq[0]
    assert lab[ask.a] == lab[ask.b] and ask.a != ask.b
    whole = {int(lab[k.a]) for k in qs if k.kind == "cluster"}  # no split about a cluster asked as a whole
    assert not any(k.kind == "split" and int(lab[k.a]) in whole for k in qs)
    after = R.apply_answer(lab, ask, False, x)
    mixed = (y == p) | (y == q)
    # no piece holds both people any more, and nothing outside the cluster moved
    for piece in np.unique(after[mixed]):
        assert len(np.unique(y[mixed & (after == piece)])) == 1
    assert (after[~mixed] == lab[~mixed]).all()
    assert _pairwise_f(y, after) > _pairwise_f(y, lab)
    with pytest.raises(ValueError):
        R.apply_answer(lab, ask, False)  # a split needs the vectors
    # a yes pins: a must-link, labels unchanged, the cluster not asked about again
    ans = R.Answers()
    ans.add(ask, True)
    assert ans.must_link == [(ask.a, ask.b)] and (R.apply_answer(lab, ask, True, x) == lab).all()
    again = R.questions(x, lab, limit=50, review=rp, answers=ans)
    assert all((k.a, k.b) != (ask.a, ask.b) for k in again)


def test_a_simulated_curator_repairs_a_damaged_clustering(real):
    _, y, x = real
    rng = np.random.default_rng(0)
    lab = y.copy()
    people = _big_people(y, 5)[:6]
    moved = []
    for p in people[:3]:  # three faces, each put into another person
        f = int(rng.choice(np.flatnonzero(y == p)))
        lab[f] = people[(people.index(p) + 3) % len(people)]
        moved.append(f)
    ans, asked = R.Answers(), 0
    graph = R.neighbours(x)
    f0 = _pairwise_f(y, lab)
    while asked < 15:
        qs = R.questions(x, lab, limit=5, answers=ans, graph=graph)
        if not qs:
            break
        for q in qs:
            same = bool(y[q.a] == y[q.b])
            ans.add(q, same)
            lab = R.apply_answer(lab, q, same, x)
        asked += len(qs)
    back = sum(len(np.unique(lab[y == y[f]])) == 1 for f in moved)
    assert back >= 2 and _pairwise_f(y, lab) > f0 + 0.01
    # the naive order (closest first) is a valid ranking of the same candidates
    qn = R.questions(x, lab, limit=10, answers=ans, graph=graph, order="closest")
    ls = [q.linkage for q in qn if q.kind != "split"]
    assert ls == sorted(ls)
    with pytest.raises(ValueError):
        R.questions(x, lab, order="best")


def test_model_weights_must_match_the_features(real):
    _, y, x = real
    c = R.candidates(x, y, DEFAULT)
    assert c.X.shape == (len(c.kind), len(R.MOVE_FEATURES))
    p = R.probability(c, DEFAULT.threshold)
    assert ((p >= 0) & (p <= 1)).all()
    for name, n in (("move_w", 3), ("merge_w", 2), ("cluster_w", 1)):
        with pytest.raises(ValueError):
            R.probability(c, DEFAULT.threshold, replace(R.REVIEW_DEFAULT, **{name: (0.0,) * n}))


def test_people_answer_to_a_cluster_question_splits_then_keeps_it_split(cws):
    rows = cws.catalog.q("SELECT person_id FROM faces WHERE person_id IS NOT NULL AND status='ok' "
                         "GROUP BY person_id HAVING COUNT(*) >= 4 ORDER BY COUNT(*) DESC, person_id LIMIT 2")
    pa, pb = rows[0][0], rows[1][0]
    faces_a = [r[0] for r in cws.catalog.q("SELECT id FROM faces WHERE person_id=? ORDER BY id", (pa,))]
    faces_b = [r[0] for r in cws.catalog.q("SELECT id FROM faces WHERE person_id=? ORDER BY id", (pb,))]
    merge_people(cws, pa, [pb])  # a wrong merge: two people in one

    def person(f):
        return cws.catalog.scalar("SELECT person_id FROM faces WHERE id=?", (f,))

    assert {person(f) for f in faces_a + faces_b} == {pa}
    rep = answer(cws, faces_a[0], faces_b[0], False, kind="cluster")
    assert rep.action == "split" and rep.faces > 0 and rep.decisions > 0
    assert not {person(f) for f in faces_a} & {person(f) for f in faces_b}
    cluster_people(cws, progress=False)  # a later run keeps them apart
    assert not {person(f) for f in faces_a} & {person(f) for f in faces_b}
    # a yes pins a person: must-links from the asked face to each of its other faces
    keep = person(faces_a[0])
    n = cws.catalog.scalar("SELECT COUNT(*) FROM faces WHERE person_id=? AND status='ok'", (keep,))
    rep = answer(cws, faces_a[0], next(f for f in faces_a[1:] if person(f) == keep), True, kind="cluster")
    assert rep.action == "must_link" and rep.decisions == n - 1
    # cluster questions come with the person's faces for the sheet
    qs = review_questions(cws, 30)
    for q in qs:
        assert (q.kind == "cluster") == bool(q.faces)
        if q.kind == "cluster":
            assert q.face_a in q.faces and {person(f) for f in q.faces} == {q.person_a}


def test_large_workspace_graph_maps_rows_back_and_is_reused(cws, monkeypatch):
    """From index.EXACT_BELOW faces review_questions takes its kNN graph from the workspace index (over face ids
    in ascending order, not person_vectors' order): every neighbour it returns must be at the distance it
    reports, the distances must equal the exact graph's, the graph is reused while the faces stay the same,
    and the questions are the ones the exact graph gives."""
    import faceset.curate.people as P

    fids, pids, emb = cws.catalog.review.person_vectors()
    assert not np.all(np.diff(fids) > 0)  # person order: the remapping is really exercised
    P._GRAPHS.clear()
    nbr, dist = P._review_graph(cws, fids, emb, DEFAULT.k)
    rows = np.arange(len(fids))[:, None]
    assert np.allclose(np.linalg.norm(emb[nbr] - emb[rows], axis=2), dist, atol=1e-4)
    _, d_exact = R.neighbours(emb, DEFAULT)
    assert np.allclose(np.sort(dist, 1), np.sort(d_exact, 1), atol=1e-4)
    assert P._review_graph(cws, fids, emb, DEFAULT.k)[0] is nbr  # cached
    exact = review_questions(cws, 10)
    monkeypatch.setattr(P, "EXACT_BELOW", 2)
    via_graph = review_questions(cws, 10)
    assert [(q.face_a, q.face_b, q.kind) for q in via_graph] == [(q.face_a, q.face_b, q.kind) for q in exact]
