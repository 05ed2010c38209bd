"""Every fault kind, observed by a client (openstacksdk or a raw keystoneauth session), and the
call record. Streaming faults (corrupted byte, dropped connection, bandwidth) are in
test_streaming.py."""

from __future__ import annotations

import time
from pathlib import Path

import openstack
import pytest
import requests

from migrator.sim.server import CloudSpec, SimServer
from tests.sim.conftest import Admin, connect
from tests.timing import scaled


def test_latency_is_added(sim: SimServer, admin_api: dict[str, Admin]) -> None:
    conn = connect(sim, "target")
    list(conn.network.networks())  # authenticate first
    admin_api["target"].add_fault(match="GET /network/v2.0/networks", latency_ms=300)
    started = time.monotonic()
    list(conn.network.networks())
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize(("status", "exc"), [
    (500, openstack.exceptions.HttpException),
    (409, openstack.exceptions.ConflictException),
    (413, openstack.exceptions.HttpException),
])
def test_error_status_reaches_the_sdk(sim: SimServer, admin_api: dict[str, Admin], status: int,
                                      exc: type[Exception]) -> None:
    conn = connect(sim, "target")
    admin_api["target"].add_fault(match="POST /network/v2.0/networks", status=status, times=1)
    with pytest.raises(exc) as err:
        conn.network.create_network(name=f"refused-{status}")
    assert getattr(err.value, "status_code", None) == status
    # The fault fired once: the next create goes through.
    net = conn.network.create_network(name=f"accepted-{status}")
    assert net.id
    assert [n.name for n in conn.network.networks(name=f"refused-{status}")] == []


def test_503_carries_retry_after(sim: SimServer, admin_api: dict[str, Admin]) -> None:
    conn = connect(sim, "legacy")
    admin_api["legacy"].add_fault(match="GET /network/v2.0/routers", status=503,
                                  retry_after=7, times=1)
    base = conn.session.get_endpoint(service_type="network")
    resp = conn.session.get(f"{base}/v2.0/routers", raise_exc=False)
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "7"
    assert "NeutronError" in resp.json()


def test_expired_token_makes_the_client_authenticate_again(
    sim: SimServer, admin_api: dict[str, Admin]
) -> None:
    conn = connect(sim, "target")
    list(conn.identity.projects())
    before = admin_api["target"].calls().get("POST /identity/v3/auth/tokens", 0)
    admin_api["target"].expire_tokens()
    # The server answers 401 to the stale token; keystoneauth fetches a new one and retries.
    assert "admin" in [p.name for p in conn.identity.projects()]
    after = admin_api["target"].calls()["POST /identity/v3/auth/tokens"]
    assert after == before + 1


def test_short_token_lifetime(sim: SimServer, admin_api: dict[str, Admin]) -> None:
    ttl = scaled(2.0)  # long enough for the token's first use, on a busy machine too
    admin_api["legacy"].expire_tokens(ttl=ttl)
    try:
        base = sim.cloud("legacy").base_url
        password = sim.cloud("legacy").state.find_one("users", name="admin")["password"]  # type: ignore[index]
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
        token = requests.post(f"{base}/identity/v3/auth/tokens", json=body,
                              timeout=10).headers["X-Subject-Token"]
        ok = requests.get(f"{base}/network/v2.0/networks", headers={"X-Auth-Token": token},
                          timeout=10)
        assert ok.status_code == 200
        time.sleep(ttl + 0.1)
        expired = requests.get(f"{base}/network/v2.0/networks",
                               headers={"X-Auth-Token": token}, timeout=10)
        assert expired.status_code == 401
    finally:
        admin_api["legacy"].expire_tokens(ttl=3600)


def _pattern(data_dir: Path, fault_seed: int) -> list[int]:
    """Status codes of 30 identical calls under a 30% error rate."""
    with SimServer([CloudSpec("legacy", "liberty")], data_dir, fault_seed=fault_seed) as srv:
        base = srv.cloud("legacy").base_url
        Admin(srv, "legacy").add_fault(match="GET /network/v2.0", rate=0.3, status=500)
        return [requests.get(f"{base}/network/v2.0", timeout=10).status_code
                for _ in range(30)]


def test_error_rate_replays_under_the_same_seed(tmp_path: Path) -> None:
    first = _pattern(tmp_path / "a", fault_seed=42)
    again = _pattern(tmp_path / "b", fault_seed=42)
    other = _pattern(tmp_path / "c", fault_seed=7)
    assert first == again
    assert 3 <= first.count(500) <= 18  # about 30% of 30
    assert first != other


def test_bad_fault_rule_is_refused(sim: SimServer) -> None:
    resp = requests.post(f"{sim.cloud('target').base_url}/_sim/faults",
                         json={"match": "GET /x", "statsu": 500}, timeout=10)
    assert resp.status_code == 400
    assert "unknown key 'statsu'" in resp.json()["error"]


def test_calls_are_counted_per_route_and_method(sim: SimServer,
                                                 admin_api: dict[str, Admin]) -> None:
    conn = connect(sim, "target")
    list(conn.compute.flavors())
    admin_api["target"].reset_calls()
    list(conn.network.networks())
    list(conn.network.networks())
    conn.network.create_network(name="counted")
    calls = admin_api["target"].calls()
    assert calls["GET /network/v2.0/networks"] == 2
    assert calls["POST /network/v2.0/networks"] == 1
    assert not any(key.startswith("GET /network/v2.0/networks/") for key in calls)
