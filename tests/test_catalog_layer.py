"""The catalog is the only place that speaks SQL, the import graph has no cycle, and the v3 schema
says what it means (CHECK constraints, foreign keys) for catalogs old and new."""

from __future__ import annotations

import ast
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from faceset import init_workspace, open_workspace
from faceset.catalog import MIGRATIONS, schema

SRC = Path(__file__).resolve().parents[1] / "src" / "faceset"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# A string that reads as a statement or clause of SQL (keywords in capitals, as this code base writes them).
SQL = re.compile(
    r"\b(SELECT\b.+\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX|TRIGGER)"
    r"|ALTER\s+TABLE|DROP\s+TABLE|PRAGMA\s+\w+|\bWHERE\s+\w+\s*(=|IN\b|IS\b|<|>))",
    re.S,
)


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_no_sql_outside_the_catalog_package():
    offenders = []
    for py in sorted(SRC.rglob("*.py")):
        rel = py.relative_to(SRC)
        if rel.parts[0] == "catalog":
            continue
        tree = ast.parse(py.read_text())
        docs = _docstring_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in docs:
                continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text, line = node.value, node.lineno
            elif isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
                line = node.lineno
            else:
                continue
            if SQL.search(text):
                offenders.append(f"{rel}:{line}: {text.strip()[:70]!r}")
    assert not offenders, "SQL outside faceset/catalog/:\n" + "\n".join(offenders)


def test_the_sql_detector_itself_finds_sql():
    # guards the guard: the patterns above must match what a stage would write
    for s in ("SELECT id FROM faces WHERE x=?", "INSERT OR IGNORE INTO labels(a) VALUES (?)",
              "UPDATE images SET status='ok'", "DELETE FROM faces", "PRAGMA user_version",
              "id IN ({}) AND status='ok'".replace("id IN", "WHERE id IN")):
        assert SQL.search(s), s
    for s in ("select a face", "Update the catalog", "delete from the store", "where a face is"):
        assert not SQL.search(s), s


def _imports(py: Path, mod: str) -> set[str]:
    """Every faceset module ``mod`` imports, function-level imports included."""
    tree = ast.parse(py.read_text())
    pkg = mod if py.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("faceset")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("faceset"):
                continue
            # `from .x import y`: y may be submodule x.y (then that is the dependency) or a name in x
            for a in node.names:
                out.add(f"{target}.{a.name}")
    return out


def _module_graph() -> dict[str, set[str]]:
    mods = {}
    for py in SRC.rglob("*.py"):
        rel = py.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = py
    graph = {}
    for m, py in mods.items():
        deps = set()
        for t in _imports(py, m):
            while t and t not in mods:
                t = t.rsplit(".", 1)[0] if "." in t else ""
            if t and t != m:
                deps.add(t)
        graph[m] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_in_src():
    # `from .x import y` counts as a dependency on submodule x.y when there is one, else on x.
    graph = _module_graph()
    cyc = _cycles(graph)
    assert not cyc, "import cycles (function-level imports count):\n" + "\n".join(" <-> ".join(c) for c in cyc)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


# -- schema v3 -------------------------------------------------------------------------------------

def _check_values(ws, table: str, column: str, good: str, bad: str, make_row) -> None:
    c = ws.catalog.conn
    with ws.catalog.tx():
        make_row(c, good)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        with ws.catalog.tx():
            make_row(c, bad)


