"""How ``execute PLAN --dry-run`` shows the deep checks: a table per tenant, the estimate."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import click

from migrator.cli.output import Table, echo_table

if TYPE_CHECKING:
    from migrator.operations.dry_run import DeepReport


def render_deep(deep: DeepReport) -> None:
    from migrator.operations.dry_run import estimate_text

    by_tenant = defaultdict(list)
    for finding in deep.findings:
        by_tenant[finding.tenant or "(whole plan)"].append(finding)
    table = Table("Findings", ["TENANT", "CHECK", "RESULT", "DETAIL"])
    for tenant in sorted(by_tenant, key=lambda t: (t != "(whole plan)", t)):
        for f in by_tenant[tenant]:
            table.rows.append([tenant, f.check, f.result.upper() if f.result == "error"
                               else f.result, f.message])
    click.echo()
    echo_table(table)
    click.echo()
    if deep.estimate is not None:
        click.echo(f"Estimate: {estimate_text(deep.estimate)}")
    if deep.per_tenant_bytes:
        click.echo("Bytes per tenant: " + ", ".join(
            f"{t} {n}" for t, n in deep.per_tenant_bytes.items()))
    click.echo(f"Read: {deep.target_calls} target calls, {deep.source_calls} source calls "
               "(no write on either cloud).")
