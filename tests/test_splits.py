"""Identity-disjoint, stable, stratified splits; dataset_faces honours dups, cap and balance."""

import json
from collections import Counter, defaultdict

from typer.testing import CliRunner

from faceset.cli import app
from faceset.curate import assign_splits, cluster_people, dataset_faces, split_params


def _sides_by_identity(ws):
    sides = defaultdict(set)
    for r in ws.catalog.q(
        """SELECT l.value, p.split FROM faces f JOIN people p ON p.id=f.person_id
           JOIN labels l ON l.image_id=f.image_id AND l.name='identity' WHERE f.is_main=1"""):
        sides[r[0]].add(r[1])
    return sides


def _dup_group_sides(ws):
    """kept image id -> splits of every face of every member image."""
    out = defaultdict(set)
    for r in ws.catalog.q(
        """SELECT COALESCE(i.dup_of, i.id) AS g, p.split FROM images i JOIN faces f ON f.image_id=i.id AND f.is_main=1
           JOIN people p ON p.id=f.person_id
           WHERE i.dup_of IS NOT NULL OR i.id IN (SELECT dup_of FROM images WHERE dup_of IS NOT NULL)"""):
        out[r[0]].add(r[1])
    return out


def test_no_identity_and_no_duplicate_group_on_two_sides(cws):
    sides = _sides_by_identity(cws)
    assert len(sides) >= 20 and all(len(s) == 1 for s in sides.values())
    groups = _dup_group_sides(cws)
    assert groups and all(len(s) == 1 for s in groups.values())
    # every person with faces has exactly one split, and all three splits are used
    assert cws.catalog.scalar("SELECT COUNT(*) FROM people WHERE n_faces > 0 AND split IS NULL") == 0
    splits = {r[0] for r in cws.catalog.q("SELECT DISTINCT split FROM people WHERE n_faces > 0")}
    assert splits == {"train", "val", "test"}


def test_rerun_with_other_seed_and_ratios_moves_nobody(cws):
    before = {r[0]: r[1] for r in cws.catalog.q("SELECT id, split FROM people")}
    rep = assign_splits(cws, ratios=(0.2, 0.4, 0.4), seed=12345)
    assert rep.assigned_now == 0
    assert {r[0]: r[1] for r in cws.catalog.q("SELECT id, split FROM people")} == before


def test_same_seed_same_assignment_and_ratios_followed(cws):
    cws.catalog.conn.execute("UPDATE people SET split=NULL")
    a = assign_splits(cws, ratios=(0.6, 0.2, 0.2), seed=7)
    first = {r[0]: r[1] for r in cws.catalog.q("SELECT id, split FROM people")}
    cws.catalog.conn.execute("UPDATE people SET split=NULL")
    assign_splits(cws, ratios=(0.6, 0.2, 0.2), seed=7)
    assert {r[0]: r[1] for r in cws.catalog.q("SELECT id, split FROM people")} == first
    total = sum(a.faces.values())
    # greedy by deficit: each split within one large person of its share
    biggest = cws.catalog.scalar("SELECT MAX(n_faces) FROM people")
    for s, share in zip(("train", "val", "test"), (0.6, 0.2, 0.2)):
        assert abs(a.faces.get(s, 0) - share * total) <= biggest + 1


def test_stratified_by_label_each_split_gets_each_class(cws):
    # a person-level label: the first half of identities 'a', the rest 'b' (via bulk import by person)
    from faceset.curate import import_labels

    idents = sorted(_sides_by_identity(cws))
    rows = cws.catalog.q(
        """SELECT l.image_id, l.value FROM labels l JOIN faces f ON f.image_id=l.image_id AND f.is_main=1
           WHERE l.name='identity'""")
    path = cws.root / "grp.csv"
    with open(path, "w") as f:
        f.write("image_id,label,value\n")
        for r in rows:
            f.write(f"{r[0]},grp,{'a' if idents.index(r[1]) % 2 else 'b'}\n")
    assert import_labels(cws, path).changed == len(rows)
    cws.catalog.conn.execute("UPDATE people SET split=NULL")
    rep = assign_splits(cws, ratios=(0.5, 0.25, 0.25), seed=1, label="grp")
    for s in ("train", "val", "test"):
        assert set(rep.by_label[s]) == {"a", "b"}, rep.by_label
    assert split_params(cws)["label"] == "grp"


def test_dataset_faces_drops_duplicates_caps_and_balances(cws):
    rows = list(dataset_faces(cws, label="identity"))
    dup_images = {r[0] for r in cws.catalog.q("SELECT id FROM images WHERE dup_of IS NOT NULL")}
    assert dup_images and not ({r["image_id"] for r in rows} & dup_images)
    assert all(r["split"] in ("train", "val", "test") and r["label"] for r in rows)
    capped = list(dataset_faces(cws, label="identity", per_person_cap=2))
    per = Counter(r["person_id"] for r in capped)
    assert max(per.values()) == 2 and len(capped) < len(rows)
    # the cap keeps each person's best faces
    best = {}
    for r in rows:
        best.setdefault(r["person_id"], []).append(r)
    for pid, rs in best.items():
        top = sorted(rs, key=lambda r: (-(r["quality"] or 0), r["face_id"]))[:2]
        assert {r["face_id"] for r in capped if r["person_id"] == pid} == {r["face_id"] for r in top}
    bal = list(dataset_faces(cws, label="identity", balance=True))
    for s in {r["split"] for r in bal}:
        counts = Counter(r["label"] for r in bal if r["split"] == s)
        assert len(set(counts.values())) == 1
    # the cap recorded by assign_splits is what exporters get by default
    assign_splits(cws, per_person_cap=3)
    assert max(Counter(r["person_id"] for r in dataset_faces(cws)).values()) <= 3


def test_split_cli_json(cws):
    res = CliRunner().invoke(app, ["split", "-w", str(cws.root), "--json", "--ratios", "0.7,0.15,0.15",
                                   "--per-person-cap", "4"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["assigned_now"] == 0 and out["per_person_cap"] == 4
    bad = CliRunner().invoke(app, ["split", "-w", str(cws.root), "--ratios", "0.7,x"])
    assert bad.exit_code == 2


def test_duplicate_group_across_people_lands_on_one_side(cws):
    """Even if clustering split a duplicate pair into two people, the split keeps them together."""
    grp = next(iter(_dup_group_sides(cws)))
    dup = cws.catalog.scalar("SELECT id FROM images WHERE dup_of=? LIMIT 1", (grp,))
    # move the copy's main face to a brand-new person without a split, as a separate cluster would
    pid = cws.catalog.conn.execute("INSERT INTO people(created_at, n_faces) VALUES ('t', 1)").lastrowid
    cws.catalog.conn.execute("UPDATE faces SET person_id=? WHERE image_id=? AND is_main=1", (pid, dup))
    assign_splits(cws)
    kept_split = cws.catalog.scalar(
        "SELECT p.split FROM faces f JOIN people p ON p.id=f.person_id WHERE f.image_id=? AND f.is_main=1", (grp,))
    assert cws.catalog.scalar("SELECT split FROM people WHERE id=?", (pid,)) == kept_split
    # and people clustering ties the copy back to the kept image's person
    cluster_people(cws)
    assert cws.catalog.scalar("SELECT person_id FROM faces WHERE image_id=? AND is_main=1", (dup,)) != pid
