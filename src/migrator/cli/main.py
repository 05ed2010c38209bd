"""The ``migrator`` command: top-level options, the error boundary, command registration.

Commands live one per module (which must not import this one) and are imported only when
used: ``COMMANDS`` names where each lives, so that ``migrator status`` does not import the
simulator and ``migrator --version`` imports no command at all. ``--help`` imports every
command module (click asks each for its short help), so those modules import their
operations inside the command function, not at the top. Adding a command is one line in
``COMMANDS``.
"""

from __future__ import annotations

import importlib
import traceback
from typing import Any

import click

from migrator import __version__
from migrator.cli.context import CliContext
from migrator.errors import MigratorError
from migrator.store.url import DEFAULT_URL, ENV_VAR, resolve_url

# Command name -> "module:attribute" of its click command.
COMMANDS = {
    "init": "migrator.cli.init:init",
    "db": "migrator.cli.db:db",
    "status": "migrator.cli.status:status_command",
    "execute": "migrator.cli.execute:execute_command",
    "sim": "migrator.cli.sim:sim",
    "discover": "migrator.cli.discover:discover_command",
    "plan": "migrator.cli.plan:plan_command",
    "demo": "migrator.cli.demo:demo_command",
    "audit": "migrator.cli.audit:audit_command",
    "verify": "migrator.cli.verify:verify_command",
    "report": "migrator.cli.report:report_command",
    "worker": "migrator.cli.worker:worker_command",
    "run": "migrator.cli.run:run_group",
    "rollback": "migrator.cli.rollback:rollback_command",
    "rehearse": "migrator.cli.rehearse:rehearse_command",
}


class MigratorGroup(click.Group):
    """Loads its commands on first use, and is the one place where MigratorErrors become
    ``Error: <message>`` and an exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return super().get_command(ctx, cmd_name)
        module, attribute = where.split(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command), where
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MigratorError as exc:
            if ctx.params.get("debug"):
                traceback.print_exc()
            message = _one_line(str(exc))
            click.echo(f"Error: {message}", err=True)
            # Several problems found together: every one, one per line.
            problems = [_one_line(p) for p in exc.problems] if len(exc.problems) > 1 else []
            for problem in problems:
                click.echo(f"  - {problem}", err=True)
            from migrator.cli.output import JSON_OUTPUT, JSON_PRINTED, echo_json

            if ctx.meta.get(JSON_OUTPUT) and not ctx.meta.get(JSON_PRINTED):
                echo_json({"error": {"message": message, "exit_code": exc.exit_code,
                                     "problems": problems or [message]}})
            ctx.exit(exc.exit_code)


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


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
