"""Blocklist templates: what is stored (and what is not), matching, removal."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from faceset.cli import app
from faceset.privacy import blocklist


def _person(rng, n, centre=None):
    c = rng.normal(size=128) if centre is None else centre
    return (c + 0.05 * rng.normal(size=(n, 128))).astype(np.float32), c


def test_template_is_a_float16_unit_centroid_and_nothing_else(ws):
    rng = np.random.default_rng(0)
    faces, _ = _person(rng, 6)
    bid = blocklist.add_template(ws, faces, radius=0.36)
    row = dict(ws.catalog.one("SELECT * FROM blocklist WHERE id=?", (bid,)))
    assert set(row) == {"id", "template", "radius", "created_at"}
    t = np.frombuffer(row["template"], np.float16)
    assert t.shape == (128,) and abs(float(np.linalg.norm(t.astype(np.float32))) - 1) < 1e-2
    # No single input embedding is stored: every raw row differs from the template.
    for e in faces:
        assert e.astype(np.float16).tobytes() != row["template"]
    audit = ws.catalog.q("SELECT details FROM audit WHERE action='blocklist_add'")
    assert len(audit) == 1 and "template" not in audit[0]["details"]


def test_blocked_mask_matches_only_that_person(ws):
    rng = np.random.default_rng(1)
    enrol, centre = _person(rng, 3)
    later, _ = _person(rng, 4, centre)
    stranger, _ = _person(rng, 4)
    assert blocklist.blocked_mask(ws, later).tolist() == [False] * 4  # empty blocklist blocks nobody
    bid = blocklist.add_template(ws, enrol, radius=0.36)
    stored = ws.catalog.scalar("SELECT template FROM blocklist WHERE id=?", (bid,))
    mask = blocklist.blocked_mask(ws, np.concatenate([later, stranger]))
    assert mask.tolist() == [True] * 4 + [False] * 4
    assert blocklist.blocked_mask(ws, np.zeros((0, 128), np.float32)).shape == (0,)

    r = CliRunner()
    listed = r.invoke(app, ["consent", "blocklist", "-w", str(ws.root), "--json"])
    assert listed.exit_code == 0 and '"radius": 0.36' in listed.stdout and "template" not in listed.stdout
    assert r.invoke(app, ["consent", "unblock", str(bid), "-w", str(ws.root)]).exit_code == 0
    assert not blocklist.blocked_mask(ws, later).any()
    assert ws.catalog.scalar("SELECT COUNT(*) FROM blocklist") == 0
    for f in ws.root.glob("catalog.db*"):  # unblocking leaves no copy of the template on disk
        assert stored not in f.read_bytes()
    assert r.invoke(app, ["consent", "unblock", str(bid), "-w", str(ws.root)]).exit_code == 2
