"""Label checks on real UTKFace chips: conflicts per person, label-noise ranking, CSV round trip."""

import csv
import json
import shutil

import pytest
from typer.testing import CliRunner

from faceset import open_workspace
from faceset.cli import app
from faceset.curate import cluster_people, export_labels, import_labels, label_conflicts, label_noise


@pytest.fixture
def uws(utk_ws, tmp_path):
    shutil.copytree(utk_ws, tmp_path / "ws")
    w = open_workspace(tmp_path / "ws")
    cluster_people(w)
    yield w
    w.close()


def _main_gender(ws):
    return {r[0]: (r[1], r[2]) for r in ws.catalog.q(
        """SELECT l.image_id, l.value, f.person_id FROM labels l JOIN faces f ON f.image_id=l.image_id AND f.is_main=1
           WHERE l.name='gender' ORDER BY l.image_id""")}


def test_flipped_labels_rank_high_in_noise(uws, tmp_path):
    g = _main_gender(uws)
    assert len(g) >= 100
    clean = label_noise(uws, "gender", top=len(g))
    assert clean.cv_accuracy >= 0.8  # embeddings carry gender: the finder has a signal to work with
    # flip 8 labels the model was confident about; they must surface near the top
    confident = {s.image_id for s in clean.suspects}
    flip = [i for i in g if i not in confident][::7][:8]
    path = tmp_path / "flip.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "label", "value"])
        for i in flip:
            w.writerow([i, "gender", "female" if g[i][0] == "male" else "male"])
    assert import_labels(uws, path).changed == len(flip)
    rep = label_noise(uws, "gender", top=25)
    found = {s.image_id for s in rep.suspects} & set(flip)
    assert len(found) >= 6, (found, flip)
    # ranked: the list is ordered by how little the model believes the given label
    ps = [s.p_given for s in rep.suspects]
    assert ps == sorted(ps)


def test_conflicts_flag_a_person_with_two_genders(uws, tmp_path):
    base = label_conflicts(uws, label="gender")
    g = _main_gender(uws)
    person_imgs = {}
    for i, (_, p) in g.items():
        person_imgs.setdefault(p, []).append(i)
    clean_people = {c.person_id for c in base.conflicts}
    pid, imgs = next((p, i) for p, i in person_imgs.items() if len(i) >= 2 and p not in clean_people)
    victim = imgs[-1]
    path = tmp_path / "c.csv"
    path.write_text(f"image_id,label,value\n{victim},gender,{'female' if g[victim][0] == 'male' else 'male'}\n")
    import_labels(uws, path)
    rep = label_conflicts(uws, label="gender")
    hit = [c for c in rep.conflicts if c.person_id == pid]
    assert len(hit) == 1 and sum(hit[0].values.values()) == len(imgs)
    assert len(rep.conflicts) == len(base.conflicts) + 1
    # ages vary within a person; only a spread beyond the tolerance conflicts
    ages = label_conflicts(uws, label="age", numeric_tolerance=1000)
    assert ages.conflicts == []


def test_csv_round_trip_bulk_by_person_and_bad_rows(uws, tmp_path):
    out = tmp_path / "labels.csv"
    n = export_labels(uws, out)
    assert n == uws.catalog.scalar("SELECT COUNT(*) FROM labels")
    rows = list(csv.DictReader(open(out, newline="")))
    assert rows and all(r["path"] for r in rows)
    # re-importing the export changes nothing
    rep = import_labels(uws, out)
    assert rep.changed == 0 and rep.unchanged == n and not rep.rejected
    # bulk: one row per person sets the label on all that person's images; bad rows are reported
    g = _main_gender(uws)
    pid = max({p for _, p in g.values()}, key=lambda p: sum(1 for _, q in g.values() if q == p))
    want = [i for i, (_, p) in g.items() if p == pid]
    path = tmp_path / "bulk.csv"
    path.write_text(f"image_id,person_id,label,value\n,{pid},reviewed,yes\nabc,,reviewed,yes\n999999,,reviewed,yes\n,,,x\n")
    rep = import_labels(uws, path)
    assert rep.changed == len(want) and len(rep.rejected) == 3
    assert all(r.startswith("line ") for r in rep.rejected)
    got = {r[0] for r in uws.catalog.q("SELECT image_id FROM labels WHERE name='reviewed' AND origin='user'")}
    assert got == set(want)
    audit = uws.catalog.one("SELECT details FROM audit WHERE action='label_import' ORDER BY id DESC LIMIT 1")[0]
    assert json.loads(audit)["changed"] == len(want)


def test_label_cli(uws, tmp_path):
    r = CliRunner()
    f = tmp_path / "l.csv"
    res = r.invoke(app, ["label", "export", str(f), "-w", str(uws.root), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["rows"] > 0
    res = r.invoke(app, ["label", "conflicts", "-w", str(uws.root), "--json", "--label", "gender"])
    assert res.exit_code == 0 and "conflicts" in json.loads(res.stdout)
    res = r.invoke(app, ["label", "noise", "--label", "gender", "-w", str(uws.root), "--json", "--top", "5"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)["suspects"]) <= 5
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    res = r.invoke(app, ["label", "import", str(bad), "-w", str(uws.root)])
    assert res.exit_code == 2


def test_bad_arguments_are_usage_errors(ws, tmp_path):
    from faceset.errors import NotFound, UsageError

    with pytest.raises(UsageError, match="no image has a label 'gender'"):
        label_noise(ws, "gender")
    with pytest.raises(UsageError, match="no image has a label"):
        label_conflicts(ws, label="gender")
    with pytest.raises(UsageError, match="tolerance"):
        label_conflicts(ws, numeric_tolerance=-1)
    with pytest.raises(UsageError, match="no image has a label"):
        export_labels(ws, tmp_path / "out.csv", label="gender")
    with pytest.raises(NotFound):
        import_labels(ws, tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(UsageError, match="need columns"):
        import_labels(ws, tmp_path / "bad.csv")
