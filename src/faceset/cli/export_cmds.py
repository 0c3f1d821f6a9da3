"""CLI commands for this stage (thin: parse, call the library, print)."""

import typer


def register(app: typer.Typer) -> None:
    pass
