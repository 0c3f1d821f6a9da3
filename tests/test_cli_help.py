"""Issue #17 (3): every command and option has help text, every command has --json, and the README's command
list matches the app's commands. Walks the typer app as click sees it (no command is run)."""

from __future__ import annotations

import re

import pytest
import typer

from faceset.cli import app
from test_docs_run import README, faceset_commands_in

ROOT_OPTIONS = {"--version", "--debug"}


def _leaves(group, prefix=()):
    """Every runnable command: leaves, and groups that run on their own (``invoke_without_command``)."""
    for name, cmd in sorted(group.commands.items()):
        if hasattr(cmd, "commands"):
            if getattr(cmd, "invoke_without_command", False):
                yield " ".join(prefix + (name,)), cmd
            yield from _leaves(cmd, prefix + (name,))
        else:
            yield " ".join(prefix + (name,)), cmd


ROOT = typer.main.get_command(app)
COMMANDS = dict(_leaves(ROOT))


def test_there_are_commands():
    assert {"ingest", "scan", "status", "export", "train", "evaluate", "consent set", "label noise"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_has_help_json_and_documented_options(name):
    cmd = COMMANDS[name]
    assert (cmd.help or "").strip(), f"`faceset {name}` has no help text"
    names = {o for p in cmd.params for o in getattr(p, "opts", [])}
    assert "--json" in names, f"`faceset {name}` has no --json"
    for p in cmd.params:
        label = "/".join(p.opts)
        assert (getattr(p, "help", None) or "").strip(), f"`faceset {name}` {label}: no help text"
    # same names for the same things
    for p in cmd.params:
        if p.name == "workspace":
            assert {"-w", "--workspace"} <= set(p.opts), f"`faceset {name}`: workspace must be -w/--workspace"
            if name != "build":  # build's workspace defaults to OUT/workspace, never to $FACESET_WORKSPACE
                assert getattr(p, "envvar", None) == "FACESET_WORKSPACE", \
                    f"`faceset {name}`: -w must read $FACESET_WORKSPACE"
        if p.name == "out" and p.param_type_name == "option":
            assert {"-o", "--out"} <= set(p.opts), f"`faceset {name}`: --out must also be -o"
        for opt, want in (("label", "--label"), ("workers", "--workers"), ("engine", "--engine")):
            if p.name == opt:
                assert want in p.opts, f"`faceset {name}`: {p.name} must be spelled {want}"


def test_every_group_has_help():
    for name, cmd in ROOT.commands.items():
        if hasattr(cmd, "commands"):
            assert (cmd.help or "").strip(), f"group `faceset {name}` has no help"
    assert {o for p in ROOT.params for o in p.opts} >= ROOT_OPTIONS
    assert all((p.help or "").strip() for p in ROOT.params)


def _reads_workspace(cmd) -> bool:
    src = getattr(cmd.callback, "__wrapped__", cmd.callback)
    code = getattr(src, "__code__", None)
    return code is not None and any(n in ("ws_open", "_data") for n in code.co_names)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_commands_that_read_a_workspace_take_w(name):
    cmd = COMMANDS[name]
    if _reads_workspace(cmd) or name in ("evaluate", "train", "build", "init"):
        assert "-w" in {o for p in cmd.params for o in p.opts}, f"`faceset {name}` reads a workspace but has no -w"


def test_readme_lists_every_command_and_no_other():
    documented = {c for c, _ in faceset_commands_in(README.read_text(encoding="utf-8"), include_skipped=True)}
    missing = set(COMMANDS) - documented
    unknown = documented - set(COMMANDS)
    assert not missing, f"commands missing from README.md's tour: {sorted(missing)}"
    assert not unknown, f"README.md shows commands the app does not have: {sorted(unknown)}"


def test_help_renders_for_every_command():
    from typer.testing import CliRunner

    r = CliRunner()
    for name in COMMANDS:
        res = r.invoke(app, [*name.split(), "--help"], terminal_width=80)
        assert res.exit_code == 0, (name, res.output)
        assert re.search(r"--json", res.output), name
