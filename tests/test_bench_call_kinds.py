"""The execute benchmark's attribution of simulator routes to kinds (benchmarks/call_kinds.py),
checked against the route keys the simulator really records for each kind's calls."""

from __future__ import annotations

import openstack
import pytest
import requests
from benchmarks.call_kinds import calls_by_kind, kind_of

from migrator.sim.server import CloudSpec, SimServer


def test_routes_the_simulator_records_are_attributed_to_their_kind(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with SimServer([CloudSpec("target", "modern")]) as sim:
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(sim.clouds_yaml))
        conn = openstack.connect(cloud="target")
        base = sim.cloud("target").listen_url
        requests.delete(f"{base}/_sim/calls", timeout=10).raise_for_status()
        project = conn.identity.create_project(name="kinds", domain_id="default")
        image = conn.image.create_image(name="kinds", disk_format="raw",
                                        container_format="bare")
        conn.image.add_member(image, member_id=project.id)
        net = conn.network.create_network(name="kinds")
        conn.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.9.0.0/24")
        calls = requests.get(f"{base}/_sim/calls", params={"resolved": "1"},
                             timeout=10).json()["calls"]
        plain = requests.get(f"{base}/_sim/calls", timeout=10).json()["calls"]
    kinds = calls_by_kind(calls)
    assert "POST /identity/v3/projects" in calls and "POST /identity/v3/{kind}" in plain
    assert kinds["project"] >= 1 and kinds["image"] >= 1 and kinds["image_member"] >= 1
    assert kinds["network"] >= 1 and kinds["subnet"] >= 1
    assert "(other)" not in kinds, calls
    assert sum(kinds.values()) == sum(calls.values())


def test_kind_of_each_route_template() -> None:
    assert kind_of("POST /image/v2/images") == "image"
    assert kind_of("PUT /image/v2/images/{image_id}/file") == "image"
    assert kind_of("PUT /image/v2/images/{image_id}/members/{member_id}") == "image_member"
    assert kind_of("PUT /identity/v3/projects/{project_id}/users/{user_id}/roles/{role_id}"
                   ) == "role_assignment"
    assert kind_of("PUT /identity/v3/projects/{id}/tags/{tag}") == "project"
    assert kind_of("PUT /network/v2.0/routers/{id}/add_router_interface") == "router_interface"
    assert kind_of("PUT /network/v2.0/routers/{id}") == "router"
    assert kind_of("PUT /volume/v3/{project_id}/os-quota-sets/{target}") == "quota"
    assert kind_of("PUT /network/v2.0/quotas/{project_id}") == "quota"
    assert kind_of("POST /network/v2.0/security-group-rules") == "security_group_rule"
    assert kind_of("POST /identity/v3/auth/tokens") == "(tokens)"
    assert kind_of("GET /network/v2.0/extensions") == "(discovery)"
    assert kind_of("GET /image") == "(discovery)"
    assert kind_of("GET /somewhere/else") == "(other)"
