"""Issue #10: `faceset people` honours review decisions (must-link, cannot-link, not-a-person), and
`faceset people review` asks ranked yes/no questions whose answers become those decisions."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from faceset.cli import app
from faceset.curate import cluster_people
from faceset.curate.decisions import mark_not_a_person
from faceset.curate.people import answer, review_questions


def _reset_people(ws):
    with ws.catalog.tx() as c:
        c.execute("UPDATE faces SET person_id=NULL")
        c.execute("DELETE FROM people")


def _person(ws, face_id):
    return ws.catalog.scalar("SELECT person_id FROM faces WHERE id=?", (face_id,))


def _two_people_with_two_faces(ws):
    rows = ws.catalog.q("SELECT person_id, MIN(id), MAX(id) FROM faces WHERE person_id IS NOT NULL AND status='ok' "
                        "GROUP BY person_id HAVING COUNT(*) >= 2 ORDER BY person_id LIMIT 2")
    assert len(rows) == 2
    return [(r[1], r[2]) for r in rows]


def test_decisions_survive_a_full_recluster(cws):
    (a1, a2), (b1, _b2) = _two_people_with_two_faces(cws)
    with cws.catalog.tx():
        cws.catalog.review.add_decisions("cannot_link", [(a1, a2)])  # one person, but a human said no
        cws.catalog.review.add_decisions("must_link", [(a1, b1)])  # two people, but a human said yes
    _reset_people(cws)
    rep = cluster_people(cws, progress=False)
    assert rep.constraints == {"must_link": 1, "cannot_link": 1}
    assert _person(cws, a1) != _person(cws, a2)
    assert _person(cws, a1) == _person(cws, b1)
    # one face per photo still holds with the constraints
    assert cws.catalog.scalar("SELECT COUNT(*) FROM (SELECT 1 FROM faces WHERE person_id IS NOT NULL "
                              "GROUP BY person_id, image_id HAVING COUNT(*) > 1)") == 0


def test_not_a_person_faces_never_get_a_person(cws):
    fid = cws.catalog.scalar("SELECT MIN(id) FROM faces WHERE person_id IS NOT NULL")
    mark_not_a_person(cws, [fid])
    assert _person(cws, fid) is None
    rep = cluster_people(cws, progress=False)  # incremental: the face is "new" but must stay out
    assert rep.not_a_person == 1 and rep.assigned_now == 0
    assert _person(cws, fid) is None
    _reset_people(cws)
    cluster_people(cws, progress=False)  # from scratch too
    assert _person(cws, fid) is None
    assert cws.catalog.scalar("SELECT COUNT(*) FROM faces WHERE embedding IS NOT NULL AND person_id IS NULL") == 1
    # datasets leave it out (no person -> no split)
    assert fid not in {r["face_id"] for r in cws.catalog.selection.dataset_faces()}


def test_review_questions_are_ranked_and_answers_become_decisions(cws):
    qs = review_questions(cws, 5)
    assert 0 < len(qs) <= 5
    for kinds in (("move", "merge"), ("split",), ("cluster",)):  # queues asked in turn, each by gain
        queue = [q for q in qs if q.kind in kinds]
        assert [q.gain for q in queue] == sorted((q.gain for q in queue), reverse=True)
    for q in qs:
        assert q.face_a != q.face_b and q.kind in ("move", "merge", "split", "cluster")
        assert (q.person_a == q.person_b) == (q.kind in ("split", "cluster"))
        assert _person(cws, q.face_a) == q.person_a and _person(cws, q.face_b) == q.person_b
    merge = next((q for q in qs if q.kind == "merge"), None)
    if merge is not None:
        rep = answer(cws, merge.face_a, merge.face_b, False)
        assert rep.action == "cannot_link" and rep.decisions == 1
        assert {(q.face_a, q.face_b) for q in review_questions(cws, 50)}.isdisjoint({(merge.face_a, merge.face_b)})
        rep = answer(cws, merge.face_a, merge.face_b, True)  # a change of mind: merge wins
        assert rep.action == "merge" and _person(cws, merge.face_a) == _person(cws, merge.face_b)
    split = next((q for q in qs if q.kind == "split"), None)
    if split is not None:
        rep = answer(cws, split.face_a, split.face_b, False)
        assert rep.action == "split" and _person(cws, split.face_a) != _person(cws, split.face_b)
    assert merge is not None or split is not None
    # a later clustering run keeps the answers
    cluster_people(cws, progress=False)
    if merge is not None:
        assert _person(cws, merge.face_a) == _person(cws, merge.face_b)
    if split is not None:
        assert _person(cws, split.face_a) != _person(cws, split.face_b)


def test_a_yes_to_a_move_moves_one_face_not_its_people(cws):
    (a1, a2), (b1, _b2) = _two_people_with_two_faces(cws)
    pa, pb = _person(cws, a1), _person(cws, b1)
    rep = answer(cws, a1, b1, True, kind="move")
    assert rep.action == "split" and _person(cws, a1) == pb and _person(cws, a2) == pa
    # a move question as asked: without ``kind`` the answer looks up what was asked about the pair
    q = next((q for q in review_questions(cws, 50) if q.kind == "move"), None)
    if q is not None:
        size_a = cws.catalog.scalar("SELECT COUNT(*) FROM faces WHERE person_id=?", (q.person_a,))
        rep = answer(cws, q.face_a, q.face_b, True)
        assert rep.action == "split" and _person(cws, q.face_a) == q.person_b
        assert cws.catalog.scalar("SELECT COUNT(*) FROM faces WHERE person_id=?", (q.person_a,)) == size_a - 1
    cluster_people(cws, progress=False)  # kept by a later run
    assert _person(cws, a1) == pb and _person(cws, a2) == pa


def test_answer_errors_are_usage_errors(cws):
    from faceset.errors import NotFound, UsageError

    fid = cws.catalog.scalar("SELECT MIN(id) FROM faces")
    with pytest.raises(UsageError):
        answer(cws, fid, fid, True)
    with pytest.raises(NotFound):
        answer(cws, fid, 10**9, True)


def test_cli_people_review_json_and_answers(cws):
    r = CliRunner()
    root = str(cws.root)
    out = r.invoke(app, ["people", "review", "-w", root, "--json", "--limit", "3"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert d["answered"] == [] and 0 < len(d["questions"]) <= 3
    q = d["questions"][0]
    out = r.invoke(app, ["people", "review", "-w", root, "--json", "--answer", f"{q['face_a']},{q['face_b']},no"])
    assert out.exit_code == 0, out.output
    d2 = json.loads(out.stdout)
    assert len(d2["answered"]) == 1 and d2["answered"][0]["same"] is False
    assert (q["face_a"], q["face_b"]) not in {(x["face_a"], x["face_b"]) for x in d2["questions"]}
    out = r.invoke(app, ["people", "review", "-w", root, "--answer", "1,2,maybe"])
    assert out.exit_code == 2 and "--answer" in out.output
    out = r.invoke(app, ["people", "review", "-w", root, "--sheet", "--limit", "2"])  # human table, no tty
    assert out.exit_code == 0, out.output
    assert "next questions" in out.output
