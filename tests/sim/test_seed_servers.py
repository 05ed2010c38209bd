"""Servers from seed files: the generated ones (``servers_per_tenant``) as openstacksdk sees
them on a Liberty cloud, a hand-written ERROR server, and errors that name the line and key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openstack
import pytest
import yaml

from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.seed_schema import SeedError
from migrator.sim.server import CloudSpec, SimServer
from tests.sim.conftest import connect
from tests.sim.server_world import INTERVAL, WAIT, download_md5, wait_image, wait_server


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    tmp = tmp_path_factory.mktemp("seeded-servers")
    seed = tmp / "seed.json"
    seed.write_text(json.dumps(generate(SeedShape(tenants=2, image_size=300_000,
                                                  volume_data_size=100_000,
                                                  servers_per_tenant=4))))
    with SimServer([CloudSpec("legacy", "liberty")], tmp / "data", seed=seed) as server:
        yield server


def test_generated_servers_through_the_sdk(seeded: SimServer) -> None:
    conn = connect(seeded, "legacy")
    physics = conn.identity.find_project("physics").id
    servers = {s.name: s for s in conn.compute.servers(all_projects=True,
                                                       project_id=physics)}
    assert set(servers) == {f"physics-vm{i}" for i in range(4)}
    web, db, batch, worker = (servers[f"physics-vm{i}"] for i in range(4))
    assert [s.status for s in (web, db, batch, worker)] == ["ACTIVE", "ACTIVE", "SHUTOFF",
                                                           "ACTIVE"]
    assert batch.power_state == 4 and web.power_state == 1
    assert web.key_name == "physics-key" and web.flavor.id  # Liberty: id and links
    assert [g["name"] for g in web.security_groups] == ["web"]
    # The web server: image-backed AArch64 with a floating IP of "public".
    images = {i.id: i for i in conn.image.images()}
    assert images[web.image.id].name == "physics-arm64-0"
    fixed, floating = web.addresses["physics-net"]
    assert (fixed["OS-EXT-IPS:type"], floating["OS-EXT-IPS:type"]) == ("fixed", "floating")
    assert floating["addr"].startswith("203.0.113.")
    [fip] = conn.network.ips(floating_ip_address=floating["addr"])
    [port] = conn.network.ports(device_id=web.id)
    assert (fip.port_id, fip.fixed_ip_address, port.mac_address) == (
        port.id, fixed["addr"], fixed["OS-EXT-IPS-MAC:mac_addr"])
    assert port.device_owner == "compute:nova" and port.binding_host_id == "compute-arm-1"
    # The database: volume-backed x86 with a data volume attached.
    assert not db.image
    root, data = (conn.block_storage.get_volume(v["id"]) for v in db.attached_volumes)
    assert (root.name, data.name) == ("physics-vm1-root", "physics-vm1-data")
    assert root.status == data.status == "in-use"
    assert [a["device"] for a in root.attachments + data.attachments] == ["/dev/vda",
                                                                          "/dev/vdb"]
    assert root.volume_image_metadata["architecture"] == "x86_64"
    assert [p.status for p in conn.network.ports(device_id=batch.id)] == ["DOWN"]
    # Nova's quota usage counts them.
    usage = conn.compute.get_quota_set(physics, usage=True).usage
    assert usage["instances"] == 4 and usage["cores"] == 8 + 2 + 1 + 1


def test_seeded_servers_work_like_booted_ones(seeded: SimServer) -> None:
    conn = connect(seeded, "legacy")
    chemistry = conn.identity.find_project("chemistry").id
    servers = {s.name: s for s in conn.compute.servers(all_projects=True,
                                                       project_id=chemistry)}
    worker = servers["chemistry-vm3"]
    image = wait_image(conn, conn.compute.create_server_image(worker, "worker-snap").id)
    source = conn.image.get_image(worker.image.id)
    assert download_md5(conn, image) == source.checksum  # the disk is the image's bytes
    batch = servers["chemistry-vm2"]
    conn.compute.start_server(batch)
    assert wait_server(conn, batch, "ACTIVE").power_state == 1
    db = servers["chemistry-vm1"]
    conn.compute.delete_server(db)
    conn.compute.wait_for_delete(db, interval=INTERVAL, wait=WAIT)
    data = conn.block_storage.find_volume("chemistry-vm1-data", all_projects=True)
    assert data is not None and data.status == "available"


SEED = """\
clouds:
  legacy:
    flavors: [{name: m1.small, vcpus: 1, ram: 512, disk: 1}]
    tenants:
      - name: physics
        users: [{name: alice, password: pw}]
        networks: [{name: physics-net, subnets: [{cidr: 10.0.0.0/24}]}]
        keypairs: [{name: k1, user: alice}]
        images: [{name: img, content: {generated: {size: 1024}}}]
        servers:
          - name: broken
            flavor: m1.small
            image: img
            status: ERROR
            fault: "No valid host was found. There are not enough hosts available."
          - name: fine
            flavor: m1.small
            image: img
            key_name: k1
            metadata: {role: test}
