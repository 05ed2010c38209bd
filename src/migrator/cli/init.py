"""``migrator init``: create the state database (or bring it to the current schema) and write
a commented sample configuration when there is none."""

from __future__ import annotations

import click

from migrator.cli.context import CliContext, pass_cli
from migrator.cli.db import upgrade_message
from migrator.config import DEFAULT_CONFIG


@click.command()
@click.option("--config", "config_path", metavar="FILE", type=click.Path(dir_okay=False),
              default=DEFAULT_CONFIG, show_default=True,
              help="Where to write the sample configuration (an existing file is kept).")
@pass_cli
def init(cli: CliContext, config_path: str) -> None:
    """Create the state database (and its folder), or upgrade it, and write a commented sample
    configuration unless one exists. Safe to run again."""
    from migrator.config import write_sample
    from migrator.operations.db import init_state

    click.echo(upgrade_message(init_state(cli.db_url)))
    if write_sample(config_path):
        click.echo(f"Wrote a sample configuration to {config_path}: edit it, then "
                   "'migrator discover' and 'migrator plan'.")
    else:
        click.echo(f"Kept the existing configuration {config_path}.")
