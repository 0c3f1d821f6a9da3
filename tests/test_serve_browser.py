"""`faceset serve` in a real browser (Playwright driving Debian's chromium) on a copy of the curated workspace:
merge, split, keeper, label fix, a forget request end to end (byte search afterwards), plus raw-HTTP checks of
traversal URLs, hostile uploads and the token/CSRF guards of a server bound with --token. Screenshots of the
people and forget pages go to a temporary folder (to docs/img/, shown by the README, with
FACESET_SCREENSHOTS=docs/img)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import read_labels

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium)")

FACESET = str(Path(sys.executable).parent / "faceset")
# Tests write only to temporary folders: the README's screenshots are refreshed on request,
# `FACESET_SCREENSHOTS=docs/img pytest tests/test_serve_browser.py`.
DOCS_IMG = Path(os.environ["FACESET_SCREENSHOTS"]).resolve() if os.environ.get("FACESET_SCREENSHOTS") else None
WHO = "angelina_jolie"


def _start(root: Path, *extra: str):
    proc = subprocess.Popen([FACESET, "serve", "-w", str(root), "--port", "0", "--json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(f"serve did not start: {proc.stderr.read()[:2000]}")
    url = json.loads(line)["url"]
    base = re.match(r"(http://[^/]+)", url).group(1)
    for _ in range(100):
        try:
            if _raw("GET", base, "/healthz", headers={"Authorization": "x"})[0] in (200, 401):
                break
        except OSError:
            time.sleep(0.05)
    return proc, base


def _stop(proc):
    proc.send_signal(signal.SIGINT)  # Ctrl-C stops it cleanly
    try:
        rc = proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return rc


def _raw(method: str, base: str, path: str, body: bytes | None = None, headers: dict | None = None):
    host, port = base.split("//", 1)[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        c.putrequest(method, path, skip_accept_encoding=True)  # the path goes out exactly as given
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        if body is not None and "Content-Length" not in (headers or {}):
            c.putheader("Content-Length", str(len(body)))
        c.endheaders(body)
        r = c.getresponse()
        return r.status, r.read(), r.getheader("set-cookie")
    finally:
        c.close()


def _q(root: Path, sql: str, params=()):
    c = sqlite3.connect(root / "catalog.db")
    try:
        return c.execute(sql, params).fetchall()
    finally:
        c.close()


@pytest.fixture(scope="module")
def live(curated_ws, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-live") / "ws"
    shutil.copytree(curated_ws, root)
    proc, base = _start(root)
    yield {"root": root, "base": base, "proc": proc}
    assert _stop(proc) == 0


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1200, "height": 760})
    pg = ctx.new_page()
    errors = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.errors = errors
    yield pg
    ctx.close()


def _shot(pg, name: str, tmp: Path) -> Path:
    folder = DOCS_IMG or tmp
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / name
    pg.screenshot(path=str(out))
    if out.stat().st_size >= 280_000:  # face mosaics compress badly: 256 colours are plenty for the README
        from PIL import Image

        with Image.open(out) as im:
            im.convert("RGB").quantize(colors=256).save(out, optimize=True)
    assert out.stat().st_size < 300_000, f"{name} is {out.stat().st_size} bytes"
    return out


def test_merge_two_people_sticks_across_a_people_rerun(live, page, tmp_path):
    root, base = live["root"], live["base"]
    (a, _), (b, nb) = _q(root, "SELECT id, n_faces FROM people WHERE n_faces >= 2 ORDER BY n_faces DESC, id LIMIT 2")
    faces_b = [r[0] for r in _q(root, "SELECT id FROM faces WHERE person_id=?", (b,))]
    page.goto(base + "/people")
    _shot(page, "serve-people.png", tmp_path)
    page.check(f"input[name=other][value='{b}']")
    page.check(f"input[name=keep][value='{a}']")
    page.click("text=merge ticked into kept")
    page.wait_for_url(re.compile(rf"/person/{a}\b"))
    assert "merged" in page.inner_text(".flash")
    assert {r[0] for r in _q(root, f"SELECT DISTINCT person_id FROM faces WHERE id IN "
                                   f"({','.join('?' * len(faces_b))})", faces_b)} == {a}
    assert _q(root, "SELECT action FROM audit ORDER BY id DESC LIMIT 1")[0][0] == "people_merge"
    r = subprocess.run([FACESET, "people", "-w", str(root), "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert {r[0] for r in _q(root, f"SELECT DISTINCT person_id FROM faces WHERE id IN "
                                   f"({','.join('?' * len(faces_b))})", faces_b)} == {a}
    assert not page.errors, page.errors


def test_split_a_face_off_and_fix_a_label(live, page):
    root, base = live["root"], live["base"]
    pid = _q(root, "SELECT id FROM people WHERE n_faces >= 3 ORDER BY n_faces DESC, id LIMIT 1")[0][0]
    fid = _q(root, "SELECT id FROM faces WHERE person_id=? ORDER BY id DESC LIMIT 1", (pid,))[0][0]
    page.goto(f"{base}/person/{pid}")
    page.check(f"input[name=face][value='{fid}']")
    page.click("#split-new")
    page.wait_for_load_state()
    assert "moved 1 faces" in page.inner_text(".flash")
    new = _q(root, "SELECT person_id FROM faces WHERE id=?", (fid,))[0][0]
    assert new not in (None, pid)
    links = _q(root, "SELECT COUNT(*) FROM decisions WHERE kind='cannot_link' AND ? IN (face_a, face_b)", (fid,))
    assert links[0][0] == 1

    page.goto(f"{base}/person/{pid}")
    page.fill("input[name=name]", "identity")
    page.fill("input[name=value]", "checked_by_hand")
    page.click("text=set label")
    page.wait_for_load_state()
    assert "label set" in page.inner_text(".flash")
    vals = {r[0] for r in _q(root, "SELECT l.value FROM labels l JOIN faces f ON f.image_id=l.image_id "
                                   "WHERE f.person_id=? AND f.is_main=1 AND l.name='identity'", (pid,))}
    assert vals == {"checked_by_hand"}
    assert {r[0] for r in _q(root, "SELECT l.origin FROM labels l JOIN faces f ON f.image_id=l.image_id "
                                   "WHERE f.person_id=? AND f.is_main=1 AND l.name='identity'", (pid,))} == {"user"}


def test_choose_a_duplicate_keeper(live, page):
    root, base = live["root"], live["base"]
    page.goto(base + "/duplicates")
    form = page.locator("form[action='/duplicates/keep']").first
    iid = int(form.locator("input[name=image]").get_attribute("value"))
    old = _q(root, "SELECT dup_of FROM images WHERE id=?", (iid,))[0][0]
    form.locator("button").click()
    page.wait_for_load_state()
    assert f"image {iid} is now the kept copy" in page.inner_text(".flash")
    assert _q(root, "SELECT dup_of FROM images WHERE id=?", (iid,))[0][0] is None
    assert _q(root, "SELECT dup_of FROM images WHERE id=?", (old,))[0][0] == iid


def test_forget_request_end_to_end(live, page, data_dir, tmp_path):
    root, base = live["root"], live["base"]
    labels = read_labels(data_dir / "identities")
    selfie = data_dir / "identities" / sorted(r["file"] for r in labels if r["identity"] == WHO)[0]
    page.goto(base + "/forget")
    page.set_input_files("input[name=selfie]", str(selfie))
    page.click("text=find matches")
    page.wait_for_url(re.compile(r"/forget/[\w-]+$"))
    ticked = [int(x) for x in page.eval_on_selector_all("input[name=face]:checked", "els => els.map(e => e.value)")]
    assert len(ticked) >= 3
    _shot(page, "serve-forget.png", tmp_path)
    assert str(selfie.name) not in page.content() and WHO not in page.url

    # what must be gone afterwards: her faces' embeddings, chips, and the stored photos where she is the subject
    marks = ",".join("?" * len(ticked))
    pats = {}
    from faceset.store import Store

    store = Store(root / "store")
    for fid, emb, chip in _q(root, f"SELECT id, embedding, chip_key FROM faces WHERE id IN ({marks})", ticked):
        pats[f"face {fid} embedding"] = bytes(emb)
        pats[f"face {fid} chip"] = store.get(chip) if chip and store.exists(chip) else None
    subjects = [r[0] for r in _q(root, f"SELECT DISTINCT image_id FROM faces WHERE id IN ({marks}) AND is_main=1",
                                 ticked)]
    for iid, key, sha in _q(root, f"SELECT id, store_key, sha256 FROM images WHERE id IN "
                                  f"({','.join('?' * len(subjects))})", subjects):
        pats[f"image {iid} sha256"] = sha.encode()
        pats[f"image {iid} bytes"] = store.get(key) if store.exists(key) else None
    pats = {k: v for k, v in pats.items() if v}
    before = sum(1 for p in root.rglob("*") if p.is_file() and any(v in p.read_bytes() for v in pats.values()))
    assert before > 0  # the search can find her

    page.on("dialog", lambda d: d.accept())
    page.click("#confirm-forget")
    page.wait_for_selector("#forget-audit", timeout=120_000)
    assert "forget" in page.inner_text("#forget-audit")
    assert not _q(root, f"SELECT id FROM faces WHERE id IN ({marks})", ticked)
    assert not _q(root, f"SELECT id FROM images WHERE id IN ({','.join('?' * len(subjects))})", subjects)
    hits = [f"{k} in {p.relative_to(root)}" for p in root.rglob("*") if p.is_file()
            for k, v in pats.items() if v in p.read_bytes()]
    assert not hits, hits[:10]
    assert not list((root / "cache").rglob("*.jpg"))  # thumbnails are derived: shredded with the rest
    page.goto(base + "/audit?action=forget")
    assert "forget" in page.inner_text("table")


def test_traversal_and_hostile_uploads_get_4xx_and_the_server_stays_up(live, data_dir):
    base = live["base"]
    for path in ["/thumb/../../etc/passwd", "/thumb/image/..%2F..%2Fetc%2Fpasswd", "/static/../catalog.db",
                 "/static/..%2Fcatalog.db", "/static/%2e%2e/%2e%2e/etc/passwd", "/media/image/1%00",
                 "/thumb/face/-1", "/image/99999999", "/media/image/..%2Fcatalog.db", "//etc/passwd"]:
        status, body, _ = _raw("GET", base, path)
        assert 400 <= status < 500, (path, status)
        assert b"root:" not in body and b"SQLite format" not in body
    status, body, cookie = _raw("GET", base, "/forget", headers={"Accept": "text/html"})
    sid = re.search(r"faceset_sid=([^;]+)", cookie).group(1)
    csrf = re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()

    def upload(blob: bytes, extra: dict | None = None):
        b = uuid.uuid4().hex
        data = (f"--{b}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n"
                f"--{b}\r\nContent-Disposition: form-data; name=\"selfie\"; filename=\"x.jpg\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + blob + f"\r\n--{b}--\r\n".encode()
        return _raw("POST", base, "/forget", data, {"Content-Type": f"multipart/form-data; boundary={b}",
                                                    "Cookie": f"faceset_sid={sid}", **(extra or {})})

    jpg = next((data_dir / "identities").rglob("*.jpg")).read_bytes()
    s, body, _ = upload(b"<svg onload=alert(1)>" * 50)
    assert s == 400 and b"not_image" in body
    s, body, _ = upload(jpg[: len(jpg) // 3])
    assert s == 400 and b"truncated" in body
    s, body, _ = upload(b"", {"Content-Length": str(200 * 1024 * 1024)})
    assert s == 413
    # a decompression bomb: a tiny PNG that claims 30000 x 30000 pixels
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    png = bytearray(buf.getvalue())
    png[16:24] = (30000).to_bytes(4, "big") * 2
    s, body, _ = upload(bytes(png))
    assert s == 400, body
    assert _raw("GET", base, "/healthz")[0] == 200


def test_a_server_bound_with_a_token_refuses_requests_without_it(curated_ws, tmp_path):
    proc, base = _start(curated_ws, "--token", "test-token-123")  # read-only use of the shared workspace
    try:
        assert _raw("GET", base, "/people")[0] == 401
        assert _raw("GET", base, "/thumb/image/1")[0] == 401
        s, _, _ = _raw("GET", base, "/people", headers={"Accept": "text/html"})
        assert s == 303
        s, body, cookie = _raw("GET", base, "/login", headers={"Accept": "text/html"})
        sid = re.search(r"faceset_sid=([^;]+)", cookie).group(1)
        csrf = re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()
        form = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"faceset_sid={sid}"}
        assert _raw("POST", base, "/people/merge", b"keep=1&other=2", form)[0] == 401
        assert _raw("POST", base, "/login", b"token=test-token-123", form)[0] == 403  # no CSRF token
        assert _raw("POST", base, "/login", f"token=nope&csrf={csrf}".encode(), form)[0] == 401
        s, _, auth = _raw("POST", base, "/login", f"token=test-token-123&csrf={csrf}".encode(), form)
        assert s == 303 and "httponly" in auth.lower() and "samesite=strict" in auth.lower()
        cookie = f"faceset_sid={sid}; " + auth.split(";", 1)[0]
        ok = {**form, "Cookie": cookie}
        assert _raw("GET", base, "/people", headers={"Cookie": cookie})[0] == 200
        assert _raw("POST", base, "/people/merge", b"keep=1&other=2", ok)[0] == 403  # no CSRF token
    finally:
        assert _stop(proc) == 0
