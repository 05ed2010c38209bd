"""Cinder: version discovery, volume types, quota sets and limits; volumes live in
cinder_volumes.py.

Liberty serves v1 (``display_name``) and v2 with no microversions; modern serves v3 with a
microversion range (3.0 to the profile's maximum) negotiated on ``OpenStack-API-Version:
volume X.Y``. Every route sits under ``/volume/{vN}/{project_id}`` as the catalog says.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from migrator.sim.cinder_common import (
    API_VERSION_KEY,
    PREFIX,
    bool_param,
    check_url_project,
    ensure_default_type,
    find_type,
    microversion_range,
    quota_defaults,
    quota_limits,
    quota_usage,
    type_visible,
)
from migrator.sim.cinder_snapshots import SnapshotAPI, add_snapshot_routes
from migrator.sim.cinder_volumes import VolumeAPI, add_volume_routes
from migrator.sim.cloud import SimCloud
from migrator.sim.http import (
    SimHTTPError,
    json_response,
    origin,
    public,
    read_json,
    require,
    require_admin,
)
from migrator.sim.state import Record, new_id, now_iso_micro

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UPDATED = {"v1": "2014-06-28T12:20:21Z", "v2": "2014-06-28T12:20:21Z",
           "v3": "2023-08-31T00:00:00Z"}


class CinderAPI:
    def __init__(self, cloud: SimCloud) -> None:
        self.cloud = cloud
        self.state = cloud.state
        self.range = microversion_range(cloud)

    # -- discovery -------------------------------------------------------------------------
    def _version_doc(self, request: web.Request, version: str) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": f"{version}.0",
            "status": "CURRENT" if version != "v1" else "SUPPORTED",
            "updated": UPDATED[version],
            "links": [{"rel": "describedby", "type": "text/html",
                       "href": "https://docs.openstack.org/"},
                      {"rel": "self", "href": f"{origin(request)}{PREFIX}/{version}/"}],
            "media-types": [{"base": "application/json",
                             "type": f"application/vnd.openstack.volume+json;version="
                                     f"{version[1:]}"}],
        }
        if version == "v3" and self.range is not None:
            # Liberty's documents carry no range at all; modern ones name it.
            doc["version"] = self.range.maximum
            doc["min_version"] = self.range.minimum
        return doc

    @public
    async def versions(self, request: web.Request) -> web.Response:
        docs = [self._version_doc(request, v) for v in reversed(self.cloud.profile.cinder_versions)]
        return json_response({"versions": docs}, status=300)

    def version_handler(self, version: str) -> Handler:
        @public
        async def show(request: web.Request) -> web.Response:
            doc = self._version_doc(request, version)
            if version == "v3":  # Cinder's v3 root lists its one version
                return json_response({"versions": [doc]})
            return json_response({"version": doc})

        return show

    def wrap(self, version: str, handler: Handler) -> Handler:
        """Tag the request with its API version and negotiate v3's microversion."""
        served = self.range.wrap(handler) if version == "v3" and self.range else handler

        async def wrapped(request: web.Request) -> web.StreamResponse:
            request[API_VERSION_KEY] = version
            return await served(request)

        return wrapped

    # -- volume types ----------------------------------------------------------------------
    def _render_type(self, request: web.Request, vtype: Record) -> dict[str, Any]:
        ctx = check_url_project(request)
        out: dict[str, Any] = {
            "id": vtype["id"], "name": vtype["name"], "description": vtype.get("description"),
            "is_public": vtype.get("is_public", True),
            "os-volume-type-access:is_public": vtype.get("is_public", True),
            "qos_specs_id": vtype.get("qos_specs_id")}
        # Modern Cinder shows extra specs to admins only; Liberty to everyone.
        if ctx.is_admin or self.cloud.profile.cinder_max_microversion is None:
            out["extra_specs"] = dict(vtype.get("extra_specs") or {})
        return out

    def _get_type(self, request: web.Request) -> Record:
        ctx = check_url_project(request)
        ref = request.match_info["type_id"]
        vtype = find_type(self.cloud, ref) if ref != "default" else None
        if ref == "default" and self.range is not None:
            vtype = self.state.find_one("volume_types", name="__DEFAULT__")
        if vtype is None or not type_visible(ctx, vtype):
            raise SimHTTPError(404, f"Volume type {ref} could not be found.")
        return vtype

    async def list_types(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        raw = request.query.get("is_public")
        items = list(self.state.values("volume_types"))
        if ctx.is_admin:
            if raw is not None and raw.lower() != "none":
                want = bool_param(raw)
                items = [t for t in items if bool(t.get("is_public", True)) == want]
        else:
            items = [t for t in items if type_visible(ctx, t)]
        items.sort(key=lambda t: t["name"])
        return json_response({"volume_types": [self._render_type(request, t) for t in items]})

    async def show_type(self, request: web.Request) -> web.Response:
        return json_response({"volume_type": self._render_type(request,
                                                                self._get_type(request))})

    async def create_type(self, request: web.Request) -> web.Response:
        require_admin(request)
        check_url_project(request)
        body = require(await read_json(request), "volume_type")
        name = body.get("name")
        if not name or not isinstance(name, str):
            raise SimHTTPError(400, "Volume type name can not be empty.")
        if self.state.find_one("volume_types", name=name):
            raise SimHTTPError(409, f"Volume Type {name} already exists.")
        is_public = bool_param(body.get("os-volume-type-access:is_public",
                                        body.get("is_public", True)))
        vtype: Record = {"id": new_id(), "name": name, "description": body.get("description"),
                         "is_public": is_public,
                         "extra_specs": {str(k): str(v) for k, v in
                                         (body.get("extra_specs") or {}).items()},
                         "created_at": now_iso_micro()}
        self.state.put("volume_types", vtype)
        return json_response({"volume_type": self._render_type(request, vtype)})

    async def delete_type(self, request: web.Request) -> web.Response:
        require_admin(request)
        vtype = self._get_type(request)
        if self.state.find_one("volumes", volume_type=vtype["name"]):
            raise SimHTTPError(400, f"Target volume type is still in use. Volume Type "
                                    f"{vtype['id']} deletion is not allowed with volumes "
                                    "present with the type.")
        if vtype["name"] == "__DEFAULT__":
            raise SimHTTPError(400, "The default volume type cannot be deleted.")
        self.state.delete("volume_types", vtype["id"])
        return web.Response(status=202)

    async def get_extra_specs(self, request: web.Request) -> web.Response:
        require_admin(request)
        return json_response({"extra_specs": dict(self._get_type(request).get("extra_specs")
                                                  or {})})

    async def set_extra_specs(self, request: web.Request) -> web.Response:
        require_admin(request)
        vtype = self._get_type(request)
        specs = (await read_json(request)).get("extra_specs")
        if not isinstance(specs, dict):
            raise SimHTTPError(400, "Malformed request body")
        vtype.setdefault("extra_specs", {}).update({str(k): str(v) for k, v in specs.items()})
        self.state.touch_record(vtype)
        return json_response({"extra_specs": {str(k): str(v) for k, v in specs.items()}})

    async def get_extra_spec(self, request: web.Request) -> web.Response:
        require_admin(request)
        key = request.match_info["key"]
        specs = self._get_type(request).get("extra_specs") or {}
        if key not in specs:
            raise SimHTTPError(404, f"Volume Type {request.match_info['type_id']} has no extra "
                                    f"specs with key {key}.")
        return json_response({key: specs[key]})

    async def put_extra_spec(self, request: web.Request) -> web.Response:
        require_admin(request)
        vtype = self._get_type(request)
        key = request.match_info["key"]
        body = await read_json(request)
        if key not in body or len(body) != 1:
            raise SimHTTPError(400, "Request body and URI mismatch")
        vtype.setdefault("extra_specs", {})[key] = str(body[key])
        self.state.touch_record(vtype)
        return json_response({key: str(body[key])})

    async def delete_extra_spec(self, request: web.Request) -> web.Response:
        require_admin(request)
        vtype = self._get_type(request)
        key = request.match_info["key"]
        if (vtype.get("extra_specs") or {}).pop(key, None) is None:
            raise SimHTTPError(404, f"Volume Type {vtype['id']} has no extra specs with key "
                                    f"{key}.")
        self.state.touch_record(vtype)
        return web.Response(status=202)

    async def type_access(self, request: web.Request) -> web.Response:
        require_admin(request)
        vtype = self._get_type(request)
        if vtype.get("is_public", True):
            raise SimHTTPError(404, "Access list not available for public volume types.")
        return json_response({"volume_type_access": [
            {"volume_type_id": vtype["id"], "project_id": p} for p in vtype.get("_access") or []]})

    async def type_action(self, request: web.Request) -> web.Response:
        require_admin(request)
        vtype = self._get_type(request)
        body = await read_json(request)
        access = list(vtype.get("_access") or [])
        if "addProjectAccess" in body:
            pid = (body["addProjectAccess"] or {}).get("project")
            if vtype.get("is_public", True):
                raise SimHTTPError(400, "Invalid volume type: Type access modification is not "
                                        "applicable to public volume type.")
            if pid in access:
                raise SimHTTPError(409, f"Volume type access for {vtype['id']} / {pid} "
                                        "combination already exists.")
            access.append(pid)
        elif "removeProjectAccess" in body:
            pid = (body["removeProjectAccess"] or {}).get("project")
            if pid not in access:
                raise SimHTTPError(404, f"Volume type access not found for {vtype['id']} / "
                                        f"{pid} combination.")
            access.remove(pid)
        else:
            raise SimHTTPError(400, "There is no such action")
        vtype["_access"] = access
        self.state.touch_record(vtype)
        return web.Response(status=202)

    # -- quota sets ------------------------------------------------------------------------
    def _check_quota_reader(self, request: web.Request) -> str:
        ctx = check_url_project(request)
        target = request.match_info["target_id"]
        if not ctx.is_admin and target != ctx.project_id:
            raise SimHTTPError(403, "Policy doesn't allow volume_extension:quotas:show to be "
                                    "performed.")
        return target

    async def show_quotas(self, request: web.Request) -> web.Response:
        target = self._check_quota_reader(request)
        limits = quota_limits(self.cloud, target)
        body: dict[str, Any] = {"id": target}
        if bool_param(request.query.get("usage", "false")):
            used = quota_usage(self.cloud, target)
            body.update({k: {"limit": v, "in_use": used.get(k, 0), "reserved": 0,
                             "allocated": 0} for k, v in limits.items()})
        else:
            body.update(limits)
        return json_response({"quota_set": body})

    async def quota_defaults(self, request: web.Request) -> web.Response:
        target = self._check_quota_reader(request)
        return json_response({"quota_set": {"id": target, **quota_defaults(self.cloud)}})

    async def update_quotas(self, request: web.Request) -> web.Response:
        require_admin(request)
        check_url_project(request)
        target = request.match_info["target_id"]
        body = require(await read_json(request), "quota_set")
        known = quota_defaults(self.cloud)
        wanted = {k: v for k, v in body.items() if k not in ("id", "tenant_id")}
        bad = sorted(k for k in wanted if k not in known)
        if bad:
            raise SimHTTPError(400, f"Bad key(s) in quota set: {','.join(bad)}")
        used = quota_usage(self.cloud, target)
        new: dict[str, int] = {}
        for key, raw in wanted.items():
            try:
                value = int(raw)
            except (TypeError, ValueError) as exc:
                raise SimHTTPError(400, f"Invalid input received: Quota {key} must be an "
                                        "integer.") from exc
            if value < -1:
                raise SimHTTPError(400, f"Invalid input received: Quota {key} must be greater "
                                        "than or equal to -1.")
            if value != -1 and value < used.get(key, 0):
                raise SimHTTPError(400, f"Invalid input received: Quota limit {value} for "
                                        f"{key} must be greater than or equal to already used "
                                        f"and reserved {used[key]}.")
            new[key] = value
        rec = self.state.get("quotas", f"volume:{target}") or {
            "id": f"volume:{target}", "service": "volume", "project_id": target, "limits": {}}
        rec["limits"] = {**rec.get("limits", {}), **new}
        self.state.put("quotas", rec)
        return json_response({"quota_set": quota_limits(self.cloud, target)})

    async def delete_quotas(self, request: web.Request) -> web.Response:
        require_admin(request)
        check_url_project(request)
        self.state.delete("quotas", f"volume:{request.match_info['target_id']}")
        return web.Response(status=200)

    async def limits(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        assert ctx.project_id is not None
        limits = quota_limits(self.cloud, ctx.project_id)
        used = quota_usage(self.cloud, ctx.project_id)
        absolute = {"maxTotalVolumes": limits["volumes"],
                    "maxTotalSnapshots": limits["snapshots"],
                    "maxTotalVolumeGigabytes": limits["gigabytes"],
                    "maxTotalBackups": limits["backups"],
                    "maxTotalBackupGigabytes": limits["backup_gigabytes"],
                    "totalVolumesUsed": used["volumes"], "totalGigabytesUsed": used["gigabytes"],
                    "totalSnapshotsUsed": used["snapshots"], "totalBackupsUsed": 0,
                    "totalBackupGigabytesUsed": 0}
        return json_response({"limits": {"rate": [], "absolute": absolute}})


def add_routes(router: web.UrlDispatcher, cloud: SimCloud) -> None:
    ensure_default_type(cloud)
    api = CinderAPI(cloud)
    volumes = VolumeAPI(cloud)
    snapshots = SnapshotAPI(cloud)
    router.add_get(PREFIX, api.versions)
    router.add_get(f"{PREFIX}/", api.versions)
    for version in cloud.profile.cinder_versions:
        root = f"{PREFIX}/{version}"
        router.add_get(root, api.version_handler(version))
        router.add_get(f"{root}/", api.version_handler(version))

        def wrap(handler: Handler, version: str = version) -> Handler:
            return api.wrap(version, handler)

        base = f"{root}/{{project_id}}"
        # Quota sets first: aiohttp tries the routes under a version in the order they were
        # added, one regular expression each, and a discovery asks 10,000 of them (they came
        # 16th). No two of these templates match the same path, so order changes nothing else.
        quotas = f"{base}/os-quota-sets/{{target_id}}"
        router.add_get(quotas, wrap(api.show_quotas))
        router.add_put(quotas, wrap(api.update_quotas))
        router.add_delete(quotas, wrap(api.delete_quotas))
        router.add_get(f"{quotas}/defaults", wrap(api.quota_defaults))
        add_volume_routes(router, base, volumes, wrap)
        add_snapshot_routes(router, base, snapshots, wrap)
        router.add_get(f"{base}/types", wrap(api.list_types))
        router.add_post(f"{base}/types", wrap(api.create_type))
        router.add_get(f"{base}/types/{{type_id}}", wrap(api.show_type))
        router.add_delete(f"{base}/types/{{type_id}}", wrap(api.delete_type))
        specs = f"{base}/types/{{type_id}}/extra_specs"
        router.add_get(specs, wrap(api.get_extra_specs))
        router.add_post(specs, wrap(api.set_extra_specs))
        router.add_get(f"{specs}/{{key}}", wrap(api.get_extra_spec))
        router.add_put(f"{specs}/{{key}}", wrap(api.put_extra_spec))
        router.add_delete(f"{specs}/{{key}}", wrap(api.delete_extra_spec))
        router.add_get(f"{base}/types/{{type_id}}/os-volume-type-access",
                       wrap(api.type_access))
        router.add_post(f"{base}/types/{{type_id}}/action", wrap(api.type_action))
        router.add_get(f"{base}/limits", wrap(api.limits))

