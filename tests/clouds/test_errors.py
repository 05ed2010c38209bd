"""clouds/errors.py names the id a service gave a failed call (``x-openstack-request-id``,
or Liberty Nova's ``x-compute-request-id``), so that an operator can find the call in the
service's log: through get_json's lean reader, through the SDK path, and through
keystoneauth's own exceptions. Against the simulator, which sends the ids each profile's
services send."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
import requests
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as sdk_exc

from migrator.clouds.connection import open_cloud
from migrator.clouds.errors import CloudCallError, cloud_errors, request_id
from migrator.sim.server import CloudSpec, SimServer

ID = r"req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    server = SimServer([CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")],
                       tmp_path_factory.mktemp("errors")).start()
    yield server
    server.stop()


@pytest.mark.parametrize(("cloud", "service", "path"), [
    ("legacy", "network", "/networks/nosuch"),
    ("legacy", "compute", "/flavors/nosuch"),  # Liberty Nova: x-compute-request-id
    ("target", "image", f"/images/{uuid.uuid4()}"),
    ("target", "block_storage", f"/volumes/{uuid.uuid4()}"),
])
def test_a_failed_read_names_its_request_id(sim: SimServer, cloud: str, service: str,
                                            path: str) -> None:
    handle = open_cloud(cloud, config_file=sim.clouds_yaml,
                        role="source" if cloud == "legacy" else "target")
    try:
        with pytest.raises(CloudCallError) as info:
            handle.get_json(service, path)
    finally:
        handle.close()
    message = info.value.message
    assert info.value.status == 404
    assert re.fullmatch(rf"cloud {cloud}: GET \S+ \({service}\): HTTP 404: .* \(request {ID}\)",
                        message), message


def test_the_sdk_path_names_the_id_the_service_sent(sim: SimServer) -> None:
    handle = open_cloud("target", config_file=sim.clouds_yaml, role="target")
    try:
        response = handle.proxy("network").get(f"/networks/{uuid.uuid4()}")
        sent = response.headers["x-openstack-request-id"]
        with pytest.raises(CloudCallError) as info, cloud_errors("target", "get network"):
            sdk_exc.raise_from_response(response)
        assert info.value.message.endswith(f" (request {sent})")
        # keystoneauth's own exceptions (a session call with raise_exc) carry it too.
        with pytest.raises(CloudCallError) as again, cloud_errors("target", "get network"):
            handle.conn.session.get(f"{handle.proxy('network').get_endpoint()}/v2.0/networks/"
                                    f"{uuid.uuid4()}")
        assert isinstance(again.value.__cause__, ksa_exc.NotFound)
        assert re.search(rf" \(request {ID}\)$", again.value.message)
    finally:
        handle.close()


def test_only_the_shape_services_use_is_echoed() -> None:
    response = requests.Response()
    response.headers["x-openstack-request-id"] = "req-not a uuid\x1b[31m"
    assert request_id(response) is None
    response.headers["x-openstack-request-id"] = "req-0b5c36f6-93e0-4a0e-9f1e-0f8f6a0d8e2c"
    assert request_id(response) == "req-0b5c36f6-93e0-4a0e-9f1e-0f8f6a0d8e2c"
    assert request_id(None) is None
