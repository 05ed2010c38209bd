"""Cinder volume snapshots: list (summary and detail), show, create (``force`` for an in-use
volume), rename, delete; Nova makes them too, for ``createImage`` of a volume-backed server.

Internal form: ``id, name, description, status (creating|available|deleting|error), size,
volume_id, project_id, user_id, metadata, created_at, updated_at`` and ``_content`` (the
volume's bytes when the snapshot was taken: generated content is shared, a file is copied),
``_volume_image_metadata`` and ``_bootable`` (what a volume created from it inherits, as
Cinder copies the Glance metadata). v1 renders ``display_name``/``display_description``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from migrator.sim.cinder_common import (
    api_version,
    bool_param,
    check_url_project,
    mv_at_least,
    quota_limits,
    quota_usage,
)
from migrator.sim.cloud import SimCloud
from migrator.sim.http import (
    AuthContext,
    SimHTTPError,
    json_response,
    next_href,
    page,
    read_json,
    require,
)
from migrator.sim.state import Record, new_id, now_iso_micro
from migrator.sim.volume_bytes import read_into_volume, volume_blob

log = logging.getLogger(__name__)
_TASKS: set[asyncio.Task[None]] = set()


def snapshot_blob_name(snapshot_id: str) -> str:
    return f"snapshot-{snapshot_id}"


def check_snapshot_quota(cloud: SimCloud, project_id: str, size: int) -> None:
    """Cinder's SnapshotLimitExceeded / VolumeSizeExceedsAvailableQuota (413)."""
    limits = quota_limits(cloud, project_id)
    used = quota_usage(cloud, project_id)
    if 0 <= limits["snapshots"] < used["snapshots"] + 1:
        raise SimHTTPError(413, f"Maximum number of snapshots allowed "
                                f"({limits['snapshots']}) exceeded",
                           headers={"Retry-After": "0"})
    if 0 <= limits["gigabytes"] < used["gigabytes"] + size:
        raise SimHTTPError(
            413, f"Requested volume or snapshot exceeds allowed gigabytes quota. Requested "
                 f"{size}G, quota is {limits['gigabytes']}G and {used['gigabytes']}G has been "
                 "consumed.", headers={"Retry-After": "0"})


def new_snapshot(cloud: SimCloud, vol: Record, *, name: str | None,
                 description: str | None, user_id: str | None,
                 metadata: dict[str, str] | None = None) -> Record:
    """A snapshot of ``vol``: ``creating`` now, ``available`` once its bytes are kept."""
    stamp = now_iso_micro()
    snap: Record = {
        "id": new_id(), "name": name, "description": description, "status": "creating",
        "size": vol["size"], "volume_id": vol["id"], "project_id": vol.get("project_id"),
        "user_id": user_id, "metadata": dict(metadata or {}), "created_at": stamp,
        "updated_at": stamp, "_content": None,
        "_volume_image_metadata": dict(vol.get("volume_image_metadata") or {}),
        "_bootable": bool(vol.get("bootable"))}
    cloud.state.put("snapshots", snap)
    task = asyncio.get_running_loop().create_task(_keep_bytes(cloud, snap, vol["_content"]))
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
    return snap


async def _keep_bytes(cloud: SimCloud, snap: Record, source: dict[str, Any]) -> None:
    try:
        spec, _size, _md5 = await read_into_volume(cloud, source,
                                                   snapshot_blob_name(snap["id"]))
    except OSError as exc:
        log.warning("snapshot %s: reading its volume failed: %s", snap["id"], exc)
        _settle(cloud, snap, "creating", "error")
        return
    snap["_content"] = spec
    cloud.state.touch_record(snap)
    cloud.later(cloud.profile.delays.volume_create,
                lambda: _settle(cloud, snap, "creating", "available"))


def _settle(cloud: SimCloud, snap: Record, expected: str, status: str) -> None:
    current = cloud.state.get("snapshots", snap["id"])
    if current is not None and current.get("status") == expected:
        current.update(status=status, updated_at=now_iso_micro())
        cloud.state.touch_record(current)


def delete_snapshot(cloud: SimCloud, snap: Record) -> None:
    snap.update(status="deleting", updated_at=now_iso_micro())
    cloud.state.touch_record(snap)

    def gone() -> None:
        current = cloud.state.get("snapshots", snap["id"])
        if current is None or current.get("status") != "deleting":
            return
        path = volume_blob(cloud, snapshot_blob_name(snap["id"]))
        spec = current.get("_content") or {}
        if spec.get("kind") == "file" and spec.get("path") == str(path):
            path.unlink(missing_ok=True)
        cloud.state.delete("snapshots", snap["id"])

    cloud.later(cloud.profile.delays.volume_delete, gone)


