"""Networks, subnets (IPv4 and IPv6, optionally carved from a subnet pool) and subnet pools of
the simulated Neutron."""

from __future__ import annotations

import ipaddress
from typing import Any

from aiohttp import web

from migrator.sim import neutron_ipam as ipam
from migrator.sim.http import SimHTTPError, auth_of
from migrator.sim.neutron_common import (
    NETWORKS,
    SUBNETPOOLS,
    SUBNETS,
    NeutronCore,
    bad_request,
    parse_bool,
)
from migrator.sim.state import Record

NETWORK_ATTRS = {"name", "admin_state_up", "shared", "router:external", "mtu",
                 "port_security_enabled", "provider:network_type",
                 "provider:physical_network", "provider:segmentation_id", "tenant_id",
                 "project_id", "description", "availability_zone_hints", "dns_domain",
                 "is_default", "qos_policy_id", "vlan_transparent"}
NETWORK_ADMIN_ATTRS = ("shared", "router:external", "provider:network_type",
                       "provider:physical_network", "provider:segmentation_id", "is_default")
SUBNET_ATTRS = {"name", "network_id", "ip_version", "cidr", "gateway_ip", "allocation_pools",
                "dns_nameservers", "host_routes", "enable_dhcp", "ipv6_ra_mode",
                "ipv6_address_mode", "subnetpool_id", "prefixlen", "tenant_id",
                "project_id", "description", "service_types", "segment_id",
                "use_default_subnetpool"}
SUBNET_UPDATABLE = {"name", "gateway_ip", "allocation_pools", "dns_nameservers",
                    "host_routes", "enable_dhcp", "description", "service_types"}
SUBNETPOOL_ATTRS = {"name", "prefixes", "default_prefixlen", "min_prefixlen", "max_prefixlen",
                    "shared", "is_default", "default_quota", "address_scope_id", "tenant_id",
                    "project_id", "description"}
# Ports Neutron creates for itself; deleting the network removes them with it.
NETWORK_OWNED_DEVICES = ("network:dhcp",)


