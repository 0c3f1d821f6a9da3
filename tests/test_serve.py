"""Review verbs (merge, split, not a person, labels, keeper), their CLI, and the review app's guards
(token login, CSRF, Host check, CSP, upload caps, hostile uploads) through an in-process client."""

from __future__ import annotations

import json
import re
import shutil

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from faceset import open_workspace  # noqa: E402
from faceset.errors import NotFound, UsageError  # noqa: E402

HTML = {"accept": "text/html"}


@pytest.fixture(scope="module")
def review_ws(curated_ws, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve") / "ws"
    shutil.copytree(curated_ws, root)
    ws = open_workspace(root)
    yield ws
    ws.close()


def _two_people(ws):
    rows = ws.catalog.q("SELECT id FROM people WHERE n_faces >= 2 ORDER BY n_faces DESC, id LIMIT 4")
    assert len(rows) >= 4
    return [r[0] for r in rows]


def test_merge_moves_faces_records_must_links_and_survives_a_people_rerun(review_ws):
    from faceset.curate import cluster_people
    from faceset.curate.decisions import merge_people

    ws = review_ws
    a, b = _two_people(ws)[2:4]
    faces_b = [r[0] for r in ws.catalog.q("SELECT id FROM faces WHERE person_id=?", (b,))]
    n_audit = ws.catalog.scalar("SELECT COUNT(*) FROM audit WHERE action='people_merge'")
    rep = merge_people(ws, a, [b])
    assert rep.faces == len(faces_b) and rep.deleted_people == [b]
    assert ws.catalog.scalar("SELECT COUNT(*) FROM faces WHERE person_id=?", (b,)) == 0
    assert ws.catalog.scalar("SELECT COUNT(*) FROM people WHERE id=?", (b,)) == 0
    links = ws.catalog.q("SELECT face_a, face_b FROM decisions WHERE kind='must_link'")
    assert {f for r in links for f in r} >= set(faces_b)
    assert ws.catalog.scalar("SELECT COUNT(*) FROM audit WHERE action='people_merge'") == n_audit + 1
    n_faces = ws.catalog.scalar("SELECT n_faces FROM people WHERE id=?", (a,))
    cluster_people(ws)  # a later run never undoes it
    assert {r[0] for r in ws.catalog.q("SELECT person_id FROM faces WHERE id IN (%s)" % ",".join("?" * len(faces_b)),
                                       faces_b)} == {a}
    assert ws.catalog.scalar("SELECT n_faces FROM people WHERE id=?", (a,)) == n_faces


def test_split_makes_a_new_person_with_cannot_links(review_ws):
    from faceset.curate.decisions import split_faces

    ws = review_ws
    p = _two_people(ws)[0]
    faces = [r[0] for r in ws.catalog.q("SELECT id FROM faces WHERE person_id=? ORDER BY id", (p,))]
    rep = split_faces(ws, faces[-1:])
    assert rep.person_id != p and rep.details["new_person"]
    assert ws.catalog.scalar("SELECT person_id FROM faces WHERE id=?", (faces[-1],)) == rep.person_id
    assert ws.catalog.scalar("SELECT COUNT(*) FROM decisions WHERE kind='cannot_link' AND ? IN (face_a, face_b)",
                             (faces[-1],)) == 1
    # then into an existing person
    rep2 = split_faces(ws, faces[-1:], into=p)
    assert rep2.person_id == p and ws.catalog.scalar("SELECT person_id FROM faces WHERE id=?", (faces[-1],)) == p
    assert rep.person_id in rep2.deleted_people


def test_not_a_person_label_and_keeper_verbs(review_ws):
    from faceset.curate.decisions import choose_keeper, mark_not_a_person, set_person_label

    ws = review_ws
    p = _two_people(ws)[1]
    face = ws.catalog.scalar("SELECT id FROM faces WHERE person_id=? ORDER BY id DESC LIMIT 1", (p,))
    mark_not_a_person(ws, [face])
    assert ws.catalog.scalar("SELECT person_id FROM faces WHERE id=?", (face,)) is None
    assert ws.catalog.scalar("SELECT COUNT(*) FROM decisions WHERE kind='not_a_person' AND face_a=?", (face,)) == 1
    mark_not_a_person(ws, [face])  # idempotent
    assert ws.catalog.scalar("SELECT COUNT(*) FROM decisions WHERE kind='not_a_person' AND face_a=?", (face,)) == 1

    rep = set_person_label(ws, p, "identity", "someone_else")
    assert rep.faces >= 1
    vals = {r[0] for r in ws.catalog.q("SELECT l.value FROM labels l JOIN faces f ON f.image_id=l.image_id "
                                       "WHERE f.person_id=? AND f.is_main=1 AND l.name='identity'", (p,))}
    assert vals == {"someone_else"}

    dup = ws.catalog.one("SELECT id, dup_of FROM images WHERE dup_of IS NOT NULL ORDER BY id LIMIT 1")
    assert dup is not None, "curated_ws has no near-duplicate group"
    choose_keeper(ws, dup["id"])
    assert ws.catalog.scalar("SELECT dup_of FROM images WHERE id=?", (dup["id"],)) is None
    assert ws.catalog.scalar("SELECT dup_of FROM images WHERE id=?", (dup["dup_of"],)) == dup["id"]

    with pytest.raises(NotFound):
        set_person_label(ws, 10 ** 9, "identity", "x")
    with pytest.raises(UsageError):
        set_person_label(ws, p, "", "x")
    with pytest.raises(UsageError):
        choose_keeper(ws, ws.catalog.scalar("SELECT id FROM images WHERE dup_of IS NULL AND id NOT IN "
                                            "(SELECT dup_of FROM images WHERE dup_of IS NOT NULL) LIMIT 1"))


def test_cli_people_merge_and_bare_people_still_clusters(review_ws):
    from typer.testing import CliRunner

    from faceset.cli import app

    ws = review_ws
    a, b = _two_people(ws)[:2]
    r = CliRunner().invoke(app, ["people", "merge", str(a), str(b), "-w", str(ws.root), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["person_id"] == a
    r = CliRunner().invoke(app, ["people", "merge", "999999", str(a), "-w", str(ws.root)])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["people", "-w", str(ws.root), "--json"])
    assert r.exit_code == 0 and "report" in json.loads(r.output)


# -- the app's guards --------------------------------------------------------------------------------------------

def _csrf(client, url="/people"):
    r = client.get(url, headers=HTML)
    assert r.status_code == 200, r.text[:300]
    return re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)


def test_every_page_renders_with_a_strict_csp(review_ws):
    from faceset.serve import create_app

    c = TestClient(create_app(review_ws))
    pid = review_ws.catalog.scalar("SELECT id FROM people WHERE n_faces > 0 LIMIT 1")
    for url in ["/", "/images", "/images?status=low_quality", "/images?split=train&label=identity:x", "/image/1",
                "/people", "/people?sort=doubt", f"/person/{pid}", "/duplicates", "/labels", "/forget",
                "/consent", "/audit", "/exports", "/rejected", "/review"]:
        r = c.get(url, headers=HTML)
        assert r.status_code == 200, (url, r.text[:300])
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert "<script>" not in r.text and " style=" not in r.text and "onclick" not in r.text
    # keyset pages: the next link carries the last key, never an offset
    r = c.get("/images", headers=HTML)
    assert "offset" not in r.text.lower()
    for bad in ["/images?after=-1", "/images?status=nope", "/people?after=x", "/thumb/image/abc"]:
        assert 400 <= c.get(bad).status_code < 500


def test_paths_only_for_the_owner(review_ws):
    from faceset.serve import create_app

    iid = review_ws.catalog.scalar("SELECT image_id FROM files WHERE image_id IS NOT NULL LIMIT 1")
    name = review_ws.catalog.scalar("SELECT path FROM files WHERE image_id=?", (iid,))
    app = create_app(review_ws, token="reviewer-token", owner_token="owner-token-123")
    c = TestClient(app)
    csrf = _csrf(c, "/login")
    assert c.post("/login", data={"token": "reviewer-token", "csrf": csrf}, follow_redirects=False).status_code == 303
    assert name not in c.get(f"/image/{iid}", headers=HTML).text
    c2 = TestClient(app)
    csrf = _csrf(c2, "/login")
    c2.post("/login", data={"token": "owner-token-123", "csrf": csrf})
    assert name in c2.get(f"/image/{iid}", headers=HTML).text


def test_token_login_and_csrf_are_enforced(review_ws):
    from faceset.serve import create_app

    c = TestClient(create_app(review_ws, token="s3cret-token"))
    assert c.get("/people").status_code == 401
    assert c.get("/thumb/image/1").status_code == 401
    r = c.get("/people", headers=HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    csrf = _csrf(c, "/login")
    assert c.post("/login", data={"token": "wrong", "csrf": csrf}).status_code == 401
    assert c.post("/login", data={"token": "s3cret-token"}).status_code == 403  # no CSRF token
    r = c.post("/login", data={"token": "s3cret-token", "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "s3cret-token" not in cookie
    assert c.get("/people", headers=HTML).status_code == 200
    a, b = _two_people(review_ws)[:2]
    assert c.post("/people/merge", data={"keep": a, "other": b}).status_code == 403  # no CSRF
    assert c.post("/people/merge", data={"keep": a, "other": b, "csrf": "x" * 40}).status_code == 403
    assert c.post("/people/merge", data={"keep": a, "other": b, "csrf": csrf},
                  headers={"origin": "http://evil.example"}).status_code == 403
    assert review_ws.catalog.scalar("SELECT COUNT(*) FROM people WHERE id=?", (b,)) == 1  # nothing merged


def test_local_app_refuses_foreign_host_headers(review_ws):
    from faceset.serve import create_app

    c = TestClient(create_app(review_ws, allowed_hosts={"127.0.0.1:8765"}))
    assert c.get("/", headers={"host": "evil.example"}).status_code == 421
    assert c.get("/healthz", headers={"host": "127.0.0.1:8765"}).status_code == 200


def test_hostile_and_oversized_uploads_are_refused_with_reasons(review_ws, data_dir):
    from faceset.serve import create_app

    c = TestClient(create_app(review_ws, max_upload=1024 * 1024))
    csrf = _csrf(c, "/forget")
    cases = {
        "not_image": b"#!/bin/sh\necho hi\n" * 20,
        "zero_byte": b"",
    }
    jpg = next((data_dir / "identities").rglob("*.jpg")).read_bytes()
    cases["truncated"] = jpg[: len(jpg) // 3]
    for code, blob in cases.items():
        r = c.post("/forget", data={"csrf": csrf}, files={"selfie": ("x.jpg", blob, "image/jpeg")})
        assert r.status_code == 400, (code, r.status_code, r.text[:200])
        assert code in r.json()["error"] or (code == "zero_byte" and "selfie" in r.json()["error"])
    r = c.post("/forget", data={"csrf": csrf}, files={"selfie": ("big.jpg", b"\xff\xd8\xff" + b"0" * (2 << 20))})
    assert r.status_code == 413
    r = c.post("/forget", data={"csrf": csrf}, files=[("selfie", (f"{i}.jpg", jpg)) for i in range(12)])
    assert 400 <= r.status_code < 500
    assert c.get("/healthz").status_code == 200


def test_rejected_files_page_lists_each_refused_file_with_its_reason_and_filters_and_pages(tmp_path, data_dir,
                                                                                           monkeypatch):
    from faceset import init_workspace
    from faceset.ingest import ingest
    from faceset.serve import app as app_mod
    from faceset.serve import create_app

    src = tmp_path / "photos"
    src.mkdir()
    jpgs = sorted((data_dir / "utkface" / "images").glob("*.jpg"))[:2]
    for p in jpgs:
        shutil.copyfile(p, src / p.name)
    (src / "cut.jpg").write_bytes(jpgs[0].read_bytes()[:300])
    (src / "empty.jpg").write_bytes(b"")
    (src / "notes.jpg").write_bytes(b"this is not a picture\n" * 20)
    ws = init_workspace(tmp_path / "ws")
    ingest(ws, [src], license="cc-by", consent="consent", progress=False)
    counts = ws.catalog.images.rejected_by_reason()
    assert sum(counts.values()) == 3, counts
    c = TestClient(create_app(ws))
    r = c.get("/rejected", headers=HTML)
    assert r.status_code == 200, r.text[:300]
    for name in ("cut.jpg", "empty.jpg", "notes.jpg"):
        assert name in r.text
    assert jpgs[0].name not in r.text  # accepted files are not listed
    assert "zero_byte" in r.text
    assert 'href="/rejected"' in c.get("/images", headers=HTML).text
    only = c.get("/rejected?reason=zero_byte", headers=HTML).text
    assert "empty.jpg" in only and "cut.jpg" not in only and "notes.jpg" not in only
    assert c.get("/rejected?reason=nope").status_code == 400
    assert "script-src 'self'" in r.headers["content-security-policy"]
    # keyset pages: one file per page, following "more" visits each rejected file once
    monkeypatch.setattr(app_mod, "PAGE_REJECTED", 1)
    c = TestClient(create_app(ws))
    seen, url = [], "/rejected"
    while url:
        t = c.get(url, headers=HTML).text
        seen += [n for n in ("cut.jpg", "empty.jpg", "notes.jpg") if n in t]
        m = re.search(r'href="(/rejected\?[^"]*after=[^"]*)" rel="next"', t)
        url = m.group(1).replace("&amp;", "&") if m else None
    assert sorted(seen) == ["cut.jpg", "empty.jpg", "notes.jpg"]
    # a reviewer (not the owner) sees reasons, never the original paths
    c = TestClient(create_app(ws, token="rev-token", owner_token="own-token"))
    csrf = _csrf(c, "/login")
    assert c.post("/login", data={"token": "rev-token", "csrf": csrf}, follow_redirects=False).status_code == 303
    t = c.get("/rejected", headers=HTML).text
    assert "zero_byte" in t and "owner only" in t
    assert not any(n in t for n in ("cut.jpg", "empty.jpg", "notes.jpg"))
    ws.close()
