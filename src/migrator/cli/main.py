"""The ``migrator`` command: top-level options, the error boundary, command registration.

Command groups live one per module (which must not import this one); adding one is an import
at the top and an ``add_command`` line at the bottom of this file.
"""

from __future__ import annotations

import traceback
from typing import Any

import click

from migrator import __version__
from migrator.cli.audit import audit_command
from migrator.cli.context import CliContext
from migrator.cli.db import db
from migrator.cli.demo import demo_command
from migrator.cli.discover import discover_command
from migrator.cli.execute import execute_command
from migrator.cli.init import init
from migrator.cli.plan import plan_command
from migrator.cli.report import report_command
from migrator.cli.sim import sim
from migrator.cli.status import status_command
from migrator.cli.verify import verify_command
from migrator.errors import MigratorError
from migrator.store.db import DEFAULT_URL, ENV_VAR, resolve_url


class MigratorGroup(click.Group):
    """The one place where MigratorErrors become ``Error: <message>`` and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MigratorError as exc:
            if ctx.params.get("debug"):
                traceback.print_exc()
            message = " ".join(str(exc).splitlines())
            click.echo(f"Error: {message}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=MigratorGroup)
@click.version_option(__version__, prog_name="migrator")
@click.option(
    "--db",
    "db_url",
    metavar="URL",
    help=f"State database URL or SQLite file path [env: {ENV_VAR}; default: {DEFAULT_URL}].",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, debug: bool) -> None:
    """Move OpenStack tenants, images and volumes from a legacy cloud to a modern one."""
    ctx.obj = CliContext(db_url=resolve_url(db_url), debug=debug)


def main() -> None:
    cli(prog_name="migrator")


# Command groups: one import (above) and one add_command each.
cli.add_command(init)
cli.add_command(db)
cli.add_command(status_command)
cli.add_command(execute_command)
cli.add_command(sim)
cli.add_command(discover_command)
cli.add_command(plan_command)
cli.add_command(demo_command)
cli.add_command(audit_command)
cli.add_command(verify_command)
cli.add_command(report_command)
