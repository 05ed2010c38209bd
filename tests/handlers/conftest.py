"""Fixtures for the handler tests: the simulator (module scope, from tests/sim), the target
adapter over openstacksdk, an admin-owned external network on the target, and a runner that
creates a run from hand-written specs and executes it with the tenant handlers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import openstack
import pytest

from migrator.clouds.connection import CloudHandle, open_cloud
from migrator.clouds.target import TargetCloud
from migrator.retry import Backoff, RetryPolicy
from migrator.sim.server import SimServer
from tests.handlers.helpers import Runner
from tests.sim.conftest import Admin, admin_api, sim  # noqa: F401 - fixtures

__all__ = ["Admin"]


@pytest.fixture(scope="module")
def target_handle(sim: SimServer) -> Iterator[CloudHandle]:  # noqa: F811
    handle = open_cloud("target", config_file=sim.clouds_yaml, role="target")
    yield handle
    handle.close()


@pytest.fixture(scope="module")
def tc(target_handle: CloudHandle) -> TargetCloud:
    # Short backoffs: the tests inject 503s with Retry-After 0.
    return TargetCloud(target_handle, retry=RetryPolicy(backoff=Backoff(base=0.01)))


@pytest.fixture(scope="module")
def conn(sim: SimServer) -> openstack.connection.Connection:  # noqa: F811
    """A plain SDK connection to the target, for assertions."""
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(sim.clouds_yaml)
    return openstack.connect(cloud="target")


@pytest.fixture(scope="module")
def public_net(conn: openstack.connection.Connection) -> dict[str, Any]:
    """The target's external network ``public`` (created once by the admin)."""
    existing = conn.network.find_network("public")
    if existing is None:
        existing = conn.network.create_network(name="public", is_router_external=True)
        conn.network.create_subnet(network_id=existing.id, ip_version=6,
                                   cidr="2001:db8:ffff::/64", name="public-v6")
    return {"id": existing.id, "name": existing.name}


@pytest.fixture
def runner(db_url: str, tc: TargetCloud) -> Runner:
    return Runner(db_url, tc)
