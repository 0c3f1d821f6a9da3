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
