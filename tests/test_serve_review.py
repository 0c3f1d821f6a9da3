"""The review app's /review page (issue #10 item 4): the questions `faceset people review` asks, each with its
faces' thumbnails, answered with Yes / No forms that apply `people.answer` (CSRF-guarded, stale questions
refused), and its empty states; on copies of the curated real-image workspace."""

from __future__ import annotations

import re
import shutil

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from faceset import open_workspace  # noqa: E402
from faceset.curate.decisions import mark_not_a_person, merge_people  # noqa: E402
from faceset.curate.people import review_questions  # noqa: E402
from faceset.serve import create_app  # noqa: E402

HTML = {"accept": "text/html"}


@pytest.fixture
def rws(curated_ws, tmp_path):
    """A copy of the curated workspace with one wrong merge (two people in one), so the questions include
    faces to split off that person."""
    shutil.copytree(curated_ws, tmp_path / "ws")
    ws = open_workspace(tmp_path / "ws")
    rows = ws.catalog.q("SELECT person_id FROM faces WHERE person_id IS NOT NULL AND status='ok' "
                        "GROUP BY person_id HAVING COUNT(*) >= 4 ORDER BY COUNT(*) DESC, person_id LIMIT 2")
    merge_people(ws, rows[0][0], [rows[1][0]])
    yield ws
    ws.close()


def _csrf(client, url="/review"):
    r = client.get(url, headers=HTML)
    assert r.status_code == 200, r.text[:300]
    return re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)


def _person(ws, face):
    return ws.catalog.scalar("SELECT person_id FROM faces WHERE id=?", (face,))


def _links(ws, kind, face):
    return ws.catalog.scalar("SELECT COUNT(*) FROM decisions WHERE kind=? AND ? IN (face_a, face_b)", (kind, face))


def test_the_page_lists_the_questions_with_their_faces_people_and_answer_forms(rws):
    c = TestClient(create_app(rws))
    qs = review_questions(rws, 10)
    assert qs, "a wrong merge leaves nothing to ask"
    r = c.get("/review", headers=HTML)
    assert r.status_code == 200, r.text[:300]
    t = r.text
    assert 'href="/review" class="here"' in t  # the nav link
    assert t.count('action="/review/answer"') == len(qs)
    pairs = [q for q in qs if q.kind != "cluster"]
    assert pairs, [q.kind for q in qs]
    for q in qs:
        block = t[t.index(f'id="q{qs.index(q) + 1}"'):]
        block = block[:block.index('action="/review/answer"') + 800]
        assert f'name="a" value="{q.face_a}"' in block and f'name="b" value="{q.face_b}"' in block
        assert f'name="kind" value="{q.kind}"' in block
        assert f'href="/person/{q.person_a}"' in block
        if q.kind == "cluster":
            assert "one person?" in block
            assert all(f'src="/thumb/face/{f}"' in block for f in q.faces)
        else:
            assert "same person?" in block
            assert f'src="/thumb/face/{q.face_a}"' in block and f'src="/thumb/face/{q.face_b}"' in block
            assert f'href="/person/{q.person_b}"' in block
    # the thumbnails it points at are served
    img = c.get(f"/thumb/face/{pairs[0].face_a}")
    assert img.status_code == 200 and img.headers["content-type"].startswith("image/") and len(img.content) > 500
    assert "script-src 'self'" in r.headers["content-security-policy"] and " style=" not in t
    # ?limit= bounds the list; nonsense is a 400
    assert c.get("/review?limit=1", headers=HTML).text.count('action="/review/answer"') == 1
    for bad in ("0", "-3", "x", "1000"):
        assert c.get(f"/review?limit={bad}").status_code == 400


