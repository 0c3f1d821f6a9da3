"""People clustering on real photos: purity, every face assigned, incremental with stable ids."""

import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import read_labels
from faceset import init_workspace, open_workspace
from faceset.cli import app
from faceset.curate import assign_splits, cluster_people, find_duplicates


def _main_identity(ws):
    """face id -> (person id, identity label) for main faces of labelled photos."""
    return {r[0]: (r[1], r[2]) for r in ws.catalog.q(
        """SELECT f.id, f.person_id, l.value FROM faces f JOIN labels l ON l.image_id=f.image_id AND l.name='identity'
           WHERE f.is_main=1""")}


def _pairwise_f(pairs):
    pred = Counter(p for p, _ in pairs)
    true = Counter(t for _, t in pairs)
    both = Counter(pairs)
    c2 = lambda c: sum(n * (n - 1) / 2 for n in c.values())
    tp = c2(both)
    p, r = tp / c2(pred), tp / c2(true)
    return 2 * p * r / (p + r)


def test_people_are_pure_and_complete(curated_ws):
    ws = open_workspace(curated_ws)
    m = _main_identity(ws)
    assert len(m) > 100
    people = defaultdict(set)
    for pid, ident in m.values():
        people[pid].add(ident)
    impure = {p: v for p, v in people.items() if len(v) > 1}
    assert not impure
    assert _pairwise_f(list(m.values())) >= 0.95
    # every face with an embedding has a person, bystanders in group shots too
    assert ws.catalog.scalar("SELECT COUNT(*) FROM faces WHERE embedding IS NOT NULL AND person_id IS NULL") == 0
    assert ws.catalog.scalar("SELECT COUNT(*) FROM faces WHERE is_main=0 AND person_id IS NOT NULL") > 0
    # one person appears at most once per photo (tiny crowd faces must not chain into one person)
    assert ws.catalog.scalar(
        "SELECT COUNT(*) FROM (SELECT 1 FROM faces WHERE person_id IS NOT NULL "
        "GROUP BY person_id, image_id HAVING COUNT(*) > 1)") == 0
    # n_faces and centroids maintained
    for r in ws.catalog.q("SELECT id, n_faces, centroid FROM people WHERE n_faces > 0"):
        assert r["n_faces"] == ws.catalog.scalar("SELECT COUNT(*) FROM faces WHERE person_id=?", (r["id"],))
        assert r["centroid"] is not None and len(r["centroid"]) == 128 * 4
    ws.close()


