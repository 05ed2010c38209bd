"""Neutron through openstacksdk against both profiles: resources, wire shapes, Liberty quirks,
pagination, tags, quotas and per-project visibility."""

from __future__ import annotations

import uuid
from typing import Any

import openstack
import pytest
import requests
from openstack import exceptions as sdk_exc

from migrator.sim.server import SimServer
from tests.sim.conftest import Admin, connect, make_member, member_connection

CLOUDS = ["legacy", "target"]


@pytest.fixture(scope="module", autouse=True)
def roomy_admin_quota(sim: SimServer) -> None:
    """Liberty's default quota is 10 networks and 10 subnets per project; the admin project
    makes many here, so lift its limits as an operator of such a cloud would."""
    for cloud in CLOUDS:
        conn = connect(sim, cloud)
        conn.network.update_quota(conn.current_project_id, networks=-1, subnets=-1,
                                  ports=-1, routers=-1, security_groups=-1,
                                  security_group_rules=-1)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def raw(conn: openstack.connection.Connection, path: str, **params: Any) -> requests.Response:
    """A GET through the SDK's own network adapter (token, endpoint), without SDK parsing."""
    return conn.network.get(path, params=params, raise_exc=False)  # type: ignore[no-any-return]


def member(sim: SimServer, cloud: str) -> tuple[openstack.connection.Connection, str]:
    """A fresh project with a member user, and a connection as that user."""
    admin = connect(sim, cloud)
    project_name, user_name = unique("proj"), unique("user")
    project, _ = make_member(admin, project_name, user_name)
    return member_connection(sim, cloud, project_name, user_name), project.id


def neutron_error(exc: sdk_exc.HttpException) -> dict[str, Any]:
    assert exc.response is not None
    return exc.response.json()["NeutronError"]  # type: ignore[no-any-return]


# -- documents ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_versions_document_is_public_and_sdk_skips_discovery(
    sim: SimServer, cloud: str, admin_api: dict[str, Admin]
) -> None:
    base = sim.cloud(cloud).base_url
    for path in ("/network", "/network/"):
        doc = requests.get(f"{base}{path}", timeout=10)
        assert doc.status_code == 200
        version = doc.json()["versions"][0]
        assert version["id"] == "v2.0" and version["status"] == "CURRENT"
        assert version["links"][0]["href"] == f"{base}/network/v2.0/"
    admin_api[cloud].reset_calls()
    list(connect(sim, cloud).network.networks())
    network_calls = [k for k in admin_api[cloud].calls() if "/network" in k]
    assert network_calls == ["GET /network/v2.0/networks"]


@pytest.mark.parametrize("cloud", CLOUDS)
def test_extensions_list_depends_on_profile(sim: SimServer, cloud: str) -> None:
    conn = connect(sim, cloud)
    aliases = {e.alias for e in conn.network.extensions()}
    assert {"security-group", "router", "external-net", "quotas"} <= aliases
    assert ("standard-attr-tag" in aliases) is (cloud == "target")


# -- networks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_network_crud_and_wire_shape(sim: SimServer, cloud: str) -> None:
    conn = connect(sim, cloud)
    name = unique("net")
    net = conn.network.create_network(name=name, is_admin_state_up=True)
    assert net.status == "ACTIVE" and net.subnet_ids == []
    body = raw(conn, f"/networks/{net.id}").json()["network"]
    assert body["tenant_id"] == conn.current_project_id
    assert body["router:external"] is False and body["shared"] is False
    assert body["provider:network_type"] == "vxlan"  # admins see provider attributes
    if cloud == "legacy":
        # Liberty has no project_id and none of the later standard attributes.
        assert "project_id" not in body and "revision_number" not in body
        assert "description" not in body and "tags" not in body
        assert net.project_id is None
        assert net.to_dict()["tenant_id"] == conn.current_project_id
    else:
        assert body["project_id"] == conn.current_project_id == net.project_id
        assert body["revision_number"] == 0 and body["tags"] == []
    updated = conn.network.update_network(net, name=f"{name}-renamed")
    assert updated.name == f"{name}-renamed"
    if cloud == "target":
        assert updated.revision_number == 1
    assert conn.network.get_network(net.id).name == f"{name}-renamed"
    assert net.id in {n.id for n in conn.network.networks(name=f"{name}-renamed")}
    conn.network.delete_network(net)
    with pytest.raises(sdk_exc.NotFoundException) as err:
        conn.network.get_network(net.id)
    assert neutron_error(err.value) == {
        "type": "NetworkNotFound", "message": f"Network {net.id} could not be found.",
        "detail": ""}


