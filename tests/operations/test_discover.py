"""discover(): snapshots stored from the Liberty simulator; errors leave the database as it was."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select, text

from migrator.errors import CloudError, ConfigError
from migrator.operations.discover import discover
from migrator.sim.server import SimServer
from migrator.store.db import make_engine, session_factory
from migrator.store.inventory import latest_snapshot, load_items
from migrator.store.models import InventoryItem, InventorySnapshot
from tests.clouds.legacy_sim import TENANTS, add_operator, passwords, start_legacy


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    server = start_legacy(tmp_path_factory.mktemp("legacy"))
    add_operator(server, member_of=["physics", "chemistry"], home="physics")
    yield server
    server.stop()


def rows(db_url: str) -> tuple[int, int]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            snapshots = conn.execute(select(func.count()).select_from(InventorySnapshot))
            items = conn.execute(select(func.count()).select_from(InventoryItem))
            return int(snapshots.scalar_one()), int(items.scalar_one())
    finally:
        engine.dispose()


def test_discover_stores_a_snapshot(sim: SimServer, db_url: str) -> None:
    lines: list[str] = []
    result = discover(db_url, "legacy", clouds_yaml=sim.clouds_yaml, progress=lines.append)
    assert result.mode == "admin" and result.unreadable == []
    assert sorted(result.tenants) == sorted([*TENANTS, "admin"])
    assert result.counts["project"] == 4 and result.counts["quota"] == 12
    assert result.per_tenant["physics"] > 20 and result.per_tenant["-"] > 0
    assert any(line.startswith("identity:") for line in lines)
    factory = session_factory(make_engine(db_url))
    info = latest_snapshot(factory, "legacy")
    assert info is not None and info.id == result.snapshot_id
    assert info.api_calls == result.api_calls > 20
    assert info.content_hash == result.content_hash
    assert info.selection["mode"] == "admin" and info.selection["requested"] == []
    nets = list(load_items(factory, info.id, kinds=["network"]))
    assert {n.name for n in nets} == {"public", "shared-net", *(f"{t}-net" for t in TENANTS)}
    # The same cloud read again gives the same content hash.
    again = discover(db_url, "legacy", clouds_yaml=sim.clouds_yaml)
    assert again.content_hash == result.content_hash and again.snapshot_id != result.snapshot_id


def test_no_secret_reaches_the_database(sim: SimServer, db_url: str) -> None:
    discover(db_url, "legacy-operator", clouds_yaml=sim.clouds_yaml,
             tenant_credentials={"biology": "legacy-biology-user0"}, tenants=TENANTS)
    discover(db_url, "legacy", clouds_yaml=sim.clouds_yaml)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        dump = "\n".join(str(tuple(row)) for table in ("inventory_snapshots", "inventory_items")
                         for row in conn.execute(text(f"SELECT * FROM {table}")))
    engine.dispose()
    assert "physics-user0" in dump  # the user names are there...
    for secret in passwords(sim):
        assert secret not in dump  # ...their passwords are not
    assert '"password"' not in dump


def test_selection_and_config_credentials(sim: SimServer, db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "migrator.yaml"
    config.write_text(yaml.safe_dump({"source": {
        "cloud": "legacy-operator",
        "tenant_credentials": {"biology": "legacy-biology-user0"}}}))
    result = discover(db_url, None, tenants=TENANTS, config=config, clouds_yaml=sim.clouds_yaml)
    assert result.cloud == "legacy-operator" and result.mode == "limited"
    assert sorted(result.tenants) == sorted(TENANTS)
    assert {u.kind for u in result.unreadable if u.tenant_name == "physics"} >= {"keypair"}
    factory = session_factory(make_engine(db_url))
    info = latest_snapshot(factory, "legacy-operator")
    assert info is not None
    assert info.selection["tenant_credentials"] == {"biology": "legacy-biology-user0"}
    assert info.selection["unreadable"] and info.selection["mode"] == "limited"
    # Without biology's credentials the operator cannot see it: reported, not fatal.
    result = discover(db_url, "legacy-operator", tenants=TENANTS, clouds_yaml=sim.clouds_yaml)
    assert "biology" not in result.tenants
    assert any(u.tenant_name == "biology" for u in result.unreadable)


def test_only_selected_tenant(sim: SimServer, db_url: str) -> None:
    result = discover(db_url, "legacy", tenants=["physics"], clouds_yaml=sim.clouds_yaml)
    assert result.tenants == ["physics"]
    assert result.counts["quota"] == 3 and result.counts["keypair"] == 1


def test_unknown_cloud_writes_nothing(sim: SimServer, db_url: str) -> None:
    with pytest.raises(ConfigError, match=r"no cloud named 'nosuch'"):
        discover(db_url, "nosuch", clouds_yaml=sim.clouds_yaml)
    with pytest.raises(ConfigError, match=r"unknown tenant 'nosuch' on cloud legacy"):
        discover(db_url, "legacy", tenants=["nosuch"], clouds_yaml=sim.clouds_yaml)
    assert rows(db_url) == (0, 0)


def test_dead_endpoint_writes_nothing(db_url: str, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": {"legacy": {"auth": {
        "auth_url": f"http://127.0.0.1:{port}/identity/v3", "username": "admin",
        "password": "pw", "project_name": "admin", "user_domain_id": "default",
        "project_domain_id": "default"}}}}))
    with pytest.raises(CloudError, match=r"^cloud legacy: cannot reach http://127.0.0.1:"):
        discover(db_url, "legacy", clouds_yaml=path)
    assert rows(db_url) == (0, 0)


def test_faults_are_retried(sim: SimServer, db_url: str) -> None:
    from tests.clouds.legacy_sim import SimAdmin

    api = SimAdmin(sim)
    api.add_fault(match="GET *", status=503, retry_after=0, rate=0.1)
    try:
        result = discover(db_url, "legacy", clouds_yaml=sim.clouds_yaml)
    finally:
        api.clear_faults()
    assert result.retries > 0
    assert result.counts["project"] == 4 and result.counts["image"] == 6
