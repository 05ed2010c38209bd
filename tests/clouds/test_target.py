"""TargetCloud against the simulator (modern target; the legacy cloud stands in for an old
compute API): source-id marks, lookups, quota key filtering, rule adoption, errors, retries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from migrator.clouds.connection import CloudHandle, open_cloud
from migrator.clouds.target import (
    TargetCloud,
    TargetCloudError,
    fingerprint,
    migrated_source_id,
    same_rule,
    source_tag,
)
from migrator.errors import CloudError, ConfigError, NotFoundError
from migrator.retry import Backoff, RetryPolicy
from migrator.sim.server import SimServer
from tests.sim.conftest import Admin, admin_api, sim  # noqa: F401 - fixtures
from tests.timing import scaled

FAST_RETRY = RetryPolicy(backoff=Backoff(base=0.01))


def hexid() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope="module")
def handle(sim: SimServer) -> Iterator[CloudHandle]:  # noqa: F811
    h = open_cloud("target", config_file=sim.clouds_yaml, role="target")
    yield h
    h.close()


@pytest.fixture(scope="module")
def tc(handle: CloudHandle) -> TargetCloud:
    return TargetCloud(handle, retry=FAST_RETRY)


@pytest.fixture(scope="module")
def project(tc: TargetCloud) -> dict[str, Any]:
    return tc.create_project(hexid(), {"name": f"tc-{hexid()[:8]}", "domain_id": "default"})


def test_project_tag_and_lookups(tc: TargetCloud) -> None:
    sid = hexid()
    name = f"proj-{sid[:8]}"
    created = tc.create_project(sid, {"name": name, "domain_id": "default",
                                      "description": "d"})
    assert source_tag(sid) in created["tags"]
    assert tc.find_project_by_source(sid)["id"] == created["id"]
    assert tc.find_project_by_source(hexid()) is None
    by_name = tc.find_project_by_name(name, "default")
    assert by_name is not None and migrated_source_id(by_name) == sid
    assert tc.find_project_by_name(name, "other") is None


def test_user_extra_attribute(tc: TargetCloud, project: dict[str, Any]) -> None:
    sid = hexid()
    user = tc.create_user(sid, {"name": f"u-{sid[:8]}", "domain_id": "default",
                                "default_project_id": project["id"]}, password="pw-x")
    assert user["migrator_source_id"] == sid
    assert user["description"] == f"migrated from legacy {sid}"
    assert "password" not in user
    found = tc.find_user_by_source(sid, name=user["name"], domain_id="default")
    assert found is not None and found["id"] == user["id"]
    assert tc.find_user_by_source(hexid(), name=user["name"]) is None


def test_network_resources_carry_tag_and_description(tc: TargetCloud,
                                                     project: dict[str, Any]) -> None:
    sid = hexid()
    net = tc.create_network(sid, {"name": f"n-{sid[:6]}", "project_id": project["id"]})
    assert source_tag(sid) in net["tags"]
    assert net["description"] == f"migrated from legacy {sid}"
    assert tc.get_network(net["id"])["tags"] == [source_tag(sid)]
    assert tc.find_network_by_source(sid)["id"] == net["id"]
    assert tc.find_network_by_name(net["name"], project["id"])["id"] == net["id"]
    tc.wait_for_network_active(net["id"], timeout=scaled(5))
    tc.delete_network(net["id"])
    assert tc.find_network_by_source(sid) is None
    tc.delete_network(net["id"])  # already gone: fine


def test_router_gateway_by_update_and_interfaces(tc: TargetCloud,
                                                 project: dict[str, Any]) -> None:
    ext = tc.find_external_network("tc-public") or tc.create_network(
        hexid(), {"name": "tc-public", "router:external": True})
    tc.create_subnet(hexid(), {"network_id": ext["id"], "ip_version": 6,
                               "cidr": "2001:db8:fff1::/64"})
    net = tc.create_network(hexid(), {"name": "rn", "project_id": project["id"]})
    subnet = tc.create_subnet(hexid(), {"network_id": net["id"], "ip_version": 6,
                                        "cidr": "2001:db8:1::/64", "ipv6_ra_mode": "slaac",
                                        "ipv6_address_mode": "slaac",
                                        "project_id": project["id"]})
    router = tc.create_router(hexid(), {"name": "r", "project_id": project["id"]})
    updated = tc.set_router_gateway(router["id"], {"network_id": ext["id"]})
    assert updated["external_gateway_info"]["network_id"] == ext["id"]
    assert tc.find_router_interface(router["id"], subnet["id"]) is None
    added = tc.add_router_interface(router["id"], subnet["id"])
    port = tc.find_router_interface(router["id"], subnet["id"])
    assert port is not None and port["id"] == added["port_id"]


def test_rule_conflict_adopts_the_identical_rule(tc: TargetCloud,
                                                 project: dict[str, Any]) -> None:
    group = tc.create_security_group(hexid(), {"name": "g", "project_id": project["id"]})
    body = {"security_group_id": group["id"], "direction": "ingress", "ethertype": "IPv4",
            "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
            "remote_ip_prefix": "10.0.0.0/8"}
    first_sid, second_sid = hexid(), hexid()
    rule, adopted = tc.create_security_group_rule(first_sid, body)
    assert not adopted and rule["description"] == f"migrator-src:{first_sid}"
    # "6" is "tcp" to Neutron: 409 SecurityGroupRuleExists, the same rule comes back.
    again, adopted = tc.create_security_group_rule(second_sid, {**body, "protocol": "6"})
    assert adopted and again["id"] == rule["id"]
    assert tc.find_security_group_rule_by_source(first_sid)["id"] == rule["id"]
    found = tc.find_security_group_rule_by_source(second_sid, like={**body, "protocol": "6"})
    assert found is not None and found["id"] == rule["id"]
    assert same_rule(rule, {**body, "protocol": "6"})
    assert not same_rule(rule, {**body, "port_range_max": 23})


def test_default_group_found_by_name(tc: TargetCloud) -> None:
    p = tc.create_project(hexid(), {"name": f"dg-{hexid()[:8]}", "domain_id": "default"})
    group = tc.find_security_group_by_name("default", p["id"])
    assert group is not None and group["project_id"] == p["id"]
    tc.tag_security_group(group["id"], "src-default")
    assert tc.find_security_group_by_source("src-default")["id"] == group["id"]


def test_quota_keys_filtered_by_the_compute_microversion(tc: TargetCloud, sim: SimServer,  # noqa: F811
                                                         project: dict[str, Any]) -> None:
    values = {"instances": 3, "floating_ips": 2, "security_groups": 4, "injected_files": 1,
              "injected_file_content_bytes": 100, "not_a_key": 1}
    result = tc.set_quotas("compute", project["id"], values)
    assert result.applied == {"instances": 3}
    assert set(result.dropped) == {"floating_ips", "security_groups", "injected_files",
                                   "injected_file_content_bytes", "not_a_key"}
    assert tc.get_quotas("compute", project["id"])["instances"] == 3
    # An old compute API (the Liberty cloud, 2.12) keeps the nova-network and file keys.
    legacy = TargetCloud(open_cloud("legacy", config_file=sim.clouds_yaml, role="target"))
    assert legacy.compute_max_microversion() == (2, 12)
    keep, dropped, _ = legacy.filter_quotas("compute", legacy.handle.project_id, values)
    assert set(keep) == {"instances", "floating_ips", "security_groups", "injected_files",
                         "injected_file_content_bytes"}
    assert set(dropped) == {"not_a_key"}


def test_volume_and_network_quotas_only_known_keys(tc: TargetCloud,
                                                   project: dict[str, Any]) -> None:
    volume = tc.set_quotas("volume", project["id"], {"volumes": 4, "gigabytes_ssd": 9})
    assert volume.applied == {"volumes": 4} and "gigabytes_ssd" in volume.dropped
    network = tc.set_quotas("network", project["id"], {"network": 3, "vip": 2})
    assert network.applied == {"network": 3} and "vip" in network.dropped
    assert tc.get_quotas("network", project["id"])["network"] == 3
    with pytest.raises(ConfigError, match=r"unknown quota service .dns."):
        tc.set_quotas("dns", project["id"], {})


def test_keypairs_for_another_user(tc: TargetCloud, project: dict[str, Any]) -> None:
    from tests.handlers.helpers import PUBLIC_KEY_A

    user = tc.create_user(hexid(), {"name": f"k-{hexid()[:8]}", "domain_id": "default"})
    kp = tc.create_keypair(user["id"], {"name": "k1", "public_key": PUBLIC_KEY_A,
                                        "type": "ssh"})
    assert kp["user_id"] == user["id"]
    found = tc.find_keypair(user["id"], "k1")
    assert found is not None and fingerprint(found["public_key"]) == fingerprint(PUBLIC_KEY_A)
    assert found["fingerprint"] == fingerprint(PUBLIC_KEY_A)  # Nova's own computation
    assert tc.find_keypair(user["id"], "nope") is None
    tc.delete_keypair(user["id"], "k1")
    assert tc.find_keypair(user["id"], "k1") is None


def test_errors_are_one_line_and_name_the_call(tc: TargetCloud) -> None:
    with pytest.raises(TargetCloudError) as bad:
        tc.create_network(hexid(), {"name": "x", "bogus": 1})
    message = str(bad.value)
    assert "\n" not in message
    assert "cloud target: create network ('x'): HTTP 400" in message
    assert "Unrecognized attribute(s) 'bogus'" in message
    assert bad.value.status == 400 and not bad.value.transient
    with pytest.raises(NotFoundError, match=r"target: network 0000 does not exist"):
        tc.get_network("0000")
    with pytest.raises(NotFoundError, match="role 'no-such-role' does not exist"):
        tc.role_id("no-such-role")


def test_idempotent_calls_are_retried_and_counted(tc: TargetCloud, handle: CloudHandle,
                                                  admin_api: dict[str, Admin]) -> None:  # noqa: F811
    admin_api["target"].add_fault(match="GET /network/v2.0/networks", times=2, status=503,
                                  retry_after=0)
    before = handle.counter.retries
    with tc.counting() as counted:
        assert tc.find_network_by_source(hexid()) is None
    assert counted == {"calls": 3, "retries": 2}
    assert handle.counter.retries - before == 2
    # A POST is not retried by the adapter (the handler looks again first).
    admin_api["target"].add_fault(match="POST /network/v2.0/networks", times=1, status=503)
    with pytest.raises(TargetCloudError) as failed:
        tc.create_network(hexid(), {"name": "once"})
    assert failed.value.transient and failed.value.status == 503
    # A GET that keeps failing gives up after the bounded retries.
    admin_api["target"].add_fault(match="GET /network/v2.0/routers", status=500)
    with pytest.raises(TargetCloudError, match="HTTP 500"):
        tc.find_router_by_source(hexid())


def test_wait_until_is_bounded(tc: TargetCloud) -> None:
    with pytest.raises(CloudError, match=r"timed out after 0\.05s waiting for nothing"):
        tc.wait_until("nothing", lambda: None, timeout=0.05, interval=0.01)


class OlderNeutronTarget(TargetCloud):
    """The same cloud as seen by a Neutron that predates the tag-creation extension."""

    def neutron_extensions(self) -> frozenset[str]:
        return super().neutron_extensions() - {"tag-creation"}


def test_untagged_leftover_of_a_crash_is_found_and_tagged(handle: CloudHandle,
                                                         project: dict[str, Any]) -> None:
    # On a Neutron without the tag-creation extension create and tag are two calls, and a
    # crash between them leaves a resource marked only by its description (made here by hand).
    tc = OlderNeutronTarget(handle, retry=FAST_RETRY)
    sid = hexid()
    attrs = {"name": f"left-{sid[:6]}", "project_id": project["id"]}
    body = {**attrs, "description": f"migrated from legacy {sid}"}
    net = tc.conn.network.post("/networks", json={"network": body}).json()["network"]
    assert tc.find_network_by_source(sid) is None  # by tag only
    found = tc.find_network_by_source(sid, attrs)
    assert found is not None and found["id"] == net["id"]
    assert tc.get_network(net["id"])["tags"] == [source_tag(sid)]
    assert tc.find_network_by_source(sid)["id"] == net["id"]


def test_calls_go_through_the_lean_transport_with_the_sdk_path_as_fallback(
        sim: SimServer, admin_api: dict[str, Admin]) -> None:  # noqa: F811
    """Writes and reads of the adapter use the handle's lean transport (clouds/raw_reads.py:
    the SDK's endpoint, token and microversions, not its per-request cost); turned off, the
    SDK's session sends them, with the same answers and the same errors."""
    for lean in (True, False):
        h = open_cloud("target", config_file=sim.clouds_yaml, role="target")
        h.lean_reads = lean
        through_sdk: list[str] = []

        def seen(response: Any, *args: Any, sent: list[str] = through_sdk, **kwargs: Any) -> None:
            sent.append(response.request.method)

        h.conn.session.session.hooks["response"].append(seen)
        try:
            adapter = TargetCloud(h, retry=FAST_RETRY)
            before = h.calls
            answered = sum(admin_api["target"].calls().values())
            sid = hexid()
            created = adapter.create_network(sid, {"name": f"lean-{lean}"})
            assert adapter.find_network_by_source(sid)["id"] == created["id"]
            assert source_tag(sid) in adapter.get_network(created["id"])["tags"]
            with pytest.raises(TargetCloudError, match=r"create network \('x'\): HTTP 400"):
                adapter.create_network(hexid(), {"name": "x", "bogus": 1})
            # A POST whose connection drops is not sent again by the transport.
            admin_api["target"].add_fault(match="POST /network/v2.0/networks", times=1,
                                          drop_after_bytes=0)
            posts = admin_api["target"].calls().get("POST /network/v2.0/networks", 0)
            with pytest.raises(TargetCloudError):
                adapter.create_network(hexid(), {"name": "dropped"})
            assert admin_api["target"].calls()["POST /network/v2.0/networks"] == posts + 1
            # Every request counted, the dropped one too (the simulator saw them all).
            seen_by_sim = sum(admin_api["target"].calls().values()) - answered
            assert not lean or h.calls - before == seen_by_sim
            assert (through_sdk == []) is lean, through_sdk
        finally:
            admin_api["target"].clear_faults()
            h.close()