@pytest.mark.parametrize("cloud", CLOUDS)
def test_network_in_use_cannot_be_deleted(sim: SimServer, cloud: str) -> None:
    conn = connect(sim, cloud)
    net = conn.network.create_network(name=unique("busy"))
    conn.network.create_subnet(network_id=net.id, cidr="10.1.0.0/24", ip_version=4)
    port = conn.network.create_port(network_id=net.id)
    with pytest.raises(sdk_exc.ConflictException) as err:
        conn.network.delete_network(net)
    assert neutron_error(err.value)["type"] == "NetworkInUse"
    conn.network.delete_port(port)
    conn.network.delete_network(net)  # its subnet goes with it
    assert not list(conn.network.subnets(network_id=net.id))


# -- subnets ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_ipv4_subnet_defaults_and_validation(sim: SimServer, cloud: str) -> None:
    conn = connect(sim, cloud)
    net = conn.network.create_network(name=unique("v4"))
    subnet = conn.network.create_subnet(network_id=net.id, cidr="192.168.10.0/24",
                                        ip_version=4, dns_nameservers=["9.9.9.9"],
                                        host_routes=[{"destination": "10.9.0.0/16",
                                                      "nexthop": "192.168.10.254"}])
    assert subnet.gateway_ip == "192.168.10.1"
    assert subnet.allocation_pools == [{"start": "192.168.10.2", "end": "192.168.10.254"}]
    assert subnet.is_dhcp_enabled is True and subnet.dns_nameservers == ["9.9.9.9"]
    assert conn.network.get_network(net.id).subnet_ids == [subnet.id]
    nogw = conn.network.create_subnet(network_id=net.id, cidr="192.168.11.0/28",
                                      ip_version=4, gateway_ip=None)
    assert nogw.gateway_ip is None
    assert nogw.allocation_pools == [{"start": "192.168.11.1", "end": "192.168.11.14"}]
    refused = [
        {"cidr": "192.168.10.128/25", "ip_version": 4},      # overlaps within the network
        {"cidr": "192.168.20.5/24", "ip_version": 4},        # not a network address
        {"cidr": "192.168.30.0/24", "ip_version": 4, "gateway_ip": "10.0.0.1"},
        {"cidr": "2001:db8:5::/64", "ip_version": 4},
    ]
    for attrs in refused:
        with pytest.raises(sdk_exc.BadRequestException):
            conn.network.create_subnet(network_id=net.id, **attrs)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_ipv6_subnets_slaac_and_dhcpv6_stateful(sim: SimServer, cloud: str) -> None:
    conn = connect(sim, cloud)
    net = conn.network.create_network(name=unique("v6"))
    slaac = conn.network.create_subnet(network_id=net.id, cidr="2001:db8:1::/64",
                                       ip_version=6, ipv6_ra_mode="slaac",
                                       ipv6_address_mode="slaac")
    assert slaac.gateway_ip == "2001:db8:1::1"
    assert slaac.allocation_pools == [{"start": "2001:db8:1::2",
                                       "end": "2001:db8:1:0:ffff:ffff:ffff:ffff"}]
    stateful = conn.network.create_subnet(network_id=net.id, cidr="2001:db8:2::/64",
                                          ip_version=6, ipv6_ra_mode="dhcpv6-stateful",
                                          ipv6_address_mode="dhcpv6-stateful")
    assert (stateful.ipv6_ra_mode, stateful.ipv6_address_mode) == ("dhcpv6-stateful",
                                                                  "dhcpv6-stateful")
    port = conn.network.create_port(network_id=net.id, mac_address="fa:16:3e:11:22:33")
    addresses = {ip["subnet_id"]: ip["ip_address"] for ip in port.fixed_ips}
    assert addresses[slaac.id] == "2001:db8:1:0:f816:3eff:fe11:2233"  # EUI-64 of the MAC
    assert addresses[stateful.id] == "2001:db8:2::2"
    refused = [
        {"cidr": "2001:db8:3::/64", "ipv6_ra_mode": "slaac",
         "ipv6_address_mode": "dhcpv6-stateful"},
        {"cidr": "2001:db8:4::/80", "ipv6_address_mode": "slaac"},
        {"cidr": "2001:db8:5::/64", "ipv6_ra_mode": "bogus"},
    ]
    for attrs in refused:
        with pytest.raises(sdk_exc.BadRequestException) as err:
            conn.network.create_subnet(network_id=net.id, ip_version=6, **attrs)
        assert neutron_error(err.value)["type"] == "InvalidInput"
    with pytest.raises(sdk_exc.BadRequestException):
        conn.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.77.0.0/24",
                                   ipv6_address_mode="slaac")


