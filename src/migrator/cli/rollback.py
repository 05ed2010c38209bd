"""``migrator rollback``: remove from the target what a run created (and only that)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from migrator.cli.context import CliContext, pass_cli
from migrator.cli.output import Table, echo_json, echo_table, format_option

if TYPE_CHECKING:
    from migrator.operations.rollback import RollbackPlan, RollbackResult

# Exit status when the rollback did not finish (a step failed or it was interrupted).
UNFINISHED_EXIT = 1


@click.command("rollback")
@click.option("--run", "run_name", metavar="NAME", required=True,
              help="The run whose target resources are removed.")
@click.option("--tenant", metavar="TENANT", help="Only this tenant's resources.")
@click.option("--yes", is_flag=True, help="Do not ask: remove what the list shows.")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Removals at a time.")
@click.option("--clouds-yaml", metavar="FILE", type=click.Path(dir_okay=False),
              help="clouds.yaml to read [default: $OS_CLIENT_CONFIG_FILE, then the usual "
                   "places].")
@format_option()
@pass_cli
def rollback_command(cli: CliContext, run_name: str, tenant: str | None, yes: bool,
                     workers: int, clouds_yaml: str | None, output_format: str) -> None:
    """Delete on the target what run NAME created, in reverse dependency order: only
    resources in the run's id map that carry its source id mark (an adopted, pre-existing
    resource is left alone). Each removal is an audit event; a rollback that is interrupted
    continues when run again. Without --yes, shows what it would delete and asks."""
    from migrator.operations.rollback import rollback

    as_json = output_format == "json"

    def confirm(plan: RollbackPlan) -> bool:
        # An interrupted rollback was confirmed when it started; an empty one deletes nothing.
        if yes or plan.resuming is not None or not plan.undo:
            if not as_json:
                render_plan(plan, brief=True)
            return True
        if as_json:
            raise click.UsageError("--format json needs --yes (there is no one to ask)")
        render_plan(plan)
        return click.confirm("Delete these resources from the target?", default=False)

    result = rollback(cli.db_url, run_name, tenant=tenant, clouds_yaml=clouds_yaml,
                      confirm=confirm, workers=workers)
    if as_json:
        echo_json(result.as_dict())
    else:
        render_result(result)
    if not result.ok:
        raise SystemExit(UNFINISHED_EXIT)


def render_plan(plan: RollbackPlan, *, brief: bool = False) -> None:
    """What the rollback will remove and what it leaves (``brief``: one line)."""
    scope = f", tenant {plan.tenant}" if plan.tenant else ""
    if plan.resuming is not None:
        click.echo(f"Rollback {plan.resuming} of run {plan.run}{scope} was interrupted; it "
                   "continues where it stopped.")
        return
    if brief:
        if plan.undo:
            click.echo(f"Removing {len(plan.undo)} resource(s) of run {plan.run}{scope} from "
                       f"the target ({len(plan.kept)} left alone).")
        else:
            click.echo(f"Run {plan.run}{scope} created nothing that is still to remove.")
        return
    if plan.undo:
        table = Table(f"To remove from the target (run {plan.run}{scope})",
                      ["TENANT", "KIND", "NAME", "TARGET ID", "ACTION", "WHY"])
        table.rows = [[u.tenant or "-", u.kind, u.name or "-", u.target_id, u.action, u.why]
                      for u in plan.undo]
        echo_table(table)
    else:
        click.echo(f"Run {plan.run}{scope} created nothing that is still to remove.")
    if plan.kept:
        click.echo()
        table = Table("Left alone", ["TENANT", "KIND", "NAME", "TARGET ID", "REASON"])
        table.rows = [[k.tenant or "-", k.kind, k.name or "-", k.target_id, k.reason]
                      for k in plan.kept]
        echo_table(table)


def render_result(result: RollbackResult) -> None:
    if result.rollback_run is None:
        if result.plan.undo or result.plan.resuming:
            click.echo("Nothing was deleted.")
        return
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(result.counts.items()))
    status = result.result.status if result.result is not None else "-"
    click.echo(f"Rollback run {result.rollback_run}: {status} ({outcomes}).")
    if result.result is not None and result.result.failed_steps:
        click.echo("Failed: " + ", ".join(result.result.failed_steps))
    if not result.ok:
        click.echo(f"Run 'migrator rollback --run {result.plan.run}' again to continue.")
