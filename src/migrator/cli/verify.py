"""``migrator verify``: the target (and the source, for drift) read again and compared with
what the run migrated; recorded as a verification of the run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from migrator.cli.context import CliContext, pass_cli
from migrator.cli.output import Table, echo_json, echo_table

if TYPE_CHECKING:
    from migrator.operations.verify import Finding, VerifyReport

# Exit status when the target differs from the plan (as diff(1): 0 same, 1 different).
DIFFERENCES_EXIT = 1


@click.command("verify")
@click.option("--run", "run_name", metavar="NAME", help="The run [default: the latest].")
@click.option("--tenant", metavar="TENANT", help="Only this tenant's resources.")
@click.option("--deep", is_flag=True,
              help="Also download every migrated image from the target and hash it.")
@click.option("--no-drift", is_flag=True, help="Do not read the source for drift.")
@click.option("--clouds-yaml", metavar="FILE", type=click.Path(dir_okay=False),
              help="clouds.yaml to read [default: $OS_CLIENT_CONFIG_FILE, then the usual "
                   "places].")
@click.option("--format", "output_format", type=click.Choice(["table", "json"]),
              default="table", show_default=True)
@pass_cli
def verify_command(cli: CliContext, run_name: str | None, tenant: str | None, deep: bool,
                   no_drift: bool, clouds_yaml: str | None, output_format: str) -> None:
    """Compare every resource the run migrated with the plan, on the target (fields, counts,
    sizes, checksums and properties of images, volume sizes and types, security group rules,
    role assignments); report drift on the source since planning. Exit status 1 when the
    target differs."""
    # Imported here: SQLAlchemy and openstacksdk are not for `--help`.
    from migrator.operations.verify import latest_run_name, verify_run

    run = run_name or latest_run_name(cli.db_url)
    report = verify_run(cli.db_url, run, tenant=tenant, deep=deep, drift=not no_drift,
                        clouds_yaml=clouds_yaml)
    if output_format == "json":
        echo_json(report.as_dict())
    else:
        render(report)
    if report.outcome != "match":
        raise SystemExit(DIFFERENCES_EXIT)


def render(report: VerifyReport) -> None:
    scope = f", tenant {report.tenant}" if report.tenant else ""
    depth = "deep: image bytes downloaded and hashed" if report.deep else "fields and records"
    click.echo(f"Verification {report.verification_id} of run {report.run}{scope} ({depth}), "
               f"{report.finished_at:%Y-%m-%d %H:%M:%S} UTC: "
               + ("everything matches" if report.outcome == "match" else "DIFFERENCES"))
    click.echo()
    echo_table(tenant_table(report))
    problems = [f for f in report.findings if not f.result.startswith("drift-")]
    drift = [f for f in report.findings if f.result.startswith("drift-")]
    if problems:
        click.echo()
        echo_table(findings_table("Differences on the target", problems))
    if drift:
        click.echo()
        echo_table(findings_table("Drift on the source since planning (not a failure of "
                                  "the run)", drift))
    click.echo()
    click.echo(f"Drift: {report.drift_note}.")
    calls = f"{report.target_calls} target calls"
    if report.deep:
        calls += f", {report.deep_bytes} bytes downloaded"
    click.echo(f"Read: {calls}, {report.source_calls} source calls.")


def tenant_table(report: VerifyReport) -> Table:
    headers = ["TENANT", "CHECKED", "MATCH", "DIFFERS", "MISSING", "ERROR", "NOT MIGRATED",
               "SKIPPED", "DRIFT"]
    table = Table("Per tenant", headers, numeric=set(range(1, len(headers))))
    for t in report.tenants:
        checked = sum(t.count(r) for r in ("match", "differs", "missing", "error"))
        table.rows.append([t.tenant or "-", str(checked), *(str(t.count(r)) for r in (
            "match", "differs", "missing", "error", "not-migrated", "skipped")), str(t.drift)])
    return table


def findings_table(title: str, findings: list[Finding]) -> Table:
    table = Table(title, ["TENANT", "KIND", "NAME", "RESULT", "DETAIL"])
    for f in findings:
        table.rows.append([f.tenant or "-", f.kind, f.name or f.source_id or "-", f.result,
                           f.detail])
    return table