def test_subnet_from_subnet_pool_on_modern(sim: SimServer) -> None:
    conn = connect(sim, "target")
    pool = conn.network.create_subnet_pool(name=unique("pool"), prefixes=["10.50.0.0/24"],
                                           default_prefixlen=26, min_prefixlen=24)
    assert (pool.ip_version, pool.maximum_prefix_length) == (4, 32)
    net = conn.network.create_network(name=unique("pooled"))
    first = conn.network.create_subnet(network_id=net.id, ip_version=4,
                                       subnet_pool_id=pool.id)
    second = conn.network.create_subnet(network_id=net.id, ip_version=4,
                                        subnet_pool_id=pool.id, prefixlen=25)
    assert first.cidr == "10.50.0.0/26" and second.cidr == "10.50.0.128/25"
    assert first.subnet_pool_id == pool.id and first.gateway_ip == "10.50.0.1"
    third = conn.network.create_subnet(network_id=net.id, ip_version=4,
                                       subnet_pool_id=pool.id)
    assert third.cidr == "10.50.0.64/26"
    with pytest.raises(sdk_exc.ConflictException) as err:
        conn.network.create_subnet(network_id=net.id, ip_version=4, subnet_pool_id=pool.id)
    assert neutron_error(err.value)["type"] == "SubnetAllocationError"
    with pytest.raises(sdk_exc.ConflictException):
        conn.network.delete_subnet_pool(pool)


def test_liberty_serves_no_subnet_pools(sim: SimServer) -> None:
    with pytest.raises(sdk_exc.NotFoundException):
        list(connect(sim, "legacy").network.subnet_pools())


