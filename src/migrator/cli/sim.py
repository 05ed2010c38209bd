"""``migrator sim``: the OpenStack simulator (serve clouds, generate seed files)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from migrator.sim.server import SimServer


@click.group()
def sim() -> None:
    """Simulated OpenStack clouds (liberty and modern profiles) served over real HTTP."""


@sim.command("serve")
@click.option("--cloud", "clouds", multiple=True, metavar="NAME:PROFILE[:PORT]",
              help="A cloud to serve, e.g. legacy:liberty:8001 (repeatable; profiles: "
                   "liberty, modern; port 0 or none picks a free one). Default: "
                   "legacy:liberty and target:modern.")
@click.option("--seed", type=click.Path(path_type=Path, dir_okay=False),
              help="Seed file (YAML or JSON) for clouds that have no saved state yet.")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Where state, image bytes and clouds.yaml live (default: a temporary "
                   "directory, removed on exit).")
@click.option("--fault-seed", type=int, default=0, show_default=True,
              help="Seed of the fault generators, to replay a run.")
@click.option("--tls", is_flag=True,
              help="Serve over HTTPS with a CA and certificate made in DATA_DIR/tls "
                   "(clouds.yaml names the CA as cacert).")
@click.option("--public-url", "public_urls", multiple=True, metavar="NAME=URL",
              help="The URL cloud NAME advertises (catalog, clouds.yaml, links) instead of "
                   "where it listens: a proxy or a DNS name in front (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def serve_command(clouds: tuple[str, ...], seed: Path | None, data_dir: Path | None,
                  fault_seed: int, tls: bool, public_urls: tuple[str, ...], fmt: str) -> None:
    """Serve simulated clouds until interrupted; writes DATA_DIR/clouds.yaml."""
    # Imported here, as below: the simulator (aiohttp) is not for `--help`.
    from migrator.operations.sim import open_server, serve

    server = open_server(list(clouds), seed=seed, data_dir=data_dir, fault_seed=fault_seed,
                         serving_process=True, tls=tls, public_urls=list(public_urls))

    def ready(srv: SimServer) -> None:
        info = {"clouds_yaml": str(srv.clouds_yaml),
                "cacert": str(srv.cacert) if srv.cacert else None,
                "clouds": {c.name: {"profile": c.profile.name, "url": c.base_url,
                                    "listen": c.listen_url}
                           for c in srv.clouds.values()}}
        if fmt == "json":
            click.echo(json.dumps(info), nl=True)
        else:
            for c in srv.clouds.values():
                where = f" (listening on {c.listen_url})" if c.public_url else ""
                click.echo(f"{c.name}: {c.profile.name} cloud at {c.base_url}{where}")
            if srv.cacert:
                click.echo(f"CA certificate: {srv.cacert}")
            click.echo(f"clouds.yaml: {srv.clouds_yaml}")
            click.echo(f"export OS_CLIENT_CONFIG_FILE={srv.clouds_yaml}")
        sys.stdout.flush()

    serve(server, ready)


@sim.command("seed")
@click.option("--tenants", type=click.IntRange(0), default=3, show_default=True)
@click.option("--images-per-tenant", type=click.IntRange(0), default=2, show_default=True)
@click.option("--volumes-per-tenant", type=click.IntRange(0), default=2, show_default=True)
@click.option("--users-per-tenant", type=click.IntRange(1), default=2, show_default=True)
@click.option("--servers-per-tenant", type=click.IntRange(0), default=4, show_default=True,
              help="Servers per tenant (0: none), in a "
                   "cycle: AArch64 with a floating IP, "
                   "volume-backed x86 with a data volume, SHUTOFF x86, AArch64.")
@click.option("--image-size", default="4MiB", show_default=True,
              help="Bytes of each generated image (512, 4MiB, 2GiB...).")
@click.option("--volume-data-size", default="4MiB", show_default=True,
              help="Bytes an upload of a blank volume yields (its used data).")
@click.option("--content-pool", type=click.IntRange(0), default=0, show_default=True,
              help="Cycle image contents through N seeds (0: all distinct).")
@click.option("--own-credentials", type=click.IntRange(0), default=1, show_default=True,
              help="How many tenants get a clouds.yaml entry for their own user.")
@click.option("--mislabelled", type=click.IntRange(0), default=2, show_default=True,
              help="How many images (the last ones) get a disk_format their bytes "
                   "contradict, as old clouds have.")
@click.option("--seed", "rng_seed", type=int, default=1, show_default=True)
@click.option("--cloud", default="legacy", show_default=True,
              help="Name of the cloud the seed describes.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              required=True, help="Seed file to write (.yaml or .json).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def seed_command(tenants: int, images_per_tenant: int, volumes_per_tenant: int,
                 users_per_tenant: int, servers_per_tenant: int, image_size: str,
                 volume_data_size: str, content_pool: int, own_credentials: int,
                 mislabelled: int, rng_seed: int, cloud: str, output: Path, fmt: str) -> None:
    """Generate a realistic Liberty-era inventory as a seed file."""
    from migrator.operations.sim import parse_size, write_seed
    from migrator.sim.seed_gen import SeedShape

    shape = SeedShape(
        tenants=tenants, images_per_tenant=images_per_tenant,
        volumes_per_tenant=volumes_per_tenant, users_per_tenant=users_per_tenant,
        image_size=parse_size(image_size, "--image-size"),
        volume_data_size=parse_size(volume_data_size, "--volume-data-size"),
        content_pool=content_pool, seed=rng_seed, own_credentials=own_credentials,
        mislabelled=mislabelled, servers_per_tenant=servers_per_tenant)
    counts = write_seed(output, shape, cloud)
    if fmt == "json":
        click.echo(json.dumps({"output": str(output), **counts}))
    else:
        summary = ", ".join(f"{v} {k}" for k, v in counts.items())
        click.echo(f"wrote {output}: {summary}")
