"""Consent ledger: person > image > source precedence, expiry, CLI view/change, audit entries."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pytest
from typer.testing import CliRunner

from faceset.catalog import now
from faceset.cli import app
from faceset.privacy.consent import ConsentError, effective_consent, ledger, set_consent


@pytest.fixture
def ledger_ws(ws, data_dir, tmp_path):
    """Two real photos in two sources, plus one face row per image and a person for the first."""
    from faceset.ingest import ingest

    for name, person in (("a", "barack_obama"), ("b", "joe_biden")):
        d = tmp_path / name
        d.mkdir()
        src = sorted((data_dir / "identities" / person).glob("*.jpg"))[0]
        (d / src.name).write_bytes(src.read_bytes())
        ingest(ws, [d], license="test-only", consent="consent" if name == "a" else "unknown",
               source_name=name, progress=False, workers=1)
    with ws.catalog.tx() as c:
        pid = c.execute("INSERT INTO people(created_at) VALUES (?)", (now(),)).lastrowid
        for img in c.execute("SELECT id FROM images ORDER BY id").fetchall():
            c.execute("INSERT INTO faces(image_id, idx, x, y, w, h, embedding, person_id) VALUES (?,0,1,1,10,10,?,?)",
                      (img["id"], np.zeros(128, np.float32).tobytes(), pid if img["id"] == 1 else None))
    return ws


def test_precedence_person_over_image_over_source(ledger_ws):
    ws = ledger_ws
    e = effective_consent(ws)
    assert {k: (v.basis, v.level) for k, v in e.images.items()} == {1: ("consent", "source"), 2: ("unknown", "source")}
    assert not e.images[2].usable() and e.images[1].usable()

    set_consent(ws, "license", image=2)
    e = effective_consent(ws)
    assert (e.images[2].basis, e.images[2].level) == ("license", "image")
    assert e.faces[2] == e.images[2]

    past = (date.today() - timedelta(days=1)).isoformat()
    set_consent(ws, "consent", person=1, expires=past)
    e = effective_consent(ws)
    assert (e.faces[1].basis, e.faces[1].level, e.faces[1].expires) == ("consent", "person", past)
    assert e.faces[1].expired() and not e.faces[1].usable()
    assert e.images[1].level == "source"  # the person's basis governs their face, not the photo
    s = e.summary()
    assert s["faces_expired"] == 1 and s["faces_usable"] == 1


def test_source_change_and_errors(ledger_ws):
    ws = ledger_ws
    future = (date.today() + timedelta(days=30)).isoformat()
    assert set_consent(ws, "public_domain", source="b", expires=future) == 1
    e = effective_consent(ws).images[2]
    assert (e.basis, e.expires) == ("public_domain", future) and e.usable()
    with pytest.raises(ConsentError, match="unknown basis"):
        set_consent(ws, "because", source="b")
    with pytest.raises(ConsentError, match="bad expiry"):
        set_consent(ws, "consent", source="b", expires="next week")
    with pytest.raises(ConsentError, match="no source"):
        set_consent(ws, "consent", source="nope")
    with pytest.raises(ConsentError, match="exactly one"):
        set_consent(ws, "consent", source="b", person=1)
    audits = [json.loads(r["details"]) for r in ws.catalog.q("SELECT details FROM audit WHERE action='consent_set'")]
    assert audits == [{"basis": "public_domain", "expires": future, "level": "source", "target": "b"}]


def test_cli_list_and_set(ledger_ws):
    ws = ledger_ws
    r = CliRunner()
    w = str(ws.root)
    out = r.invoke(app, ["consent", "set", "-w", w, "--person", "1", "--basis", "research_exemption",
                         "--expires", "2999-01-01", "--json"])
    assert out.exit_code == 0, out.output
    listed = json.loads(r.invoke(app, ["consent", "list", "-w", w, "--json"]).stdout)
    assert [s["basis"] for s in listed["sources"]] == ["consent", "unknown"]
    assert listed["people"] == [{"person": 1, "basis": "research_exemption", "expires": "2999-01-01", "faces": 0}]
    assert listed["effective"]["faces_by_basis"] == {"research_exemption": 1, "unknown": 1}
    assert "research_exemption" in r.invoke(app, ["consent", "list", "-w", w]).stdout
    bad = r.invoke(app, ["consent", "set", "-w", w, "--source", "a", "--basis", "maybe"])
    assert bad.exit_code == 2 and "unknown basis" in bad.output
    assert ledger(ws)["sources"][0]["basis"] == "consent"  # the failed call changed nothing


def test_exports_follow_the_effective_basis(curated_ws, tmp_path):
    """Export leaves out exactly the faces effective_consent calls unusable, and nothing else changes."""
    import shutil

    from faceset import open_workspace
    from faceset.export import export

    shutil.copytree(curated_ws, tmp_path / "ws")
    ws = open_workspace(tmp_path / "ws")

    def exported(out):
        rep = export(ws, tmp_path / out, what="crops", faces="all", progress=False)
        return {r[0] for r in ws.catalog.q("SELECT face_id FROM export_items WHERE export_id=?", (rep.export_id,))}

    set_consent(ws, "consent", source="identities")
    set_consent(ws, "consent", source="groups")
    everyone = exported("all")  # what the other filters (quality, duplicates, splits) let through
    set_consent(ws, "unknown", source="groups")
    by_person = {}
    for r in ws.catalog.q("SELECT id, person_id, image_id FROM faces WHERE person_id IS NOT NULL"):
        if r["id"] in everyone:
            by_person.setdefault(r["person_id"], []).append(r["id"])
    big = sorted(by_person, key=lambda p: -len(by_person[p]))
    set_consent(ws, "unknown", person=big[0])                        # person beats its source
    set_consent(ws, "license", person=big[1], expires="2000-01-01")  # expired
    group_face = ws.catalog.one(
        f"SELECT f.id, f.image_id FROM faces f JOIN images i ON i.id=f.image_id JOIN sources s ON s.id=i.source_id "
        f"WHERE s.name='groups' AND f.id IN ({','.join('?' * len(everyone))}) "
        f"AND (f.person_id IS NULL OR f.person_id NOT IN (?, ?)) LIMIT 1", [*everyone, big[0], big[1]])
    set_consent(ws, "public_domain", image=group_face["image_id"])   # image beats its source

    eff = effective_consent(ws)
    unusable = {f for f, e in eff.faces.items() if not e.usable()}
    assert {eff.faces[f].level for f in everyone & unusable} == {"person", "source"}
    after = exported("some")
    assert after == everyone - unusable
    assert group_face["id"] in after and eff.faces[group_face["id"]].level == "image"
    sheet = (tmp_path / "some" / "datasheet.md").read_text()
    for basis in {eff.faces[f].basis for f in after}:
        assert f"`{basis}`" in sheet
    ws.close()


def test_consent_expire_is_the_campaign_expiry_dry_run_by_default(tmp_path):
    import json as _json

    from typer.testing import CliRunner

    from faceset import init_workspace
    from faceset.cli import app

    init_workspace(tmp_path / "ws").close()
    a = CliRunner().invoke(app, ["consent", "expire", "-w", str(tmp_path / "ws"), "--json"])
    b = CliRunner().invoke(app, ["campaign", "expire", "-w", str(tmp_path / "ws"), "--json"])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert _json.loads(a.output) == _json.loads(b.output)
    assert _json.loads(a.output)["dry_run"] is True


def test_consent_set_accepts_the_aliases_ingest_accepts_and_names_the_closest(tmp_path, data_dir):
    import pytest as _pytest

    from faceset import init_workspace
    from faceset.ingest import ingest
    from faceset.privacy.consent import ConsentError, ledger, set_consent

    ws = init_workspace(tmp_path / "ws")
    ingest(ws, [data_dir / "identities" / "john_simm"], license="x", consent="consent", source_name="team",
           progress=False)
    assert set_consent(ws, "Research-Exemption", source="team") == 1
    assert ledger(ws)["sources"][0]["basis"] == "research_exemption"
    assert set_consent(ws, "licence", source="team") == 1
    assert ledger(ws)["sources"][0]["basis"] == "license"
    with _pytest.raises(ConsentError, match="did you mean public_domain"):
        set_consent(ws, "public-domian", source="team")
    ws.close()
