"""Ports and routers of the simulated Neutron: address allocation on ports, router gateways on
external networks (a ``network:router_gateway`` port owned by no project) and router
interfaces (a ``network:router_interface`` port holding the subnet's gateway address)."""

from __future__ import annotations

import ipaddress
from typing import Any

from aiohttp import web

from migrator.sim import neutron_ipam as ipam
from migrator.sim.http import AuthContext, SimHTTPError, auth_of, json_response, read_json
from migrator.sim.neutron_common import (
    NETWORKS,
    PORTS,
    ROUTERS,
    SECURITY_GROUPS,
    SUBNETS,
    NeutronCore,
    parse_bool,
    policy_denied,
)
from migrator.sim.state import Record, SimState

ROUTER_INTERFACE = "network:router_interface"
ROUTER_GATEWAY = "network:router_gateway"
L3_OWNERS = (ROUTER_INTERFACE, ROUTER_GATEWAY, "network:router_interface_distributed",
             "network:ha_router_replicated_interface", "network:floatingip")
PORT_ATTRS = {"name", "network_id", "admin_state_up", "mac_address", "fixed_ips", "device_id",
              "device_owner", "security_groups", "allowed_address_pairs", "extra_dhcp_opts",
              "port_security_enabled", "binding:vnic_type", "binding:host_id",
              "binding:profile", "tenant_id", "project_id", "description", "dns_name"}
PORT_UPDATABLE = {"name", "admin_state_up", "device_id", "device_owner", "security_groups",
                  "allowed_address_pairs", "port_security_enabled", "binding:host_id",
                  "binding:profile", "binding:vnic_type", "description", "dns_name"}
ROUTER_ATTRS = {"name", "admin_state_up", "external_gateway_info", "distributed", "ha",
                "tenant_id", "project_id", "description", "availability_zone_hints",
                "flavor_id", "routes"}


def router_bad(message: str) -> SimHTTPError:
    return SimHTTPError(400, f"Bad router request: {message}.", neutron_type="BadRequest")


def port_addresses(port: Record) -> tuple[tuple[Any, str], ...]:
    """A port's (network, address) pairs: the keys of the state's index of taken addresses."""
    return tuple((port.get("network_id"), ip["ip_address"]) for ip in port.get("fixed_ips") or []
                 if isinstance(ip, dict) and isinstance(ip.get("ip_address"), str))


class AddressesInUse:
    """The addresses taken on one network, answering ``in`` from the state's index of ports
    by address (instead of collecting every port's addresses per allocation), plus those
    picked for the port being made (``add``)."""

    INDEX = "network-address"

    def __init__(self, state: SimState, network_id: str) -> None:
        self.state = state
        self.network_id = network_id
        self.picked: set[str] = set()

    def __contains__(self, address: object) -> bool:
        return address in self.picked or bool(self.state.keyed(
            "ports", self.INDEX, port_addresses, (self.network_id, address)))

    def add(self, address: str) -> None:
        self.picked.add(address)

    def releases(self) -> int:
        """How many addresses the index has let go so far (see RecordIndex.removals)."""
        return self.state.index("ports", self.INDEX, port_addresses).removals


