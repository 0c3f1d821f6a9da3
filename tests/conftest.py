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
