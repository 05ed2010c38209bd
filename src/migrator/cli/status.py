"""``migrator status``: progress of runs and tenants."""

from __future__ import annotations

import click

from migrator.cli.context import CliContext, pass_cli
from migrator.cli.output import Table, echo_json, echo_table, format_option
from migrator.operations.status import StatusReport, status


@click.command("status")
@click.option("--run", "run_name", metavar="NAME", help="Only this run, broken down by tenant.")
@click.option("--tenant", metavar="TENANT", help="Only this tenant's steps.")
@format_option()
@pass_cli
def status_command(
    cli: CliContext, run_name: str | None, tenant: str | None, output_format: str
) -> None:
    """Show runs and tenants with their step counts by state."""
    report = status(cli.db_url, run=run_name, tenant=tenant)
    if output_format == "json":
        echo_json(report.as_dict())
        return
    click.echo(f"State database: {report.database} (schema {report.revision})")
    if not report.runs:
        click.echo("No runs yet.")
        return
    for table in status_tables(report):
        click.echo()
        echo_table(table)


def status_tables(report: StatusReport) -> list[Table]:
    states = report.states
    runs = Table("Runs", ["RUN", "STATUS", "STEPS", *states], numeric=_numeric(2, states))
    for run in report.runs:
        status_text = run.status + (" (dry run)" if run.dry_run else "")
        runs.rows.append(
            [run.name, status_text, str(run.total), *_counts(run.steps, states)]
        )
    title = f"Tenants in run {report.run}" if report.run else "Tenants"
    tenants = Table(title, ["TENANT", "STEPS", *states], numeric=_numeric(1, states))
    for tenant in report.tenants:
        tenants.rows.append(
            [tenant.tenant or "-", str(tenant.total), *_counts(tenant.steps, states)]
        )
    return [runs, tenants]


def _numeric(first: int, states: list[str]) -> set[int]:
    return set(range(first, first + 1 + len(states)))


def _counts(steps: dict[str, int], states: list[str]) -> list[str]:
    return [str(steps.get(state, 0)) for state in states]
