"""Consented collection (issue #13): campaigns (CLI + library), the portal at /c/<campaign> through an
in-process client (open without the token, consent with two scopes, selfie + photos with a bystander, a
stranger and hostile files, self-reported labels, receipt), then withdrawal by code (wrong code refused
without saying whether anyone exists, second withdrawal says done) and a byte search for what is left."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from faceset import collect, init_workspace  # noqa: E402

HTML = {"accept": "text/html"}
SELFIE = "jack_dorsey/img16.jpg"
MINE = ["jack_dorsey/img17.jpg", "jack_dorsey/img62.jpg"]  # img62 shows a second person
STRANGER = "matt_damon/img31.jpg"
SECRET_LABEL = "zebra-violet-42"  # a self-described value nothing else in the workspace holds


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    root = tmp_path_factory.mktemp("portal")
    (root / "purpose.md").write_text("# Why\nA fairness benchmark built only from consented photos.\n")
    (root / "consent.md").write_text("I agree to the uses I tick. I can withdraw at any time.\n")
    ws = init_workspace(root / "ws")
    yield ws, root
    ws.close()


def test_campaign_cli_create_list_new_consent_version_close(portal):
    from faceset.cli import app

    ws, root = portal
    r = CliRunner().invoke(app, ["campaign", "create", "-w", str(ws.root), "--title", "Faces 2026", "--purpose",
                                 str(root / "purpose.md"), "--consent", str(root / "consent.md"), "--scopes",
                                 "dataset,training,publication", "--labels", "gender:self_described,age_range",
                                 "--max-photos", "7", "--json"])
    assert r.exit_code == 0, r.output
    info = collect.campaign_info(ws, "faces-2026")
    assert info.consent_version == 1 and info.scopes == ["dataset", "training", "publication"]
    assert info.labels[0] == ["gender", "self_described"] and info.labels[1][1].startswith("choice:18-24")
    # a second campaign: a changed consent text is a new version; closing it shuts the portal
    collect.create_campaign(ws, title="Other", purpose="p", consent="v1 text", scopes="dataset")
    assert collect.update_consent(ws, "other", "v1 text").consent_version == 1  # unchanged text: same version
    v2 = collect.update_consent(ws, "other", "v2 text")
    assert v2.consent_version == 2 and v2.consent_sha256 == collect.sha256_text("v2 text")
    r = CliRunner().invoke(app, ["campaign", "close", "-w", str(ws.root), "other"])
    assert r.exit_code == 0, r.output
    with pytest.raises(collect.CampaignNotFound):
        collect.open_campaign(ws, "other")
    bad = CliRunner().invoke(app, ["campaign", "create", "-w", str(ws.root), "--title", "x", "--purpose",
                                   str(root / "purpose.md"), "--consent", str(root / "consent.md"), "--scopes", "spam"])
    assert bad.exit_code == 2


def _csrf(c: TestClient, path: str) -> str:
    r = c.get(path, headers=HTML)
    assert r.status_code == 200, r.text[:300]
    return re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)


def test_contribute_receipt_withdraw_and_no_trace(portal, data_dir):
    from faceset.serve import create_app
    from faceset.store import Store

    ws, root = portal
    ids = data_dir / "identities"
    c = TestClient(create_app(ws, token="s3cret-token-x"))
    assert c.get("/", headers=HTML, follow_redirects=False).status_code == 303  # the review app needs the token
    assert c.get("/c/other", headers=HTML).status_code == 404  # closed
    page = c.get("/c/faces-2026", headers=HTML)
    assert page.status_code == 200 and "consented photos" in page.text
    assert collect.campaign_info(ws, "faces-2026").consent_sha256 in page.text
    csrf = _csrf(c, "/c/faces-2026")
    jpg = (ids / MINE[0]).read_bytes()
    files = [("selfie", ("me.jpg", (ids / SELFIE).read_bytes(), "image/jpeg"))]
    files += [("photos", (p.split("/")[1], (ids / p).read_bytes(), "image/jpeg")) for p in [*MINE, STRANGER]]
    files += [("photos", ("cut.jpg", jpg[: len(jpg) // 3], "image/jpeg")),
              ("photos", ("script.jpg", b"<svg onload=alert(1)>" * 50, "image/jpeg")),
              ("photos", ("bomb.png", _bomb(), "image/png")), ("photos", ("empty.jpg", b"", "image/jpeg"))]
    form = {"csrf": csrf, "scope": ["dataset", "training"], "adult": "1", "is_me": "1",
            "label_gender": SECRET_LABEL, "label_age_range": "prefer_not_to_say"}
    # without the confirmations nothing is stored
    r = c.post("/c/faces-2026", data={k: v for k, v in form.items() if k != "adult"}, files=files, headers=HTML)
    assert r.status_code == 400 and "adult" in r.text
    assert ws.catalog.scalar("SELECT COUNT(*) FROM images") == 0
    r = c.post("/c/faces-2026", data=form, files=files, headers=HTML)
    assert r.status_code == 200, r.text[:500]
    code = re.search(r'id="withdrawal-code">([^<]+)<', r.text).group(1)
    rejected = re.search(r'<ul id="rejected">(.*?)</ul>', r.text, re.S).group(1)
    assert "does not match your selfie" in rejected and "truncated" in rejected and "not_image" in rejected
    assert "bomb" in rejected and "zero_byte" in rejected and "<svg" not in r.text
    assert "dataset, training" in r.text and "blurred" in r.text

    cat = ws.catalog
    assert cat.scalar("SELECT COUNT(*) FROM images i JOIN sources s ON s.id=i.source_id WHERE s.kind='campaign'") == 2
    assert [tuple(x) for x in cat.q("SELECT consent FROM people")] == [("consent",)]
    assert {tuple(x) for x in cat.q("SELECT name, value, origin FROM labels")} == {
        ("gender", SECRET_LABEL, "self_reported")}
    assert sorted(x[0] for x in cat.q("SELECT scope FROM scopes")) == ["dataset", "training"]
    assert cat.scalar("SELECT COUNT(*) FROM contributions WHERE code_hash=?", (collect.code_hash(code),)) == 1
    assert cat.scalar("SELECT COUNT(*) FROM faces WHERE is_main=1 AND person_id IS NOT NULL") == 2
    assert cat.campaigns.scopes_of_faces([x[0] for x in cat.q("SELECT id FROM faces")])  # contributors' ticks

    # consent expiry is a withdrawal: the dry run counts it (nothing erased)
    with cat.tx():
        cat.execute("UPDATE campaigns SET expires='2000-01-01' WHERE slug='faces-2026'")
    assert collect.expire(ws, dry_run=True)["contributions"] == 1
    with cat.tx():
        cat.execute("UPDATE campaigns SET expires=NULL WHERE slug='faces-2026'")

    # the curator exports: both photos (dataset ticked), the datasheet names the consent text hash, the scopes
    # and the self-reported label; a contributor without 'dataset' would be left out
    from faceset.curate import assign_splits, cluster_people
    from faceset.export.core import export, refresh
    from faceset.export.select import select_items

    cluster_people(ws, progress=False)
    assign_splits(ws)
    out = root / "export"
    assert export(ws, out, what="crops", progress=False).to_dict()
    sheet = (out / "datasheet.md").read_text()
    assert "### Consented collection" in sheet and collect.campaign_info(ws, "faces-2026").consent_sha256 in sheet
    assert "`dataset` 1" in sheet and "self_reported" in sheet and "gender" in sheet
    import csv

    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["self_reported"] == "gender" for r in rows if r.get("label_gender")), rows
    assert any(r.get("label_gender") for r in rows)
    card = "\n".join(collect.card_lines_for("export", str(out)) + collect.card_lines_for("workspace", str(ws.root)))
    assert card.count(collect.campaign_info(ws, "faces-2026").consent_sha256) == 2 and "self_reported" in card
    assert len(select_items(ws, what="crops", salt="x").items) == 2
    with cat.tx():
        cat.execute("DELETE FROM scopes WHERE scope='dataset'")
    sel = select_items(ws, what="crops", salt="x")
    assert not sel.items and sel.skipped["scope_not_given"] == 2
    with cat.tx():
        cat.execute("INSERT INTO scopes(contribution_id, scope) SELECT id, 'dataset' FROM contributions")

    # what must be gone afterwards
    store = Store(ws.root / "store")
    pats = {"label": SECRET_LABEL.encode(), "upload": (ids / MINE[0]).read_bytes()[-4096:]}
    for fid, emb, chip in cat.q("SELECT id, embedding, chip_key FROM faces"):
        pats[f"face {fid} embedding"] = bytes(emb)
        pats[f"face {fid} chip"] = store.get(chip)
    for fid, crop in cat.q("SELECT id, crop_key FROM faces"):
        pats[f"face {fid} crop"] = store.get(crop)
    for iid, key, sha in cat.q("SELECT id, store_key, sha256 FROM images"):
        pats[f"image {iid}"] = store.get(key)
        pats[f"image {iid} sha"] = sha.encode()

    def hits():
        return [f"{k} in {p.relative_to(root)}" for d in (ws.root, out) for p in d.rglob("*") if p.is_file()
                for k, v in pats.items() if v in p.read_bytes()]

    assert hits()
    wcsrf = _csrf(c, "/c/faces-2026/withdraw")
    wrong = c.post("/c/faces-2026/withdraw", data={"csrf": wcsrf, "code": "not-a-real-code"}, headers=HTML)
    assert wrong.status_code == 400 and collect.REFUSED in wrong.text
    r = c.post("/c/faces-2026/withdraw", data={"csrf": wcsrf, "code": code}, headers=HTML)
    assert r.status_code == 200 and "Erased: 2 photos" in r.text, r.text[:400]
    assert cat.scalar("SELECT COUNT(*) FROM exports WHERE stale=1") == 1
    refresh(ws, progress=False)
    ws.catalog.close()
    assert not hits(), hits()[:5]
    again = c.post("/c/faces-2026/withdraw", data={"csrf": wcsrf, "code": code}, headers=HTML)
    assert again.status_code == 200 and "already withdrawn" in again.text
    assert cat.scalar("SELECT COUNT(*) FROM people") == 0 and cat.scalar("SELECT COUNT(*) FROM blocklist") == 1
    # blocked: the same person cannot contribute again
    with pytest.raises(collect.CollectError, match="cannot be accepted"):
        collect.contribute(ws, "faces-2026", scopes=["dataset"], adult=True, is_me=True,
                           selfie=(ids / SELFIE).read_bytes(), photos=[("a", (ids / MINE[0]).read_bytes())])
    assert c.get("/c/faces-2026", headers=HTML).status_code == 200  # still serving
    # per-address rate limit
    c.app.state.portal_limiter.limits["withdraw"] = (0, 600)
    r = c.post("/c/faces-2026/withdraw", data={"csrf": wcsrf, "code": code}, headers=HTML)
    assert r.status_code == 429 and "too many" in r.text


def _bomb() -> bytes:
    """A tiny PNG whose header claims 30000 x 30000 pixels."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    png = bytearray(buf.getvalue())
    png[16:24] = (30000).to_bytes(4, "big") * 2
    return bytes(png)


def test_portal_refuses_without_csrf_and_over_the_file_cap(tmp_path):
    from faceset.serve import create_app

    ws = init_workspace(tmp_path / "ws")
    collect.create_campaign(ws, title="Cap", purpose="p", consent="c", scopes="dataset", max_photos=2)
    c = TestClient(create_app(ws, token="s3cret-token-y"))
    csrf = _csrf(c, "/c/cap")
    files = [("photos", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(5)]
    r = c.post("/c/cap", data={"csrf": csrf, "scope": "dataset"}, files=files, headers=HTML)
    assert r.status_code == 400 and "at most 2 photos" in r.text
    r = c.post("/c/cap", data={"scope": "dataset"}, files=files[:1], headers=HTML)
    assert r.status_code == 400 and "reload the page" in r.text
    assert ws.catalog.scalar("SELECT COUNT(*) FROM contributions") == 0
    ws.close()
