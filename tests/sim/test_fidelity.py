"""What the simulator used to get wrong, each checked against the real service's source
(Liberty: the liberty-eol tags; modern: current master) and driven through openstacksdk:

- modern ``role_assignments?include_names`` names every entity with its domain (keystone
  api/role_assignments.py ``_format_entity``), and every assignment links to its grant;
- Keystone v2 ``GET /tenants?name=`` answers that one tenant (Liberty resource/controllers.py
  ``get_project_by_name``) and ``limit``/``marker`` page the list (``format_project_list``);
- a top-level project's ``parent_id`` is null on Liberty and its domain on modern Keystone
  (resource/core.py ``create_project`` of each);
- Neutron advertises only extensions it serves: each listed alias is exercised here;
- request ids on every service's answers (``req-<uuid4>``), in each profile's headers.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import openstack
import pytest
from openstack import exceptions as sdk_exc

from migrator.sim.server import SimServer
from tests.sim.conftest import connect, make_member

REQUEST_ID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                        r"[0-9a-f]{12}$")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- Keystone ---------------------------------------------------------------------------------
def test_modern_role_assignments_include_names_with_domains(sim: SimServer) -> None:
    target = connect(sim, "target")
    domain = target.identity.create_domain(name=unique("Research"))
    project = target.identity.create_project(name=unique("physics"), domain_id=domain.id)
    user = target.identity.create_user(name=unique("alice"), domain_id=domain.id,
                                       password="pw-" + "alice")
    role = target.identity.create_role(name=unique("observer"), domain_id=domain.id)
    target.identity.assign_project_role_to_user(project, user, role)
    found = list(target.identity.role_assignments(include_names=True, user_id=user.id))
    assert len(found) == 1
    ra = found[0]
    named_domain = {"id": domain.id, "name": domain.name}
    assert ra.user == {"id": user.id, "name": user.name, "domain": named_domain}
    assert ra.scope == {"project": {"id": project.id, "name": project.name,
                                    "domain": named_domain}}
    # A domain-specific role carries its domain; a global one (admin) does not.
    assert ra.role == {"id": role.id, "name": role.name, "domain": named_domain}
    base = target.session.get_endpoint(service_type="identity")
    assert ra.links == {"assignment": f"{base.rstrip('/')}/v3/projects/{project.id}/users/"
                                      f"{user.id}/roles/{role.id}"}
    admin = next(r for r in target.identity.role_assignments(include_names=True)
                 if r.role.get("name") == "admin")
    assert set(admin.role) == {"id", "name"}
    assert admin.user["domain"] == {"id": "default", "name": "Default"}


def test_liberty_role_assignments_have_no_names(sim: SimServer) -> None:
    legacy = connect(sim, "legacy")
    found = list(legacy.identity.role_assignments(include_names=True))
    assert found
    for ra in found:
        assert set(ra.user) == {"id"} and set(ra.role) == {"id"}
        assert set(ra.scope["project"]) == {"id"}
        assert ra.links["assignment"].endswith(
            f"/v3/projects/{ra.scope['project']['id']}/users/{ra.user['id']}/roles/"
            f"{ra.role['id']}")


@pytest.mark.parametrize("cloud", ["legacy", "target"])
def test_top_level_parent_id(sim: SimServer, cloud: str) -> None:
    """Liberty: null; modern: the project's domain (projects acting as domains)."""
    conn = connect(sim, cloud)
    created = conn.identity.create_project(name=unique("top"), domain_id="default")
    assert created.parent_id == (None if cloud == "legacy" else "default")
    for project in conn.identity.projects():  # the bootstrap admin project too
        body = conn.identity.get(f"/projects/{project.id}").json()["project"]
        assert "parent_id" in body
        assert body["parent_id"] == (None if cloud == "legacy" else body["domain_id"])


def _v2(sim: SimServer) -> openstack.connection.Connection:
    """An SDK connection speaking identity v2.0 to the Liberty cloud, as its admin."""
    legacy = sim.cloud("legacy")
    password = legacy.state.find_one("users", name="admin")["password"]  # type: ignore[index]
    return openstack.connect(auth_url=f"{legacy.base_url}/identity/v2.0", username="admin",
                             password=password, project_name="admin",
                             identity_api_version="2", load_yaml_config=False,
                             load_envvars=False)