# -- routers and ports --------------------------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_router_gateway_and_interfaces(sim: SimServer, cloud: str) -> None:
    conn = connect(sim, cloud)
    ext = conn.network.create_network(name=unique("public"), is_router_external=True,
                                      is_shared=True)
    ext_subnet = conn.network.create_subnet(network_id=ext.id, cidr="198.51.100.0/24",
                                            ip_version=4)
    net = conn.network.create_network(name=unique("private"))
    subnet = conn.network.create_subnet(network_id=net.id, cidr="10.20.0.0/24",
                                        ip_version=4)
    router = conn.network.create_router(name=unique("router"),
                                        external_gateway_info={"network_id": ext.id})
    gateway = router.external_gateway_info
    assert gateway["network_id"] == ext.id and gateway["enable_snat"] is True
    assert gateway["external_fixed_ips"] == [{"subnet_id": ext_subnet.id,
                                              "ip_address": "198.51.100.2"}]
    gw_ports = list(conn.network.ports(device_id=router.id,
                                       device_owner="network:router_gateway"))
    assert len(gw_ports) == 1 and gw_ports[0].network_id == ext.id
    assert gw_ports[0].to_dict()["tenant_id"] == ""  # gateway ports belong to no project

    info = conn.network.add_interface_to_router(router, subnet_id=subnet.id)
    assert info["id"] == router.id and info["subnet_ids"] == [subnet.id]
    assert ("project_id" in info) is (cloud == "target")
    port = conn.network.get_port(info["port_id"])
    assert port.device_owner == "network:router_interface" and port.device_id == router.id
    assert port.fixed_ips == [{"subnet_id": subnet.id, "ip_address": "10.20.0.1"}]
    with pytest.raises(sdk_exc.BadRequestException):
        conn.network.add_interface_to_router(router, subnet_id=subnet.id)
    with pytest.raises(sdk_exc.ConflictException) as err:
        conn.network.delete_port(port)
    assert neutron_error(err.value)["type"] == "L3PortInUse"
    with pytest.raises(sdk_exc.ConflictException) as err:
        conn.network.delete_router(router)
    assert neutron_error(err.value)["type"] == "RouterInUse"

    # An interface through a port made beforehand keeps the port's own address.
    net2 = conn.network.create_network(name=unique("private2"))
    subnet2 = conn.network.create_subnet(network_id=net2.id, cidr="10.21.0.0/24",
                                         ip_version=4)
    own = conn.network.create_port(network_id=net2.id,
                                   fixed_ips=[{"subnet_id": subnet2.id,
                                               "ip_address": "10.21.0.50"}])
    conn.network.add_interface_to_router(router, port_id=own.id)
    assert conn.network.get_port(own.id).device_owner == "network:router_interface"
    routed = conn.network.update_router(router, routes=[{"destination": "172.16.0.0/16",
                                                         "nexthop": "10.20.0.9"}])
    assert routed.routes == [{"destination": "172.16.0.0/16", "nexthop": "10.20.0.9"}]
    # (router.id, not the object: a failed update leaves its attributes dirty in the SDK.)
    with pytest.raises(sdk_exc.BadRequestException):
        conn.network.update_router(router.id, routes=[{"destination": "172.17.0.0/16",
                                                       "nexthop": "192.0.2.1"}])
    with pytest.raises(sdk_exc.ConflictException) as err:
        conn.network.remove_interface_from_router(router, subnet_id=subnet.id)
    assert neutron_error(err.value)["type"] == "RouterInterfaceInUseByRoute"
    conn.network.update_router(router.id, routes=[])
    conn.network.remove_interface_from_router(router, subnet_id=subnet.id)
    conn.network.remove_interface_from_router(router, port_id=own.id)
    with pytest.raises(sdk_exc.NotFoundException) as err:
        conn.network.remove_interface_from_router(router, subnet_id=subnet.id)
    assert neutron_error(err.value)["type"] == "RouterInterfaceNotFoundForSubnet"
    assert not list(conn.network.ports(device_id=router.id,
                                       device_owner="network:router_interface"))
    cleared = conn.network.update_router(router.id, external_gateway_info={})
    assert cleared.external_gateway_info is None
    assert not list(conn.network.ports(device_id=router.id))
    conn.network.delete_router(router)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_router_gateway_rules(sim: SimServer, cloud: str) -> None:
    conn = connect(sim, cloud)
    internal = conn.network.create_network(name=unique("internal"))
    conn.network.create_subnet(network_id=internal.id, cidr="10.30.0.0/24", ip_version=4)
    with pytest.raises(sdk_exc.BadRequestException) as err:
        conn.network.create_router(name=unique("r"),
                                   external_gateway_info={"network_id": internal.id})
    assert "is not an external network" in neutron_error(err.value)["message"]
    ext = conn.network.create_network(name=unique("ext"), is_router_external=True)
    conn.network.create_subnet(network_id=ext.id, cidr="198.51.101.0/24", ip_version=4)
    alice, _ = member(sim, cloud)
    # Members may attach a gateway, but not choose SNAT or addresses (admin-only policy).
    router = alice.network.create_router(name=unique("r"),
                                         external_gateway_info={"network_id": ext.id})
    assert router.external_gateway_info["network_id"] == ext.id
    with pytest.raises(sdk_exc.ForbiddenException) as forbidden:
        alice.network.create_router(name=unique("r"), external_gateway_info={
            "network_id": ext.id, "enable_snat": False})
    assert neutron_error(forbidden.value)["type"] == "PolicyNotAuthorized"


