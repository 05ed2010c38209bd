"""Seed files: the generated Liberty inventory as openstacksdk sees it, errors that name the file,
the line and the key, and state that survives a restart of the simulator."""

from __future__ import annotations

import json
import os
from pathlib import Path

import openstack
import pytest
import yaml

from migrator.sim.nova_keypairs import ssh_fingerprint
from migrator.sim.seed_gen import LEGACY_UEFI_HACK, SeedShape, generate
from migrator.sim.seed_schema import SeedError
from migrator.sim.server import CloudSpec, SimServer


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> SimServer:
    tmp = tmp_path_factory.mktemp("seeded")
    seed = tmp / "seed.yaml"
    seed.write_text(yaml.safe_dump(generate(SeedShape(tenants=3, image_size=300_000,
                                                      volume_data_size=100_000))))
    server = SimServer([CloudSpec("legacy", "liberty")], tmp / "data", seed=seed).start()
    yield server  # type: ignore[misc]
    server.stop()


def conn_to(server: SimServer, cloud: str = "legacy") -> openstack.connection.Connection:
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(server.clouds_yaml)
    return openstack.connect(cloud=cloud)


def test_generated_inventory_through_the_sdk(seeded: SimServer) -> None:
    conn = conn_to(seeded)
    projects = {p.name: p.id for p in conn.identity.projects()}
    assert {"admin", "physics", "chemistry", "biology"} <= set(projects)
    raw = conn.network.get("/networks").json()["networks"]
    by_name = {n["name"]: n for n in raw}
    assert by_name["physics-net"]["tenant_id"] == projects["physics"]
    assert "project_id" not in by_name["physics-net"]  # Liberty knows only tenant_id
    assert by_name["public"]["router:external"] is True
    assert by_name["shared-net"]["shared"] is True
    routers = {r.name: r for r in conn.network.routers()}
    assert routers["physics-router"].external_gateway_info["network_id"] == by_name["public"]["id"]
    groups = conn.network.get("/security-groups").json()["security_groups"]
    db = next(g for g in groups if g["name"] == "db" and g["tenant_id"] == projects["chemistry"])
    web_physics = next(g for g in groups if g["name"] == "web"
                       and g["tenant_id"] == projects["physics"])
    assert web_physics["id"] in {r["remote_group_id"] for r in db["security_group_rules"]}


def test_generated_images_volumes_and_keypairs(seeded: SimServer) -> None:
    conn = conn_to(seeded)
    images = {i.name: i for i in conn.image.images()}
    arm = images["physics-arm64-0"]
    props = arm.to_dict()
    assert props["architecture"] == "aarch64"
    for key, value in LEGACY_UEFI_HACK.items():
        assert arm.properties[key] == value
    assert arm.checksum and arm.size == 300_000
    assert not props.get("os_hash_value")  # md5 only on Liberty
    vols = {v.name: v for v in conn.block_storage.volumes(all_projects=True)}
    boot = vols["physics-boot-0"]
    assert boot.volume_image_metadata["image_id"] == arm.id
    assert boot.is_bootable is True
    users = {u.name: u.id for u in conn.identity.users()}
    keys = list(conn.compute.keypairs(user_id=users["physics-user0"]))
    assert [k.name for k in keys] == ["physics-key"]
    assert [f.name for f in conn.compute.flavors() if not f.is_public] == ["hpc.xlarge"]


def test_own_credentials_entry(seeded: SimServer) -> None:
    conn = conn_to(seeded, "legacy-physics-user0")
    assert [n.name for n in conn.network.networks()
            if not n.is_shared and not n.is_router_external] == ["physics-net"]


@pytest.mark.parametrize(("text", "expected"), [
    ("clouds:\n  legacy:\n    tenants:\n      - name: a\n        imagess: []\n",
     ":4: clouds.legacy.tenants[0]: unknown key 'imagess'"),
    ("clouds:\n  legacy:\n    tenants:\n      - name: a\n        volumes:\n"
     "          - {name: v, size: big}\n",
     ":6: clouds.legacy.tenants[0].volumes[0].size: expected an integer, got 'big'"),
    ("clouds:\n  legacy: [\n", ":3: not valid YAML"),
    ("clouds:\n  legacy:\n    tenants:\n      - name: a\n        networks:\n"
     "          - name: n\n            subnets:\n              - cidr: 10.0.0.1/24\n",
     ":8: clouds.legacy.tenants[0].networks[0].subnets[0].cidr: 10.0.0.1/24 has host bits set"),
    ("clouds:\n  legacy:\n    tenants:\n      - name: a\n        routers:\n"
     "          - name: r\n            external_network: nowhere\n",
     ":6: clouds.legacy.tenants[0].routers[0].external_network: unknown network 'nowhere'"),
    ("clouds:\n  legacy:\n    faults:\n      - {match: 'GET /x', statsu: 500}\n",
     ":4: clouds.legacy.faults: fault #1: unknown key 'statsu'"),
    ("clouds:\n  legacy:\n    delays: {volume_create: -1}\n",
     "clouds.legacy.delays.volume_create: must be >= 0"),
    ("tenants: []\n", ":1: a seed file is a mapping with a 'clouds' key"),
])
def test_bad_seed_names_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    seed = tmp_path / "bad.yaml"
    seed.write_text(text)
    with pytest.raises(SeedError) as err:
        SimServer([CloudSpec("legacy", "liberty")], tmp_path / "data", seed=seed)
    assert str(err.value).startswith(str(seed))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_state_survives_a_restart_and_is_not_seeded_twice(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(generate(SeedShape(tenants=1, images_per_tenant=1,
                                                      volumes_per_tenant=0,
                                                      image_size=1000))))
    data = tmp_path / "data"
    with SimServer([CloudSpec("legacy", "liberty")], data, seed=seed) as srv:
        conn = conn_to(srv)
        conn.identity.create_project(name="made-after-seeding", domain_id="default")
        image = conn.image.create_image(name="uploaded", data=b"x" * 5000,
                                        disk_format="raw", container_format="bare")
        image_id = image.id
    with SimServer([CloudSpec("legacy", "liberty")], data, seed=seed) as srv:
        conn = conn_to(srv)
        names = [p.name for p in conn.identity.projects()]
        assert names.count("made-after-seeding") == 1
        assert names.count("physics") == 1
        assert b"".join(conn.image.download_image(image_id, stream=True).iter_content(
            1 << 16)) == b"x" * 5000


def test_seeded_keypair_fingerprint_is_novas(seeded: SimServer) -> None:
    conn = conn_to(seeded)
    users = {u.name: u.id for u in conn.identity.users()}
    (key,) = conn.compute.keypairs(user_id=users["chemistry-user0"])
    full = conn.compute.get_keypair(key.name, user_id=users["chemistry-user0"])
    assert full.fingerprint == ssh_fingerprint(full.public_key)
