"""``migrator run pause|resume|cancel RUN``: ask every worker of a run."""

from __future__ import annotations

import click

from migrator.cli.context import CliContext, pass_cli
from migrator.cli.output import echo_json

_FORMAT = click.option("--format", "output_format", type=click.Choice(["text", "json"]),
                       default="text", show_default=True, help="json: for scripts.")
_HELP = {
    "pause": "Pause RUN: every worker hands its running steps back at their next checkpoint "
             "and claims nothing until 'migrator run resume'.",
    "resume": "Let the workers of a paused RUN claim steps again.",
    "cancel": "Cancel RUN: every worker hands its steps back at their next checkpoint and "
              "leaves; continue it later with 'migrator execute PLAN --resume'.",
}


@click.group("run")
def run_group() -> None:
    """Control a run that workers are executing."""


def _action(action: str) -> click.Command:
    @click.command(action, help=_HELP[action])
    @click.argument("run_name", metavar="RUN")
    @_FORMAT
    @pass_cli
    def command(cli: CliContext, run_name: str, output_format: str) -> None:
        from migrator.operations.run_control import control_run

        result = control_run(cli.db_url, run_name, action)
        if output_format == "json":
            echo_json(result.as_dict())
            return
        click.echo(f"Run {result.run}: {action} requested; status {result.status}, "
                   f"{result.workers} active worker(s) obey at their next checkpoint.")

    return command


for _name in ("pause", "resume", "cancel"):
    run_group.add_command(_action(_name))
