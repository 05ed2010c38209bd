"""open_cloud: clouds.yaml names, API versions per role, the call counter, one-line errors."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from migrator.clouds.connection import open_cloud
from migrator.clouds.errors import CloudCallError
from migrator.errors import CloudError, ConfigError
from migrator.retry import Backoff, RetryPolicy
from migrator.sim.server import CloudSpec, SimServer
from tests.clouds.legacy_sim import SimAdmin


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    server = SimServer([CloudSpec("legacy", "liberty")], tmp_path_factory.mktemp("sim")).start()
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unknown_name_names_the_file_and_the_known_clouds(sim: SimServer) -> None:
    with pytest.raises(ConfigError) as info:
        open_cloud("nosuch", config_file=sim.clouds_yaml)
    message = str(info.value)
    assert "\n" not in message
    assert f"no cloud named 'nosuch' in clouds.yaml (searched {sim.clouds_yaml}" in message
    assert "clouds there: legacy" in message


def test_missing_clouds_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"clouds.yaml file .*nothere.yaml does not exist"):
        open_cloud("legacy", config_file=tmp_path / "nothere.yaml")


def test_dead_endpoint_is_a_cloud_error_naming_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/identity/v3"
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": {"dead": {"auth": {
        "auth_url": url, "username": "u", "password": "very-secret-pw",
        "project_name": "p", "user_domain_id": "default", "project_domain_id": "default"}}}}))
    policy = RetryPolicy(backoff=Backoff(0.01))
    with pytest.raises(CloudError) as info:
        open_cloud("dead", config_file=path, retry=policy)
    message = str(info.value)
    assert message == f"cloud dead: cannot reach {url}: Connection refused"
    assert policy.budget.spent == 4  # refused connections are retried (a restarting proxy)
    assert "very-secret-pw" not in message


def test_bad_password_is_one_line_without_the_password(sim: SimServer, tmp_path: Path) -> None:
    data = yaml.safe_load(sim.clouds_yaml.read_text())
    data["clouds"]["legacy"]["auth"]["password"] = "wrong-pw-123"
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CloudCallError) as info:
        open_cloud("legacy", config_file=path)
    assert info.value.status == 401
    assert "authentication failed" in str(info.value) and "wrong-pw-123" not in str(info.value)


def test_role_versions_and_operator_keys(sim: SimServer, tmp_path: Path) -> None:
    source = open_cloud("legacy", config_file=sim.clouds_yaml)
    assert "/volume/v2/" in source.conn.block_storage.get_endpoint()
    assert "/compute/v2.1/" in source.conn.compute.get_endpoint()
    assert source.conn.config.config["identity_api_version"] == "3"
    # A key the operator's clouds.yaml sets is left alone; api_overrides win over both.
    data = yaml.safe_load(sim.clouds_yaml.read_text())
    entry = data["clouds"]["legacy"]
    for key in ("block_storage_api_version", "volume_api_version", "image_api_version"):
        entry.pop(key, None)
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(data))
    handle = open_cloud("legacy", config_file=path, role="source")
    assert handle.conn.config.config["block_storage_api_version"] == "2"
    assert handle.conn.config.config["image_api_version"] == "2"
    override = open_cloud("legacy", config_file=path, api_overrides={"image_api_version": "1"})
    assert override.conn.config.config["image_api_version"] == "1"


def test_every_request_is_counted(sim: SimServer) -> None:
    api = SimAdmin(sim)
    handle = open_cloud("legacy", config_file=sim.clouds_yaml)
    api.reset_calls()
    before = handle.calls
    handle.get_json("network", "/networks")
    handle.get_json("identity", "/projects")
    calls = api.calls()
    # Identity's version discovery (GET /identity) happens on first use: counted too.
    assert handle.calls - before == sum(calls.values()) >= 2
    assert calls["GET /network/v2.0/networks"] == calls["GET /identity/v3/projects"] == 1
    assert handle.counter.by_method["GET"] >= 2


def test_reads_retry_transient_errors_then_fail_in_one_line(sim: SimServer) -> None:
    api = SimAdmin(sim)
    handle = open_cloud("legacy", config_file=sim.clouds_yaml)
    handle.retry = RetryPolicy(retries=2, backoff=Backoff(base=0.01))
    api.add_fault(match="GET /network/v2.0/networks", status=503, retry_after=0, times=2)
    try:
        assert "networks" in handle.get_json("network", "/networks")
        assert handle.counter.retries == 2
        api.add_fault(match="GET /network/v2.0/networks", status=500)
        with pytest.raises(CloudCallError) as info:
            handle.get_json("network", "/networks", resource="networks")
    finally:
        api.clear_faults()
    assert info.value.status == 500
    assert str(info.value).startswith(
        "cloud legacy: GET /network/v2.0/networks (networks): HTTP 500")
    assert "\n" not in str(info.value)


def test_404_and_denied(sim: SimServer) -> None:
    handle = open_cloud("legacy", config_file=sim.clouds_yaml)
    assert handle.get_json("network", "/networks/nosuch", allow_404=True) is None
    with pytest.raises(CloudCallError) as info:
        handle.get_json("network", "/networks/nosuch")
    assert info.value.status == 404 and not info.value.retryable
