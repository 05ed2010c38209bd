"""``migrator discover``: read the source cloud into an inventory snapshot."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from migrator.cli.context import CliContext, pass_cli
from migrator.cli.output import Table, echo_json, echo_table, format_option

if TYPE_CHECKING:
    from migrator.operations.discover import DiscoverResult


@click.command("discover")
@click.option("--cloud", metavar="NAME",
              help="clouds.yaml name of the source [default: source.cloud of --config].")
@click.option("--tenant", "tenants", metavar="TENANT", multiple=True,
              help="Only this tenant (name or id; repeatable). Default: every tenant.")
@click.option("--config", "config_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="migrator.yaml (source.cloud, source.tenant_credentials) [default: "
                   "./migrator.yaml when there is one].")
@click.option("--clouds-yaml", metavar="FILE", type=click.Path(dir_okay=False),
              help="clouds.yaml to read [default: $OS_CLIENT_CONFIG_FILE, then the usual "
                   "places].")
@click.option("--workers", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Parallel per-tenant reads (quotas, keypairs, image members).")
@format_option()
@pass_cli
def discover_command(cli: CliContext, cloud: str | None, tenants: tuple[str, ...],
                     config_path: str | None, clouds_yaml: str | None, workers: int,
                     output_format: str) -> None:
    """Read every project, user, quota, network, router, security group, keypair, flavor,
    image and volume of the source cloud into a new inventory snapshot."""
    # Imported here: openstacksdk and SQLAlchemy are not for `--help`.
    from migrator.operations.discover import discover

    with progress_lines(quiet=output_format == "json") as progress:
        result = discover(cli.db_url, cloud, tenants=list(tenants) or None,
                          config=config_path, clouds_yaml=clouds_yaml, workers=workers,
                          progress=progress)
    if output_format == "json":
        echo_json(result.as_dict())
        return
    render(result)


def render(result: DiscoverResult) -> None:
    click.echo(f"Snapshot {result.snapshot_id} of {result.cloud}: {result.items} items from "
               f"{len(result.tenants)} tenant(s), {result.api_calls} API calls"
               f"{f' ({result.retries} retried)' if result.retries else ''} in "
               f"{result.elapsed_s:.1f} s [{result.mode} credentials]")
    kinds = Table("Items by kind", ["KIND", "ITEMS"], numeric={1})
    kinds.rows = [[kind, str(n)] for kind, n in sorted(result.counts.items())]
    click.echo()
    echo_table(kinds)
    if len(result.per_tenant) <= 50:
        tenants = Table("Items by tenant", ["TENANT", "ITEMS"], numeric={1})
        tenants.rows = [[name, str(n)] for name, n in result.per_tenant.items()]
        click.echo()
        echo_table(tenants)
    if result.unreadable:
        table = Table("Not readable with the given credentials",
                      ["TENANT", "KIND", "REASON"])
        table.rows = [[u.tenant_name or u.tenant or "-", u.kind, u.reason]
                      for u in result.unreadable]
        click.echo()
        echo_table(table)


@contextmanager
def progress_lines(quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """Plain lines on stderr when not a terminal; a rich status line on a terminal."""
    if quiet:
        yield lambda message: None
        return
    if not sys.stderr.isatty():
        yield lambda message: click.echo(message, err=True)
        return
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("discovering ...") as status:

        def update(message: str) -> None:
            console.log(message)
            status.update(message)

        yield update