class NetworkHandlers:
    def __init__(self, core: NeutronCore) -> None:
        self.core = core
        self.state = core.state
        # (the segment index's releases, the lowest segment that may be free): see
        # _free_segment.
        self._segments_from: tuple[int, int] = (-1, 1)

    def _free_segment(self) -> int:
        """The lowest segmentation id no network holds, the search starting where the last
        one was found while no network has given one up since (collecting every network's
        per create made a create's cost grow with the cloud)."""
        releases = self.state.field_index("networks", "provider:segmentation_id").removals
        start = self._segments_from[1] if self._segments_from[0] == releases else 1
        found = next(i for i in range(start, 1 << 24)
                     if not self.state.lookup("networks", "provider:segmentation_id", i))
        self._segments_from = (releases, found)
        return found

    # -- networks ----------------------------------------------------------------------------
    async def list_networks(self, request: web.Request) -> web.Response:
        return self.core.list_response(NETWORKS, request)

    async def get_network(self, request: web.Request) -> web.Response:
        rec = self.core.get_visible(NETWORKS, request.match_info["id"], auth_of(request))
        return self.core.show_response(NETWORKS, rec, request)

    async def create_network(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        body = await self.core.body_of(request, NETWORKS)
        tags = self.core.creation_tags(body)
        allowed = NETWORK_ATTRS if not self.core.liberty else NETWORK_ATTRS - {
            "project_id", "description", "availability_zone_hints", "dns_domain", "is_default"}
        self.core.check_unknown(NETWORKS, body, allowed)
        self.core.require_admin_for(body, NETWORK_ADMIN_ATTRS, ctx, "create_network")
        project = self.core.owner_for_create(body, ctx)
        self.core.enforce_quota(NETWORKS, project)
        rec = self.core.stamp_new({
            "name": str(body.get("name", "")), "project_id": project,
            "admin_state_up": parse_bool(body.get("admin_state_up", True)),
            "status": "ACTIVE", "shared": parse_bool(body.get("shared", False)),
            "router:external": parse_bool(body.get("router:external", False)),
            "mtu": int(body.get("mtu", 1450)),
            "port_security_enabled": parse_bool(body.get("port_security_enabled", True)),
            "provider:network_type": body.get("provider:network_type", "vxlan"),
            "provider:physical_network": body.get("provider:physical_network"),
            "provider:segmentation_id": body.get("provider:segmentation_id"),
            "availability_zone_hints": list(body.get("availability_zone_hints") or []),
            "availability_zones": ["nova"], "ipv4_address_scope": None,
            "ipv6_address_scope": None, "is_default": parse_bool(body.get("is_default", False)),
            "l2_adjacency": True, "dns_domain": body.get("dns_domain", ""),
            "description": str(body.get("description", "")),
        }, tags=tags)
        if rec["provider:segmentation_id"] is None and rec["provider:network_type"] in (
                "vxlan", "vlan", "gre", "geneve"):
            rec["provider:segmentation_id"] = self._free_segment()
        self.state.put("networks", rec)
        # ML2 makes sure the owner has its default security group when a network appears.
        self.core.ensure_default_group(project)
        return self.core.show_response(NETWORKS, rec, request, status=201)

    async def update_network(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        rec = self.core.get_owned(NETWORKS, request.match_info["id"], ctx, "update")
        body = await self.core.body_of(request, NETWORKS)
        self.core.check_unknown(NETWORKS, body, NETWORK_ATTRS - {"tenant_id", "project_id"})
        self.core.require_admin_for(body, NETWORK_ADMIN_ATTRS, ctx, "update_network")
        for key, value in body.items():
            is_flag = key in ("admin_state_up", "shared", "router:external",
                              "port_security_enabled", "is_default")
            rec[key] = parse_bool(value) if is_flag else value
        self.core.touch(rec)
        return self.core.show_response(NETWORKS, rec, request)

    async def delete_network(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        rec = self.core.get_owned(NETWORKS, request.match_info["id"], ctx, "delete")
        ports = self.state.find("ports", network_id=rec["id"])
        if any(p.get("device_owner") not in NETWORK_OWNED_DEVICES for p in ports):
            raise SimHTTPError(409, f"Unable to complete operation on network {rec['id']}. "
                               "There are one or more ports still in use on the network.",
                               neutron_type="NetworkInUse")
        for port in ports:
            self.state.delete("ports", port["id"])
        for subnet in self.state.find("subnets", network_id=rec["id"]):
            self.state.delete("subnets", subnet["id"])
        self.state.delete("networks", rec["id"])
        return web.Response(status=204)

    # -- subnets -----------------------------------------------------------------------------
    async def list_subnets(self, request: web.Request) -> web.Response:
        return self.core.list_response(SUBNETS, request)

    async def get_subnet(self, request: web.Request) -> web.Response:
        rec = self.core.get_visible(SUBNETS, request.match_info["id"], auth_of(request))
        return self.core.show_response(SUBNETS, rec, request)

    def _subnet_network(self, body: dict[str, Any], project: str, is_admin: bool) -> Record:
        net_id = body.get("network_id")
        if not net_id:
            raise bad_request("Failed to parse request. Required attribute 'network_id' not "
                              "specified")
        ctx_net = self.state.get("networks", str(net_id))
        if ctx_net is None:
            raise NETWORKS.not_found(str(net_id))
        if not is_admin and not ctx_net.get("shared") and ctx_net.get("project_id") != project:
            # Neutron's _validate_network_tenant_ownership answers 403 here.
            raise SimHTTPError(403, f"Tenant {project} not allowed to create subnet on this "
                               "network", neutron_type="HTTPForbidden")
        return ctx_net

    def _cidr_from_pool(self, body: dict[str, Any], ip_version: int | None
                        ) -> tuple[str, Record]:
        pool = self.state.get("subnetpools", str(body["subnetpool_id"]))
        if pool is None:
            raise SUBNETPOOLS.not_found(str(body["subnetpool_id"]))
        if ip_version is not None and ip_version != pool["ip_version"]:
            raise ipam.invalid_input(f"Cannot allocate IPv{ip_version} subnet from IPv"
                                     f"{pool['ip_version']} subnet pool")
        prefixlen = int(body.get("prefixlen") or pool["default_prefixlen"])
        if not pool["min_prefixlen"] <= prefixlen <= pool["max_prefixlen"]:
            raise SimHTTPError(
                400, f"Unable to allocate subnet with prefix length {prefixlen}, minimum "
                f"allowed prefix is {pool['min_prefixlen']}, maximum allowed prefix is "
                f"{pool['max_prefixlen']}.", neutron_type="BadRequest")
        taken = [s["cidr"] for s in self.state.find("subnets", subnetpool_id=pool["id"])]
        cidr = ipam.allocate_prefix(list(pool["prefixes"]), prefixlen, taken)
        if cidr is None:
            raise SimHTTPError(409, f"Subnet allocation failed: insufficient prefix space "
                               f"to allocate subnet size /{prefixlen}.",
                               neutron_type="SubnetAllocationError")
        return cidr, pool

    def _default_subnetpool_id(self, body: dict[str, Any], ip_version: int | None) -> str:
        """``use_default_subnetpool`` (the default-subnetpools extension): the pool marked
        ``is_default`` for the subnet's IP version (neutron db_base_plugin_v2
        ``_get_subnetpool_id``)."""
        if body.get("subnetpool_id"):
            raise bad_request("Bad subnets request: subnetpool_id and use_default_subnetpool "
                              "cannot both be specified.")
        if body.get("cidr"):
            ip_version = ipam.parse_cidr(str(body["cidr"])).version
        if ip_version is None:
            raise bad_request("Bad subnets request: ip_version must be specified in the "
                              "absence of cidr and subnetpool_id.")
        for pool in self.state.values("subnetpools"):
            if pool.get("is_default") and int(pool.get("ip_version") or 0) == ip_version:
                return str(pool["id"])
        raise bad_request(f"Bad subnets request: No default subnetpool found for "
                          f"IPv{ip_version}.")

    async def create_subnet(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        body = await self.core.body_of(request, SUBNETS)
        tags = self.core.creation_tags(body)
        allowed = SUBNET_ATTRS
        if self.core.liberty:
            allowed = SUBNET_ATTRS - {"project_id", "description", "service_types",
                                      "segment_id", "use_default_subnetpool"}
        self.core.check_unknown(SUBNETS, body, allowed)
        project = self.core.owner_for_create(body, ctx)
        network = self._subnet_network(body, project, ctx.is_admin)
        ip_version = int(body["ip_version"]) if body.get("ip_version") is not None else None
        pool: Record | None = None
        if not self.core.liberty and parse_bool(body.get("use_default_subnetpool", False)):
            body["subnetpool_id"] = self._default_subnetpool_id(body, ip_version)
        if body.get("subnetpool_id") and not self.core.liberty and not body.get("cidr"):
            cidr_text, pool = self._cidr_from_pool(body, ip_version)
            ip_version = int(pool["ip_version"])
        else:
            if not body.get("cidr"):
                raise bad_request("Bad subnet request: a subnetpool must be specified in the "
                                  "absence of a cidr.")
            cidr_text = str(body["cidr"])
        if ip_version not in (4, 6):
            raise ipam.invalid_input(f"{ip_version} is not in [4, 6]")
        net = ipam.parse_cidr(cidr_text)
        if net.version != ip_version:
            raise ipam.invalid_input("Cidr and ip version mismatch")
        siblings = [s["cidr"] for s in self.state.find("subnets", network_id=network["id"])]
        if ipam.overlaps_any(net, siblings):
            raise ipam.invalid_input(f"Requested subnet with cidr: {net} for network: "
                                     f"{network['id']} overlaps with another subnet")
        ra_mode, address_mode = body.get("ipv6_ra_mode"), body.get("ipv6_address_mode")
        ipam.validate_ipv6_modes(ip_version, ra_mode, address_mode, net)
        gateway = (ipam.validate_gateway(net, body["gateway_ip"]) if "gateway_ip" in body
                   else ipam.first_host(net))
        pools = (ipam.validate_pools(net, body["allocation_pools"], gateway)
                 if body.get("allocation_pools") else ipam.default_pools(net, gateway))
        self.core.enforce_quota(SUBNETS, project)
        rec = self.core.stamp_new({
            "name": str(body.get("name", "")), "project_id": project,
            "network_id": network["id"], "ip_version": ip_version, "cidr": str(net),
            "gateway_ip": str(gateway) if gateway is not None else None,
            "allocation_pools": pools,
            "dns_nameservers": list(body.get("dns_nameservers") or []),
            "host_routes": list(body.get("host_routes") or []),
            "enable_dhcp": parse_bool(body.get("enable_dhcp", True)),
            "ipv6_ra_mode": ra_mode, "ipv6_address_mode": address_mode,
            "subnetpool_id": pool["id"] if pool else None,
            "service_types": list(body.get("service_types") or []), "segment_id": None,
            "description": str(body.get("description", "")),
        }, tags=tags)
        self.state.put("subnets", rec)
        return self.core.show_response(SUBNETS, rec, request, status=201)

    async def update_subnet(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        rec = self.core.get_owned(SUBNETS, request.match_info["id"], ctx, "update")
        body = await self.core.body_of(request, SUBNETS)
        self.core.check_unknown(SUBNETS, body, SUBNET_UPDATABLE)
        net = ipaddress.ip_network(rec["cidr"])
        gateway = (ipam.validate_gateway(net, body["gateway_ip"]) if "gateway_ip" in body
                   else (ipaddress.ip_address(rec["gateway_ip"]) if rec.get("gateway_ip")
                         else None))
        if "allocation_pools" in body:
            body["allocation_pools"] = ipam.validate_pools(net, body["allocation_pools"],
                                                           gateway)
        if "gateway_ip" in body:
            body["gateway_ip"] = str(gateway) if gateway is not None else None
        if "enable_dhcp" in body:
            body["enable_dhcp"] = parse_bool(body["enable_dhcp"])
        rec.update(body)
        self.core.touch(rec)
        return self.core.show_response(SUBNETS, rec, request)

    async def delete_subnet(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        rec = self.core.get_owned(SUBNETS, request.match_info["id"], ctx, "delete")
        # A port's addresses come from subnets of its own network.
        for port in self.state.where("ports", "network_id", rec.get("network_id")):
            on_subnet = any(ip.get("subnet_id") == rec["id"] for ip in port.get("fixed_ips")
                            or [])
            if on_subnet and port.get("device_owner") not in NETWORK_OWNED_DEVICES:
                raise SimHTTPError(409, f"Unable to complete operation on subnet {rec['id']}: "
                                   "One or more ports have an IP allocation from this "
                                   "subnet.", neutron_type="SubnetInUse")
        self.state.delete("subnets", rec["id"])
        return web.Response(status=204)

    # -- subnet pools (not served on Liberty in this simulator) ----------------------------
    async def list_subnetpools(self, request: web.Request) -> web.Response:
        return self.core.list_response(SUBNETPOOLS, request)

    async def get_subnetpool(self, request: web.Request) -> web.Response:
        rec = self.core.get_visible(SUBNETPOOLS, request.match_info["id"], auth_of(request))
        return self.core.show_response(SUBNETPOOLS, rec, request)

    async def create_subnetpool(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        body = await self.core.body_of(request, SUBNETPOOLS)
        tags = self.core.creation_tags(body)
        self.core.check_unknown(SUBNETPOOLS, body, SUBNETPOOL_ATTRS)
        self.core.require_admin_for(body, ("shared", "is_default"), ctx, "create_subnetpool")
        project = self.core.owner_for_create(body, ctx)
        prefixes = body.get("prefixes")
        if not isinstance(prefixes, list) or not prefixes:
            raise bad_request("Failed to parse request. Required attribute 'prefixes' not "
                              "specified")
        nets = [ipaddress.ip_network(str(p), strict=False) for p in _checked(prefixes)]
        versions = {n.version for n in nets}
        if len(versions) != 1:
            raise ipam.invalid_input("Cannot mix IPv4 and IPv6 prefixes in a subnet pool")
        version = versions.pop()
        top = 32 if version == 4 else 128
        min_len = int(body.get("min_prefixlen", 8 if version == 4 else 64))
        max_len = int(body.get("max_prefixlen", top))
        default_len = int(body.get("default_prefixlen", min_len))
        if not (0 <= min_len <= default_len <= max_len <= top):
            raise SimHTTPError(400, f"Illegal prefix bounds: min_prefixlen={min_len}, "
                               f"default_prefixlen={default_len}, max_prefixlen={max_len}.",
                               neutron_type="IllegalSubnetPoolPrefixBounds")
        self.core.enforce_quota(SUBNETPOOLS, project)
        rec = self.core.stamp_new({
            "name": str(body.get("name", "")), "project_id": project,
            "prefixes": [str(n) for n in _collapse(nets)], "ip_version": version,
            "min_prefixlen": min_len, "max_prefixlen": max_len,
            "default_prefixlen": default_len, "shared": parse_bool(body.get("shared", False)),
            "is_default": parse_bool(body.get("is_default", False)),
            "default_quota": body.get("default_quota"),
            "address_scope_id": body.get("address_scope_id"),
            "description": str(body.get("description", "")),
        }, tags=tags)
        self.state.put("subnetpools", rec)
        return self.core.show_response(SUBNETPOOLS, rec, request, status=201)

    async def update_subnetpool(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        rec = self.core.get_owned(SUBNETPOOLS, request.match_info["id"], ctx, "update")
        body = await self.core.body_of(request, SUBNETPOOLS)
        self.core.check_unknown(SUBNETPOOLS, body, {"name", "description", "prefixes",
                                                    "default_prefixlen", "default_quota",
                                                    "is_default"})
        if "prefixes" in body:
            # Prefixes may only grow: the old ones stay, merged with the new.
            nets = [ipaddress.ip_network(p) for p in rec["prefixes"]]
            nets += [ipaddress.ip_network(str(p), strict=False)
                     for p in _checked(body["prefixes"])]
            body["prefixes"] = [str(n) for n in _collapse(nets)]
        rec.update(body)
        self.core.touch(rec)
        return self.core.show_response(SUBNETPOOLS, rec, request)

    async def delete_subnetpool(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        rec = self.core.get_owned(SUBNETPOOLS, request.match_info["id"], ctx, "delete")
        if self.state.find("subnets", subnetpool_id=rec["id"]):
            raise SimHTTPError(409, f"Unable to delete subnet pool: Subnet pool {rec['id']} "
                               "has subnets allocated.", neutron_type="SubnetPoolDeleteError")
        self.state.delete("subnetpools", rec["id"])
        return web.Response(status=204)


def _checked(prefixes: Any) -> list[str]:
    if not isinstance(prefixes, list):
        raise ipam.invalid_input(f"'{prefixes}' is not a list")
    for prefix in prefixes:
        try:
            ipaddress.ip_network(str(prefix), strict=False)
        except ValueError as exc:
            raise ipam.invalid_input(f"'{prefix}' is not a valid IP subnet") from exc
    return [str(p) for p in prefixes]


def _collapse(nets: list[Any]) -> list[Any]:
    return list(ipaddress.collapse_addresses(nets))