# -- security groups ----------------------------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_security_groups_default_rules_remote_group_and_duplicates(
    sim: SimServer, cloud: str
) -> None:
    alice, project_id = member(sim, cloud)
    groups = list(alice.network.security_groups())
    assert [g.name for g in groups] == ["default"]  # made lazily by the first list
    default_rules = groups[0].security_group_rules
    assert sorted((r["direction"], r["ethertype"], r["remote_group_id"] is not None)
                  for r in default_rules) == [("egress", "IPv4", False),
                                              ("egress", "IPv6", False),
                                              ("ingress", "IPv4", True),
                                              ("ingress", "IPv6", True)]
    web = alice.network.create_security_group(name=unique("web"), description="web tier")
    assert sorted((r["direction"], r["ethertype"], r["protocol"])
                  for r in web.security_group_rules) == [("egress", "IPv4", None),
                                                        ("egress", "IPv6", None)]
    ssh = alice.network.create_security_group_rule(
        security_group_id=web.id, direction="ingress", protocol="tcp", port_range_min=22,
        port_range_max=22, remote_ip_prefix="203.0.113.0/24")
    assert ssh.protocol == "tcp" and ssh.remote_ip_prefix == "203.0.113.0/24"
    from_default = alice.network.create_security_group_rule(
        security_group_id=web.id, direction="ingress", protocol="6", port_range_min=80,
        port_range_max=80, remote_group_id=groups[0].id)
    assert from_default.protocol == "6" and from_default.remote_group_id == groups[0].id
    # "tcp" and "6" are the same protocol to the duplicate check.
    with pytest.raises(sdk_exc.ConflictException) as err:
        alice.network.create_security_group_rule(
            security_group_id=web.id, direction="ingress", protocol="6", port_range_min=22,
            port_range_max=22, remote_ip_prefix="203.0.113.0/24")
    assert neutron_error(err.value) == {
        "type": "SecurityGroupRuleExists", "detail": "",
        "message": f"Security group rule already exists. Rule id is {ssh.id}."}
    bad_rules = [
        {"protocol": "tcp", "port_range_min": 22, "remote_ip_prefix": "10.0.0.0/8",
         "remote_group_id": groups[0].id},
        {"protocol": "tcp", "port_range_min": 90, "port_range_max": 80},
        {"port_range_min": 22, "port_range_max": 22},
        {"protocol": "icmp", "port_range_min": 300},
        {"protocol": "icmpv6"},
        {"remote_ip_prefix": "2001:db8::/64"},
        {"protocol": "bogus"},
    ]
    for attrs in bad_rules:
        with pytest.raises(sdk_exc.BadRequestException):
            alice.network.create_security_group_rule(security_group_id=web.id,
                                                     direction="ingress", **attrs)
    rules = list(alice.network.security_group_rules(security_group_id=web.id))
    assert len(rules) == 4
    body = raw(alice, f"/security-group-rules/{ssh.id}").json()["security_group_rule"]
    assert body["tenant_id"] == project_id
    assert ("project_id" in body) is (cloud == "target")


def test_protocol_names_differ_between_profiles(sim: SimServer) -> None:
    legacy, target = connect(sim, "legacy"), connect(sim, "target")
    old = legacy.network.create_security_group(name=unique("proto"))
    new = target.network.create_security_group(name=unique("proto"))
    # Liberty knows tcp/udp/icmp/icmpv6 only, and keeps port ranges on other protocols.
    with pytest.raises(sdk_exc.BadRequestException):
        legacy.network.create_security_group_rule(security_group_id=old.id,
                                                  direction="ingress", protocol="sctp")
    target.network.create_security_group_rule(security_group_id=new.id, direction="ingress",
                                              protocol="sctp", port_range_min=9,
                                              port_range_max=9)
    legacy.network.create_security_group_rule(security_group_id=old.id, direction="ingress",
                                              protocol="47", port_range_min=1,
                                              port_range_max=2)
    with pytest.raises(sdk_exc.BadRequestException):
        target.network.create_security_group_rule(security_group_id=new.id,
                                                  direction="ingress", protocol="gre",
                                                  port_range_min=1, port_range_max=2)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_remote_group_of_another_project_needs_admin(sim: SimServer, cloud: str) -> None:
    admin = connect(sim, cloud)
    alice, alice_project = member(sim, cloud)
    bob, _ = member(sim, cloud)
    theirs = bob.network.create_security_group(name=unique("bob"))
    mine = alice.network.create_security_group(name=unique("alice"))
    with pytest.raises(sdk_exc.NotFoundException):
        alice.network.create_security_group_rule(security_group_id=mine.id,
                                                 direction="ingress",
                                                 remote_group_id=theirs.id)
    rule = admin.network.create_security_group_rule(security_group_id=mine.id,
                                                    direction="ingress",
                                                    remote_group_id=theirs.id)
    assert rule.to_dict()["tenant_id"] == alice_project
    # Deleting the remote group takes the rules that name it along.
    bob.network.delete_security_group(theirs)
    with pytest.raises(sdk_exc.NotFoundException):
        admin.network.get_security_group_rule(rule.id)
    with pytest.raises(sdk_exc.ConflictException):
        alice.network.delete_security_group(
            next(g for g in alice.network.security_groups() if g.name == "default"))