def test_enumerated_columns_refuse_unknown_values(ws):
    c = ws.catalog.conn
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        c.execute("INSERT INTO sources(name,kind,license,consent,created_at) VALUES ('a','folder','x','maybe','t')")
    for basis in schema.CONSENT_BASES:
        c.execute("INSERT INTO sources(name,kind,license,consent,created_at) VALUES (?,?,?,?,?)",
                  (basis, "folder", "x", basis, "t"))
    sid = c.execute("SELECT id FROM sources LIMIT 1").fetchone()[0]

    counter = [0]

    def image(status, n=None):
        n = counter if n is None else n
        n[0] += 1
        c.execute("INSERT INTO images(pixel_sha,sha256,store_key,format,width,height,bytes,source_id,status,"
                  "created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                  (f"p{n[0]}", "s", "k", "JPEG", 10, 10, 1, sid, status, "t"))
        return c.execute("SELECT last_insert_rowid()").fetchone()[0]

    for st in schema.IMAGE_STATUSES:
        image(st)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        image("no_face_blocked")
    iid = image("ok")
    for st in schema.FACE_STATUSES:
        c.execute("INSERT INTO faces(image_id, idx, x, y, w, h, status) VALUES (?,?,0,0,1,1,?)",
                  (iid, hash(st) % 1000, st))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        c.execute("INSERT INTO faces(image_id, idx, x, y, w, h, status) VALUES (?,99,0,0,1,1,'bystander_blurred')",
                  (iid,))
    for code in schema.REJECT_CODES:
        c.execute("INSERT INTO files(source_id,path,outcome,reason_code,seen_at) VALUES (?,?,?,?,?)",
                  (sid, f"r-{code}", "rejected", code, "t"))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        c.execute("INSERT INTO files(source_id,path,outcome,reason_code,seen_at) VALUES (?,'x','blocked',NULL,'t')",
                  (sid,))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        c.execute("INSERT INTO files(source_id,path,outcome,reason_code,seen_at) "
                  "VALUES (?,'y','rejected','because','t')", (sid,))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        c.execute("INSERT INTO people(created_at, split) VALUES ('t', 'holdout')")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        c.execute("INSERT INTO labels(image_id,name,value,origin,updated_at) VALUES (?,?,?,?,?)",
                  (iid, "g", "f", "guess", "t"))
    # export_items must point at real rows
    c.execute("INSERT INTO exports(path,format,what,params,created_at) VALUES ('p','zip','crops','{}','t')")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        c.execute("INSERT INTO export_items(export_id, image_id) VALUES (1, 999999)")


def test_dead_columns_are_gone(ws):
    cols = lambda t: {r["name"] for r in ws.catalog.q(f"PRAGMA table_info({t})")}  # noqa: E731
    assert "notes" not in cols("sources") and "name" not in cols("people")
    fks = {(r["table"], r["from"]) for r in ws.catalog.q("PRAGMA foreign_key_list(export_items)")}
    assert fks == {("exports", "export_id"), ("images", "image_id"), ("faces", "face_id")}


def test_store_key_columns_list_every_key_column(ws):
    found = set()
    for t in [r[0] for r in ws.catalog.q("SELECT name FROM sqlite_master WHERE type='table'")]:
        found |= {(t, r["name"]) for r in ws.catalog.q(f"PRAGMA table_info({t})") if r["name"].endswith("_key")}
    assert found == set(schema.STORE_KEY_COLUMNS)


def _counts(db: Path) -> dict[str, int]:
    c = sqlite3.connect(db)
    try:
        tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        c.close()


def test_v2_catalog_built_by_the_previous_release_migrates_keeping_every_row(tmp_path):
    """tests/fixtures/catalog_v2_demo.db: `faceset demo` + one `forget --yes` run by the v2 release."""
    init_workspace(tmp_path / "w").close()
    db = tmp_path / "w" / "catalog.db"
    for p in (tmp_path / "w").glob("catalog.db*"):
        p.unlink()
    shutil.copy(FIXTURES / "catalog_v2_demo.db", db)
    before = _counts(db)
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 2
    ws = open_workspace(tmp_path / "w")
    assert ws.catalog.schema_version == len(MIGRATIONS)
    after = {t: n for t, n in _counts(db).items()}
    for t, n in before.items():
        assert after[t] == n, (t, n, after[t])
    assert ws.catalog.scalar("PRAGMA integrity_check") == "ok"
    assert ws.catalog.q("PRAGMA foreign_key_check") == []
    # the migrated catalog refuses bad values like a new one
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        ws.catalog.conn.execute("UPDATE images SET status='maybe' WHERE id=(SELECT MIN(id) FROM images)")
    ws.close()
    # reopening is a no-op
    assert open_workspace(tmp_path / "w").catalog.schema_version == len(MIGRATIONS)


def test_v1_catalog_with_a_legacy_blocked_image_becomes_status_blocked(tmp_path):
    from faceset.catalog import split_sql

    init_workspace(tmp_path / "w").close()
    db = tmp_path / "w" / "catalog.db"
    for p in (tmp_path / "w").glob("catalog.db*"):
        p.unlink()
    c = sqlite3.connect(db)
    for stmt in split_sql(MIGRATIONS[0]):
        c.execute(stmt)
    c.execute("PRAGMA user_version=1")
    c.execute("INSERT INTO sources(name,kind,license,consent,created_at,notes) "
              "VALUES ('old','folder','x','consent','t','n')")
    for i, (st, why) in enumerate([("no_face", "blocked"), ("no_face", "no human face found"), ("ok", None)]):
        c.execute("INSERT INTO images(pixel_sha,sha256,store_key,format,width,height,bytes,source_id,status,"
                  "status_reason,created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                  (f"p{i}", "s", "k", "JPEG", 10, 10, 1, 1, st, why, "t"))
    c.execute("INSERT INTO files(source_id,path,outcome,seen_at) VALUES (1,'gone.jpg','blocked','t')")
    c.commit()
    c.close()
    ws = open_workspace(tmp_path / "w")
    rows = [tuple(r) for r in ws.catalog.q("SELECT status, status_reason FROM images ORDER BY id")]
    assert rows == [("blocked", None), ("no_face", "no human face found"), ("ok", None)]
    assert tuple(ws.catalog.one("SELECT outcome, reason_code FROM files")) == ("rejected", "blocked")
