"""Nova 2.1: version discovery, microversions, flavors, quota sets and limits; keypairs live
in nova_keypairs.py, servers in nova_servers.py (their attachments and interfaces in
nova_server_children.py, what runs after the API's answer in nova_compute.py).

Liberty serves ``/compute/v2.1/{project_id}/...`` up to 2.12 and reads only the
``X-OpenStack-Nova-API-Version`` header; modern serves ``/compute/v2.1/...`` up to the
profile's maximum and reads both headers. Flavor internal form (the seed loader writes the
same): ``{id, name, vcpus, ram, disk, swap (int MiB), ephemeral, is_public, rxtx_factor,
extra_specs, description, _access (project ids of a private flavor)}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from migrator.sim.cloud import SimCloud
from migrator.sim.http import (
    AuthContext,
    SimHTTPError,
    json_response,
    next_href,
    origin,
    page,
    public,
    read_json,
    require,
)
from migrator.sim.microversion import at_least
from migrator.sim.nova_common import (
    PREFIX,
    QUOTA_DEFAULTS,
    check_url_project,
    hidden_quota_keys,
    microversion_range,
    policy_error,
    quota_limits,
)
from migrator.sim.nova_compute import Compute, server_usage
from migrator.sim.nova_keypairs import KeypairAPI, add_keypair_routes
from migrator.sim.nova_server_children import ServerChildrenAPI, add_children_routes
from migrator.sim.nova_servers import ServerAPI, add_server_routes
from migrator.sim.state import Record, new_id

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise SimHTTPError(400, f"Invalid {name} filter [{raw}]") from exc


class NovaAPI:
    def __init__(self, cloud: SimCloud) -> None:
        self.cloud = cloud
        self.state = cloud.state
        self.range = microversion_range(cloud)

    # -- discovery -------------------------------------------------------------------------
    def _version_doc(self, request: web.Request) -> dict[str, Any]:
        return {"id": "v2.1", "status": "CURRENT", "version": self.range.maximum,
                "min_version": self.range.minimum, "updated": "2013-07-23T11:33:21Z",
                "links": [{"rel": "self", "href": f"{origin(request)}{PREFIX}/v2.1/"},
                          {"rel": "describedby", "type": "text/html",
                           "href": "https://docs.openstack.org/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.compute+json;"
                                         "version=2.1"}]}

    @public
    async def versions(self, request: web.Request) -> web.Response:
        return json_response({"versions": [self._version_doc(request)]})

    @public
    async def version(self, request: web.Request) -> web.Response:
        return json_response({"version": self._version_doc(request)})

    def wrap(self, handler: Handler) -> Handler:
        """Negotiate the microversion, echo it on every answer (errors included)."""
        return self.range.wrap(handler)

    # -- flavors ---------------------------------------------------------------------------
    def _flavor_links(self, request: web.Request, fid: str) -> list[dict[str, str]]:
        base = origin(request)
        pid = request.match_info.get("project_id")
        versioned = f"{PREFIX}/v2.1/{pid}" if pid else f"{PREFIX}/v2.1"
        bookmark = f"{PREFIX}/{pid}" if pid else PREFIX
        return [{"rel": "self", "href": f"{base}{versioned}/flavors/{fid}"},
                {"rel": "bookmark", "href": f"{base}{bookmark}/flavors/{fid}"}]

    def _render_flavor(self, request: web.Request, flavor: Record, *, detail: bool
                       ) -> dict[str, Any]:
        out: dict[str, Any] = {"id": flavor["id"], "name": flavor["name"],
                               "links": self._flavor_links(request, flavor["id"])}
        if detail:
            swap = int(flavor.get("swap") or 0)
            out.update({
                "ram": flavor.get("ram"), "disk": flavor.get("disk"),
                "vcpus": flavor.get("vcpus"),
                # Nova shows "no swap" as "" until 2.75 made it 0.
                "swap": swap if swap or at_least(request, "2.75") else "",
                "OS-FLV-EXT-DATA:ephemeral": int(flavor.get("ephemeral") or 0),
                "OS-FLV-DISABLED:disabled": bool(flavor.get("disabled", False)),
                "os-flavor-access:is_public": bool(flavor.get("is_public", True)),
                "rxtx_factor": float(flavor.get("rxtx_factor") or 1.0),
            })
            if at_least(request, "2.61"):
                out["extra_specs"] = dict(flavor.get("extra_specs") or {})
        if at_least(request, "2.55"):
            out["description"] = flavor.get("description")
        return out

    @staticmethod
    def _accessible(ctx: AuthContext, flavor: Record) -> bool:
        return bool(flavor.get("is_public", True)) or ctx.project_id in (
            flavor.get("_access") or [])

    def _get_flavor(self, request: web.Request, ctx: AuthContext) -> Record:
        fid = request.match_info["flavor_id"]
        flavor = self.state.get("flavors", fid)
        if flavor is None or not (ctx.is_admin or self._accessible(ctx, flavor)):
            raise SimHTTPError(404, f"Flavor {fid} could not be found.")
        return flavor

    def _flavor_list(self, request: web.Request, *, detail: bool) -> web.Response:
        ctx = check_url_project(request)
        raw = request.query.get("is_public")
        items = list(self.state.values("flavors"))
        # Nova: public only unless an admin asks for is_public=None (all) or false.
        if ctx.is_admin and raw is not None and raw.strip().lower() == "none":
            pass
        elif ctx.is_admin and raw is not None and raw.strip().lower() in ("false", "0", "f",
                                                                          "no", "off"):
            items = [f for f in items if not f.get("is_public", True)]
        else:
            items = [f for f in items if self._accessible(ctx, f)]
        min_disk, min_ram = _int_param(request, "minDisk"), _int_param(request, "minRam")
        if min_disk is not None:
            items = [f for f in items if int(f.get("disk") or 0) >= min_disk]
        if min_ram is not None:
            items = [f for f in items if int(f.get("ram") or 0) >= min_ram]
        sort_key = request.query.get("sort_key", "flavorid")
        field = {"flavorid": "id", "id": "id"}.get(sort_key, sort_key)
        if field not in ("id", "name", "ram", "vcpus", "disk", "memory_mb", "root_gb"):
            raise SimHTTPError(400, f"Invalid input received: Invalid sort_key: {sort_key}")
        field = {"memory_mb": "ram", "root_gb": "disk"}.get(field, field)
        items.sort(key=lambda f: (f.get(field) is None, f.get(field)),
                   reverse=request.query.get("sort_dir", "asc") == "desc")
        chunk, marker = page(items, request, default_limit=1000)
        body: dict[str, Any] = {"flavors": [self._render_flavor(request, f, detail=detail)
                                            for f in chunk]}
        if marker is not None:
            body["flavors_links"] = [{"rel": "next", "href": next_href(request, marker)}]
        return json_response(body)

    async def list_flavors(self, request: web.Request) -> web.Response:
        return self._flavor_list(request, detail=False)

    async def list_flavors_detail(self, request: web.Request) -> web.Response:
        return self._flavor_list(request, detail=True)

    async def show_flavor(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        flavor = self._get_flavor(request, ctx)
        return json_response({"flavor": self._render_flavor(request, flavor, detail=True)})

    def _non_negative(self, body: dict[str, Any], key: str, default: int | None,
                      minimum: int = 0) -> int:
        raw = body.get(key, default)
        if raw is None:
            raise SimHTTPError(400, f"Invalid input for field/attribute flavor. Value: {body}. "
                                    f"'{key.split(':')[-1]}' is a required property")
        try:
            value = int(raw)
        except (TypeError, ValueError) as exc:
            raise SimHTTPError(400, f"Invalid input for field/attribute {key}. Value: {raw}. "
                                    f"'{raw}' is not valid under any of the given schemas"
                               ) from exc
        if value < minimum:
            raise SimHTTPError(400, f"Invalid input for field/attribute {key}. Value: {raw}. "
                                    f"{raw} is less than the minimum of {minimum}")
        return value

    async def create_flavor(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        if not ctx.is_admin:
            raise policy_error("os_compute_api:os-flavor-manage:create")
        body = require(await read_json(request), "flavor")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise SimHTTPError(400, f"Invalid input for field/attribute name. Value: {name}.")
        if "description" in body and not at_least(request, "2.55"):
            raise SimHTTPError(400, "Invalid input for field/attribute flavor. Additional "
                                    "properties are not allowed ('description' was unexpected)")
        fid = body.get("id")
        if fid in (None, "", "auto"):
            fid = new_id()
        fid = str(fid)
        flavor: Record = {
            "id": fid, "name": name.strip(),
            "ram": self._non_negative(body, "ram", None, 1),
            "vcpus": self._non_negative(body, "vcpus", None, 1),
            "disk": self._non_negative(body, "disk", None),
            "swap": self._non_negative(body, "swap", 0),
            "ephemeral": self._non_negative(body, "OS-FLV-EXT-DATA:ephemeral", 0),
            "rxtx_factor": float(body.get("rxtx_factor", 1.0)),
            "is_public": bool(body.get("os-flavor-access:is_public", True)),
            "extra_specs": {}, "description": body.get("description"), "_access": []}
        if self.state.find_one("flavors", name=flavor["name"]):
            raise SimHTTPError(409, f"Flavor with name {flavor['name']} already exists.")
        if self.state.get("flavors", fid) is not None:
            raise SimHTTPError(409, f"Flavor with ID {fid} already exists.")
        self.state.put("flavors", flavor)
        return json_response({"flavor": self._render_flavor(request, flavor, detail=True)})

    async def update_flavor(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        if not at_least(request, "2.55"):
            raise SimHTTPError(405, "The method is not allowed for this version.")
        if not ctx.is_admin:
            raise policy_error("os_compute_api:os-flavor-manage:update")
        flavor = self._get_flavor(request, ctx)
        body = require(await read_json(request), "flavor")
        if set(body) != {"description"}:
            raise SimHTTPError(400, "Invalid input for field/attribute flavor. Only "
                                    "'description' may be updated")
        flavor["description"] = body["description"]
        self.state.touch("flavors", flavor)
        return json_response({"flavor": self._render_flavor(request, flavor, detail=True)})

    async def delete_flavor(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        if not ctx.is_admin:
            raise policy_error("os_compute_api:os-flavor-manage:delete")
        flavor = self._get_flavor(request, ctx)
        self.state.delete("flavors", flavor["id"])
        return web.Response(status=202)

    async def get_extra_specs(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        flavor = self._get_flavor(request, ctx)
        return json_response({"extra_specs": dict(flavor.get("extra_specs") or {})})

    async def set_extra_specs(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        if not ctx.is_admin:
            raise policy_error("os_compute_api:os-flavor-extra-specs:create")
        flavor = self._get_flavor(request, ctx)
        specs = (await read_json(request)).get("extra_specs")
        if not isinstance(specs, dict):
            raise SimHTTPError(400, "Invalid input for field/attribute extra_specs.")
        new = {str(k): str(v) for k, v in specs.items()}
        flavor.setdefault("extra_specs", {}).update(new)
        self.state.touch("flavors", flavor)
        return json_response({"extra_specs": new})

    async def get_extra_spec(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        key = request.match_info["key"]
        specs = self._get_flavor(request, ctx).get("extra_specs") or {}
        if key not in specs:
            raise SimHTTPError(404, f"Flavor {request.match_info['flavor_id']} has no extra "
                                    f"specs with key {key}.")
        return json_response({key: specs[key]})

    async def put_extra_spec(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        if not ctx.is_admin:
            raise policy_error("os_compute_api:os-flavor-extra-specs:update")
        flavor = self._get_flavor(request, ctx)
        key = request.match_info["key"]
        body = await read_json(request)
        if key not in body or len(body) != 1:
            raise SimHTTPError(400, "Request body and URI mismatch")
        flavor.setdefault("extra_specs", {})[key] = str(body[key])
        self.state.touch("flavors", flavor)
        return json_response({key: str(body[key])})

    async def delete_extra_spec(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        if not ctx.is_admin:
            raise policy_error("os_compute_api:os-flavor-extra-specs:delete")
        flavor = self._get_flavor(request, ctx)
        key = request.match_info["key"]
        if (flavor.get("extra_specs") or {}).pop(key, None) is None:
            raise SimHTTPError(404, f"Flavor {flavor['id']} has no extra specs with key {key}.")
        self.state.touch("flavors", flavor)
        return web.Response(status=202)

    def _access_body(self, flavor: Record) -> dict[str, Any]:
        return {"flavor_access": [{"flavor_id": flavor["id"], "tenant_id": p}
                                  for p in flavor.get("_access") or []]}

    async def flavor_access(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        if not ctx.is_admin:
            raise policy_error("os_compute_api:os-flavor-access")
        flavor = self._get_flavor(request, ctx)
        if flavor.get("is_public", True):
            raise SimHTTPError(404, "Access list not available for public flavors.")
        return json_response(self._access_body(flavor))

    async def flavor_action(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        if not ctx.is_admin:
            raise policy_error("os_compute_api:os-flavor-access:add_tenant_access")
        flavor = self._get_flavor(request, ctx)
        body = await read_json(request)
        access = list(flavor.get("_access") or [])
        if "addTenantAccess" in body:
            tenant = (body["addTenantAccess"] or {}).get("tenant")
            if flavor.get("is_public", True):
                raise SimHTTPError(409, "Can not add access to a public flavor.")
            if tenant in access:
                raise SimHTTPError(409, f"Flavor access already exists for flavor "
                                        f"{flavor['id']} and project {tenant} combination.")
            access.append(tenant)
        elif "removeTenantAccess" in body:
            tenant = (body["removeTenantAccess"] or {}).get("tenant")
            if tenant not in access:
                raise SimHTTPError(404, f"Flavor access not found for {flavor['id']} / "
                                        f"{tenant} combination.")
            access.remove(tenant)
        else:
            raise SimHTTPError(400, "Invalid request body")
        flavor["_access"] = access
        self.state.touch("flavors", flavor)
        return json_response(self._access_body(flavor))

    # -- quota sets ------------------------------------------------------------------------
    def _quota_target(self, request: web.Request, rule: str) -> str:
        ctx = check_url_project(request)
        target = request.match_info["target_id"]
        if not ctx.is_admin and target != ctx.project_id:
            raise policy_error(f"os_compute_api:os-quota-sets:{rule}")
        return target

    def _visible_keys(self, request: web.Request, values: dict[str, Any]) -> dict[str, Any]:
        hidden = hidden_quota_keys(request)
        return {k: v for k, v in values.items() if k not in hidden}

    def _usage(self, project_id: str, user_id: str | None) -> dict[str, int]:
        used = dict.fromkeys(QUOTA_DEFAULTS, 0)
        # Keypairs count per user: a project-wide view has none in use (as Nova reports).
        if user_id:
            used["key_pairs"] = len(self.state.where("keypairs", "user_id", user_id))
        used.update(server_usage(self.cloud, project_id))
        return used

    async def show_quotas(self, request: web.Request) -> web.Response:
        target = self._quota_target(request, "show")
        limits = self._visible_keys(request, quota_limits(self.cloud, target))
        return json_response({"quota_set": {"id": target, **limits}})

    async def quota_detail(self, request: web.Request) -> web.Response:
        target = self._quota_target(request, "detail")
        used = self._usage(target, request.query.get("user_id"))
        limits = self._visible_keys(request, quota_limits(self.cloud, target))
        detail = {k: {"limit": v, "in_use": used.get(k, 0), "reserved": 0}
                  for k, v in limits.items()}
        return json_response({"quota_set": {"id": target, **detail}})

    async def quota_defaults(self, request: web.Request) -> web.Response:
        target = self._quota_target(request, "defaults")
        return json_response({"quota_set": {"id": target,
                                            **self._visible_keys(request, QUOTA_DEFAULTS)}})

    async def update_quotas(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        if not ctx.is_admin:
            raise policy_error("os_compute_api:os-quota-sets:update")
        target = request.match_info["target_id"]
        body = require(await read_json(request), "quota_set")
        allowed = set(self._visible_keys(request, QUOTA_DEFAULTS)) | {"force"}
        extra = sorted(set(body) - allowed)
        if extra:
            # Nova's JSON schema for the request's microversion.
            raise SimHTTPError(400, f"Invalid input for field/attribute quota_set. Value: "
                                    f"{body}. Additional properties are not allowed "
                                    f"('{extra[0]}' was unexpected)")
        force = str(body.get("force", "false")).lower() in ("1", "true", "yes", "on")
        used = self._usage(target, None)
        new: dict[str, int] = {}
        for key, raw in body.items():
            if key == "force":
                continue
            try:
                value = int(raw)
            except (TypeError, ValueError) as exc:
                raise SimHTTPError(400, f"Invalid input for field/attribute {key}. Value: "
                                        f"{raw}. '{raw}' is not valid under any of the given "
                                        "schemas") from exc
            if value < -1:
                raise SimHTTPError(400, f"Invalid input for field/attribute {key}. Value: "
                                        f"{raw}. {raw} is less than the minimum of -1")
            if not force and value != -1 and value < used.get(key, 0):
                raise SimHTTPError(400, f"Quota limit {value} for {key} must be greater than "
                                        f"or equal to already used and reserved "
                                        f"{used[key]}.")
            new[key] = value
        rec = self.state.get("quotas", f"compute:{target}") or {
            "id": f"compute:{target}", "service": "compute", "project_id": target,
            "limits": {}}
        rec["limits"] = {**rec.get("limits", {}), **new}
        self.state.put("quotas", rec)
        return json_response({"quota_set": self._visible_keys(
            request, quota_limits(self.cloud, target))})

    async def delete_quotas(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        if not ctx.is_admin:
            raise policy_error("os_compute_api:os-quota-sets:delete")
        self.state.delete("quotas", f"compute:{request.match_info['target_id']}")
        return web.Response(status=202)

    # -- limits ----------------------------------------------------------------------------
    async def limits(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        target = request.query.get("tenant_id") if ctx.is_admin else None
        project_id = target or ctx.project_id or ""
        q = quota_limits(self.cloud, project_id)
        used = server_usage(self.cloud, project_id)
        absolute: dict[str, int] = {
            "maxTotalInstances": q["instances"], "maxTotalCores": q["cores"],
            "maxTotalRAMSize": q["ram"], "maxServerMeta": q["metadata_items"],
            "maxTotalKeypairs": q["key_pairs"], "maxServerGroups": q["server_groups"],
            "maxServerGroupMembers": q["server_group_members"],
            "totalInstancesUsed": used["instances"], "totalCoresUsed": used["cores"],
            "totalRAMUsed": used["ram"],
            "totalServerGroupsUsed": 0}
        if not at_least(request, "2.39"):
            absolute["maxImageMeta"] = q["metadata_items"]
        if not at_least(request, "2.57"):
            absolute.update(maxPersonality=q["injected_files"],
                            maxPersonalitySize=q["injected_file_content_bytes"])
        if not at_least(request, "2.36"):
            absolute.update(maxSecurityGroups=q["security_groups"],
                            maxSecurityGroupRules=q["security_group_rules"],
                            maxTotalFloatingIps=q["floating_ips"],
                            totalSecurityGroupsUsed=0, totalFloatingIpsUsed=0)
        return json_response({"limits": {"rate": [], "absolute": absolute}})


def add_routes(router: web.UrlDispatcher, cloud: SimCloud) -> None:
    api = NovaAPI(cloud)
    keypairs = KeypairAPI(cloud)
    router.add_get(PREFIX, api.versions)
    router.add_get(f"{PREFIX}/", api.versions)
    router.add_get(f"{PREFIX}/v2.1", api.version)
    router.add_get(f"{PREFIX}/v2.1/", api.version)
    if cloud.profile.nova_url_has_project:
        base = f"{PREFIX}/v2.1/{{project_id}}"
        router.add_get(base, api.version)
        router.add_get(f"{base}/", api.version)
    else:
        base = f"{PREFIX}/v2.1"
    wrap = api.wrap
    # Keypairs and quota sets first: aiohttp tries the routes under /v2.1 in the order they
    # were added, one regular expression each, and a discovery asks 20,000 keypair listings
    # and 10,000 quota sets (they came 13th and 15th). No two of these templates match the
    # same path, so the order changes nothing else.
    add_keypair_routes(router, base, keypairs, wrap)
    quotas = f"{base}/os-quota-sets/{{target_id}}"
    router.add_get(quotas, wrap(api.show_quotas))
    router.add_put(quotas, wrap(api.update_quotas))
    router.add_delete(quotas, wrap(api.delete_quotas))
    router.add_get(f"{quotas}/detail", wrap(api.quota_detail))
    router.add_get(f"{quotas}/defaults", wrap(api.quota_defaults))
    router.add_get(f"{base}/flavors", wrap(api.list_flavors))
    router.add_get(f"{base}/flavors/detail", wrap(api.list_flavors_detail))
    router.add_post(f"{base}/flavors", wrap(api.create_flavor))
    flavor = f"{base}/flavors/{{flavor_id}}"
    router.add_get(flavor, wrap(api.show_flavor))
    router.add_put(flavor, wrap(api.update_flavor))
    router.add_delete(flavor, wrap(api.delete_flavor))
    router.add_get(f"{flavor}/os-extra_specs", wrap(api.get_extra_specs))
    router.add_post(f"{flavor}/os-extra_specs", wrap(api.set_extra_specs))
    router.add_get(f"{flavor}/os-extra_specs/{{key}}", wrap(api.get_extra_spec))
    router.add_put(f"{flavor}/os-extra_specs/{{key}}", wrap(api.put_extra_spec))
    router.add_delete(f"{flavor}/os-extra_specs/{{key}}", wrap(api.delete_extra_spec))
    router.add_get(f"{flavor}/os-flavor-access", wrap(api.flavor_access))
    router.add_post(f"{flavor}/action", wrap(api.flavor_action))
    router.add_get(f"{base}/limits", wrap(api.limits))
    compute = Compute(cloud)
    servers = ServerAPI(cloud, compute)
    add_server_routes(router, base, servers, wrap)
    add_children_routes(router, base, ServerChildrenAPI(servers, compute), wrap)