def test_v2_tenants_by_name_and_pages(sim: SimServer) -> None:
    v3 = connect(sim, "legacy")
    names = [unique(f"tenant{i}") for i in range(5)]
    for name in names:
        v3.identity.create_project(name=name, domain_id="default")
    v2 = _v2(sim)
    one = v2.identity.get("/tenants", params={"name": names[2]})
    assert one.status_code == 200
    tenant = one.json()["tenant"]
    assert tenant["name"] == names[2]
    assert set(tenant) == {"id", "name", "description", "enabled"}
    missing = v2.identity.get("/tenants", params={"name": "nosuch"})
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "Could not find project: nosuch."
    # Pages: the SDK asks with limit, then with the last id as marker, until a page is short.
    everything = [t.name for t in v2.identity.tenants()]
    assert set(names) <= set(everything)
    paged = [t.name for t in v2.identity.tenants(limit=2)]
    assert paged == everything
    first = v2.identity.get("/tenants", params={"limit": 2}).json()
    assert [t["name"] for t in first["tenants"]] == everything[:2]
    assert first["tenants_links"] == []
    after = v2.identity.get("/tenants", params={"limit": 2,
                                                "marker": first["tenants"][1]["id"]}).json()
    assert [t["name"] for t in after["tenants"]] == everything[2:4]
    bad = v2.identity.get("/tenants", params={"marker": "nosuch"})
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == "Marker could not be found"
    assert v2.identity.get("/tenants", params={"limit": "-1"}).status_code == 400


def test_v2_tenants_of_a_member(sim: SimServer) -> None:
    """The public API's listing: a member sees its own tenants; ``name`` does not filter."""
    admin = connect(sim, "legacy")
    project, _ = make_member(admin, unique("member-home"), unique("bob"), password="pw-bob")
    legacy = sim.cloud("legacy")
    bob = openstack.connect(auth_url=f"{legacy.base_url}/identity/v2.0",
                            username=_.name, password="pw-bob", project_name=project.name,
                            identity_api_version="2", load_yaml_config=False,
                            load_envvars=False)
    listed = bob.identity.get("/tenants", params={"name": "admin"}).json()
    assert [t["name"] for t in listed["tenants"]] == [project.name]


# -- request ids ------------------------------------------------------------------------------
def _answers(conn: openstack.connection.Connection) -> dict[str, Any]:
    """One answer of each service (a success and an error where the service has one)."""
    return {
        "identity": conn.identity.get("/projects"),
        "image": conn.image.get("/images"),
        "image 404": conn.image.get(f"/images/{uuid.uuid4()}"),
        "volume": conn.block_storage.get("/volumes"),
        "network": conn.network.get("/networks"),
        "network 404": conn.network.get(f"/networks/{uuid.uuid4()}"),
        "compute": conn.compute.get("/flavors"),
        "compute 404": conn.compute.get("/flavors/nosuch"),
    }


def test_request_ids_modern(sim: SimServer) -> None:
    ids = set()
    for what, response in _answers(connect(sim, "target")).items():
        rid = response.headers.get("x-openstack-request-id")
        assert rid and REQUEST_ID.match(rid), what
        ids.add(rid)
        if what.startswith("compute"):  # Nova sends it again under its own old name
            assert response.headers["x-compute-request-id"] == rid
    assert len(ids) == 8  # one per request


def test_request_ids_liberty(sim: SimServer) -> None:
    for what, response in _answers(connect(sim, "legacy")).items():
        if what.startswith("compute"):  # Liberty's Nova: its own header only
            assert "x-openstack-request-id" not in response.headers
            assert REQUEST_ID.match(response.headers["x-compute-request-id"]), what
        else:
            assert REQUEST_ID.match(response.headers["x-openstack-request-id"]), what
    # The unversioned version documents answer before the request-id middleware.
    conn = connect(sim, "legacy")
    root = conn.session.get(f"{sim.cloud('legacy').base_url}/network/",
                            endpoint_filter=None, authenticated=False)
    assert "x-openstack-request-id" not in root.headers


def test_the_sdk_reads_the_request_id_of_an_error(sim: SimServer) -> None:
    with pytest.raises(sdk_exc.NotFoundException) as info:
        connect(sim, "target").network.get_network(str(uuid.uuid4()))
    assert info.value.request_id is not None and REQUEST_ID.match(info.value.request_id)


# -- Neutron extensions -----------------------------------------------------------------------
Check = Callable[[openstack.connection.Connection, bool], None]


def _net(conn: openstack.connection.Connection, **attrs: Any) -> dict[str, Any]:
    response = conn.network.post("/networks", json={"network": {"name": unique("ext"),
                                                                **attrs}})
    assert response.status_code == 201, response.text
    return dict(response.json()["network"])


def _port(conn: openstack.connection.Connection, **attrs: Any) -> dict[str, Any]:
    net = _net(conn)
    response = conn.network.post("/ports", json={"port": {"network_id": net["id"], **attrs}})
    assert response.status_code == 201, response.text
    return dict(response.json()["port"])


