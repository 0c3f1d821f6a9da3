"""The contribution portal in a real browser (Playwright + Debian's chromium), as a new participant uses it, on a
server bound with a token (the portal is the only part open without it): consent with two scopes, a selfie and
three photos from identities/ (one also shows another person: blurred; one is someone else: rejected with a
reason), a self-reported label, the receipt; then withdrawal with the code, a byte search of the workspace, a
second withdrawal (already done) and a wrong code (refused, nothing revealed)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium)")

FACESET = str(Path(sys.executable).parent / "faceset")
SELFIE = "jack_dorsey/img16.jpg"
PHOTOS = ["jack_dorsey/img17.jpg", "jack_dorsey/img62.jpg", "matt_damon/img31.jpg"]  # self, self + other, stranger
LABEL = "quokka-amber-7"


def _run(*args: str) -> dict:
    r = subprocess.run([FACESET, *args, "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    base_dir = tmp_path_factory.mktemp("portal-live")
    root = base_dir / "ws"
    (base_dir / "purpose.md").write_text("We build a face dataset only from photos people give us themselves.\n")
    (base_dir / "consent.md").write_text("I agree to the uses I tick, and I may withdraw at any time.\n")
    _run("init", str(root))
    _run("campaign", "create", "-w", str(root), "--title", "Open Faces", "--purpose", str(base_dir / "purpose.md"),
         "--consent", str(base_dir / "consent.md"), "--scopes", "dataset,training,publication",
         "--labels", "gender:self_described,age_range", "--max-photos", "4")
    proc = subprocess.Popen([FACESET, "serve", "-w", str(root), "--port", "0", "--token", "tok-" + "x" * 12, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(f"serve did not start: {proc.stderr.read()[:2000]}")
    base = re.match(r"(http://[^/]+)", json.loads(line)["url"]).group(1)
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/c/open-faces", timeout=5)
            break
        except OSError:
            time.sleep(0.05)
    yield {"root": root, "base": base}
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def test_contribute_then_withdraw_in_a_browser(live, browser, data_dir):
    root, base = live["root"], live["base"]
    ids = data_dir / "identities"
    ctx = browser.new_context(viewport={"width": 1000, "height": 900})
    page = ctx.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(base + "/")
    assert "/login" in page.url  # the review app is locked
    errors.clear()
    page.goto(base + "/c/open-faces")
    assert "only from photos people give us" in page.inner_text("#purpose")
    page.check("#scope-dataset")
    page.check("#scope-training")
    page.check("#adult")
    page.check("#is-me")
    page.set_input_files("#selfie", str(ids / SELFIE))
    page.set_input_files("#photos", [str(ids / p) for p in PHOTOS])
    page.fill("#label-gender", LABEL)
    page.click("#contribute-button", no_wait_after=True)  # analysing the photos takes a while
    page.wait_for_selector("#receipt-summary", timeout=180_000)
    code = page.inner_text("#withdrawal-code").strip()
    assert len(code) >= 16
    assert "2 photos" in page.inner_text("#receipt-summary") and "blurred" in page.inner_text("#receipt-summary")
    assert "does not match your selfie" in page.inner_text("#rejected")
    assert page.inner_text("#receipt-scopes") == "dataset, training"
    assert not page.query_selector("img")  # the portal shows no photos at all
    assert not errors, errors

    # stored: the curator sees them as a consented campaign source with a self-reported label
    status = _run("status", "-w", str(root))
    assert any(s["kind"] == "campaign" and s["images"] == 2 for s in status["sources"])
    db = (root / "catalog.db").read_bytes() + b"".join(p.read_bytes() for p in root.glob("catalog.db-*"))
    assert LABEL.encode() in db and code.encode() not in db  # the code itself is never stored
    store_files = [p for p in (root / "store").rglob("*") if p.is_file()]
    pats = {"label": LABEL.encode()}
    for k, p in enumerate(store_files):
        pats[f"store object {k}"] = p.read_bytes()

    # a wrong code: refused, without saying whether anyone exists
    page.goto(base + "/c/open-faces/withdraw")
    page.fill("#code", "definitely-not-a-code")
    page.click("#withdraw-button", no_wait_after=True)
    page.wait_for_selector("#portal-error")
    refusal = page.inner_text("#portal-error")
    assert "could not be carried out" in refusal
    # the right one erases everything
    page.goto(base + "/c/open-faces/withdraw")
    page.fill("#code", code)
    page.click("#withdraw-button", no_wait_after=True)
    page.wait_for_selector("#withdraw-result", timeout=120_000)
    assert "Erased: 2 photos" in page.inner_text("#withdraw-result")
    hits = [f"{k} in {p.relative_to(root)}" for p in root.rglob("*") if p.is_file()
            for k, v in pats.items() if v in p.read_bytes()]
    assert not hits, hits[:5]
    # a second time: already done
    page.goto(base + "/c/open-faces/withdraw")
    page.fill("#code", code)
    page.click("#withdraw-button", no_wait_after=True)
    page.wait_for_selector("#withdraw-result")
    assert "already withdrawn" in page.inner_text("#withdraw-result")
    ctx.close()
