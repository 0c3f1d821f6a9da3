"""`faceset demo` (what `make demo` runs) ends with `faceset build`: dataset, datasheet and report exist."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path


def test_cli_demo_runs_build_to_a_finished_dataset(tmp_path):
    env = {**os.environ, "FACESET_DATA": str(tmp_path / "no-data-here"), "RAY_USAGE_STATS_ENABLED": "0"}
    r = subprocess.run([sys.executable, "-c", "from faceset.cli import main; main()", "demo", "--out",
                        str(tmp_path / "o"), "--json"], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(r.stdout)
    steps = {s["name"]: s for s in d["steps"]}
    assert d["ok"] and steps["build"]["status"] == "ok", steps.get("build")
    b = steps["build"]["summary"]
    # The build resumed the demo's own workspace: nothing ingested or scanned twice.
    assert b["steps"]["ingest"]["added"] == 0 and b["steps"]["scan"].get("scanned", 0) == 0
    assert b["workspace"] == d["workspace"]
    dataset, sheet, report = Path(d["dataset"]), Path(d["datasheet"]), Path(d["report"])
    assert sheet.exists() and report.exists() and report.is_relative_to(Path(d["workspace"]))
    with open(dataset / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == b["items"] > 0
    files = [p for p in dataset.rglob("*.jpg")]
    assert sorted(p.stem for p in files) == sorted(r["id"] for r in rows)
    assert {p.parent.parent.name for p in files} <= {"train", "val", "test"}
    assert f"{b['items']} face records" in sheet.read_text()
    # No file of the collection is named in the dataset.
    names = {p.stem for p in (tmp_path / "o" / "collection").rglob("*") if p.is_file()}
    blob = b"".join(p.read_bytes() for p in dataset.rglob("*") if p.is_file())
    assert not [n for n in names if len(n) > 3 and n.encode() in blob]
