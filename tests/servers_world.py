"""The world of the server tests: a seeded Liberty tenant with three servers (``seed_gen``:
an image-backed AArch64 web server with a floating IP and, added here, two data volumes; a
volume-backed x86 database with a data volume; an x86 server left SHUTOFF), an empty modern
target with the flavors the plan maps to, discovered once into a state database that each
test copies."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openstack
from click.testing import CliRunner, Result

from migrator.cli.main import cli
from migrator.operations.db import init_state
from migrator.operations.discover import discover
from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.server import CloudSpec, SimServer
from tests.plan.conftest import write_config

TARGET_FLAVORS = {"m1.small": (1, 2048, 20), "m1.medium": (2, 4096, 40),
                  "a2.large": (4, 8192, 80)}
FLAVOR_MAP = "flavors: {a1.large: a2.large}"
VOLUME_TYPES = "volume_types: {standard: __DEFAULT__, ssd: __DEFAULT__}"


@dataclass
class ServersWorld:
    root: Path
    sim: SimServer
    db: Path
    legacy: openstack.connection.Connection
    target: openstack.connection.Connection
    runner: CliRunner

    def cli(self, url: str, *args: str) -> Result:
        extra = ["--clouds-yaml", str(self.sim.clouds_yaml)] if args[0] in (
            "plan", "execute", "discover") else []
        return self.runner.invoke(cli, ["--db", url, *args, *extra], prog_name="migrator")

    def config(self, where: Path, flavors: str = FLAVOR_MAP, **replace: str) -> Path:
        """The sample configuration with the world's mappings; ``replace``: more of its
        text replaced (e.g. ``{"waves: []": "waves: [[physics], [chemistry]]"}``)."""
        where.mkdir(parents=True, exist_ok=True)
        return write_config(where, **{"volume_types: {}": VOLUME_TYPES,
                                      "flavors: {}": flavors,
                                      "poll_interval: 2 ": "poll_interval: 0.05 ", **replace})

    def url(self, where: Path) -> str:
        where.mkdir(parents=True, exist_ok=True)
        copy = where / "state.db"
        shutil.copy(self.db, copy)
        return f"sqlite:///{copy}"


def start_servers_world(root: Path, tenants: int = 1) -> ServersWorld:
    """``tenants``: physics (the first) and, with more, chemistry, ... each with the same
    three servers (their data volumes as ``seed_gen`` gives them)."""
    seed = generate(SeedShape(tenants=tenants, image_size=4096, volume_data_size=2048,
                              servers_per_tenant=3))
    # The image-backed web server gets two data volumes too (attached in this order).
    tenant = seed["clouds"]["legacy"]["tenants"][1]
    for name in ("physics-vm0-logs", "physics-vm0-cache"):
        tenant["volumes"].append({"name": name, "size": 1, "volume_type": "ssd",
                                  "content": {"generated": {"size": 1024}}})
    tenant["servers"][0]["volumes"] = ["physics-vm0-logs", "physics-vm0-cache"]
    (root / "seed.json").write_text(json.dumps(seed))
    sim = SimServer([CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")],
                    root / "sim", seed=root / "seed.json").start()
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(sim.clouds_yaml)
    target = openstack.connect(cloud="target")
    for name, (vcpus, ram, disk) in TARGET_FLAVORS.items():
        target.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk)
    net = target.network.create_network(name="public", is_router_external=True)
    target.network.create_subnet(network_id=net.id, ip_version=6, cidr="2001:db8:ffff::/64")
    db = root / "state.db"
    init_state(f"sqlite:///{db}")
    discover(f"sqlite:///{db}", "legacy", clouds_yaml=sim.clouds_yaml)
    return ServersWorld(root, sim, db, openstack.connect(cloud="legacy"), target, CliRunner())


@contextmanager
def servers_world(root: Path, tenants: int = 1) -> Iterator[ServersWorld]:
    """:func:`start_servers_world` for the length of a test or a fixture: the simulator
    stopped after, and ``OS_CLIENT_CONFIG_FILE`` (which it points at the simulator's
    clouds.yaml) as it was before."""
    previous = os.environ.get("OS_CLIENT_CONFIG_FILE")
    try:
        world = start_servers_world(root, tenants)
        try:
            yield world
        finally:
            world.sim.stop()
    finally:
        if previous is None:
            os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
        else:
            os.environ["OS_CLIENT_CONFIG_FILE"] = previous


def raw_servers(conn: openstack.connection.Connection) -> dict[str, dict[str, Any]]:
    body = conn.compute.get("/servers/detail", params={"all_tenants": 1}).json()
    return {s["name"]: s for s in body["servers"]}


def target_by_source(conn: openstack.connection.Connection) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for server in raw_servers(conn).values():
        sid = (server.get("metadata") or {}).get("migrator_source_id")
        if sid:
            out.setdefault(sid, []).append(server)
    return out
