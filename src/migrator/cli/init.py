"""``migrator init``: create the state database, or bring it to the current schema."""

from __future__ import annotations

import click

from migrator.cli.context import CliContext, pass_cli
from migrator.cli.db import upgrade_message
from migrator.operations.db import init_state


@click.command()
@pass_cli
def init(cli: CliContext) -> None:
    """Create the state database (and its folder), or upgrade it. Safe to run again."""
    click.echo(upgrade_message(init_state(cli.db_url)))
