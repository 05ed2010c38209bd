"""get_json's lean transport (clouds/raw_reads.py): the same answers, URLs and headers as the
SDK path, a renewed token after a 401, dropped connections retried and counted, and the SDK
path kept when a proxy is configured."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from migrator.clouds.connection import open_cloud
from migrator.clouds.raw_reads import RawReader
from migrator.retry import Backoff, RetryPolicy
from migrator.sim.server import CloudSpec, SimServer
from tests.clouds.legacy_sim import SimAdmin, start_legacy


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    server = start_legacy(tmp_path_factory.mktemp("raw"))
    yield server
    server.stop()


def _sdk_json(handle: Any, service: str, path: str, **kwargs: Any) -> tuple[str, Any]:
    response = handle.proxy(service).get(path, raise_exc=False, **kwargs)
    return response.url, response.json()


@pytest.mark.parametrize(("service", "path", "params", "microversion"), [
    ("identity", "/projects", None, None),
    ("network", "/networks", {"limit": 2}, None),
    ("image", "/images", {"visibility": "shared"}, None),
    ("block_storage", "/volumes/detail", {"all_tenants": 1}, None),
    ("compute", "/flavors/detail", {"is_public": "None"}, None),
    ("compute", "/os-keypairs", None, "2.10"),
])
def test_same_answer_and_url_as_the_sdk(sim: SimServer, service: str, path: str,
                                        params: dict[str, Any] | None,
                                        microversion: str | None) -> None:
    handle = open_cloud("legacy", config_file=sim.clouds_yaml)
    reader = RawReader(handle.conn, timeout=10, count=lambda method: None)
    assert reader.usable(service)
    raw = reader.get(service, path, params=params, microversion=microversion)
    kwargs: dict[str, Any] = {"params": params or {}}
    if microversion:
        kwargs["microversion"] = microversion
    url, body = _sdk_json(handle, service, path, **kwargs)
    assert raw.status_code == 200
    assert raw.url == url
    assert raw.json() == body
    assert handle.get_json(service, path, params=params, microversion=microversion) == body
    if microversion:  # Liberty's Nova answers at the version asked for (legacy header)
        assert raw.headers["X-OpenStack-Nova-API-Version"] == microversion


def test_keypairs_of_another_user_need_the_microversion(sim: SimServer) -> None:
    handle = open_cloud("legacy", config_file=sim.clouds_yaml)
    users = handle.get_json("identity", "/users")["users"]
    user = next(u for u in users if u["name"] == "physics-user0")
    at_210 = handle.get_json("compute", "/os-keypairs", params={"user_id": user["id"]},
                             microversion="2.10")
    assert [k["keypair"]["name"] for k in at_210["keypairs"]] == ["physics-key"]
    plain = handle.get_json("compute", "/os-keypairs", params={"user_id": user["id"]})
    assert plain["keypairs"] == []  # before 2.10 user_id is ignored: the admin's own


def test_expired_token_is_renewed_once_and_counted(sim: SimServer) -> None:
    api = SimAdmin(sim)
    handle = open_cloud("legacy", config_file=sim.clouds_yaml)
    handle.get_json("network", "/networks")
    requests.post(f"{api.base}/tokens/expire", json={}, timeout=10).raise_for_status()
    api.reset_calls()
    before = handle.calls
    assert "networks" in handle.get_json("network", "/networks")
    calls = api.calls()
    # the refused GET, a new token, the GET again
    assert calls["GET /network/v2.0/networks"] == 2
    assert calls["POST /identity/v3/auth/tokens"] == 1
    assert handle.calls - before == sum(calls.values()) == 3


def test_dropped_connection_is_retried_and_counted(sim: SimServer) -> None:
    api = SimAdmin(sim)
    handle = open_cloud("legacy", config_file=sim.clouds_yaml)
    handle.get_json("network", "/networks")
    api.reset_calls()
    before = handle.calls
    api.add_fault(match="GET /network/v2.0/networks", drop_after_bytes=10, times=1)
    try:
        assert "networks" in handle.get_json("network", "/networks")
    finally:
        api.clear_faults()
    assert api.calls()["GET /network/v2.0/networks"] == 2
    assert handle.counter.retries == 1
    assert handle.calls - before == 2


def test_a_proxy_keeps_the_sdk_path(sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    # (proxy.invalid does not resolve: the token request's retries are made short)
    handle = open_cloud("legacy", config_file=sim.clouds_yaml, check=False,
                        retry=RetryPolicy(backoff=Backoff(0.01)))
    reader = RawReader(handle.conn, timeout=10, count=lambda method: None)
    assert not reader.usable("network")


def test_modern_cloud_block_storage_v3(tmp_path: Any) -> None:
    server = SimServer([CloudSpec("target", "modern")], tmp_path).start()
    try:
        handle = open_cloud("target", config_file=server.clouds_yaml, role="target")
        url, body = _sdk_json(handle, "block_storage", "/volumes/detail",
                              microversion="3.50", params={})
        assert handle.get_json("block_storage", "/volumes/detail",
                               microversion="3.50") == body
        assert "/volume/v3/" in url
    finally:
        server.stop()
