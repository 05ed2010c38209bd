"""A server's volume attachments (``os-volume_attachments``) and interfaces (``os-interface``).

Attachments: the volume's id is the attachment's id (Nova's own note); the list includes the
root volume of a volume-backed server. An attach answers 200 with the new mapping (its device
picked as the next free /dev/vdX) while the volume is still ``attaching``; the compute side
makes it ``in-use`` on a later turn of the loop, and a detach (202) makes it ``available``
again. The response grows ``tag`` (2.70), ``delete_on_termination`` (2.79), and from 2.89 the
listing shows ``attachment_id`` and ``bdm_uuid`` instead of ``id``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from migrator.sim.http import AuthContext, SimHTTPError, json_response, read_json
from migrator.sim.microversion import at_least
from migrator.sim.nova_common import check_url_project
from migrator.sim.nova_compute import ACTIVE, STOPPED, Compute
from migrator.sim.nova_servers import ServerAPI, schema_error
from migrator.sim.state import Record

ATTACHABLE = (ACTIVE, STOPPED, "paused", "suspended", "resized", "soft-delete")


class ServerChildrenAPI:
    def __init__(self, servers: ServerAPI, compute: Compute) -> None:
        self.servers = servers
        self.compute = compute
        self.state = compute.state

    # -- volume attachments ----------------------------------------------------------------
    def _attachment_view(self, request: web.Request, server: Record, bdm: dict[str, Any]
                         ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        modern_ids = at_least(request, "2.89")
        if not modern_ids:
            out["id"] = bdm["volume_id"]
        out.update(volumeId=bdm["volume_id"], serverId=server["id"])
        if bdm.get("device_name"):
            out["device"] = bdm["device_name"]
        if at_least(request, "2.70"):
            out["tag"] = bdm.get("tag")
        if at_least(request, "2.79"):
            out["delete_on_termination"] = bool(bdm.get("delete_on_termination"))
        if modern_ids:
            out.update(attachment_id=bdm.get("attachment_id"), bdm_uuid=bdm.get("bdm_uuid"))
        return out

    async def list_attachments(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        server = self.servers.get_server(request, ctx)
        return json_response({"volumeAttachments": [
            self._attachment_view(request, server, b) for b in server["block_devices"]]})

    def _bdm(self, server: Record, volume_id: str) -> dict[str, Any]:
        for bdm in server["block_devices"]:
            if bdm["volume_id"] == volume_id:
                return bdm
        if not server["block_devices"]:
            raise SimHTTPError(404, f"Instance {server['id']} is not attached.")
        raise SimHTTPError(404, f"volume_id not found: {volume_id}")

    async def show_attachment(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        server = self.servers.get_server(request, ctx)
        bdm = self._bdm(server, request.match_info["volume_id"])
        return json_response({"volumeAttachment": self._attachment_view(request, server,
                                                                         bdm)})

    def _volume(self, ctx: AuthContext, volume_id: str) -> Record:
        vol = self.state.get("volumes", volume_id)
        if vol is None or not (ctx.is_admin or vol.get("project_id") == ctx.project_id):
            raise SimHTTPError(404, f"Volume {volume_id} could not be found.")
        return vol

    async def attach(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        server = self.servers.get_server(request, ctx)
        body = (await read_json(request)).get("volumeAttachment")
        if not isinstance(body, dict) or not body.get("volumeId"):
            raise schema_error("volumeAttachment", body, "'volumeId' is a required property")
        vol = self._volume(ctx, str(body["volumeId"]))
        if server.get("vm_state") not in ATTACHABLE or server.get("task_state") is not None:
            raise self.servers.invalid_state("attach_volume", server)
        if vol.get("status") != "available":
            raise SimHTTPError(400, f"Invalid volume: volume '{vol['id']}' status must be "
                                    f"'available'. Currently in '{vol.get('status')}'")
        if any(b["volume_id"] == vol["id"] for b in server["block_devices"]):
            raise SimHTTPError(400, f"Invalid volume: volume {vol['id']} already attached")
        device = body.get("device")
        if device and any(b.get("device_name") == device for b in server["block_devices"]):
            raise SimHTTPError(409, f"The supplied device path ({device}) is in use.")
        tag = body.get("tag") if at_least(request, "2.49") else None
        delete = bool(body.get("delete_on_termination")) if at_least(request, "2.79") else False
        bdm = self.compute.attach_volume(server, vol, device or None,
                                         delete_on_termination=delete, tag=tag)
        out: dict[str, Any] = {"id": vol["id"], "serverId": server["id"],
                               "volumeId": vol["id"], "device": bdm["device_name"]}
        if at_least(request, "2.70"):
            out["tag"] = tag
        if at_least(request, "2.79"):
            out["delete_on_termination"] = delete
        return json_response({"volumeAttachment": out})

    async def detach(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        server = self.servers.get_server(request, ctx)
        vol = self._volume(ctx, request.match_info["volume_id"])
        bdm = self._bdm(server, vol["id"])
        if bdm.get("boot_index") == 0:
            if self.servers.liberty:
                raise SimHTTPError(403, "Can't detach root device volume")
            raise SimHTTPError(400, "Cannot detach a root device volume")
        if server.get("vm_state") not in ATTACHABLE or server.get("task_state") is not None:
            raise self.servers.invalid_state("detach_volume", server)
        if vol.get("status") != "in-use":
            raise SimHTTPError(400, f"Invalid volume: Unable to detach volume. Volume status "
                                    f"must be 'in-use' and attach_status must be 'attached' "
                                    f"to detach. Currently: status: '{vol.get('status')}'")
        self.compute.detach_volume(server, vol)
        return web.Response(status=202)

    # -- interfaces ------------------------------------------------------------------------
    def _interface_view(self, request: web.Request, port: Record) -> dict[str, Any]:
        out: dict[str, Any] = {
            "port_state": port.get("status"), "port_id": port["id"],
            "net_id": port["network_id"], "mac_addr": port.get("mac_address"),
            "fixed_ips": [{"subnet_id": ip["subnet_id"], "ip_address": ip["ip_address"]}
                          for ip in port.get("fixed_ips") or []]}
        if at_least(request, "2.70"):
            out["tag"] = None
        return out

    async def list_interfaces(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        server = self.servers.get_server(request, ctx)
        ports = [p for pid in server.get("ports") or []
                 if (p := self.state.get("ports", pid)) is not None]
        return json_response({"interfaceAttachments": [self._interface_view(request, p)
                                                       for p in ports]})

    async def show_interface(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        server = self.servers.get_server(request, ctx)
        pid = request.match_info["port_id"]
        port = self.state.get("ports", pid)
        if port is None or pid not in (server.get("ports") or []):
            raise SimHTTPError(404, f"Port {pid} is not attached")
        return json_response({"interfaceAttachment": self._interface_view(request, port)})

    async def attach_interface(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        server = self.servers.get_server(request, ctx)
        body = (await read_json(request)).get("interfaceAttachment") or {}
        if not isinstance(body, dict):
            raise schema_error("interfaceAttachment", body, "is not of type 'object'")
        if server.get("vm_state") not in (ACTIVE, STOPPED, "paused") or server.get(
                "task_state") is not None:
            raise self.servers.invalid_state("attach_interface", server)
        if body.get("port_id"):
            wanted: list[dict[str, Any]] = [{"port": body["port_id"]}]
        elif body.get("net_id"):
            fixed = body.get("fixed_ips") or []
            wanted = [{"uuid": body["net_id"],
                       **({"fixed_ip": fixed[0].get("ip_address")} if fixed else {})}]
        else:
            raise SimHTTPError(400, "Either net_id or port_id is required")
        networks = self.servers.requested_networks(request, wanted, ctx)
        groups = self.servers.security_groups_for(None, str(server["project_id"]))
        port = self.compute.attach_interface(server, networks[0], [g["id"] for g in groups])
        return json_response({"interfaceAttachment": self._interface_view(request, port)})

    async def detach_interface(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        server = self.servers.get_server(request, ctx)
        pid = request.match_info["port_id"]
        if pid not in (server.get("ports") or []):
            raise SimHTTPError(404, f"Port {pid} is not attached")
        self.compute.detach_interface(server, pid)
        return web.Response(status=202)


def add_children_routes(router: web.UrlDispatcher, base: str, api: ServerChildrenAPI,
                        wrap: Any) -> None:
    one = f"{base}/servers/{{server_id}}"
    attachments = f"{one}/os-volume_attachments"
    router.add_get(attachments, wrap(api.list_attachments))
    router.add_post(attachments, wrap(api.attach))
    router.add_get(f"{attachments}/{{volume_id}}", wrap(api.show_attachment))
    router.add_delete(f"{attachments}/{{volume_id}}", wrap(api.detach))
    interfaces = f"{one}/os-interface"
    router.add_get(interfaces, wrap(api.list_interfaces))
    router.add_post(interfaces, wrap(api.attach_interface))
    router.add_get(f"{interfaces}/{{port_id}}", wrap(api.show_interface))
    router.add_delete(f"{interfaces}/{{port_id}}", wrap(api.detach_interface))
