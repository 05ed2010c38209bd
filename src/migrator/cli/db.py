"""``migrator db ...``: the state database's schema revision."""

from __future__ import annotations

import click

from migrator.cli.context import CliContext, pass_cli
from migrator.operations.db import (
    SchemaAction,
    UpgradeResult,
    current_revision,
    revision_history,
    upgrade_db,
)


@click.group()
def db() -> None:
    """Manage the state database's schema."""


@db.command()
@pass_cli
def upgrade(cli: CliContext) -> None:
    """Upgrade an existing state database to this migrator's schema."""
    click.echo(upgrade_message(upgrade_db(cli.db_url)))


@db.command()
@pass_cli
def current(cli: CliContext) -> None:
    """Show the state database's schema revision and the one this migrator needs."""
    found = current_revision(cli.db_url)
    if found.is_current:
        state = f"{found.revision} (head)"
    elif found.revision is None:
        state = f"none: no schema yet (this migrator needs {found.head}; run 'migrator init')"
    else:
        state = f"{found.revision} (behind: this migrator needs {found.head})"
    click.echo(f"Database: {found.database}\nRevision: {state}")


@db.command()
def history() -> None:
    """List the schema revisions this migrator knows, oldest first."""
    for revision in revision_history():
        down = revision.down_revision or "<base>"
        mark = " (head)" if revision.is_head else ""
        click.echo(f"{down} -> {revision.id}{mark}: {revision.message}")


def upgrade_message(result: UpgradeResult) -> str:
    if result.action is SchemaAction.CREATED:
        return f"Created the state database at {result.database} (schema {result.revision})."
    if result.action is SchemaAction.UPGRADED:
        return (
            f"Upgraded the state database at {result.database} "
            f"from {result.from_revision} to {result.revision}."
        )
    return f"The state database at {result.database} is already at {result.revision}."