class SnapshotAPI:
    def __init__(self, cloud: SimCloud) -> None:
        self.cloud = cloud
        self.state = cloud.state

    def render(self, request: web.Request, snap: Record) -> dict[str, Any]:
        v1 = api_version(request) == "v1"
        out: dict[str, Any] = {
            "id": snap["id"], "created_at": snap.get("created_at"),
            "volume_id": snap.get("volume_id"), "status": snap.get("status"),
            "size": snap.get("size"), "metadata": dict(snap.get("metadata") or {}),
            "os-extended-snapshot-attributes:project_id": snap.get("project_id"),
            "os-extended-snapshot-attributes:progress":
                "100%" if snap.get("status") == "available" else "0%"}
        if v1:
            out.update(display_name=snap.get("name"),
                       display_description=snap.get("description"))
        else:
            out.update(name=snap.get("name"), description=snap.get("description"))
        if self.cloud.profile.cinder_max_microversion is not None:
            out["updated_at"] = snap.get("updated_at")
        if mv_at_least(request, "3.14"):
            out["group_snapshot_id"] = None
        if mv_at_least(request, "3.41"):
            out["user_id"] = snap.get("user_id")
        if mv_at_least(request, "3.65"):
            out["consumes_quota"] = True
        return out

    def _get(self, request: web.Request, ctx: AuthContext) -> Record:
        sid = request.match_info["snapshot_id"]
        snap = self.state.get("snapshots", sid)
        if snap is None or not (ctx.is_admin or snap.get("project_id") == ctx.project_id):
            raise SimHTTPError(404, f"Snapshot {sid} could not be found.")
        return snap

    async def list_snapshots(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        q = request.query
        everyone = ctx.is_admin and bool_param(q.get("all_tenants", "0"))
        items = (list(self.state.values("snapshots")) if everyone
                 else self.state.where("snapshots", "project_id", ctx.project_id))
        for key in ("volume_id", "status"):
            if key in q:
                items = [s for s in items if s.get(key) == q[key]]
        name_key = "display_name" if api_version(request) == "v1" else "name"
        if name_key in q:
            items = [s for s in items if s.get("name") == q[name_key]]
        items.sort(key=lambda s: (s.get("created_at") or "", s["id"]), reverse=True)
        chunk, marker = page(items, request, default_limit=1000)
        body: dict[str, Any] = {"snapshots": [self.render(request, s) for s in chunk]}
        if marker is not None:
            body["snapshots_links"] = [{"rel": "next", "href": next_href(request, marker)}]
        return json_response(body)

    async def show(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        return json_response({"snapshot": self.render(request, self._get(request, ctx))})

    async def create(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        body = require(await read_json(request), "snapshot")
        vid = str(body.get("volume_id") or "")
        vol = self.state.get("volumes", vid)
        if vol is None or not (ctx.is_admin or vol.get("project_id") == ctx.project_id):
            raise SimHTTPError(404, f"Volume {vid} could not be found.")
        try:
            force = bool_param(body.get("force", False))
        except SimHTTPError as exc:
            raise SimHTTPError(400, f"Invalid value '{body.get('force')}' for force.") from exc
        allowed = ("available", "in-use") if force else ("available",)
        if vol.get("status") not in allowed:
            raise SimHTTPError(400, f"Invalid volume: Volume {vid} status must be available, "
                                    f"but current status is: {vol.get('status')}.")
        v1 = api_version(request) == "v1"
        name = body.get("display_name" if v1 else "name", body.get("display_name"))
        description = body.get("display_description" if v1 else "description",
                               body.get("display_description"))
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise SimHTTPError(400, "Invalid input received: metadata must be a dict")
        check_snapshot_quota(self.cloud, str(vol.get("project_id")), int(vol["size"]))
        snap = new_snapshot(self.cloud, vol, name=name, description=description,
                            user_id=ctx.user_id,
                            metadata={str(k): str(v) for k, v in metadata.items()})
        return json_response({"snapshot": self.render(request, snap)},
                             status=200 if v1 else 202)

    async def update(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        snap = self._get(request, ctx)
        body = require(await read_json(request), "snapshot")
        for wire, key in (("name", "name"), ("display_name", "name"),
                          ("description", "description"),
                          ("display_description", "description")):
            if wire in body:
                snap[key] = body[wire]
        snap["updated_at"] = now_iso_micro()
        self.state.touch_record(snap)
        return json_response({"snapshot": self.render(request, snap)})

    async def delete(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        snap = self._get(request, ctx)
        if snap.get("status") not in ("available", "error"):
            raise SimHTTPError(400, "Invalid snapshot: Volume Snapshot status must be "
                                    "available or error and must not be part of a group.")
        delete_snapshot(self.cloud, snap)
        return web.Response(status=202)


def add_snapshot_routes(router: web.UrlDispatcher, base: str, api: SnapshotAPI,
                        wrap: Any) -> None:
    router.add_get(f"{base}/snapshots", wrap(api.list_snapshots))
    router.add_get(f"{base}/snapshots/detail", wrap(api.list_snapshots))
    router.add_post(f"{base}/snapshots", wrap(api.create))
    router.add_get(f"{base}/snapshots/{{snapshot_id}}", wrap(api.show))
    router.add_put(f"{base}/snapshots/{{snapshot_id}}", wrap(api.update))
    router.add_delete(f"{base}/snapshots/{{snapshot_id}}", wrap(api.delete))
