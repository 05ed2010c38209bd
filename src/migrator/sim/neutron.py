"""Neutron v2.0: version documents, extensions, networks, subnets, subnet pools (modern),
routers and their interfaces, ports, floating IPs, security groups and rules, quotas, and tags
(modern).

openstacksdk does no discovery for the network service: it appends ``v2.0`` to the catalog
URL and calls ``/network/v2.0/<resources>`` straight away. Liberty renders ``tenant_id`` only
and silently ignores filters on attributes it does not have (``?project_id=`` returns every
project's resources); a modern server renders both and answers 400 to unknown filters.
Pagination is off unless ``limit`` is given.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from migrator.sim.cloud import SimCloud
from migrator.sim.http import (
    SimHTTPError,
    auth_of,
    json_response,
    origin,
    public,
    read_json,
)
from migrator.sim.neutron_common import (
    FLOATINGIPS,
    NETWORKS,
    PORTS,
    PREFIX,
    ROUTERS,
    SECURITY_GROUPS,
    SUBNETPOOLS,
    SUBNETS,
    V2,
    Kind,
    NeutronCore,
    bad_request,
)
from migrator.sim.neutron_floatingips import FloatingIPHandlers
from migrator.sim.neutron_networks import NetworkHandlers
from migrator.sim.neutron_routers import RouterHandlers
from migrator.sim.neutron_secgroups import SecurityGroupHandlers

# URL segment of each taggable resource, as the tag API and the SDK spell it.
TAGGABLE: dict[str, Kind] = {"networks": NETWORKS, "subnets": SUBNETS, "ports": PORTS,
                             "routers": ROUTERS, "security-groups": SECURITY_GROUPS,
                             "subnetpools": SUBNETPOOLS, "floatingips": FLOATINGIPS}
# Only what the simulator serves: attributes it renders and accepts, routes it answers.
# Liberty's real list also had agents, the L3/DHCP agent schedulers, RBAC policies and
# multi-provider networks; none of them is simulated, so none is advertised. Subnet pools
# (subnet_allocation) existed in Liberty but are simulated on the modern profile only.
LIBERTY_EXTENSIONS = (
    ("security-group", "security-group"),
    ("net-mtu", "Network MTU"),
    ("ext-gw-mode", "Neutron L3 Configurable external gateway mode"),
    ("binding", "Port Binding"),
    ("quotas", "Quota management support"),
    ("external-net", "Neutron external network"),
    ("router", "Neutron L3 Router"),
    ("allowed-address-pairs", "Allowed Address Pairs"),
    ("extra_dhcp_opt", "Neutron Extra DHCP opts"),
    ("provider", "Provider Network"),
    ("extraroute", "Neutron Extra Route"),
    ("port-security", "Port Security"),
)
MODERN_EXTENSIONS = (
    *LIBERTY_EXTENSIONS,
    ("subnet_allocation", "Subnet Allocation"),
    ("standard-attr-tag", "Tag support for resources with standard attribute"),
    ("standard-attr-description", "standard-attr-description"),
    ("standard-attr-timestamp", "Resource timestamps"),
    ("standard-attr-revisions", "Resource revision numbers"),
    ("project-id", "project_id field enabled"),
    ("filter-validation", "Filter parameters validation"),
    ("pagination", "Pagination support"), ("sorting", "Sorting support"),
    ("quota_details", "Quota details management support"),
    ("default-subnetpools", "Default Subnetpools"),
    ("net-mtu-writable", "Network MTU (writable)"),
    ("stateful-security-group", "Stateful security group"),
    ("tag-creation", "Tag support for resources during creation"),
)


class NeutronAPI:
    def __init__(self, cloud: SimCloud) -> None:
        self.core = NeutronCore(cloud)
        self.state = cloud.state
        self.liberty = self.core.liberty

    # -- documents ---------------------------------------------------------------------------
    @public
    async def versions(self, request: web.Request) -> web.Response:
        href = f"{origin(request)}{V2}/"
        return json_response({"versions": [{"status": "CURRENT", "id": "v2.0",
                                            "links": [{"href": href, "rel": "self"}]}]})

    async def v2_index(self, request: web.Request) -> web.Response:
        auth_of(request)
        names = [("network", "networks"), ("subnet", "subnets"), ("port", "ports")]
        if not self.liberty:
            names.append(("subnetpool", "subnetpools"))
        base = f"{origin(request)}{V2}"
        return json_response({"resources": [
            {"links": [{"href": f"{base}/{plural}", "rel": "self"}], "name": name,
             "collection": plural} for name, plural in names]})

    def _extensions(self) -> list[dict[str, Any]]:
        table = LIBERTY_EXTENSIONS if self.liberty else MODERN_EXTENSIONS
        return [{"alias": alias, "name": name, "description": name, "links": [],
                 "updated": "2015-10-01T10:00:00-00:00"} for alias, name in table]

    async def list_extensions(self, request: web.Request) -> web.Response:
        auth_of(request)
        return json_response({"extensions": self._extensions()})

    async def get_extension(self, request: web.Request) -> web.Response:
        auth_of(request)
        alias = request.match_info["alias"]
        for ext in self._extensions():
            if ext["alias"] == alias:
                return json_response({"extension": ext})
        raise SimHTTPError(404, f"Extension with alias {alias} does not exist",
                           neutron_type="HTTPNotFound")

    # -- quotas ------------------------------------------------------------------------------
    def _admin_required(self, reason: str) -> SimHTTPError:
        return SimHTTPError(403, f"User does not have admin privileges: {reason}.",
                            neutron_type="AdminRequired")

    def _quota_body(self, project_id: str) -> dict[str, Any]:
        return dict(self.core.quota_limits(project_id))

    async def list_quotas(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        if not ctx.is_admin:
            raise self._admin_required("Only admin can view or configure quota")
        out = []
        for rec in self.state.values("quotas"):
            if rec.get("service") != "network":
                continue
            item = self._quota_body(rec["project_id"])
            item["tenant_id"] = rec["project_id"]
            if not self.liberty:
                item["project_id"] = rec["project_id"]
            out.append(item)
        return json_response({"quotas": out})

    async def quota_tenant(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        if request.match_info["who"] == "project":
            return json_response({"project": {"project_id": ctx.project_id}})
        return json_response({"tenant": {"tenant_id": ctx.project_id}})

    def _quota_target(self, request: web.Request) -> str:
        ctx = auth_of(request)
        project_id = request.match_info["project_id"]
        if project_id != ctx.project_id and not ctx.is_admin:
            raise self._admin_required("Only admin is authorized to access quotas for "
                                       "another tenant")
        return project_id

    async def get_quota(self, request: web.Request) -> web.Response:
        return json_response({"quota": self._quota_body(self._quota_target(request))})

    async def get_quota_default(self, request: web.Request) -> web.Response:
        self._quota_target(request)
        return json_response({"quota": self.core.quota_defaults()})

    async def get_quota_details(self, request: web.Request) -> web.Response:
        project_id = self._quota_target(request)
        used = self.core.usage(project_id)
        limits = self.core.quota_limits(project_id)
        return json_response({"quota": {key: {"limit": limit, "used": used.get(key, 0),
                                              "reserved": 0}
                                        for key, limit in limits.items()}})

    async def update_quota(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        if not ctx.is_admin:
            raise self._admin_required("Only admin can view or configure quota")
        project_id = request.match_info["project_id"]
        body = (await read_json(request)).get("quota")
        if not isinstance(body, dict):
            raise bad_request("Unable to find 'quota' in request body")
        known = self.core.quota_defaults()
        changes: dict[str, int] = {}
        for key, value in body.items():
            if key in ("check_limit", "force"):
                continue  # modern clients may send these; they change nothing here
            if key not in known:
                raise bad_request(f"Unrecognized attribute(s) '{key}'")
            try:
                number = int(value)
            except (TypeError, ValueError):
                number = -2
            if number < -1:
                raise SimHTTPError(400, f"Invalid input for {key}. Reason: '{value}' is not "
                                   "in range -1 through 2147483647.",
                                   neutron_type="InvalidInput")
            changes[key] = number
        rec = self.state.get("quotas", f"network:{project_id}") or {
            "id": f"network:{project_id}", "service": "network", "project_id": project_id,
            "limits": {}}
        rec["limits"] = {**rec.get("limits", {}), **changes}
        self.state.put("quotas", rec)
        return json_response({"quota": self._quota_body(project_id)})

    async def delete_quota(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        if not ctx.is_admin:
            raise self._admin_required("Only admin can view or configure quota")
        self.state.delete("quotas", f"network:{request.match_info['project_id']}")
        return web.Response(status=204)

    # -- tags (modern) -----------------------------------------------------------------------
    def _tag_target(self, request: web.Request) -> Any:
        kind = TAGGABLE[request.match_info["resources"]]
        ctx = auth_of(request)
        rid = request.match_info["id"]
        if request.method == "GET":
            return self.core.get_visible(kind, rid, ctx)
        return self.core.get_owned(kind, rid, ctx, "update")

    @staticmethod
    def _checked_tags(body: dict[str, Any]) -> list[str]:
        tags = body.get("tags")
        if not isinstance(tags, list) or not all(isinstance(t, str) and 0 < len(t) <= 255
                                                 for t in tags):
            raise bad_request(f"Invalid input for tags. Reason: '{tags}' is not a valid list "
                              "of tags.")
        return list(dict.fromkeys(tags))

    async def get_tags(self, request: web.Request) -> web.Response:
        return json_response({"tags": list(self._tag_target(request).get("tags") or [])})

    async def replace_tags(self, request: web.Request) -> web.Response:
        rec = self._tag_target(request)
        rec["tags"] = self._checked_tags(await read_json(request))
        self.core.touch(rec)
        return json_response({"tags": rec["tags"]})

    async def add_tags(self, request: web.Request) -> web.Response:
        rec = self._tag_target(request)
        new = self._checked_tags(await read_json(request))
        rec["tags"] = list(dict.fromkeys([*(rec.get("tags") or []), *new]))
        self.core.touch(rec)
        return json_response({"tags": rec["tags"]}, status=201)

    async def clear_tags(self, request: web.Request) -> web.Response:
        rec = self._tag_target(request)
        rec["tags"] = []
        self.core.touch(rec)
        return web.Response(status=204)

    def _tag_missing(self, tag: str) -> SimHTTPError:
        return SimHTTPError(404, f"Tag {tag} could not be found.", neutron_type="TagNotFound")

    async def check_tag(self, request: web.Request) -> web.Response:
        tag = request.match_info["tag"]
        if tag not in (self._tag_target(request).get("tags") or []):
            raise self._tag_missing(tag)
        return web.Response(status=204)

    async def add_tag(self, request: web.Request) -> web.Response:
        rec = self._tag_target(request)
        tag = request.match_info["tag"]
        if tag not in (rec.get("tags") or []):
            rec["tags"] = [*(rec.get("tags") or []), tag]
            self.core.touch(rec)
        return web.Response(status=201)

    async def remove_tag(self, request: web.Request) -> web.Response:
        rec = self._tag_target(request)
        tag = request.match_info["tag"]
        if tag not in (rec.get("tags") or []):
            raise self._tag_missing(tag)
        rec["tags"] = [t for t in rec["tags"] if t != tag]
        self.core.touch(rec)
        return web.Response(status=204)


def _crud(router: web.UrlDispatcher, segment: str, handlers: dict[str, Any]) -> None:
    router.add_get(f"{V2}/{segment}", handlers["list"])
    router.add_post(f"{V2}/{segment}", handlers["create"])
    router.add_get(f"{V2}/{segment}/{{id}}", handlers["get"])
    if "update" in handlers:
        router.add_put(f"{V2}/{segment}/{{id}}", handlers["update"])
    router.add_delete(f"{V2}/{segment}/{{id}}", handlers["delete"])


def add_routes(router: web.UrlDispatcher, cloud: SimCloud) -> None:
    api = NeutronAPI(cloud)
    nets = NetworkHandlers(api.core)
    routers = RouterHandlers(api.core)
    groups = SecurityGroupHandlers(api.core)
    router.add_get(PREFIX, api.versions)
    router.add_get(f"{PREFIX}/", api.versions)
    router.add_get(V2, api.v2_index)
    router.add_get(f"{V2}/", api.v2_index)
    router.add_get(f"{V2}/extensions", api.list_extensions)
    router.add_get(f"{V2}/extensions/{{alias}}", api.get_extension)
    _crud(router, "networks", {"list": nets.list_networks, "create": nets.create_network,
                               "get": nets.get_network, "update": nets.update_network,
                               "delete": nets.delete_network})
    _crud(router, "subnets", {"list": nets.list_subnets, "create": nets.create_subnet,
                              "get": nets.get_subnet, "update": nets.update_subnet,
                              "delete": nets.delete_subnet})
    if cloud.profile.neutron_subnetpools:
        _crud(router, "subnetpools", {
            "list": nets.list_subnetpools, "create": nets.create_subnetpool,
            "get": nets.get_subnetpool, "update": nets.update_subnetpool,
            "delete": nets.delete_subnetpool})
    _crud(router, "ports", {"list": routers.list_ports, "create": routers.create_port,
                            "get": routers.get_port, "update": routers.update_port,
                            "delete": routers.delete_port})
    _crud(router, "routers", {"list": routers.list_routers, "create": routers.create_router,
                              "get": routers.get_router, "update": routers.update_router,
                              "delete": routers.delete_router})
    fips = FloatingIPHandlers(api.core, routers)
    _crud(router, "floatingips", {"list": fips.list_floatingips,
                                  "create": fips.create_floatingip,
                                  "get": fips.get_floatingip, "update": fips.update_floatingip,
                                  "delete": fips.delete_floatingip})
    router.add_put(f"{V2}/routers/{{id}}/add_router_interface", routers.add_interface)
    router.add_put(f"{V2}/routers/{{id}}/remove_router_interface", routers.remove_interface)
    _crud(router, "security-groups", {"list": groups.list_groups, "create": groups.create_group,
                                      "get": groups.get_group, "update": groups.update_group,
                                      "delete": groups.delete_group})
    _crud(router, "security-group-rules", {"list": groups.list_rules,
                                           "create": groups.create_rule,
                                           "get": groups.get_rule,
                                           "delete": groups.delete_rule})
    router.add_get(f"{V2}/quotas", api.list_quotas)
    who = "{who:tenant|project}" if not api.liberty else "{who:tenant}"
    router.add_get(f"{V2}/quotas/{who}", api.quota_tenant)
    router.add_get(f"{V2}/quotas/{{project_id}}", api.get_quota)
    router.add_put(f"{V2}/quotas/{{project_id}}", api.update_quota)
    router.add_delete(f"{V2}/quotas/{{project_id}}", api.delete_quota)
    if not api.liberty:
        router.add_get(f"{V2}/quotas/{{project_id}}/default", api.get_quota_default)
        router.add_get(f"{V2}/quotas/{{project_id}}/details", api.get_quota_details)
    if cloud.profile.neutron_tags:
        segments = "{resources:" + "|".join(TAGGABLE) + "}"
        tags = f"{V2}/{segments}/{{id}}/tags"
        router.add_get(tags, api.get_tags)
        router.add_put(tags, api.replace_tags)
        router.add_post(tags, api.add_tags)
        router.add_delete(tags, api.clear_tags)
        router.add_get(f"{tags}/{{tag}}", api.check_tag)
        router.add_put(f"{tags}/{{tag}}", api.add_tag)
        router.add_delete(f"{tags}/{{tag}}", api.remove_tag)
