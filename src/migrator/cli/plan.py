"""``migrator plan``: the latest inventory snapshot -> a reviewable plan file."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from migrator.cli.context import CliContext, pass_cli
from migrator.cli.output import Table, echo_json, echo_table, format_option
from migrator.config import DEFAULT_CONFIG

if TYPE_CHECKING:
    from migrator.operations.graph import GraphResult
    from migrator.operations.plan import PlanResult

MAX_TENANT_ROWS = 50
MAX_PROPERTY_ROWS = 60
MAX_SERVER_ROWS = 100


@click.command("plan")
@click.option("--config", "config_path", metavar="FILE", type=click.Path(dir_okay=False),
              default=DEFAULT_CONFIG, show_default=True, help="The configuration file.")
@click.option("--tenant", "tenants", metavar="TENANT", multiple=True,
              help="Plan this tenant (name or id; repeatable) [default: selection.tenants].")
@click.option("--kinds", "kinds", metavar="KIND[,KIND]", multiple=True,
              help="Plan only these step kinds, with the kinds they need (repeatable) "
                   "[default: selection.kinds, else every kind the target has the services "
                   "for].")
@click.option("--exclude-kinds", "exclude_kinds", metavar="KIND[,KIND]", multiple=True,
              help="Leave these kinds out, with the kinds that need them (repeatable) "
                   "[default: selection.exclude_kinds].")
@click.option("--include-dependencies", is_flag=True,
              help="Pull in the tenants whose resources the selection refers to (a remote "
                   "security group, a subnet) instead of refusing.")
@click.option("-o", "--output", metavar="FILE", type=click.Path(dir_okay=False),
              help="Plan file to write [default: plans/NAME.yaml].")
@click.option("--name", metavar="NAME", help="Plan name [default: the output file's stem].")
@click.option("--clouds-yaml", metavar="FILE", type=click.Path(dir_okay=False),
              help="clouds.yaml to read [default: $OS_CLIENT_CONFIG_FILE, then the usual "
                   "places].")
@click.option("--offline", is_flag=True,
              help="Do not read the target (no clash detection, names resolved at run time; "
                   "execute checks the target before it starts).")
@click.option("--address-map", "address_map", metavar="FILE", type=click.Path(dir_okay=False),
              help="Also write the servers' address map (CSV: every old IPv4 and floating "
                   "address with the IPv6 address replacing it) for the DNS cutover.")
@format_option()
@click.option("--graph", metavar="FILE", type=click.Path(dir_okay=False),
              help="Also draw the plan's DAG, grouped by tenant: FILE.dot (always), FILE.svg "
                   "or FILE.png (Graphviz's dot); above 500 steps one node per tenant.")
@click.option("--run", "graph_run", metavar="NAME",
              help="With --graph: draw this run's steps coloured by state instead of "
                   "planning.")
@pass_cli
def plan_command(cli: CliContext, config_path: str, tenants: tuple[str, ...],
                 kinds: tuple[str, ...], exclude_kinds: tuple[str, ...],
                 include_dependencies: bool, output: str | None, name: str | None,
                 clouds_yaml: str | None, offline: bool, address_map: str | None,
                 output_format: str, graph: str | None, graph_run: str | None) -> None:
    """Build the plan (steps, dependencies, translated resources) of the selected tenants from
    the latest inventory snapshot and write it for review."""
    # Imported here: the planner, openstacksdk and SQLAlchemy are not for `--help`.
    from migrator.operations.graph import plan_steps, run_steps, write_graph
    from migrator.operations.plan import make_plan

    if graph_run is not None:
        if graph is None:
            raise click.UsageError("--run draws a run's graph: give --graph FILE too")
        echo_graph(write_graph(run_steps(cli.db_url, graph_run), graph,
                               title=f"run {graph_run}"))
        return
    result = make_plan(cli.db_url, config=config_path, tenants=list(tenants) or None,
                       include_dependencies=include_dependencies, output=output, name=name,
                       clouds_yaml=clouds_yaml, offline=offline, kinds=list(kinds) or None,
                       exclude_kinds=list(exclude_kinds) or None)
    drawn = write_graph(plan_steps(result.plan), graph, title=f"plan {result.plan.name}") \
        if graph else None
    mapped = None
    if address_map:
        from migrator.plan.servers_view import write_address_map

        mapped = write_address_map(result.servers(), address_map)
    if output_format == "json":
        echo_json({**result.as_dict(), **({"graph": str(drawn.path)} if drawn else {}),
                   **({"address_map": str(mapped)} if mapped else {})})
        return
    render(result)
    if mapped is not None:
        click.echo(f"Address map: {mapped}")
    if drawn is not None:
        echo_graph(drawn)


def echo_graph(drawn: GraphResult) -> None:
    how = "one node per tenant" if drawn.summarised else "one node per step"
    click.echo(f"Graph: {drawn.path} ({drawn.steps} steps of {drawn.tenants} tenant(s), "
               f"{how}: {drawn.nodes} nodes, {drawn.edges} edges"
               + (", drawn by Graphviz" if drawn.drawn_by else "") + ")")


def render(result: PlanResult) -> None:
    plan = result.plan
    summary = plan.summary
    pulled = plan.selection.get("pulled_in") or []
    click.echo(f"Plan {plan.name}: {summary['steps']} steps for "
               f"{len(plan.selection.get('tenants') or [])} tenant(s) in "
               f"{len(summary.get('per_wave') or [])} wave(s), from snapshot "
               f"{result.snapshot_id} of {plan.source.get('cloud')} -> {result.path}")
    if pulled:
        click.echo(f"Pulled in by --include-dependencies: {', '.join(pulled)}")
    if not plan.target.get("checked"):
        click.echo("The target was not read (--offline): execute checks it before starting.")
    left_out = plan.selection.get("kinds_left_out") or {}
    if left_out:
        click.echo("Kinds left out: " + ", ".join(f"{k} ({why})" for k, why in left_out.items()))
    kinds = Table("Steps by kind", ["KIND", "STEPS"], numeric={1})
    kinds.rows = [[k, str(n)] for k, n in summary["per_kind"].items()]
    click.echo()
    echo_table(kinds)
    per_tenant = summary["per_tenant"]
    tenants = Table("Steps by tenant", ["TENANT", "STEPS"], numeric={1})
    tenants.rows = [[t, str(n)] for t, n in list(per_tenant.items())[:MAX_TENANT_ROWS]]
    if len(per_tenant) > MAX_TENANT_ROWS:
        tenants.rows.append([f"... {len(per_tenant) - MAX_TENANT_ROWS} more", ""])
    click.echo()
    echo_table(tenants)
    changes = Table("Image properties translated (before -> after)", ["TENANT", "IMAGE",
                                                                         "CHANGE"])
    for step in plan.steps:
        if step.kind != "image":
            continue
        properties = step.spec.get("properties")
        for change in (properties.get("changes") if properties else None) or []:
            changes.rows.append([step.tenant or "-", step.name or step.source_id or "",
                                 str(change)])
    if changes.rows:
        shown = len(changes.rows)
        changes.rows = changes.rows[:MAX_PROPERTY_ROWS]
        if shown > MAX_PROPERTY_ROWS:
            changes.rows.append(["", f"... {shown - MAX_PROPERTY_ROWS} more in the plan file",
                                 ""])
        click.echo()
        echo_table(changes)
    render_servers(result)
    for warning in plan.warnings[:20]:
        click.echo(f"Warning: {warning}", err=True)
    if len(plan.warnings) > 20:
        click.echo(f"Warning: ... {len(plan.warnings) - 20} more in the plan file", err=True)
    click.echo(f"\nReview {result.path}, then: migrator execute {result.path} --dry-run")


def render_servers(result: PlanResult) -> None:
    rows = result.servers()
    if not rows:
        return
    table = Table("Servers (cutover)", ["TENANT", "SERVER", "FLAVOR", "STATE", "ADDRESSES",
                                        "FLOATING -> IPV6", "BYTES", "EST. DOWNTIME"],
                  numeric={6, 7})
    for row in rows[:MAX_SERVER_ROWS]:
        addresses = ", ".join(f"{a['ipv4']} -> {a['ipv6']}" for a in row["addresses"]) or "-"
        floating = ", ".join(f"{f} -> {a['floating_ipv6']}" for a in row["addresses"]
                             for f in a.get("floating_ipv4") or []) or "-"
        table.rows.append([str(row["tenant"] or "-"), str(row["server"]), str(row["flavor"]),
                           str(row["power_state"]), addresses, floating, str(row["bytes"]),
                           f"{row['estimated_downtime_seconds']:.0f} s"])
    if len(rows) > MAX_SERVER_ROWS:
        table.rows.append([f"... {len(rows) - MAX_SERVER_ROWS} more (--address-map, "
                           "--format json)", "", "", "", "", "", "", ""])
    click.echo()
    echo_table(table)