# -- listing: pagination, filters, fields -------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_pagination_with_limit_and_marker(
    sim: SimServer, cloud: str, admin_api: dict[str, Admin]
) -> None:
    alice, _ = member(sim, cloud)
    made = [alice.network.create_network(name=f"page-{i}").id for i in range(5)]
    # Other tests' shared and external networks are visible too: keep to private ones.
    own = {"shared": "False", "router:external": "False"}
    first = raw(alice, "/networks", limit=2, **own)
    body = first.json()
    assert [n["id"] for n in body["networks"]] == made[:2]
    links = {link["rel"]: link["href"] for link in body["networks_links"]}
    assert set(links) == {"next", "previous"}
    assert f"marker={made[1]}" in links["next"] and "limit=2" in links["next"]
    assert f"marker={made[0]}" in links["previous"] and "page_reverse=True" in links["previous"]
    last = raw(alice, "/networks", limit=2, marker=made[3], **own).json()
    assert [n["id"] for n in last["networks"]] == [made[4]]
    assert [link["rel"] for link in last["networks_links"]] == ["previous"]
    back = raw(alice, "/networks", limit=2, marker=made[4], page_reverse="True",
               **own).json()
    assert [n["id"] for n in back["networks"]] == made[2:4]
    assert "networks_links" not in raw(alice, "/networks").json()  # off without limit
    admin_api[cloud].reset_calls()
    assert [n.id for n in alice.network.networks(limit=2, is_shared=False,
                                                 is_router_external=False)] == made
    # 2 + 2 + 1 + 0: the short last page has no next link, but with limit= the SDK asks
    # once more with the last marker and stops at the empty page.
    assert admin_api[cloud].calls()["GET /network/v2.0/networks"] == 4
    sorted_names = [n["name"] for n in raw(alice, "/networks", sort_key="name",
                                           sort_dir="desc", **own).json()["networks"]]
    assert sorted_names == [f"page-{i}" for i in reversed(range(5))]
    missing = raw(alice, "/networks", limit=2, marker=str(uuid.uuid4()))
    assert missing.status_code == 404


@pytest.mark.parametrize("cloud", CLOUDS)
@pytest.mark.parametrize("filtered", [False, True])
def test_a_change_between_pages_is_seen(sim: SimServer, cloud: str, filtered: bool) -> None:
    """Pages come from a listing kept until the state changes (plain, or rendered, filtered
    and sorted): a network deleted after the first page is not on the next one."""
    alice, _ = member(sim, cloud)
    made = [alice.network.create_network(name=f"pages-{i}").id for i in range(4)]
    query: dict[str, Any] = {"shared": "False", "router:external": "False"} if filtered else {}
    everything = [n["id"] for n in raw(alice, "/networks", limit=1000, **query).json()[
        "networks"]]
    assert everything.index(made[2]) == everything.index(made[1]) + 1
    alice.network.delete_network(made[2])
    after = raw(alice, "/networks", limit=1000, marker=made[1], **query).json()["networks"]
    rest = everything[everything.index(made[1]) + 1:]
    assert [n["id"] for n in after] == [i for i in rest if i != made[2]]


def test_liberty_ignores_project_id_filter(sim: SimServer) -> None:
    admin = connect(sim, "legacy")
    alice, alice_project = member(sim, "legacy")
    mine = alice.network.create_network(name=unique("alice-net"))
    admins = admin.network.create_network(name=unique("admin-net"))
    everything = {n.id for n in admin.network.networks(project_id=alice_project)}
    assert {mine.id, admins.id} <= everything  # the filter was silently dropped
    by_tenant = raw(admin, "/networks", tenant_id=alice_project).json()["networks"]
    assert [n["id"] for n in by_tenant] == [mine.id]
    assert all("project_id" not in n for n in by_tenant)
    # The SDK drops tenant_id (not a Network query parameter): this is no filter either.
    assert admin.network.networks(tenant_id=alice_project) is not None
    assert len(list(admin.network.networks(tenant_id=alice_project))) == len(everything)
    assert raw(admin, "/networks", no_such_attribute="x").status_code == 200


