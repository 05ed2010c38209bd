"""Discovery of servers: with the admin's cloud-wide listings, and with a tenant's own
credentials only (limited mode: per-tenant listings); both see the same servers with the
same ports, MACs, addresses, floating IPs, attached volumes in order and flavor name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrator.operations.db import init_state
from migrator.operations.discover import discover
from migrator.store.db import make_engine, session_factory
from migrator.store.inventory import latest_snapshot, load_items
from tests.servers_world import ServersWorld, raw_servers, servers_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServersWorld]:
    with servers_world(tmp_path_factory.mktemp("source-servers")) as w:
        yield w


def servers_of(url: str, cloud: str) -> dict[str, dict[str, Any]]:
    engine = make_engine(url)
    try:
        factory = session_factory(engine)
        snapshot = latest_snapshot(factory, cloud)
        assert snapshot is not None
        return {i.name or i.source_id: {**i.attributes, "_size": i.size_bytes,
                                         "_tenant": i.tenant}
                for i in load_items(factory, snapshot.id, kinds=["server"])}
    finally:
        engine.dispose()


JOINED = ("ports", "attached_volumes", "boot", "flavor_name", "_size", "_tenant")


def test_admin_and_tenant_credentials_read_the_same_servers(world: ServersWorld,
                                                            tmp_path: Path) -> None:
    admin = servers_of(f"sqlite:///{world.db}", "legacy")
    url = f"sqlite:///{tmp_path / 'own.db'}"
    init_state(url)
    discover(url, "legacy-physics-user0", clouds_yaml=world.sim.clouds_yaml)
    own = servers_of(url, "legacy-physics-user0")
    assert sorted(admin) == sorted(own) == ["physics-vm0", "physics-vm1", "physics-vm2"]
    for name in admin:
        assert {k: admin[name][k] for k in JOINED} == {k: own[name][k] for k in JOINED}, name
    legacy = raw_servers(world.legacy)
    web = admin["physics-vm0"]
    assert web["boot"] == "image" and web["flavor_name"] == "a1.large"
    assert [v["volume_id"] for v in web["attached_volumes"]] == [
        a["id"] for a in legacy["physics-vm0"]["os-extended-volumes:volumes_attached"]]
    (port,) = web["ports"]
    (fixed,) = port["fixed_ips"]
    addresses = {a["addr"]: a for net in legacy["physics-vm0"]["addresses"].values()
                 for a in net}
    assert addresses[fixed["ip_address"]]["OS-EXT-IPS-MAC:mac_addr"] == port["mac_address"]
    floating = [a for a, v in addresses.items() if v["OS-EXT-IPS:type"] == "floating"]
    assert port["floating_ips"] == floating and floating
    db = admin["physics-vm1"]
    assert db["boot"] == "volume"
    assert [(v["device"], v["boot"]) for v in db["attached_volumes"]] == [
        ("/dev/vda", True), ("/dev/vdb", False)]
    assert db["_size"] == 2 << 30  # two 1 GiB volumes
