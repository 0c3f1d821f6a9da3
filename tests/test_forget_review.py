"""Issue #10: forget sorts matches into certain (erased on --yes) and needs review (listed, on the contact sheet,
erased only when confirmed or with --include-uncertain), at the operating point for the number of selfies."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from typer.testing import CliRunner

from conftest import read_labels
from faceset.curate.match import params_for

WHO = "jennifer_aniston"



def _selfies(data_dir, n):
    rows = sorted(r["file"] for r in read_labels(data_dir / "identities") if r["identity"] == WHO)
    return [data_dir / "identities" / f for f in rows[:n]]


def _identity_of_images(ws) -> dict[int, str]:
    return {r[0]: r[1] for r in ws.catalog.q("SELECT image_id, value FROM labels WHERE name='identity'")}


@pytest.mark.parametrize("n", [1, 3])
def test_matches_are_certain_or_review_at_the_operating_point(cws, data_dir, n):
    from faceset.privacy import forget

    rep = forget(cws, _selfies(data_dir, n), dry_run=True)
    assert rep.operating_point == asdict(params_for(n)) and rep.selfies == n
    assert rep.matches and {m.certainty for m in rep.matches} <= {"certain", "review"}
    assert len(rep.certain) + len(rep.review) == len(rep.matches)
    ident = _identity_of_images(cws)
    hers = {i for i, v in ident.items() if v == WHO}
    # the certain set holds only her photos (group shots carry no identity label)
    assert all(ident.get(m.image_id, WHO) == WHO for m in rep.certain)
    # certain + review finds every photo of hers that has a face
    with_face = {i for i in hers if cws.catalog.scalar("SELECT COUNT(*) FROM faces WHERE image_id=?", (i,))}
    assert with_face <= {m.image_id for m in rep.matches}
    for m in rep.matches:
        assert m.rms is not None and m.person_distance is not None and m.distance <= m.rms + 1e-6
    # the plan of a plain run is made of the certain matches only
    assert set(rep.plan.faces) == {m.face_id for m in rep.certain}
    d = rep.to_dict()
    assert d["certain_faces"] == len(rep.certain) and d["review_faces"] == len(rep.review)


def test_review_matches_stay_unless_included(cws, data_dir):
    from faceset.privacy import forget

    selfie = _selfies(data_dir, 1)
    dry = forget(cws, selfie, dry_run=True)
    if not dry.review:
        pytest.skip("every match is certain on this fixture: nothing to keep for review")
    rep = forget(cws, selfie)
    left = {r[0] for r in cws.catalog.q(f"SELECT id FROM faces WHERE id IN ({','.join('?' * len(dry.matches))})",
                                         [m.face_id for m in dry.matches])}
    assert left == {m.face_id for m in dry.review}  # certain ones gone, review ones kept
    assert rep.faces_erased + rep.faces_blurred >= len(dry.certain) > 0
    forget(cws, selfie, include_uncertain=True)  # (the blocklist of the first run may purge some first)
    assert not cws.catalog.q(f"SELECT id FROM faces WHERE id IN ({','.join('?' * len(left))})", sorted(left))


def test_cli_lists_review_and_include_uncertain_erases_it(cws, data_dir):
    from faceset.cli import app

    selfies = [str(p) for p in _selfies(data_dir, 2)]
    r = CliRunner()
    out = r.invoke(app, ["forget", *selfies, "-w", str(cws.root), "--dry-run", "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert d["selfies"] == 2 and d["matched_faces"] == d["certain_faces"] + d["review_faces"] > 0
    assert all(m["certainty"] in ("certain", "review") for m in d["matches"])
    out = r.invoke(app, ["forget", *selfies, "-w", str(cws.root), "--dry-run"])
    assert out.exit_code == 0 and "certain" in out.output
    out = r.invoke(app, ["forget", *selfies, "-w", str(cws.root), "--yes", "--include-uncertain", "--json"])
    assert out.exit_code == 0, out.output
    e = json.loads(out.stdout)
    assert e["include_uncertain"] and set(e["plan"]["faces"]) == {m["face_id"] for m in d["matches"]}
    gone = [m["face_id"] for m in d["matches"]]
    assert not cws.catalog.q(f"SELECT id FROM faces WHERE id IN ({','.join('?' * len(gone))})", gone)