def _router_on_subnet(conn: openstack.connection.Connection
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    net = _net(conn)
    subnet = conn.network.create_subnet(network_id=net["id"], ip_version=4,
                                        cidr="10.77.0.0/24")
    router = conn.network.create_router(name=unique("r"))
    conn.network.add_interface_to_router(router, subnet_id=subnet.id)
    return {"id": router.id}, {"id": subnet.id}


def check_security_group(conn: openstack.connection.Connection, modern: bool) -> None:
    group = conn.network.create_security_group(name=unique("sg"))
    rule = conn.network.create_security_group_rule(security_group_id=group.id,
                                                   direction="ingress", protocol="tcp",
                                                   port_range_min=22, port_range_max=22)
    assert rule.security_group_id == group.id


def check_net_mtu(conn: openstack.connection.Connection, modern: bool) -> None:
    assert isinstance(_net(conn)["mtu"], int)


def check_ext_gw_mode(conn: openstack.connection.Connection, modern: bool) -> None:
    ext = _net(conn, **{"router:external": True})
    conn.network.create_subnet(network_id=ext["id"], ip_version=4, cidr="192.0.2.0/24")
    router = conn.network.create_router(name=unique("r"), external_gateway_info={
        "network_id": ext["id"], "enable_snat": False})
    assert router.external_gateway_info["enable_snat"] is False


def check_binding(conn: openstack.connection.Connection, modern: bool) -> None:
    port = _port(conn, **{"binding:vnic_type": "direct"})
    assert port["binding:vnic_type"] == "direct" and "binding:vif_type" in port


def check_quotas(conn: openstack.connection.Connection, modern: bool) -> None:
    project = conn.current_project_id
    conn.network.update_quota(project, networks=42)
    assert conn.network.get_quota(project).networks == 42


def check_external_net(conn: openstack.connection.Connection, modern: bool) -> None:
    net = _net(conn, **{"router:external": True})
    listed = conn.network.get("/networks", params={"router:external": "True"}).json()
    assert net["id"] in {n["id"] for n in listed["networks"]}


def check_router(conn: openstack.connection.Connection, modern: bool) -> None:
    router, subnet = _router_on_subnet(conn)
    ports = conn.network.get("/ports", params={"device_id": router["id"]}).json()["ports"]
    assert [p["fixed_ips"][0]["subnet_id"] for p in ports] == [subnet["id"]]


def check_allowed_address_pairs(conn: openstack.connection.Connection, modern: bool) -> None:
    port = _port(conn, allowed_address_pairs=[{"ip_address": "10.1.2.3"}])
    assert port["allowed_address_pairs"][0]["ip_address"] == "10.1.2.3"


def check_extra_dhcp_opt(conn: openstack.connection.Connection, modern: bool) -> None:
    opts = [{"opt_name": "bootfile-name", "opt_value": "pxelinux.0"}]
    assert _port(conn, extra_dhcp_opts=opts)["extra_dhcp_opts"][0]["opt_name"] == \
        "bootfile-name"


def check_provider(conn: openstack.connection.Connection, modern: bool) -> None:
    net = _net(conn, **{"provider:network_type": "vlan", "provider:physical_network": "physnet1",
                        "provider:segmentation_id": 101})
    assert (net["provider:network_type"], net["provider:segmentation_id"]) == ("vlan", 101)


def check_extraroute(conn: openstack.connection.Connection, modern: bool) -> None:
    router, _ = _router_on_subnet(conn)
    routes = [{"destination": "172.16.0.0/24", "nexthop": "10.77.0.10"}]
    response = conn.network.put(f"/routers/{router['id']}", json={"router": {"routes": routes}})
    assert response.status_code == 200, response.text
    assert response.json()["router"]["routes"] == routes


def check_port_security(conn: openstack.connection.Connection, modern: bool) -> None:
    assert _net(conn, port_security_enabled=False)["port_security_enabled"] is False


def check_subnet_allocation(conn: openstack.connection.Connection, modern: bool) -> None:
    pool = conn.network.create_subnet_pool(name=unique("pool"), prefixes=["10.200.0.0/16"],
                                           default_prefixlen=24)
    net = _net(conn)
    subnet = conn.network.create_subnet(network_id=net["id"], ip_version=4,
                                        subnet_pool_id=pool.id)
    assert subnet.cidr.startswith("10.200.") and subnet.cidr.endswith("/24")


def check_tag(conn: openstack.connection.Connection, modern: bool) -> None:
    net = conn.network.get_network(_net(conn)["id"])
    conn.network.set_tags(net, ["a", "b"])
    assert sorted(conn.network.get_network(net.id).tags) == ["a", "b"]


def check_description(conn: openstack.connection.Connection, modern: bool) -> None:
    assert _net(conn, description="for physics")["description"] == "for physics"


def check_timestamp(conn: openstack.connection.Connection, modern: bool) -> None:
    net = _net(conn)
    assert net["created_at"] and net["updated_at"]


def check_revisions(conn: openstack.connection.Connection, modern: bool) -> None:
    net = _net(conn)
    updated = conn.network.put(f"/networks/{net['id']}",
                               json={"network": {"name": unique("renamed")}}).json()["network"]
    assert updated["revision_number"] == net["revision_number"] + 1


def check_project_id(conn: openstack.connection.Connection, modern: bool) -> None:
    assert _net(conn)["project_id"] == conn.current_project_id


def check_filter_validation(conn: openstack.connection.Connection, modern: bool) -> None:
    assert conn.network.get("/networks", params={"colour": "red"}).status_code == 400


def check_pagination(conn: openstack.connection.Connection, modern: bool) -> None:
    _net(conn)
    _net(conn)
    page = conn.network.get("/networks", params={"limit": 1}).json()
    assert len(page["networks"]) == 1
    assert any(link["rel"] == "next" for link in page["networks_links"])


def check_sorting(conn: openstack.connection.Connection, modern: bool) -> None:
    names = [n["name"] for n in conn.network.get(
        "/networks", params={"sort_key": "name", "sort_dir": "desc"}).json()["networks"]]
    assert names == sorted(names, reverse=True)


def check_quota_details(conn: openstack.connection.Connection, modern: bool) -> None:
    body = conn.network.get(f"/quotas/{conn.current_project_id}/details").json()
    assert {"limit", "used", "reserved"} <= set(body["quota"]["network"])


def check_default_subnetpools(conn: openstack.connection.Connection, modern: bool) -> None:
    net = _net(conn)
    refused = conn.network.post("/subnets", json={"subnet": {
        "network_id": net["id"], "ip_version": 6, "use_default_subnetpool": True}})
    assert refused.status_code == 400
    assert "No default subnetpool found for IPv6" in refused.text
    conn.network.create_subnet_pool(name=unique("v6pool"), prefixes=["2001:db8:500::/48"],
                                    default_prefixlen=64, is_default=True)
    created = conn.network.post("/subnets", json={"subnet": {
        "network_id": net["id"], "ip_version": 6, "use_default_subnetpool": True}})
    assert created.status_code == 201, created.text
    assert created.json()["subnet"]["cidr"].startswith("2001:db8:500:")


def check_net_mtu_writable(conn: openstack.connection.Connection, modern: bool) -> None:
    net = _net(conn, mtu=1400)
    updated = conn.network.put(f"/networks/{net['id']}", json={"network": {"mtu": 1300}})
    assert (net["mtu"], updated.json()["network"]["mtu"]) == (1400, 1300)


def check_stateful_security_group(conn: openstack.connection.Connection, modern: bool) -> None:
    response = conn.network.post("/security-groups", json={"security_group": {
        "name": unique("stateless"), "stateful": False}})
    assert response.status_code == 201 and response.json()["security_group"]["stateful"] is False


def check_tag_creation(conn: openstack.connection.Connection, modern: bool) -> None:
    assert _net(conn, tags=["migrated"])["tags"] == ["migrated"]


CHECKS: dict[str, Check] = {
    "security-group": check_security_group, "net-mtu": check_net_mtu,
    "ext-gw-mode": check_ext_gw_mode, "binding": check_binding, "quotas": check_quotas,
    "external-net": check_external_net, "router": check_router,
    "allowed-address-pairs": check_allowed_address_pairs,
    "extra_dhcp_opt": check_extra_dhcp_opt, "provider": check_provider,
    "extraroute": check_extraroute, "port-security": check_port_security,
    "subnet_allocation": check_subnet_allocation, "standard-attr-tag": check_tag,
    "standard-attr-description": check_description,
    "standard-attr-timestamp": check_timestamp, "standard-attr-revisions": check_revisions,
    "project-id": check_project_id, "filter-validation": check_filter_validation,
    "pagination": check_pagination, "sorting": check_sorting,
    "quota_details": check_quota_details, "default-subnetpools": check_default_subnetpools,
    "net-mtu-writable": check_net_mtu_writable,
    "stateful-security-group": check_stateful_security_group,
    "tag-creation": check_tag_creation,
}


@pytest.mark.parametrize("cloud", ["legacy", "target"])
def test_every_advertised_neutron_extension_is_served(sim: SimServer, cloud: str) -> None:
    conn = connect(sim, cloud)
    aliases = sorted(e.alias for e in conn.network.extensions())
    unchecked = set(aliases) - set(CHECKS)
    assert not unchecked, f"advertised without a check here: {sorted(unchecked)}"
    for alias in aliases:
        CHECKS[alias](conn, cloud == "target")
    # Liberty advertises none of the modern ones; what it lacks is refused or ignored.
    if cloud == "legacy":
        assert "subnet_allocation" not in aliases and "tag-creation" not in aliases