def test_answering_no_splits_the_face_off_and_the_repeat_is_refused_as_stale(rws):
    c = TestClient(create_app(rws))
    csrf = _csrf(c)
    q = next((q for q in review_questions(rws, 30) if q.kind in ("split", "move")), None)
    assert q is not None, [q.kind for q in review_questions(rws, 30)]
    before = _links(rws, "cannot_link", q.face_a)
    form = {"a": q.face_a, "b": q.face_b, "kind": q.kind, "pa": q.person_a, "pb": q.person_b, "same": "no",
            "csrf": csrf}
    r = c.post("/review/answer", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/review?msg="), (r.status_code, r.text[:300])
    assert _links(rws, "cannot_link", q.face_a) > before
    if q.person_a == q.person_b:  # split: face a left its person
        assert _person(rws, q.face_a) != q.person_a and _person(rws, q.face_b) == q.person_b
    else:  # move: the two stay apart
        assert _person(rws, q.face_a) != _person(rws, q.face_b)
    page = c.get(r.headers["location"], headers=HTML).text
    assert f"faces {q.face_a} and {q.face_b}: answered no" in page and 'class="flash"' in page
    if q.person_a == q.person_b:  # face a now has another person: the same question again is stale
        r = c.post("/review/answer", data=form, headers=HTML)
        assert r.status_code == 409 and "stale" in r.text and "Traceback" not in r.text


def test_answering_yes_to_a_cluster_question_pins_the_person(rws):
    c = TestClient(create_app(rws))
    csrf = _csrf(c)
    qs = review_questions(rws, 30)
    q = next((q for q in qs if q.kind == "cluster"), None)
    if q is None:
        pytest.skip(f"no cluster question on this workspace ({[q.kind for q in qs]})")
    before = _links(rws, "must_link", q.face_a)
    r = c.post("/review/answer", data={"a": q.face_a, "b": q.face_b, "kind": "cluster", "pa": q.person_a,
                                       "pb": q.person_b, "same": "yes", "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    n = rws.catalog.scalar("SELECT COUNT(*) FROM faces WHERE person_id=? AND status='ok' AND embedding IS NOT NULL",
                           (q.person_a,))
    assert _links(rws, "must_link", q.face_a) >= before + 1 and _links(rws, "must_link", q.face_a) >= n - 1


def test_answers_without_csrf_or_with_bad_fields_are_refused_and_change_nothing(rws):
    c = TestClient(create_app(rws))
    csrf = _csrf(c)
    q = review_questions(rws, 1)[0]
    base = {"a": q.face_a, "b": q.face_b, "kind": q.kind, "pa": q.person_a, "pb": q.person_b, "same": "no"}
    n_dec = rws.catalog.scalar("SELECT COUNT(*) FROM decisions")
    who = (_person(rws, q.face_a), _person(rws, q.face_b))
    assert c.post("/review/answer", data=base).status_code == 403
    assert c.post("/review/answer", data={**base, "csrf": "x" * 40}).status_code == 403
    assert c.post("/review/answer", data={**base, "csrf": csrf},
                  headers={"origin": "http://evil.example"}).status_code == 403
    for bad, code in [({"same": "maybe"}, 400), ({"kind": "nope"}, 400), ({"a": "x"}, 400), ({"b": ""}, 400),
                      ({"a": 10 ** 9}, 404), ({"pa": q.person_a + 10 ** 6}, 409)]:
        r = c.post("/review/answer", data={**base, "csrf": csrf, **bad}, headers=HTML)
        assert r.status_code == code, (bad, r.status_code, r.text[:200])
        assert '<p class="error">' in r.text and "Traceback" not in r.text
    assert c.post("/review/answer", data={**base, "csrf": csrf, "a": 10 ** 9}).json()["error"].startswith("no face")
    assert rws.catalog.scalar("SELECT COUNT(*) FROM decisions") == n_dec
    assert (_person(rws, q.face_a), _person(rws, q.face_b)) == who


def test_empty_states(rws, tmp_path):
    from faceset import init_workspace

    empty = init_workspace(tmp_path / "empty")
    try:
        t = TestClient(create_app(empty)).get("/review", headers=HTML).text
        assert "run <code>faceset people</code> first" in t and 'action="/review/answer"' not in t
    finally:
        empty.close()
    # people, but nothing left to ask: every 'ok' face but one is marked not a person
    faces = [r[0] for r in rws.catalog.q("SELECT id FROM faces WHERE person_id IS NOT NULL ORDER BY id")]
    mark_not_a_person(rws, faces[1:])
    assert review_questions(rws, 10) == []
    t = TestClient(create_app(rws)).get("/review", headers=HTML).text
    assert "Nothing to ask" in t and "faceset people</code> first" not in t and 'action="/review/answer"' not in t


def test_in_a_browser_no_on_the_first_question_applies_it(rws, tmp_path):
    """Chromium against `faceset serve`: the page renders without console errors, "No" posts the form and the
    flash names the answer (screenshot to docs/img/serve-review.png with FACESET_SCREENSHOTS=docs/img)."""
    B = pytest.importorskip("test_serve_browser")  # skips without Playwright / chromium
    if B.CHROMIUM is None:
        pytest.skip("needs Debian's chromium")
    q = review_questions(rws, 10)[0]
    root, n_dec = rws.root, rws.catalog.scalar("SELECT COUNT(*) FROM decisions")
    rws.close()
    proc, base = B._start(root)
    try:
        with B.sync_api.sync_playwright() as p:
            b = p.chromium.launch(executable_path=B.CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            pg = b.new_context(viewport={"width": 1200, "height": 900}).new_page()
            errors = []
            pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            pg.goto(base + "/review")
            pg.wait_for_load_state("networkidle")
            assert pg.locator("form[action='/review/answer']").count() >= 1
            B._shot(pg, "serve-review.png", tmp_path)
            pg.locator("#q1 button[value='no']").click()
            pg.wait_for_url(re.compile(r"/review\?msg="))
            assert f"faces {q.face_a} and {q.face_b}: answered no" in pg.locator("p.flash").inner_text()
            assert not errors, errors
            b.close()
    finally:
        assert B._stop(proc) == 0
    ws = open_workspace(root)
    try:
        assert ws.catalog.scalar("SELECT COUNT(*) FROM decisions") > n_dec
    finally:
        ws.close()
