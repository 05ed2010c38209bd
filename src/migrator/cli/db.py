"""``migrator db ...``: the state database's schema revision.

The operations (SQLAlchemy, Alembic) are imported inside the commands, so that listing the
commands costs none of that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from migrator.cli.context import CliContext, pass_cli

if TYPE_CHECKING:
    from migrator.operations.db import UpgradeResult


@click.group()
def db() -> None:
    """Manage the state database's schema."""


@db.command()
@pass_cli
def upgrade(cli: CliContext) -> None:
    """Upgrade an existing state database to this migrator's schema."""
    from migrator.operations.db import upgrade_db

    click.echo(upgrade_message(upgrade_db(cli.db_url)))


@db.command()
@pass_cli
def current(cli: CliContext) -> None:
    """Show the state database's schema revision and the one this migrator needs."""
    from migrator.operations.db import current_revision

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
    from migrator.operations.db import revision_history

    for revision in revision_history():
        down = revision.down_revision or "<base>"
        mark = " (head)" if revision.is_head else ""
        click.echo(f"{down} -> {revision.id}{mark}: {revision.message}")


def upgrade_message(result: UpgradeResult) -> str:
    from migrator.operations.db import SchemaAction

    if result.action is SchemaAction.CREATED:
        return f"Created the state database at {result.database} (schema {result.revision})."
    if result.action is SchemaAction.UPGRADED:
        return (
            f"Upgraded the state database at {result.database} "
            f"from {result.from_revision} to {result.revision}."
        )
    return f"The state database at {result.database} is already at {result.revision}."
