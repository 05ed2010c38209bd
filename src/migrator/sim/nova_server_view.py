"""How Nova shows a server: the list entry, and the detailed view of Liberty's v2.1 with its
extensions (2.1 to 2.12) and of the modern API (to 2.96), by microversion.

Liberty's view is the one of its ``all_extensions`` API sample: OS-DCF, OS-EXT-AZ,
OS-EXT-STS, OS-SRV-USG, os-extended-volumes, key_name, config_drive, security_groups,
access IPs, and OS-EXT-SRV-ATTR for admins (more of them from 2.3), ``locked`` from 2.9. The
modern API adds host_status (2.16, admins), description (2.19), tags (2.26), the flavor's
own fields instead of a link (2.47), trusted_image_certificates (2.63), server_groups (2.71,
show only), locked_reason (2.73), the hostname for everyone (2.90) and
pinned_availability_zone (2.96). Addresses are hidden while the server builds (both
profiles: Liberty's ``osapi_hide_server_address_states`` default), grouped by network name,
fixed addresses first, then the floating ones of each port.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

from aiohttp import web

from migrator.sim.cloud import SimCloud
from migrator.sim.http import AuthContext, origin
from migrator.sim.microversion import at_least
from migrator.sim.nova_common import PREFIX
from migrator.sim.nova_compute import BUILDING, STATUS
from migrator.sim.state import Record

PROGRESS_STATUSES = ("ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING")


def status_of(server: Record) -> str:
    return STATUS.get(server.get("vm_state") or "", "UNKNOWN")


def _prefixes(request: web.Request) -> tuple[str, str]:
    pid = request.match_info.get("project_id")
    versioned = f"{PREFIX}/v2.1/{pid}" if pid else f"{PREFIX}/v2.1"
    bookmark = f"{PREFIX}/{pid}" if pid else PREFIX
    return versioned, bookmark


def server_links(request: web.Request, sid: str) -> list[dict[str, str]]:
    versioned, bookmark = _prefixes(request)
    base = origin(request)
    return [{"rel": "self", "href": f"{base}{versioned}/servers/{sid}"},
            {"rel": "bookmark", "href": f"{base}{bookmark}/servers/{sid}"}]


def host_id(server: Record) -> str:
    host = server.get("host")
    if not host:
        return ""
    return hashlib.sha224((str(server.get("project_id")) + host).encode()).hexdigest()


class ServerView:
    def __init__(self, cloud: SimCloud) -> None:
        self.cloud = cloud
        self.state = cloud.state

    def summary(self, request: web.Request, server: Record) -> dict[str, Any]:
        return {"id": server["id"], "name": server.get("name"),
                "links": server_links(request, server["id"])}

    # -- parts -----------------------------------------------------------------------------
    def _image(self, request: web.Request, server: Record) -> Any:
        image_id = server.get("image_id")
        if not image_id:
            return ""
        _, bookmark = _prefixes(request)
        return {"id": image_id, "links": [
            {"rel": "bookmark", "href": f"{origin(request)}{bookmark}/images/{image_id}"}]}

    def _flavor(self, request: web.Request, server: Record, ctx: AuthContext
                ) -> dict[str, Any]:
        flavor = server["flavor"]
        if at_least(request, "2.47"):
            out: dict[str, Any] = {
                "vcpus": flavor["vcpus"], "ram": flavor["ram"], "disk": flavor["disk"],
                "ephemeral": int(flavor.get("ephemeral") or 0),
                "swap": int(flavor.get("swap") or 0), "original_name": flavor["name"]}
            # servers:show:flavor-extra-specs: project readers and admins.
            if ctx.is_admin or ctx.project_id == server.get("project_id"):
                out["extra_specs"] = dict(flavor.get("extra_specs") or {})
            return out
        _, bookmark = _prefixes(request)
        return {"id": str(flavor["id"]), "links": [
            {"rel": "bookmark", "href": f"{origin(request)}{bookmark}/flavors/{flavor['id']}"}]}

    def addresses(self, server: Record) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for pid in server.get("ports") or []:
            port = self.state.get("ports", pid)
            if port is None:
                continue
            network = self.state.get("networks", port["network_id"]) or {}
            label = network.get("name") or port["network_id"]
            entries = out.setdefault(label, [])
            mac = port.get("mac_address")
            for ip in port.get("fixed_ips") or []:
                entries.append(_address(ip["ip_address"], "fixed", mac))
            for fip in self.state.find("floatingips", port_id=pid):
                entries.append(_address(fip["floating_ip_address"], "floating", mac))
        return out

    def _security_groups(self, server: Record) -> list[dict[str, str]]:
        names: list[str] = []
        for pid in server.get("ports") or []:
            port = self.state.get("ports", pid) or {}
            for gid in port.get("security_groups") or []:
                group = self.state.get("security_groups", gid)
                if group is not None and group["name"] not in names:
                    names.append(group["name"])
        if not server.get("ports"):
            names = list(server.get("security_groups") or [])
        return [{"name": n} for n in names]

    def _fault(self, server: Record, ctx: AuthContext) -> dict[str, Any] | None:
        fault = server.get("fault")
        if not fault:
            return None
        out = {"code": fault["code"], "created": fault["created"], "message": fault["message"]}
        if fault.get("details") and (ctx.is_admin or fault["code"] != 500):
            out["details"] = fault["details"]
        return out

    # -- the detailed view -----------------------------------------------------------------
    def detail(self, request: web.Request, server: Record, ctx: AuthContext, *,
               show: bool = False) -> dict[str, Any]:
        status = status_of(server)
        out: dict[str, Any] = {
            "id": server["id"], "name": server.get("name"), "status": status,
            "tenant_id": server.get("project_id") or "", "user_id": server.get("user_id") or "",
            "metadata": dict(server.get("metadata") or {}), "hostId": host_id(server),
            "image": self._image(request, server), "flavor": self._flavor(request, server, ctx),
            "created": server.get("created_at"), "updated": server.get("updated_at"),
            "addresses": {} if server.get("vm_state") == BUILDING else self.addresses(server),
            "accessIPv4": server.get("access_ipv4") or "",
            "accessIPv6": server.get("access_ipv6") or "",
            "links": server_links(request, server["id"]),
            "OS-DCF:diskConfig": "MANUAL",
            "OS-EXT-AZ:availability_zone": server.get("availability_zone") or "",
            "config_drive": server.get("config_drive") or "",
            "key_name": server.get("key_name"),
            "OS-SRV-USG:launched_at": server.get("launched_at"),
            "OS-SRV-USG:terminated_at": None,
            "OS-EXT-STS:task_state": server.get("task_state"),
            "OS-EXT-STS:vm_state": server.get("vm_state"),
            "OS-EXT-STS:power_state": server.get("power_state", 0),
            "os-extended-volumes:volumes_attached": self._volumes(request, server),
        }
        groups = self._security_groups(server)
        if groups:
            out["security_groups"] = groups
        fault = self._fault(server, ctx) if status in ("ERROR", "DELETED") else None
        if fault:
            out["fault"] = fault
        if status in PROGRESS_STATUSES:
            out["progress"] = int(server.get("progress") or 0)
        if ctx.is_admin:
            self._extended_attributes(request, server, out)
        if at_least(request, "2.9"):
            out["locked"] = bool(server.get("locked"))
        self._modern_fields(request, server, ctx, out, show=show)
        return out

    def _volumes(self, request: web.Request, server: Record) -> list[dict[str, Any]]:
        out = []
        for bdm in server.get("block_devices") or []:
            item: dict[str, Any] = {"id": bdm["volume_id"]}
            if at_least(request, "2.3"):
                item["delete_on_termination"] = bool(bdm.get("delete_on_termination"))
            out.append(item)
        return out

    def _extended_attributes(self, request: web.Request, server: Record,
                             out: dict[str, Any]) -> None:
        out["OS-EXT-SRV-ATTR:host"] = server.get("host")
        out["OS-EXT-SRV-ATTR:instance_name"] = server.get("instance_name")
        out["OS-EXT-SRV-ATTR:hypervisor_hostname"] = server.get("node")
        if at_least(request, "2.3"):
            out.update({
                "OS-EXT-SRV-ATTR:hostname": server.get("hostname"),
                "OS-EXT-SRV-ATTR:kernel_id": "", "OS-EXT-SRV-ATTR:ramdisk_id": "",
                "OS-EXT-SRV-ATTR:launch_index": 0,
                "OS-EXT-SRV-ATTR:reservation_id": server.get("reservation_id"),
                "OS-EXT-SRV-ATTR:root_device_name": server.get("root_device_name"),
                "OS-EXT-SRV-ATTR:user_data": server.get("user_data")})

    def _modern_fields(self, request: web.Request, server: Record, ctx: AuthContext,
                       out: dict[str, Any], *, show: bool) -> None:
        if at_least(request, "2.16") and ctx.is_admin and server.get("host"):
            out["host_status"] = "UP"
        if at_least(request, "2.19"):
            out["description"] = server.get("description")
        if at_least(request, "2.26"):
            out["tags"] = list(server.get("tags") or [])
        if at_least(request, "2.63"):
            out["trusted_image_certificates"] = None
        if show and at_least(request, "2.71"):
            out["server_groups"] = []
        if at_least(request, "2.73"):
            out["locked_reason"] = None
        if at_least(request, "2.90") and not ctx.is_admin:
            out["OS-EXT-SRV-ATTR:hostname"] = server.get("hostname")
        if at_least(request, "2.96"):
            out["pinned_availability_zone"] = server.get("requested_availability_zone")


def _address(addr: str, kind: str, mac: str | None) -> dict[str, Any]:
    return {"version": ipaddress.ip_address(addr).version, "addr": addr,
            "OS-EXT-IPS:type": kind, "OS-EXT-IPS-MAC:mac_addr": mac}
