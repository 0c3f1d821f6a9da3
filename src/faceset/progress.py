"""Progress bars on stderr (stdout stays clean for --json)."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stderr = Console(stderr=True)


@contextlib.contextmanager
def bar(description: str, total: int | None, enabled: bool = True) -> Iterator["Bar"]:
    """``with bar("scan", n) as b: b.advance()``; disabled when not a terminal or when asked."""
    enabled = enabled and sys.stderr.isatty()
    if not enabled:
        yield Bar(None, None)
        return
    p = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
    )
    with p:
        yield Bar(p, p.add_task(description, total=total))


class Bar:
    def __init__(self, p, task):
        self._p, self._t = p, task

    def advance(self, n: int = 1) -> None:
        if self._p is not None:
            self._p.advance(self._t, n)

    def total(self, total: int) -> None:
        if self._p is not None:
            self._p.update(self._t, total=total)