def test_modern_filters_on_project_id_and_validates_filters(sim: SimServer) -> None:
    admin = connect(sim, "target")
    alice, alice_project = member(sim, "target")
    mine = alice.network.create_network(name=unique("alice-net"))
    admin.network.create_network(name=unique("admin-net"))
    assert {n.id for n in admin.network.networks(project_id=alice_project)} == {mine.id}
    by_tenant = raw(admin, "/networks", tenant_id=alice_project).json()["networks"]
    assert [n["id"] for n in by_tenant] == [mine.id]
    refused = raw(admin, "/networks", no_such_attribute="x")
    assert refused.status_code == 400
    assert refused.json()["NeutronError"]["message"] == (
        "['no_such_attribute'] is invalid attribute for filtering")


@pytest.mark.parametrize("cloud", CLOUDS)
def test_fields_selects_attributes(sim: SimServer, cloud: str) -> None:
    conn = connect(sim, cloud)
    net = conn.network.create_network(name=unique("fields"))
    listed = raw(conn, "/networks", id=net.id, fields=["id", "name"]).json()["networks"]
    assert listed == [{"id": net.id, "name": net.name}]
    shown = raw(conn, f"/networks/{net.id}", fields="status").json()["network"]
    assert shown == {"status": "ACTIVE"}


# -- tags ---------------------------------------------------------------------------------------
def test_tags_on_modern(sim: SimServer) -> None:
    conn = connect(sim, "target")
    marker = unique("mig")
    net = conn.network.create_network(name=unique("tagged"))
    other = conn.network.create_network(name=unique("tagged"))
    conn.network.set_tags(net, [marker, "blue"])
    conn.network.set_tags(other, [marker])
    net.add_tag(conn.network, "green")
    assert sorted(conn.network.get_network(net.id).tags) == sorted([marker, "blue", "green"])
    net.remove_tag(conn.network, "blue")
    with pytest.raises(sdk_exc.NotFoundException):
        net.check_tag(conn.network, "blue")
    assert {n.id for n in conn.network.networks(tags=marker)} == {net.id, other.id}
    assert {n.id for n in conn.network.networks(tags=f"{marker},green")} == {net.id}
    assert {n.id for n in conn.network.networks(any_tags=f"green,{marker}")} == {net.id,
                                                                                  other.id}
    tagged = {n.id for n in conn.network.networks(not_tags="green") if marker in n.tags}
    assert tagged == {other.id}
    group = conn.network.create_security_group(name=unique("tagged-sg"))
    conn.network.set_tags(group, [marker])
    assert conn.network.get_security_group(group.id).tags == [marker]
    assert conn.network.get_network(net.id).revision_number >= 3


def test_no_tags_on_liberty(sim: SimServer) -> None:
    conn = connect(sim, "legacy")
    net = conn.network.create_network(name=unique("untagged"))
    resp = conn.network.put(f"/networks/{net.id}/tags", json={"tags": ["x"]},
                            raise_exc=False)
    assert resp.status_code == 404
    # The tags filter is an unknown filter to Liberty: ignored, not an error.
    assert net.id in {n.id for n in conn.network.networks(tags="x")}


# -- quotas -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_quota_update_and_refusal(sim: SimServer, cloud: str) -> None:
    admin = connect(sim, cloud)
    alice, project_id = member(sim, cloud)
    defaults = admin.network.get_quota(project_id)
    assert defaults.networks == (10 if cloud == "legacy" else 100)
    assert defaults.security_group_rules == 100
    updated = admin.network.update_quota(project_id, networks=1, security_groups=1)
    assert updated.networks == 1
    assert alice.network.get_quota(project_id).networks == 1
    alice.network.create_network(name=unique("only"))
    with pytest.raises(sdk_exc.ConflictException) as err:
        alice.network.create_network(name=unique("one-too-many"))
    assert neutron_error(err.value) == {"type": "OverQuota", "detail": "",
                                        "message": "Quota exceeded for resources: ['network']."}
    # The lazily made default group counts: one allowed, one already used.
    with pytest.raises(sdk_exc.ConflictException):
        alice.network.create_security_group(name=unique("sg"))
    with pytest.raises(sdk_exc.ForbiddenException) as forbidden:
        alice.network.update_quota(project_id, networks=50)
    assert neutron_error(forbidden.value)["type"] == "AdminRequired"
    stored = sim.cloud(cloud).state.get("quotas", f"network:{project_id}")
    assert stored is not None and stored["limits"] == {"network": 1, "security_group": 1}
    listed = {q.project_id: q.networks for q in admin.network.quotas()}
    assert listed[project_id] == 1
    admin.network.delete_quota(project_id)
    assert admin.network.get_quota(project_id).networks == defaults.networks


