"""Neutron floating IPs: an IPv4 address of an external network (held by a
``network:floatingip`` port owned by no project), associated with a port's fixed IPv4 address
through a router that has its gateway on that network and an interface on the port's subnet.

Stored like the other Neutron records (``project_id``), with ``floating_ip_address``,
``floating_network_id``, ``port_id``, ``fixed_ip_address``, ``router_id`` and ``status``
(ACTIVE while associated, DOWN otherwise). A port that goes away takes its associations
with it (:func:`disassociate_floating_ips`).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from aiohttp import web

from migrator.sim.cloud import SimCloud
from migrator.sim.http import SimHTTPError, auth_of
from migrator.sim.neutron_common import (
    FLOATINGIPS,
    NETWORKS,
    PORTS,
    NeutronCore,
    bad_request,
    policy_denied,
)
from migrator.sim.neutron_routers import ROUTER_GATEWAY, ROUTER_INTERFACE, RouterHandlers
from migrator.sim.state import Record, new_id, now_iso

FLOATINGIP_OWNER = "network:floatingip"
CREATE_ATTRS = {"floating_network_id", "port_id", "fixed_ip_address", "floating_ip_address",
                "tenant_id", "project_id", "description", "subnet_id"}
UPDATE_ATTRS = {"port_id", "fixed_ip_address", "description"}


def disassociate_floating_ips(cloud: SimCloud, port_id: str) -> None:
    """Neutron clears the floating IPs of a port that goes away."""
    for fip in cloud.state.find("floatingips", port_id=port_id):
        fip.update(port_id=None, fixed_ip_address=None, router_id=None, status="DOWN",
                   updated_at=now_iso())
        fip["revision_number"] = int(fip.get("revision_number", 0)) + 1
        cloud.state.touch("floatingips", fip)


def fip_bad(message: str) -> SimHTTPError:
    return SimHTTPError(400, f"Bad floatingip request: {message}.", neutron_type="BadRequest")


class FloatingIPHandlers:
    def __init__(self, core: NeutronCore, routers: RouterHandlers) -> None:
        self.core = core
        self.routers = routers
        self.state = core.state

    async def list_floatingips(self, request: web.Request) -> web.Response:
        return self.core.list_response(FLOATINGIPS, request)

    async def get_floatingip(self, request: web.Request) -> web.Response:
        rec = self.core.get_visible(FLOATINGIPS, request.match_info["id"], auth_of(request))
        return self.core.show_response(FLOATINGIPS, rec, request)

    async def create_floatingip(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        body = await self.core.body_of(request, FLOATINGIPS)
        tags = self.core.creation_tags(body)
        allowed = CREATE_ATTRS - ({"project_id", "description"} if self.core.liberty
                                  else set())
        self.core.check_unknown(FLOATINGIPS, body, allowed)
        if not body.get("floating_network_id"):
            raise bad_request("Failed to parse request. Required attribute "
                              "'floating_network_id' not specified")
        self.core.require_admin_for(body, ("floating_ip_address",), ctx, "create_floatingip")
        project = self.core.owner_for_create(body, ctx)
        net_id = str(body["floating_network_id"])
        network = self.state.get("networks", net_id)
        if network is None or not self.core.visible(NETWORKS, network, ctx):
            raise NETWORKS.not_found(net_id)
        if not network.get("router:external"):
            raise fip_bad(f"Network {net_id} is not a valid external network")
        self.core.enforce_quota(FLOATINGIPS, project)
        fid = new_id()
        fixed: list[dict[str, Any]] = []
        subnets = [s for s in self.state.find("subnets", network_id=net_id)
                   if s.get("ip_version") == 4]
        if body.get("subnet_id"):
            subnets = [s for s in subnets if s["id"] == body["subnet_id"]]
        if not subnets:
            raise fip_bad(f"Network {net_id} does not contain any IPv4 subnet")
        wanted = body.get("floating_ip_address")
        fixed = [{"subnet_id": subnets[0]["id"], **({"ip_address": wanted} if wanted else {})}]
        fip: Record = self.core.stamp_new({
            "id": fid, "project_id": project, "floating_network_id": net_id,
            "port_id": None, "fixed_ip_address": None, "router_id": None, "status": "DOWN",
            "description": str(body.get("description", ""))}, tags=tags)
        port = self.routers.new_port(network, "", FLOATINGIP_OWNER, fid, fixed)
        fip["floating_ip_address"] = port["fixed_ips"][0]["ip_address"]
        if body.get("port_id"):
            try:
                self._associate(fip, body, ctx)
            except SimHTTPError:
                self.state.delete("ports", port["id"])
                raise
        self.state.put("floatingips", fip)
        return self.core.show_response(FLOATINGIPS, fip, request, status=201)

    async def update_floatingip(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        fip = self.core.get_owned(FLOATINGIPS, request.match_info["id"], ctx, "update")
        body = await self.core.body_of(request, FLOATINGIPS)
        self.core.check_unknown(FLOATINGIPS, body, UPDATE_ATTRS - (
            {"description"} if self.core.liberty else set()))
        if "description" in body:
            fip["description"] = str(body["description"] or "")
        if "port_id" in body:
            if body["port_id"]:
                self._associate(fip, body, ctx)
            else:
                fip.update(port_id=None, fixed_ip_address=None, router_id=None,
                           status="DOWN")
        self.core.touch(fip)
        return self.core.show_response(FLOATINGIPS, fip, request)

    async def delete_floatingip(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        fip = self.core.get_owned(FLOATINGIPS, request.match_info["id"], ctx, "delete")
        for port in self.state.find("ports", device_id=fip["id"],
                                    device_owner=FLOATINGIP_OWNER):
            self.state.delete("ports", port["id"])
        self.state.delete("floatingips", fip["id"])
        return web.Response(status=204)

    # -- association -------------------------------------------------------------------------
    def _associate(self, fip: Record, body: dict[str, Any], ctx: Any) -> None:
        port_id = str(body["port_id"])
        port = self.state.get("ports", port_id)
        if port is None or not self.core.visible(PORTS, port, ctx):
            raise PORTS.not_found(port_id)
        if not ctx.is_admin and port.get("project_id") != fip.get("project_id"):
            raise policy_denied(self.core.liberty, "update_floatingip")
        v4 = [ip for ip in port.get("fixed_ips") or []
              if ipaddress.ip_address(ip["ip_address"]).version == 4]
        wanted = body.get("fixed_ip_address")
        if wanted:
            chosen = next((ip for ip in v4 if ip["ip_address"] == wanted), None)
            if chosen is None:
                raise fip_bad(f"Port {port_id} does not have fixed ip {wanted}")
        elif len(v4) == 1:
            chosen = v4[0]
        elif not v4:
            raise fip_bad(f"Cannot add floating IP to port {port_id} that has no fixed IPv4 "
                          "addresses")
        else:
            raise fip_bad(f"Port {port_id} has multiple fixed IPv4 addresses.  Must provide "
                          "a specific IPv4 address when assigning a floating IP")
        for other in self.state.find("floatingips", port_id=port_id):
            if other is not fip and other.get("fixed_ip_address") == chosen["ip_address"]:
                raise SimHTTPError(
                    409, f"Cannot associate floating IP {fip['floating_ip_address']} "
                         f"({fip['id']}) with port {port_id} using fixed IP "
                         f"{chosen['ip_address']}, as that fixed IP already has a floating "
                         f"IP on external network {fip['floating_network_id']}.",
                    neutron_type="FloatingIPPortAlreadyAssociated")
        router = self._router_for(fip["floating_network_id"], chosen["subnet_id"])
        if router is None:
            raise SimHTTPError(
                404, f"External network {fip['floating_network_id']} is not reachable from "
                     f"subnet {chosen['subnet_id']}.  Therefore, cannot associate Port "
                     f"{port_id} with a Floating IP.",
                neutron_type="ExternalGatewayForFloatingIPNotFound")
        fip.update(port_id=port_id, fixed_ip_address=chosen["ip_address"],
                   router_id=router["id"], status="ACTIVE")

    def _router_for(self, network_id: str, subnet_id: str) -> Record | None:
        """A router with its gateway on ``network_id`` and an interface on ``subnet_id``."""
        for port in self.state.find("ports", device_owner=ROUTER_INTERFACE):
            if not any(ip["subnet_id"] == subnet_id for ip in port.get("fixed_ips") or []):
                continue
            router = self.state.get("routers", port["device_id"])
            if router is None:
                continue
            if self.state.find("ports", device_id=router["id"], device_owner=ROUTER_GATEWAY,
                               network_id=network_id):
                return router
        return None