def test_people_json_lists_every_face_with_source_path(curated_ws, tmp_path):
    shutil.copytree(curated_ws, tmp_path / "ws")
    res = CliRunner().invoke(app, ["people", "-w", str(tmp_path / "ws"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    ws = open_workspace(tmp_path / "ws")
    assert len(out["faces"]) == ws.catalog.scalar("SELECT COUNT(*) FROM faces")
    assert out["report"]["assigned_now"] == 0  # a rerun assigns nothing new
    ident_uri = ws.catalog.scalar("SELECT uri FROM sources WHERE name LIKE 'identities%'")
    ident = {r["file"] for r in read_labels(Path(ident_uri))}
    assert all(f["path"] for f in out["faces"])
    assert {f["path"] for f in out["faces"]} & ident
    assert all(Path(f["source_path"]).is_file() for f in out["faces"])  # folder sources: the original file
    assert out["report"]["people"] == len(out["people"]) == len(
        {f["person_id"] for f in out["faces"] if f["person_id"]})
    ws.close()


def _link_folder(dst: Path, files: list[Path]) -> Path:
    dst.mkdir(parents=True)
    for f in files:
        d = dst / f.parent.name
        d.mkdir(exist_ok=True)
        (d / f.name).symlink_to(f)
    return dst


def test_incremental_new_photos_keep_ids_and_splits(tmp_path, data_dir):
    """Half of 8 people's photos first; then the other half plus 2 new people. Nothing moves."""
    from faceset.ingest import ingest
    from faceset.scan import scan

    d = data_dir / "identities"
    rows = read_labels(d)
    names = sorted({r["identity"] for r in rows if not r["identity"].startswith("john_")})
    by = defaultdict(list)
    for r in rows:
        by[r["identity"]].append(d / r["file"])
    first_people, later_people = names[:8], names[8:10]
    first = [f for n in first_people for f in by[n][::2]]
    second = [f for n in first_people for f in by[n][1::2]] + [f for n in later_people for f in by[n]]
    ws = init_workspace(tmp_path / "ws")
    kw = dict(license="t", consent="research_exemption", labels="folder:identity", progress=False)
    ingest(ws, [_link_folder(tmp_path / "a", first)], **kw)
    scan(ws, workers=2, progress=False)
    find_duplicates(ws, progress=False)
    r1 = cluster_people(ws)
    assign_splits(ws, ratios=(0.5, 0.25, 0.25), seed=3)
    face_person = {r[0]: r[1] for r in ws.catalog.q("SELECT id, person_id FROM faces")}
    person_split = {r[0]: r[1] for r in ws.catalog.q("SELECT id, split FROM people")}
    ident_person = {ident: pid for pid, ident in _main_identity(ws).values()}

    ingest(ws, [_link_folder(tmp_path / "b", second)], **kw)
    scan(ws, workers=2, progress=False)
    find_duplicates(ws, progress=False)
    r2 = cluster_people(ws)
    rep = assign_splits(ws, ratios=(0.5, 0.25, 0.25), seed=99)  # another seed must not move anyone
    # old faces keep their person, old people keep their split, ids are not renumbered
    now = {r[0]: r[1] for r in ws.catalog.q("SELECT id, person_id FROM faces")}
    assert all(now[f] == p for f, p in face_person.items())
    ids = ",".join(map(str, person_split))
    assert {r[0]: r[1] for r in ws.catalog.q("SELECT id, split FROM people WHERE id IN (%s)" % ids)} == person_split
    assert rep.already_assigned == len([p for p, s in person_split.items() if s])
    # new photos of known people join them; new people get new ids
    m = _main_identity(ws)
    for pid, ident in m.values():
        if ident in ident_person:
            assert pid == ident_person[ident], ident
        else:
            assert pid not in person_split
    assert r2.joined_existing > 0 and r2.new_people >= len(later_people)
    assert r1.new_people >= len(first_people)
    # identity-disjoint after the rerun: no true identity in two splits
    split_of = {r[0]: r[1] for r in ws.catalog.q("SELECT id, split FROM people")}
    sides = defaultdict(set)
    for pid, ident in m.values():
        sides[ident].add(split_of[pid])
    assert all(len(s) == 1 for s in sides.values())
    ws.close()


def test_interrupted_clustering_writes_nothing_and_rerun_completes(curated_ws, tmp_path, monkeypatch):
    from faceset.curate import people as people_mod

    shutil.copytree(curated_ws, tmp_path / "ws")
    ws = open_workspace(tmp_path / "ws")
    want = {r[0]: r[1] for r in ws.catalog.q("SELECT id, person_id FROM faces")}
    with ws.catalog.tx() as c:
        c.execute("UPDATE faces SET person_id=NULL")
        c.execute("DELETE FROM people")

    def die(_ws):
        raise KeyboardInterrupt

    monkeypatch.setattr(people_mod, "_refresh_people", die)
    with pytest.raises(KeyboardInterrupt):
        cluster_people(ws)
    assert ws.catalog.scalar("SELECT COUNT(*) FROM faces WHERE person_id IS NOT NULL") == 0
    assert ws.catalog.scalar("SELECT COUNT(*) FROM people") == 0
    monkeypatch.undo()
    rep = cluster_people(ws)
    assert rep.assigned_now == len(want)
    # same partition as the first run (ids may differ: the old rows are gone)
    got = {r[0]: r[1] for r in ws.catalog.q("SELECT id, person_id FROM faces")}
    inv = defaultdict(set)
    for f, p in got.items():
        inv[p].add(f)
    old = defaultdict(set)
    for f, p in want.items():
        old[p].add(f)
    assert sorted(map(sorted, inv.values())) == sorted(map(sorted, old.values()))
    ws.close()


def test_refresh_centroids_of_some_people_matches_a_full_refresh(curated_ws, tmp_path):
    shutil.copytree(curated_ws, tmp_path / "ws")
    ws = open_workspace(tmp_path / "ws")
    want = {r[0]: (r[1], r[2]) for r in ws.catalog.q("SELECT id, n_faces, centroid FROM people")}
    some = sorted(want)[::3]
    with ws.catalog.tx() as c:
        c.execute("UPDATE people SET n_faces=0, centroid=NULL")
        ws.catalog.people.refresh_centroids(some)
    got = {r[0]: (r[1], r[2]) for r in ws.catalog.q("SELECT id, n_faces, centroid FROM people")}
    assert {p: got[p] for p in some} == {p: want[p] for p in some}
    assert all(got[p] == (0, None) for p in want if p not in some)
    with ws.catalog.tx():
        ws.catalog.people.refresh_centroids()
    assert {r[0]: (r[1], r[2]) for r in ws.catalog.q("SELECT id, n_faces, centroid FROM people")} == want
    ws.close()
