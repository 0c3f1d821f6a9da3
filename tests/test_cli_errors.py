"""CLI error mapping (#9 item 5) and safe tables (#17 item 4).

FacesetError -> exit 2 + one line, no traceback; any other exception -> exit 1 + a short "internal error" line
(the traceback only with --debug or FACESET_DEBUG=1); Ctrl-C -> 130. Tables fit 80 columns, cut long cells with an
ellipsis and escape control characters; --json keeps the exact values.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceset.cli import app
from faceset.errors import FacesetError, NotFound, UsageError


@pytest.fixture
def runner():
    return CliRunner()


def _raise(exc):
    def f(*a, **k):
        raise exc

    return f


@pytest.mark.parametrize("exc", [UsageError("bad --thing: use a or b\nsecond line"), NotFound("no person 7"),
                                 FacesetError("disk full")])
def test_faceset_error_exits_2_with_one_line(ws, runner, monkeypatch, exc):
    monkeypatch.setattr("faceset.status.workspace_status", _raise(exc))
    r = runner.invoke(app, ["status", "-w", str(ws.root)])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(exc).split("\n")[0] in lines[0], r.stderr
    assert "Traceback" not in r.output and r.stdout == ""


def test_internal_error_exits_1_with_short_line_and_traceback_only_with_debug(ws, runner, monkeypatch):
    monkeypatch.delenv("FACESET_DEBUG", raising=False)
    monkeypatch.setattr("faceset.status.workspace_status", _raise(KeyError("images_by_status")))
    r = runner.invoke(app, ["status", "-w", str(ws.root)])
    assert r.exit_code == 1, r.output
    assert r.stderr.strip().splitlines() == [
        "internal error, please report: KeyError: 'images_by_status' (rerun with --debug for the traceback)"]
    assert "Traceback" not in r.output

    r = runner.invoke(app, ["--debug", "status", "-w", str(ws.root)])
    assert r.exit_code == 1 and "Traceback (most recent call last)" in r.stderr and "workspace_status" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("internal error, please report: KeyError")

    r = runner.invoke(app, ["status", "-w", str(ws.root)], env={"FACESET_DEBUG": "1"})
    assert r.exit_code == 1 and "Traceback (most recent call last)" in r.stderr


def test_plain_value_error_is_an_internal_error_not_a_usage_error(ws, runner, monkeypatch):
    monkeypatch.setattr("faceset.status.workspace_status", _raise(ValueError("math domain error")))
    r = runner.invoke(app, ["status", "-w", str(ws.root)])
    assert r.exit_code == 1 and "internal error, please report: ValueError: math domain error" in r.stderr


def test_keyboard_interrupt_exits_130(ws, runner, monkeypatch):
    monkeypatch.setattr("faceset.status.workspace_status", _raise(KeyboardInterrupt()))
    r = runner.invoke(app, ["status", "-w", str(ws.root)])
    assert r.exit_code == 130 and r.stderr.strip() == "interrupted; rerun the same command to resume"


def test_usage_errors_of_typer_and_missing_workspace_stay_exit_2(tmp_path, runner):
    r = runner.invoke(app, ["status", "--no-such-flag"])
    assert r.exit_code == 2 and "No such option" in r.output
    r = runner.invoke(app, ["status", "-w", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and r.stderr.startswith("error: no faceset workspace") and len(r.stderr.splitlines()) == 1


def test_workspace_from_environment(ws, runner):
    r = runner.invoke(app, ["status", "--json"], env={"FACESET_WORKSPACE": str(ws.root)})
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["images"] == 0


def test_error_message_with_markup_and_escapes_prints_literally(ws, runner, monkeypatch):
    monkeypatch.setattr("faceset.status.workspace_status", _raise(UsageError("[bold]x[/bold] \x1b[2J.jpg")))
    r = runner.invoke(app, ["status", "-w", str(ws.root)])
    assert r.exit_code == 2 and "[bold]x[/bold] \\x1b[2J.jpg" in r.stderr and "\x1b" not in r.stderr


def test_status_table_fits_80_columns_escapes_names_and_json_is_exact(tmp_path, runner):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src / "a.png")
    licence = "Creative Commons Attribution-ShareAlike 4.0 International, with attribution to \x1b[31mEVIL\x1b[0m"
    name = "team\x1b[2J\nfake row | 999"
    r = runner.invoke(app, ["ingest", str(src), "-w", str(tmp_path / "ws"), "--license", licence,
                            "--consent", "consent", "--source-name", name, "--workers", "1"], terminal_width=80)
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.stdout
    human = runner.invoke(app, ["status", "-w", str(tmp_path / "ws")], terminal_width=80)
    assert human.exit_code == 0, human.output
    out = human.stdout
    assert "\x1b" not in out and "\\x1b" in out and "…" in out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "team\\x1b[" in out and not any(line.strip().startswith("fake row") for line in out.splitlines())
    js = json.loads(runner.invoke(app, ["status", "-w", str(tmp_path / "ws"), "--json"]).stdout)
    assert js["sources"][0]["license"] == licence and js["sources"][0]["name"] == name


def test_cell_and_sanitize():
    from faceset.cli.common import MAX_CELL, cell, sanitize

    assert sanitize("a\tb\r\n\x07\x9b\u2028") == "a\\tb\\r\\n\\x07\\x9b\\u2028"
    assert sanitize("naïve 🚀 fusée") == "naïve 🚀 fusée"
    c = cell("x" * 100)
    assert len(c.plain) == MAX_CELL and c.plain.endswith("…")
    assert cell("[red]not markup[/red]").plain == "[red]not markup[/red]"
