"""Shared CLI plumbing: options every command takes, output, errors and exit codes.

Exit codes: 0 done (per-file rejections are not errors; the summary counts them),
1 unexpected internal error, 2 usage or fatal user-facing error (:class:`faceset.errors.FacesetError`),
130 interrupted.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..errors import FacesetError
from ..workspace import Workspace, WorkspaceError, default_path, environmental_error, open_workspace

console = Console()
err = Console(stderr=True)

WorkspaceOpt = typer.Option(
    None, "--workspace", "-w", envvar="FACESET_WORKSPACE", show_envvar=False,
    help="Workspace folder (default: $FACESET_WORKSPACE or ./faceset-workspace).",
)
JsonOpt = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")
WorkersOpt = typer.Option(None, "--workers", help="Worker processes (default: all cores; 1 = in-process).")
EngineOpt = typer.Option("local", "--engine", help="Scan engine: local (process pool) | ray.")

# A table cell is at most this many characters (then an ellipsis); rich shrinks further to fit 80 columns.
MAX_CELL = 48


def ws_open(path: Optional[Path], create: bool = False) -> Workspace:
    try:
        return open_workspace(path or default_path(), create=create)
    except WorkspaceError as e:
        fail(str(e))


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def sanitize(value: Any) -> str:
    """``value`` as one printable line: control characters (ESC, newline, tab, ...) become escapes like ``\\x1b``,
    so a hostile file name can neither send terminal escapes nor split a table row. JSON output stays exact."""
    s = str(value)

    def esc(m: re.Match) -> str:
        c = m.group()
        named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c)
        return named or (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")

    return _CONTROL.sub(esc, s)


def one_line(msg: Any) -> str:
    """An error message as one sanitised line (scripts grep it)."""
    return sanitize(" ".join(str(msg).split("\n")).strip())


def fail(msg: str, code: int = 2):
    """Print ``error: msg`` on stderr (one line, never wrapped) and exit with ``code``."""
    err.print(f"[red]error:[/red] {escape(one_line(msg))}", soft_wrap=True)
    raise typer.Exit(code)


def emit(as_json: bool, data: Any, human: Callable[[], None] | None = None) -> None:
    """Print ``data`` as JSON, or call ``human`` to render it for people."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
    elif human is not None:
        human()
    else:
        console.print(data)


def cell(value: Any, width: int = MAX_CELL) -> Text:
    """A table cell: sanitised, plain text (no rich markup from data), cut to ``width`` with an ellipsis."""
    s = sanitize(value)
    if len(s) > width:
        s = s[: max(width - 1, 0)] + "…"
    return Text(s)


def _fit(natural: list[int], floors: list[int], budget: int) -> list[int]:
    """Column widths: shrink the widest columns first, never below their floor, until they fit ``budget``."""
    w = list(natural)
    while sum(w) > budget:
        i = max(range(len(w)), key=lambda j: (w[j] - floors[j] > 0, w[j]))
        if w[i] <= floors[i]:
            break
        w[i] -= 1
    return w


def table(title: str, columns: list[str], rows: list[list[Any]], width: Optional[int] = None) -> Table:
    """A table that stays readable at 80 columns: cells never wrap; long cells are cut with an ellipsis, the
    widest columns first, so short columns (counts, kinds) stay whole. ``--json`` has the full values."""
    width = width or console.width
    texts = [[sanitize(x) for x in r] for r in rows]
    natural = [min(max([len(c)] + [len(r[i]) for r in texts if i < len(r)]), MAX_CELL) for i, c in enumerate(columns)]
    floors = [min(n, max(len(c), 8)) for n, c in zip(natural, columns)]
    widths = _fit(natural, floors, width - (3 * len(columns) + 1))  # borders and padding: 3 per column + 1
    t = Table(title=sanitize(title), title_justify="left")
    for i, (c, w) in enumerate(zip(columns, widths)):
        numeric = bool(rows) and all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool)
                                     for r in rows if i < len(r))
        t.add_column(cell(c, w), justify="right" if numeric or c in ("count", "n", "images", "faces") else "left",
                     no_wrap=True, overflow="ellipsis", min_width=w, max_width=w)
    for r in texts:
        t.add_row(*[cell(x, w) for x, w in zip(r, widths)])
    return t


# -- errors ---------------------------------------------------------------------------------------------------------

# Compatibility (#9): user-facing error classes that do not subclass FacesetError yet. Looked up in sys.modules
# (never imported here): an exception of one of these can only exist when its module is loaded.
LEGACY_USER_ERRORS = (
    ("faceset.ingest.sources", "IngestError"),
    ("faceset.export.core", "ExportError"),
    ("faceset.demo", "DemoError"),
    ("faceset.privacy.forget", "ForgetError"),
    ("faceset.privacy.consent", "ConsentError"),
    ("faceset.train.data", "DataError"),
)


def is_user_error(e: BaseException) -> bool:
    if isinstance(e, FacesetError):
        return True
    for mod, name in LEGACY_USER_ERRORS:
        cls = getattr(sys.modules.get(mod), name, None)
        if isinstance(cls, type) and isinstance(e, cls):
            return True
    return False


def debug_enabled(ctx: Any = None) -> bool:
    if os.environ.get("FACESET_DEBUG", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    while ctx is not None:
        if ctx.params.get("debug"):
            return True
        ctx = ctx.parent
    return False


def handle_exception(e: BaseException, ctx: Any = None) -> None:
    """Map an exception that escaped a command to an exit code (never returns).

    FacesetError -> 2 + its one-line message; KeyboardInterrupt -> 130; anything else is a bug -> 1 + a short
    "internal error" line (the traceback only with --debug / FACESET_DEBUG=1)."""
    if isinstance(e, KeyboardInterrupt):
        err.print("interrupted; rerun the same command to resume", soft_wrap=True, markup=False)
        raise typer.Exit(130)
    debug = debug_enabled(ctx)
    if debug:
        err.print("".join(traceback.format_exception(e)), soft_wrap=True, markup=False, highlight=False, end="")
    if is_user_error(e):
        fail(str(e) or type(e).__name__)
    env = environmental_error(e)  # disk full, read-only, corrupt catalog (anywhere in the chain): exit 2, one line
    if env is not None:
        fail(str(env))
    err.print(f"internal error, please report: {type(e).__name__}: {escape(one_line(e))}"
              + ("" if debug else " (rerun with --debug for the traceback)"), soft_wrap=True, highlight=False)
    raise typer.Exit(1)

