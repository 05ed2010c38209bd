"""Fixtures for the simulator's conformance suite: one legacy and one modern cloud served over
real HTTP for the whole module, and openstacksdk connections to them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import openstack
import pytest
import requests

from migrator.sim.server import CloudSpec, SimServer


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    data_dir = tmp_path_factory.mktemp("sim")
    server = SimServer(
        [CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")], data_dir
    ).start()
    previous = os.environ.get("OS_CLIENT_CONFIG_FILE")
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(server.clouds_yaml)
    try:
        yield server
    finally:
        server.stop()
        if previous is None:
            os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
        else:
            os.environ["OS_CLIENT_CONFIG_FILE"] = previous


def connect(sim: SimServer, cloud: str, **overrides: Any) -> openstack.connection.Connection:
    """A fresh SDK connection to a simulated cloud by its clouds.yaml name."""
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(sim.clouds_yaml)
    return openstack.connect(cloud=cloud, **overrides)


@pytest.fixture(scope="module")
def legacy(sim: SimServer) -> openstack.connection.Connection:
    return connect(sim, "legacy")


@pytest.fixture(scope="module")
def target(sim: SimServer) -> openstack.connection.Connection:
    return connect(sim, "target")


class Admin:
    """The simulator's admin endpoint (/_sim/...) of one cloud."""

    def __init__(self, sim: SimServer, cloud: str) -> None:
        self.base = f"{sim.cloud(cloud).listen_url}/_sim"
        # A simulator serving HTTPS is trusted through its own CA.
        self.verify: bool | str = str(sim.cacert) if sim.cacert else True

    def calls(self) -> dict[str, int]:
        return requests.get(f"{self.base}/calls",
                            timeout=10, verify=self.verify).json()["calls"]  # type: ignore[no-any-return]

    def reset_calls(self) -> None:
        requests.delete(f"{self.base}/calls", timeout=10, verify=self.verify).raise_for_status()

    def add_fault(self, **rule: Any) -> None:
        requests.post(f"{self.base}/faults", json=rule,
                      timeout=10, verify=self.verify).raise_for_status()

    def clear_faults(self) -> None:
        requests.delete(f"{self.base}/faults", timeout=10, verify=self.verify).raise_for_status()

    def expire_tokens(self, ttl: float | None = None) -> None:
        body = {} if ttl is None else {"ttl": ttl}
        requests.post(f"{self.base}/tokens/expire", json=body,
                      timeout=10, verify=self.verify).raise_for_status()


@pytest.fixture
def admin_api(sim: SimServer) -> Iterator[dict[str, Admin]]:
    """Admin endpoints of both clouds; faults are cleared after each test."""
    admins = {name: Admin(sim, name) for name in sim.clouds}
    yield admins
    for a in admins.values():
        a.clear_faults()


def make_member(conn: openstack.connection.Connection, project_name: str, user_name: str,
                password: str = "pw-" + "member") -> tuple[Any, Any]:
    """A project and a user holding only the member role on it, made through the SDK."""
    project = conn.identity.create_project(name=project_name, domain_id="default")
    user = conn.identity.create_user(name=user_name, password=password, domain_id="default",
                                     default_project_id=project.id)
    role = next(r for r in conn.identity.roles() if r.name in ("_member_", "member"))
    conn.identity.assign_project_role_to_user(project, user, role)
    return project, user


def member_connection(sim: SimServer, cloud: str, project_name: str, user_name: str,
                      password: str = "pw-" + "member") -> openstack.connection.Connection:
    """Same cloud, same API versions, but authenticated as a member user."""
    return connect(sim, cloud, auth={
        "auth_url": f"{sim.cloud(cloud).base_url}/identity/v3",
        "username": user_name, "password": password, "project_name": project_name,
        "user_domain_id": "default", "project_domain_id": "default"})