class RouterHandlers:
    def __init__(self, core: NeutronCore) -> None:
        self.core = core
        self.state = core.state
        # subnet id -> (its pools, the address index's releases, where the last free address
        # was found): see _next_free.
        self._free_from: dict[str, tuple[tuple[Any, ...], int, tuple[int, int]]] = {}

    # -- address allocation ------------------------------------------------------------------
    def _used_ips(self, network_id: str) -> AddressesInUse:
        return AddressesInUse(self.state, network_id)

    def _next_free(self, subnet: Record, used: AddressesInUse) -> str | None:
        """The subnet's lowest free address, the search starting where the last one was
        found while no address of the network has been released since (a port deleted or
        its addresses changed): a router gateway on a public network of 20,000 ports no
        longer walks past every taken address."""
        pools = tuple((p.get("start"), p.get("end"))
                      for p in subnet.get("allocation_pools") or [])
        releases = used.releases()
        known = self._free_from.get(subnet["id"])
        start = known[2] if known is not None and known[:2] == (pools, releases) else (0, 0)
        found = ipam.next_free_ip(subnet, used, start)
        if found is None:
            return None
        if not used.picked:
            # Only what ports hold was passed over (an address picked earlier in this request
            # may yet stay unused, if the request fails: it must not be left behind).
            self._free_from[subnet["id"]] = (pools, releases, found[1])
        return found[0]

    def _allocate(self, network: Record, requested: Any, mac: str) -> list[dict[str, str]]:
        """Neutron's IPAM in small: requested subnet/address pairs, else one address from an
        IPv4 subnet and one from a stateful IPv6 subnet, plus an EUI-64 address on every
        SLAAC or stateless subnet."""
        used = self._used_ips(network["id"])
        subnets = self.state.where("subnets", "network_id", network["id"])
        out: list[dict[str, str]] = []
        if requested:
            if not isinstance(requested, list):
                raise ipam.invalid_input(f"Invalid data format for fixed IP: '{requested}'")
            for item in requested:
                out.append(self._allocate_one(network, subnets, item, used, mac))
                used.add(out[-1]["ip_address"])
            return out
        picked_v4 = picked_v6 = False
        for subnet in subnets:
            net = ipaddress.ip_network(subnet["cidr"])
            if subnet["ip_version"] == 6 and subnet.get("ipv6_address_mode") in (
                    ipam.AUTO_ADDRESS_MODES):
                out.append({"subnet_id": subnet["id"], "ip_address": str(ipam.eui64(net, mac))})
                continue
            if (subnet["ip_version"] == 4 and picked_v4) or (
                    subnet["ip_version"] == 6 and picked_v6):
                continue
            address = self._next_free(subnet, used)
            if address is None:
                continue
            used.add(address)
            out.append({"subnet_id": subnet["id"], "ip_address": address})
            picked_v4 = picked_v4 or subnet["ip_version"] == 4
            picked_v6 = picked_v6 or subnet["ip_version"] == 6
        if subnets and not out:
            raise SimHTTPError(409, f"No more IP addresses available on network "
                               f"{network['id']}.", neutron_type="IpAddressGenerationFailure")
        return out

    def _allocate_one(self, network: Record, subnets: list[Record], item: Any,
                      used: AddressesInUse,
                      mac: str) -> dict[str, str]:
        if not isinstance(item, dict):
            raise ipam.invalid_input(f"Invalid data format for fixed IP: '{item}'")
        subnet: Record | None = None
        if item.get("subnet_id"):
            subnet = next((s for s in subnets if s["id"] == item["subnet_id"]), None)
            if subnet is None:
                raise ipam.invalid_input(f"Failed to create port on network {network['id']}"
                                         f", because fixed_ips included invalid subnet "
                                         f"{item['subnet_id']}")
        address = item.get("ip_address")
        if address is not None:
            ip = ipam.parse_ip(address)
            if subnet is None:
                subnet = next((s for s in subnets
                               if ip in ipaddress.ip_network(s["cidr"])), None)
            if subnet is None or ip not in ipaddress.ip_network(subnet["cidr"]):
                raise ipam.invalid_input(f"IP address {address} is not a valid IP for the "
                                         "specified subnet")
            if str(ip) in used:
                raise SimHTTPError(409, f"IP address {ip} already allocated in subnet "
                                   f"{subnet['id']}", neutron_type="IpAddressAlreadyAllocated")
            return {"subnet_id": subnet["id"], "ip_address": str(ip)}
        if subnet is None:
            raise ipam.invalid_input("IP allocation requires subnet_id or ip_address")
        if subnet.get("ipv6_address_mode") in ipam.AUTO_ADDRESS_MODES:
            net = ipaddress.ip_network(subnet["cidr"])
            return {"subnet_id": subnet["id"], "ip_address": str(ipam.eui64(net, mac))}
        free = self._next_free(subnet, used)
        if free is None:
            raise SimHTTPError(409, f"No more IP addresses available on network "
                               f"{network['id']}.", neutron_type="IpAddressGenerationFailure")
        return {"subnet_id": subnet["id"], "ip_address": free}

    def new_port(self, network: Record, project: str, owner: str, device_id: str,
                 fixed_ips: Any = None, **extra: Any) -> Record:
        mac = extra.pop("mac_address", None) or ipam.random_mac(self.core.rng)
        rec = self.core.stamp_new({
            "name": "", "network_id": network["id"], "project_id": project,
            "admin_state_up": True, "status": "ACTIVE" if owner in L3_OWNERS else "DOWN",
            "mac_address": mac, "device_owner": owner, "device_id": device_id,
            "fixed_ips": self._allocate(network, fixed_ips, mac),
            "allowed_address_pairs": [], "extra_dhcp_opts": [], "security_groups": [],
            "port_security_enabled": bool(network.get("port_security_enabled", True))
            and owner not in L3_OWNERS,
            "binding:vnic_type": "normal", "binding:host_id": "", "binding:profile": {},
            "binding:vif_type": "unbound", "binding:vif_details": {},
        })
        rec.update(extra)
        return self.state.put("ports", rec)

    # -- ports -------------------------------------------------------------------------------
    async def list_ports(self, request: web.Request) -> web.Response:
        return self.core.list_response(PORTS, request)

    async def get_port(self, request: web.Request) -> web.Response:
        rec = self.core.get_visible(PORTS, request.match_info["id"], auth_of(request))
        return self.core.show_response(PORTS, rec, request)

    async def create_port(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        body = await self.core.body_of(request, PORTS)
        tags = self.core.creation_tags(body)
        allowed = PORT_ATTRS - ({"project_id", "description", "dns_name"}
                                if self.core.liberty else set())
        self.core.check_unknown(PORTS, body, allowed)
        project = self.core.owner_for_create(body, ctx)
        network = self.state.get("networks", str(body.get("network_id", "")))
        if network is None or not self.core.visible(NETWORKS, network, ctx):
            raise NETWORKS.not_found(str(body.get("network_id")))
        if not ctx.is_admin and not network.get("shared") and network.get(
                "project_id") != project:
            raise SimHTTPError(403, f"Tenant {project} not allowed to create port on this "
                               "network", neutron_type="HTTPForbidden")
        self.core.require_admin_for(body, ("binding:host_id", "binding:profile",
                                           "mac_address"), ctx, "create_port")
        owner = str(body.get("device_owner", ""))
        groups = body.get("security_groups")
        if groups is None and not owner.startswith("network:"):
            default = self.core.ensure_default_group(project)
            groups = [default["id"]] if default else []
        for gid in groups or []:
            group = self.state.get("security_groups", gid)
            if group is None or (not ctx.is_admin and group.get("project_id") != project):
                raise SECURITY_GROUPS.not_found(gid)
        self.core.enforce_quota(PORTS, project)
        copied = ("name", "allowed_address_pairs", "extra_dhcp_opts", "binding:vnic_type",
                  "binding:host_id", "binding:profile", "description", "dns_name",
                  "mac_address")
        extra: dict[str, Any] = {k: body[k] for k in copied if k in body}
        if "admin_state_up" in body:
            extra["admin_state_up"] = parse_bool(body["admin_state_up"])
        if "port_security_enabled" in body:
            extra["port_security_enabled"] = parse_bool(body["port_security_enabled"])
        rec = self.new_port(network, project, owner, str(body.get("device_id", "")),
                            body.get("fixed_ips"), security_groups=list(groups or []),
                            **extra)
        rec["tags"] = tags
        return self.core.show_response(PORTS, rec, request, status=201)

    async def update_port(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        rec = self.core.get_owned(PORTS, request.match_info["id"], ctx, "update")
        body = await self.core.body_of(request, PORTS)
        self.core.check_unknown(PORTS, body, PORT_UPDATABLE)
        self.core.require_admin_for(body, ("binding:host_id", "binding:profile"), ctx,
                                    "update_port")
        for key, value in body.items():
            rec[key] = parse_bool(value) if key in ("admin_state_up",
                                                    "port_security_enabled") else value
        self.core.touch(rec)
        return self.core.show_response(PORTS, rec, request)

    async def delete_port(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        rec = self.core.get_owned(PORTS, request.match_info["id"], ctx, "delete")
        if rec.get("device_owner") in L3_OWNERS:
            raise SimHTTPError(409, f"Port {rec['id']} has owner {rec['device_owner']} and "
                               "therefore cannot be deleted directly via the port API.",
                               neutron_type="L3PortInUse")
        # Neutron's l3 plugin disassociates the port's floating IPs first.
        for fip in self.state.find("floatingips", port_id=rec["id"]):
            fip.update(port_id=None, fixed_ip_address=None, router_id=None, status="DOWN")
            self.core.touch(fip)
        self.state.delete("ports", rec["id"])
        return web.Response(status=204)

    # -- routers -----------------------------------------------------------------------------
    async def list_routers(self, request: web.Request) -> web.Response:
        return self.core.list_response(ROUTERS, request)

    async def get_router(self, request: web.Request) -> web.Response:
        rec = self.core.get_visible(ROUTERS, request.match_info["id"], auth_of(request))
        return self.core.show_response(ROUTERS, rec, request)

    async def create_router(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        body = await self.core.body_of(request, ROUTERS)
        tags = self.core.creation_tags(body)
        allowed = ROUTER_ATTRS - ({"project_id", "description", "availability_zone_hints",
                                   "flavor_id"} if self.core.liberty else set())
        self.core.check_unknown(ROUTERS, body, allowed - {"routes"})
        self.core.require_admin_for(body, ("distributed", "ha"), ctx, "create_router")
        project = self.core.owner_for_create(body, ctx)
        self.core.enforce_quota(ROUTERS, project)
        rec = self.core.stamp_new({
            "name": str(body.get("name", "")), "project_id": project,
            "admin_state_up": parse_bool(body.get("admin_state_up", True)),
            "status": "ACTIVE", "external_gateway_info": None, "routes": [],
            "distributed": parse_bool(body.get("distributed", False)),
            "ha": parse_bool(body.get("ha", False)),
            "availability_zone_hints": list(body.get("availability_zone_hints") or []),
            "availability_zones": ["nova"], "flavor_id": body.get("flavor_id"),
            "description": str(body.get("description", "")),
        }, tags=tags)
        info = body.get("external_gateway_info")
        if info:
            self._set_gateway(rec, info, ctx, "create_router")
        self.state.put("routers", rec)
        return self.core.show_response(ROUTERS, rec, request, status=201)

    async def update_router(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        rec = self.core.get_owned(ROUTERS, request.match_info["id"], ctx, "update")
        body = await self.core.body_of(request, ROUTERS)
        self.core.check_unknown(ROUTERS, body, ROUTER_ATTRS - {"tenant_id", "project_id"})
        self.core.require_admin_for(body, ("distributed", "ha"), ctx, "update_router")
        if "external_gateway_info" in body:
            self._set_gateway(rec, body.pop("external_gateway_info"), ctx, "update_router")
        if "routes" in body:
            rec["routes"] = self._checked_routes(rec, body.pop("routes"))
        for key, value in body.items():
            rec[key] = parse_bool(value) if key in ("admin_state_up", "distributed",
                                                    "ha") else value
        self.core.touch(rec)
        return self.core.show_response(ROUTERS, rec, request)

    async def delete_router(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        rec = self.core.get_owned(ROUTERS, request.match_info["id"], ctx, "delete")
        if self._interfaces(rec["id"]):
            raise SimHTTPError(409, f"Router {rec['id']} still has ports",
                               neutron_type="RouterInUse")
        self._clear_gateway(rec)
        self.state.delete("routers", rec["id"])
        return web.Response(status=204)

    def _interfaces(self, router_id: str) -> list[Record]:
        return [p for p in self.state.find("ports", device_id=router_id)
                if p.get("device_owner") in L3_OWNERS and p.get("device_owner") != ROUTER_GATEWAY]

    def _clear_gateway(self, rec: Record) -> None:
        for port in self.state.find("ports", device_id=rec["id"], device_owner=ROUTER_GATEWAY):
            self.state.delete("ports", port["id"])
        rec["external_gateway_info"] = None

    def _set_gateway(self, rec: Record, info: Any, ctx: AuthContext, action: str) -> None:
        if not info:
            self._clear_gateway(rec)
            return
        if not isinstance(info, dict):
            raise ipam.invalid_input(f"Invalid data format for external_gateway_info: "
                                     f"'{info}'")
        for key in ("enable_snat", "external_fixed_ips"):
            if key in info and not ctx.is_admin:
                raise policy_denied(self.core.liberty,
                                    f"{action}:external_gateway_info:{key}")
        net_id = str(info.get("network_id", ""))
        network = self.state.get("networks", net_id)
        if network is None or not self.core.visible(NETWORKS, network, ctx):
            raise NETWORKS.not_found(net_id)
        if not network.get("router:external"):
            raise router_bad(f"Network {net_id} is not an external network")
        if not self.state.where("subnets", "network_id", net_id):
            raise router_bad(f"Network {net_id} does not contain any IPv4 subnet")
        self._clear_gateway(rec)
        port = self.new_port(network, "", ROUTER_GATEWAY, rec["id"],
                             info.get("external_fixed_ips"))
        rec["external_gateway_info"] = {
            "network_id": net_id,
            "enable_snat": parse_bool(info.get("enable_snat", True)),
            "external_fixed_ips": [dict(ip) for ip in port["fixed_ips"]],
        }

    def _checked_routes(self, rec: Record, routes: Any) -> list[dict[str, str]]:
        if not isinstance(routes, list):
            raise ipam.invalid_input(f"Invalid data format for routes: '{routes}'")
        connected = [ipaddress.ip_network(s["cidr"])
                     for p in self._interfaces(rec["id"]) + self.state.find(
                         "ports", device_id=rec["id"], device_owner=ROUTER_GATEWAY)
                     for ip in p.get("fixed_ips") or []
                     if (s := self.state.get("subnets", ip["subnet_id"])) is not None]
        out = []
        for route in routes:
            nexthop = ipam.parse_ip((route or {}).get("nexthop"))
            ipam.parse_cidr(str(ipaddress.ip_network(str(route.get("destination")),
                                                     strict=False)))
            if not any(nexthop in net for net in connected):
                raise SimHTTPError(400, f"Invalid format for routes: {routes}, the nexthop is "
                                   "not connected with router", neutron_type="InvalidRoutes")
            out.append({"destination": str(route["destination"]), "nexthop": str(nexthop)})
        return out

    # -- router interfaces -------------------------------------------------------------------
    async def add_interface(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        router = self.core.get_owned(ROUTERS, request.match_info["id"], ctx, "update")
        body = await read_json(request)
        if bool(body.get("subnet_id")) == bool(body.get("port_id")):
            raise router_bad("Either subnet_id or port_id must be specified")
        if body.get("port_id"):
            port = self.core.get_owned(PORTS, str(body["port_id"]), ctx, "update")
            if port.get("device_id"):
                raise SimHTTPError(409, f"Unable to complete operation on port {port['id']} "
                                   f"for network {port['network_id']}. Port already has an "
                                   f"attached device {port['device_id']}.",
                                   neutron_type="PortInUse")
            if not port.get("fixed_ips"):
                raise router_bad("Router port must have at least one fixed IP")
            for ip in port["fixed_ips"]:
                self._check_not_attached(router, self.state.get("subnets", ip["subnet_id"]))
            port.update({"device_owner": ROUTER_INTERFACE, "device_id": router["id"],
                         "status": "ACTIVE"})
            self.core.touch(port)
        else:
            subnet = self.core.get_visible(SUBNETS, str(body["subnet_id"]), ctx)
            if not subnet.get("gateway_ip"):
                raise router_bad("Subnet for router interface must have a gateway IP")
            self._check_not_attached(router, subnet)
            network = self.state.get("networks", subnet["network_id"]) or {}
            port = self.new_port(network, router["project_id"], ROUTER_INTERFACE,
                                 router["id"], [{"subnet_id": subnet["id"],
                                                 "ip_address": subnet["gateway_ip"]}])
        self.core.touch(router)
        return json_response(self._interface_info(router, port))

    def _check_not_attached(self, router: Record, subnet: Record | None) -> None:
        if subnet is None:
            return
        net = ipaddress.ip_network(subnet["cidr"])
        for port in self._interfaces(router["id"]):
            for ip in port.get("fixed_ips") or []:
                if ip["subnet_id"] == subnet["id"]:
                    raise router_bad(f"Router already has a port on subnet {subnet['id']}")
                other = self.state.get("subnets", ip["subnet_id"])
                if other and ipaddress.ip_network(other["cidr"]).overlaps(net):
                    raise router_bad(f"Cidr {subnet['cidr']} of subnet {subnet['id']} "
                                     f"overlaps with cidr {other['cidr']} of subnet "
                                     f"{other['id']}")

    async def remove_interface(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        router = self.core.get_owned(ROUTERS, request.match_info["id"], ctx, "update")
        body = await read_json(request)
        interfaces = self._interfaces(router["id"])
        if body.get("port_id"):
            port = next((p for p in interfaces if p["id"] == body["port_id"]), None)
            if port is None:
                raise SimHTTPError(404, f"Router {router['id']} does not have an interface "
                                   f"with id {body['port_id']}",
                                   neutron_type="RouterInterfaceNotFound")
        elif body.get("subnet_id"):
            port = next((p for p in interfaces if any(
                ip["subnet_id"] == body["subnet_id"] for ip in p.get("fixed_ips") or [])),
                None)
            if port is None:
                raise SimHTTPError(404, f"Router {router['id']} has no interface on subnet "
                                   f"{body['subnet_id']}",
                                   neutron_type="RouterInterfaceNotFoundForSubnet")
        else:
            raise router_bad("Either subnet_id or port_id must be specified")
        self._check_not_routed_through(router, port)
        self.state.delete("ports", port["id"])
        self.core.touch(router)
        return json_response(self._interface_info(router, port))

    def _check_not_routed_through(self, router: Record, port: Record) -> None:
        """An interface whose subnet carries the next hop of an extra route must stay."""
        for ip in port.get("fixed_ips") or []:
            subnet = self.state.get("subnets", ip["subnet_id"])
            if subnet is None:
                continue
            net = ipaddress.ip_network(subnet["cidr"])
            if any(ipaddress.ip_address(r["nexthop"]) in net for r in router.get("routes")
                   or []):
                raise SimHTTPError(409, f"Router interface for subnet {subnet['id']} on "
                                   f"router {router['id']} cannot be deleted, as it is "
                                   "required by one or more routes.",
                                   neutron_type="RouterInterfaceInUseByRoute")

    def _interface_info(self, router: Record, port: Record) -> dict[str, Any]:
        subnet_ids = [ip["subnet_id"] for ip in port.get("fixed_ips") or []]
        info: dict[str, Any] = {"id": router["id"], "tenant_id": router["project_id"],
                                "port_id": port["id"],
                                "subnet_id": subnet_ids[0] if subnet_ids else None,
                                "subnet_ids": subnet_ids}
        if not self.core.liberty:
            info["project_id"] = router["project_id"]
            info["network_id"] = port["network_id"]
        return info
