"""Property: whatever arrives in whatever order, no person and no duplicate group straddles splits,
and nobody assigned ever moves (catalog rows built directly; the real-photo tests are in test_splits.py)."""

from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faceset import init_workspace
from faceset.curate import assign_splits

batch = st.lists(  # (person index, duplicate-of earlier image index or None)
    st.tuples(st.integers(0, 12), st.one_of(st.none(), st.integers(0, 60))), min_size=1, max_size=25)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(batch, min_size=1, max_size=4), seed=st.integers(0, 5),
       ratios=st.sampled_from([(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (1, 1, 1)]))
def test_splits_never_move_and_never_straddle(tmp_path_factory, batches, seed, ratios):
    ws = init_workspace(tmp_path_factory.mktemp("p") / "ws")
    c = ws.catalog.conn
    c.execute("INSERT INTO sources(name,kind,license,consent,created_at) VALUES ('s','folder','t','consent','t')")
    person_ids: dict[int, int] = {}
    images: list[int] = []
    history: dict[int, str] = {}
    for b in batches:
        for who, dup in b:
            if who not in person_ids:
                person_ids[who] = c.execute("INSERT INTO people(created_at, n_faces) VALUES ('t', 0)").lastrowid
            pid = person_ids[who]
            dup_of = images[dup] if dup is not None and dup < len(images) else None
            if dup_of is not None:
                dup_of = c.execute("SELECT COALESCE(dup_of, id) FROM images WHERE id=?", (dup_of,)).fetchone()[0]
            n = len(images)
            iid = c.execute(
                "INSERT INTO images(pixel_sha,sha256,store_key,format,width,height,bytes,source_id,status,dup_of,"
                "created_at) VALUES (?,?,?,'JPEG',10,10,1,1,'ok',?,'t')", (f"p{n}", f"s{n}", f"k{n}", dup_of)).lastrowid
            images.append(iid)
            c.execute("INSERT INTO faces(image_id,idx,x,y,w,h,is_main,person_id,status) VALUES (?,0,0,0,5,5,1,?,'ok')",
                      (iid, pid))
            c.execute("UPDATE people SET n_faces=n_faces+1 WHERE id=?", (pid,))
        rep = assign_splits(ws, ratios=ratios, seed=seed)
        now = {r[0]: r[1] for r in c.execute("SELECT id, split FROM people WHERE n_faces > 0")}
        assert all(now[p] == s for p, s in history.items())  # nobody moved
        assert all(s in ("train", "val", "test") for s in now.values())
        history = now
        sides = defaultdict(set)
        for g, s in c.execute(
                "SELECT COALESCE(i.dup_of, i.id), p.split FROM images i JOIN faces f ON f.image_id=i.id "
                "JOIN people p ON p.id=f.person_id"):
            sides[g].add(s)
        # a group can only straddle if it linked two people assigned apart *before* the link existed
        straddling = [g for g, s in sides.items() if len(s) > 1]
        if len(batches) == 1:
            assert not straddling
        if straddling:  # never silent: reported, and the copies are out of every dataset
            assert rep.dup_conflicts > 0
            from faceset.curate import dataset_faces

            kept = {r["image_id"] for r in dataset_faces(ws)}
            dups = {r[0] for r in c.execute("SELECT id FROM images WHERE dup_of IS NOT NULL")}
            assert not kept & dups
    ws.close()
