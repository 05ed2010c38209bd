"""Keystone through openstacksdk against both profiles."""

from __future__ import annotations

from pathlib import Path

import openstack
import pytest
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session
from keystoneauth1.identity import v2

from migrator.sim.server import CloudSpec, SimServer
from tests.sim.conftest import connect, make_member, member_connection


@pytest.mark.parametrize("cloud", ["legacy", "target"])
def test_v3_token_catalog_and_projects(sim: SimServer, cloud: str) -> None:
    conn = connect(sim, cloud)
    assert [p.name for p in conn.identity.projects()] == ["admin"]
    assert conn.session.get_endpoint(service_type="image").endswith("/image")


def test_member_cannot_list_other_projects(sim: SimServer) -> None:
    admin = connect(sim, "legacy")
    make_member(admin, "physics", "alice")
    alice = member_connection(sim, "legacy", "physics", "alice")
    with pytest.raises(openstack.exceptions.ForbiddenException):
        list(alice.identity.projects())
    assert [p.name for p in alice.identity.user_projects(alice.current_user_id)] == ["physics"]


def test_v2_token_on_liberty_only(sim: SimServer) -> None:
    legacy = sim.cloud("legacy")
    password = legacy.state.find_one("users", name="admin")["password"]  # type: ignore[index]
    auth = v2.Password(auth_url=f"{legacy.base_url}/identity/v2.0", username="admin",
                       password=password, tenant_name="admin")
    sess = session.Session(auth=auth)
    assert sess.get_project_id() is not None
    # The v2 catalog carries the project in the legacy compute and volume URLs.
    compute = sess.get_endpoint(service_type="compute", interface="public")
    assert compute.endswith(f"/compute/v2.1/{sess.get_project_id()}")
    tenants = sess.get(f"{legacy.base_url}/identity/v2.0/tenants").json()["tenants"]
    assert "admin" in [t["name"] for t in tenants]
    target = sim.cloud("target")
    resp = sess.post(f"{target.base_url}/identity/v2.0/tokens", json={}, raise_exc=False,
                     authenticated=False)
    assert resp.status_code == 404


def test_bad_password_is_401(sim: SimServer) -> None:
    base = sim.cloud("target").base_url
    conn = connect(sim, "target", auth={"auth_url": f"{base}/identity/v3", "username": "admin",
                                        "password": "wrong", "project_name": "admin",
                                        "user_domain_id": "default",
                                        "project_domain_id": "default"})
    with pytest.raises(ks_exc.Unauthorized) as err:
        list(conn.identity.projects())
    assert err.value.http_status == 401


def test_a_cloud_on_ipv6_loopback(tmp_path: Path) -> None:
    # The target datacenter is IPv6-only: the simulator can listen on [::1].
    with SimServer([CloudSpec.parse("target:modern:::1:0")], tmp_path) as srv:
        assert srv.cloud("target").base_url.startswith("http://[::1]:")
        conn = connect(srv, "target")
        assert [p.name for p in conn.identity.projects()] == ["admin"]
        assert conn.session.get_endpoint(service_type="network").startswith("http://[::1]:")