def test_quota_details_and_defaults_on_modern(sim: SimServer) -> None:
    admin = connect(sim, "target")
    alice, project_id = member(sim, "target")
    alice.network.create_network(name=unique("counted"))
    details = admin.network.get_quota(project_id, details=True)
    assert details.networks == {"limit": 100, "used": 1, "reserved": 0}
    assert details.security_groups["used"] == 1  # the default group
    assert admin.network.get_quota_default(project_id).networks == 100
    assert raw(connect(sim, "legacy"), f"/quotas/{project_id}/details").status_code == 404


# -- visibility ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_member_sees_own_shared_and_external_networks(sim: SimServer, cloud: str) -> None:
    admin = connect(sim, cloud)
    private = admin.network.create_network(name=unique("admin-private"))
    shared = admin.network.create_network(name=unique("admin-shared"), is_shared=True)
    external = admin.network.create_network(name=unique("admin-ext"),
                                            is_router_external=True)
    shared_subnet = admin.network.create_subnet(network_id=shared.id, cidr="10.60.0.0/24",
                                                ip_version=4)
    alice, project_id = member(sim, cloud)
    own = alice.network.create_network(name=unique("own"))
    seen = {n.id for n in alice.network.networks()}
    assert {own.id, shared.id, external.id} <= seen and private.id not in seen
    body = raw(alice, f"/networks/{shared.id}").json()["network"]
    assert "provider:network_type" not in body  # admin-only attribute
    assert alice.network.get_subnet(shared_subnet.id).cidr == "10.60.0.0/24"
    with pytest.raises(sdk_exc.NotFoundException):
        alice.network.get_network(private.id)
    with pytest.raises(sdk_exc.ForbiddenException):
        alice.network.update_network(shared, name="hijacked")
    with pytest.raises(sdk_exc.NotFoundException):
        alice.network.delete_network(private, ignore_missing=False)
    with pytest.raises(sdk_exc.ForbiddenException):
        alice.network.create_network(name=unique("x"), is_shared=True)
    # Another project's id in the body: Neutron answers 400 (not 403) to a non-admin.
    # The SDK sends it as project_id, an attribute Liberty does not know at all.
    owner_key = "tenant_id" if cloud == "legacy" else "project_id"
    for key, expected in (("project_id", "Unrecognized attribute(s) 'project_id'"
                           if cloud == "legacy" else "requires admin privileges"),
                          ("tenant_id", "requires admin privileges")):
        with pytest.raises(sdk_exc.BadRequestException) as err:
            alice.network.create_network(name=unique("x"),
                                         **{key: admin.current_project_id})
        assert expected in neutron_error(err.value)["message"]
    # Ports on a shared network are allowed; on someone else's private network they are not.
    alice.network.create_port(network_id=shared.id)
    with pytest.raises(sdk_exc.NotFoundException):
        alice.network.create_port(network_id=private.id)
    made_for = admin.network.create_network(name=unique("for-alice"),
                                            **{owner_key: project_id})
    assert made_for.to_dict()["tenant_id"] == project_id
    assert made_for.id in {n.id for n in alice.network.networks()}


def test_tags_given_at_creation_on_modern_only(sim: SimServer) -> None:
    # Modern Neutron's tag-creation extension: one call creates and tags.
    target = connect(sim, "target")
    assert target.network.find_extension("tag-creation") is not None
    net = target.network.create_network(name="tagged-at-birth", tags=["migrator-src-x"])
    assert net.tags == ["migrator-src-x"]
    group = target.network.create_security_group(name="tagged-group", tags=["a", "b"])
    assert sorted(group.tags) == ["a", "b"]
    assert [n.name for n in target.network.networks(tags="migrator-src-x")] == [
        "tagged-at-birth"]
    legacy = connect(sim, "legacy")
    assert legacy.network.find_extension("tag-creation") is None
    with pytest.raises(openstack.exceptions.BadRequestException):
        legacy.network.create_network(name="no-tags-here", tags=["x"])
