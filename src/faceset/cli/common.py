"""Shared CLI plumbing: options every command takes, output, exit codes.

Exit codes: 0 done (per-file rejections are not errors; the summary counts them),
1 unexpected internal error, 2 usage or fatal user-facing error, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..workspace import Workspace, WorkspaceError, default_path, open_workspace

console = Console()
err = Console(stderr=True)

WorkspaceOpt = typer.Option(
    None, "--workspace", "-w", help="Workspace folder (default: $FACESET_WORKSPACE or ./faceset-workspace)."
)
JsonOpt = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")


def ws_open(path: Optional[Path], create: bool = False) -> Workspace:
    try:
        return open_workspace(path or default_path(), create=create)
    except WorkspaceError as e:
        fail(str(e))


def fail(msg: str, code: int = 2):
    err.print(f"[red]error:[/red] {msg}", soft_wrap=True)  # one line, never wrapped: scripts grep it
    raise typer.Exit(code)


def emit(as_json: bool, data: Any, human: Callable[[], None] | None = None) -> None:
    """Print ``data`` as JSON, or call ``human`` to render it for people."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
    elif human is not None:
        human()
    else:
        console.print(data)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="right" if c in ("count", "n", "images", "faces") else "left")
    for r in rows:
        t.add_row(*[str(x) for x in r])
    return t
