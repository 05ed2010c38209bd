"""What the top-level options give every command."""

from __future__ import annotations

from dataclasses import dataclass

import click


@dataclass(frozen=True)
class CliContext:
    db_url: str  # resolved: --db, else $MIGRATOR_DB, else the default SQLite file
    debug: bool


pass_cli = click.make_pass_decorator(CliContext)
