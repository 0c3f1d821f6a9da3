"""Shared fixtures. Real data lives in ../shared/data (read-only); write only to tmp dirs."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACESET_DATA", ROOT.parent / "shared" / "data"))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "README.md").exists():
        pytest.fail(f"test data not found at {DATA} (set FACESET_DATA)")
    return DATA


def read_labels(subset: Path) -> list[dict]:
    with open(subset / "labels.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def ws(tmp_path):
    from faceset import init_workspace

    w = init_workspace(tmp_path / "ws")
    yield w
    w.close()


@pytest.fixture(scope="session")
def scanned_ws(tmp_path_factory, data_dir) -> Path:
    """Path of a workspace built ONCE per session: identities (labels ``identity`` from folder names)
    + groups, ingested and scanned (local engine). Read-only for consumers: a test that changes it
    must work on a copy (``shutil.copytree(scanned_ws, tmp_path / "ws")``) so other tests see it unchanged.
    """
    from faceset import init_workspace
    from faceset.ingest import ingest
    from faceset.scan import scan

    root = tmp_path_factory.mktemp("scanned") / "ws"
    w = init_workspace(root)
    ingest(w, [data_dir / "identities"], license="test-only", consent="research_exemption",
           labels="folder:identity", progress=False)
    ingest(w, [data_dir / "groups"], license="test-only", consent="research_exemption", progress=False)
    rep = scan(w, workers=2, progress=False)
    assert rep.errors == 0, rep.error_list
    w.close()
    return root


@pytest.fixture(scope="session")
def curated_ws(tmp_path_factory, scanned_ws) -> Path:
    """A copy of ``scanned_ws`` after curate: find_duplicates (with sheet) -> cluster_people ->
    assign_splits (default ratios). Read-only for consumers, like scanned_ws."""
    import shutil

    from faceset import open_workspace
    from faceset.curate import assign_splits, cluster_people, find_duplicates

    root = tmp_path_factory.mktemp("curated") / "ws"
    shutil.copytree(scanned_ws, root)
    w = open_workspace(root)
    find_duplicates(w, sheet=True, progress=False)
    cluster_people(w)
    assign_splits(w)
    w.close()
    return root


@pytest.fixture
def cws(curated_ws, tmp_path):
    """An open, writable copy of ``curated_ws`` for tests that change it."""
    import shutil

    from faceset import open_workspace

    shutil.copytree(curated_ws, tmp_path / "ws")
    w = open_workspace(tmp_path / "ws")
    yield w
    w.close()


@pytest.fixture(scope="session")
def utk_ws(tmp_path_factory, data_dir) -> Path:
    """UTKFace subset, ingested with the utkface label preset and scanned: every exact-duplicate
    group whose files all exist (exact_duplicates.csv) among the first 20 groups, plus adults
    (20-60, for a meaningful gender signal) sampled evenly. Files are symlinked into a temp folder."""
    from faceset import init_workspace
    from faceset.ingest import ingest
    from faceset.scan import scan

    utk = data_dir / "utkface"
    dup_rows = list(csv.DictReader(open(utk / "exact_duplicates.csv", newline="", encoding="utf-8")))
    groups = sorted({int(r["group"]) for r in dup_rows})[:20]
    files = [r["file"] for r in dup_rows if int(r["group"]) in groups]
    dup = set(r["file"] for r in dup_rows)
    adults = [r["file"] for r in read_labels(utk)
              if r["file"] not in dup and r["age"].isdigit() and 20 <= int(r["age"]) <= 60]
    files += adults[:: max(1, len(adults) // 160)][:160]
    src = tmp_path_factory.mktemp("utk_src")
    for f in files:
        (src / Path(f).name).symlink_to(utk / f)
    root = tmp_path_factory.mktemp("utk") / "ws"
    w = init_workspace(root)
    ingest(w, [src], license="test-only", consent="research_exemption", labels="utkface", progress=False)
    rep = scan(w, workers=2, progress=False)
    assert rep.errors == 0, rep.error_list
    w.close()
    return root


# -- markers for `make test-fast` (-m "not slow"), set here so test files need no decorators ----------------------
import re as _re  # noqa: E402

SLOW_FILES = {"test_train.py"}  # training: feature caches, heads, ONNX, fine-tuning
SLOW_NODES = {"test_docs_run.py::test_doc_commands_run"}  # runs every documented command (~2 min)
_KILL9 = _re.compile(r"kill_?9|killed")  # real SIGKILL of a CLI process, then a rerun
_RAY = _re.compile(r"(^|_)ray(_|$)")  # starts a local Ray cluster


def pytest_collection_modifyitems(config, items):
    for item in items:
        fname = item.path.name
        name = item.originalname if hasattr(item, "originalname") else item.name
        if _RAY.search(name):
            item.add_marker(pytest.mark.ray)
            item.add_marker(pytest.mark.slow)
        if fname in SLOW_FILES or f"{fname}::{name}" in SLOW_NODES or _KILL9.search(name):
            item.add_marker(pytest.mark.slow)