"""


def test_hand_written_servers(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(SEED)
    with SimServer([CloudSpec("legacy", "liberty")], tmp_path / "data", seed=seed) as sim:
        conn = connect(sim, "legacy")
        servers = {s.name: s for s in conn.compute.servers(all_projects=True)}
        broken = servers["broken"]
        assert broken.status == "ERROR" and broken.addresses == {}
        assert broken.fault["message"].startswith("No valid host was found.")
        assert servers["fine"].metadata == {"role": "test"}
        assert servers["fine"].key_name == "k1"
        assert [g["name"] for g in servers["fine"].security_groups] == ["default"]
        with pytest.raises(openstack.exceptions.ConflictException, match="vm_state error"):
            conn.compute.start_server(broken)


FINE = ("          - name: fine\n            flavor: m1.small\n            image: img\n"
        "            key_name: k1\n")


@pytest.mark.parametrize(("fields", "where", "problem"), [
    ("flavor: m1.small\n  image: img\n  key_name: nope", "servers[1].key_name",
     "user 'alice' has no key pair 'nope'"),
    ("flavor: m1.small\n  image: img\n  boot_volume: v", "servers[1]",
     "a server boots from exactly one of 'image' or 'boot_volume'"),
    ("flavor: m9\n  image: img", "servers[1].flavor", "unknown flavor 'm9'"),
    ("flavor: m1.small\n  image: img\n  status: PAUSED", "servers[1].status",
     "'PAUSED' is not one of ACTIVE, SHUTOFF, ERROR"),
    ("flavor: m1.small\n  image: img\n  networks: [nowhere]", "servers[1].networks[0]",
     "unknown network 'nowhere'"),
])
def test_seed_server_errors_name_line_and_key(tmp_path: Path, fields: str, where: str,
                                              problem: str) -> None:
    assert FINE in SEED
    bad = "          - name: fine\n" + "".join(
        f"            {line.strip()}\n" for line in fields.split("\n"))
    seed = tmp_path / "seed.yaml"
    seed.write_text(SEED.replace(FINE, bad))
    with pytest.raises(SeedError) as info:
        SimServer([CloudSpec("legacy", "liberty")], tmp_path / "data", seed=seed)
    message = str(info.value)
    # The line of the server's entry, its key path, the cause.
    assert message.startswith(f"{seed}:{SEED.splitlines().index('          - name: fine') + 1}:")
    assert f"clouds.legacy.tenants[0].{where}: {problem}" in message


def test_servers_are_a_shape_option() -> None:
    plain = generate(SeedShape(tenants=2))["clouds"]["legacy"]["tenants"]
    assert all("servers" not in t for t in plain)
    with_servers = generate(SeedShape(tenants=2, servers_per_tenant=5))
    tenants = with_servers["clouds"]["legacy"]["tenants"][1:]
    assert [len(t["servers"]) for t in tenants] == [5, 5]
    assert yaml.safe_load(yaml.safe_dump(with_servers)) == with_servers
