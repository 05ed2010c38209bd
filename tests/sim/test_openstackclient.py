"""The ``openstack`` command (python-openstackclient, a dev dependency) against the simulator's
servers on both profiles, as a tenant's own user from clouds.yaml: server list, show, stop,
start and image create, each a real process talking HTTP to the simulated clouds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.server import CloudSpec, SimServer
from tests.sim.conftest import connect
from tests.sim.server_world import wait_server

CLOUDS = ["legacy", "target"]
OPENSTACK = shutil.which("openstack", path=str(Path(sys.executable).parent)) or "openstack"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    tmp = tmp_path_factory.mktemp("osc")
    shape = SeedShape(tenants=1, image_size=65536, volume_data_size=65536,
                      servers_per_tenant=4)
    doc = {"clouds": {**generate(shape, "legacy")["clouds"],
                      **generate(shape, "target")["clouds"]}}
    seed = tmp / "seed.json"
    seed.write_text(json.dumps(doc))
    specs = [CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")]
    with SimServer(specs, tmp / "data", seed=seed) as server:
        yield server


def openstack(sim: SimServer, cloud: str, *args: str) -> Any:
    """``openstack --os-cloud CLOUD-physics-user0 ARGS -f json``, parsed (None: no output)."""
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(sim.clouds_yaml)}
    done = subprocess.run([OPENSTACK, "--os-cloud", f"{cloud}-physics-user0", *args],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, (args, done.stderr)
    return json.loads(done.stdout) if done.stdout.strip() else None


@pytest.mark.parametrize("cloud", CLOUDS)
def test_openstack_server_commands(seeded: SimServer, cloud: str) -> None:
    listed = {s["Name"]: s for s in openstack(seeded, cloud, "server", "list", "-f", "json")}
    assert {n: s["Status"] for n, s in listed.items()} == {
        "physics-vm0": "ACTIVE", "physics-vm1": "ACTIVE", "physics-vm2": "SHUTOFF",
        "physics-vm3": "ACTIVE"}
    assert listed["physics-vm1"]["Image"] == "N/A (booted from volume)"
    assert len(listed["physics-vm0"]["Networks"]["physics-net"]) == 2  # fixed and floating
    shown = openstack(seeded, cloud, "server", "show", "physics-vm0", "-f", "json")
    assert (shown["status"], shown["key_name"], shown["properties"]) == (
        "ACTIVE", "physics-key", {"role": "web"})
    assert shown["image"].startswith("physics-arm64-0 (")
    assert "a1.large" in str(shown["flavor"])
    assert shown["security_groups"] == [{"name": "web"}]
    openstack(seeded, cloud, "server", "stop", "physics-vm0")
    conn = connect(seeded, f"{cloud}-physics-user0")
    wait_server(conn, conn.compute.find_server("physics-vm0"), "SHUTOFF")
    assert openstack(seeded, cloud, "server", "show", "physics-vm0", "-f", "json")[
        "status"] == "SHUTOFF"
    openstack(seeded, cloud, "server", "start", "physics-vm2")
    wait_server(conn, conn.compute.find_server("physics-vm2"), "ACTIVE")
    image = openstack(seeded, cloud, "server", "image", "create", "--name", "vm3-snap",
                      "--wait", "physics-vm3", "-f", "json")
    source = conn.image.find_image("physics-arm64-0")
    assert (image["status"], image["size"], image["checksum"]) == ("active", source.size,
                                                                   source.checksum)
    volume_backed = openstack(seeded, cloud, "server", "image", "create", "--name",
                              "vm1-snap", "--wait", "physics-vm1", "-f", "json")
    assert volume_backed["size"] == 0
    assert "block_device_mapping" in volume_backed["properties"]
