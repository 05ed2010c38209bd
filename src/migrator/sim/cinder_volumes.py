"""Cinder volumes: list, show, create (blank, from an image, from a volume), update, delete,
metadata; the actions (upload to image and the others) are in cinder_volume_actions.py.

Internal form of a volume (the seed loader writes the same): ``id, name, description, status,
size (GiB), volume_type (type name or None), bootable (bool), encrypted, multiattach, metadata,
volume_image_metadata (dict, empty when not from an image), project_id, user_id,
availability_zone, attachments, source_volid, snapshot_id, created_at, updated_at`` and
``_content`` (the bytes, a content spec as images have). v1 renders ``name``/``description`` as
``display_name``/``display_description``.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from migrator.sim.cinder_common import (
    GIB,
    PREFIX,
    api_version,
    bool_param,
    check_url_project,
    check_volume_quota,
    default_type,
    find_type,
    image_visible,
    mv_at_least,
    type_visible,
)
from migrator.sim.cinder_snapshots import delete_snapshot
from migrator.sim.cinder_volume_actions import VolumeActions
from migrator.sim.cloud import SimCloud
from migrator.sim.http import (
    AuthContext,
    SimHTTPError,
    json_response,
    next_href,
    origin,
    page,
    read_json,
    require,
)
from migrator.sim.state import GenerationMemo, Record, new_id, now_iso_micro
from migrator.sim.volume_bytes import (
    blank_spec,
    read_into_volume,
)

log = logging.getLogger(__name__)

DELETABLE = ("available", "error", "error_restoring", "error_extending", "error_managing")
LISTINGS_KEPT = 8  # listings whose sorted selection is kept, least recently used dropped


class VolumeAPI(VolumeActions):
    """Volume list, show, create, update, delete and metadata; actions come from the base."""

    def __init__(self, cloud: SimCloud) -> None:
        super().__init__(cloud)
        # (api version, caller, filters) -> (volumes, position by id).
        self._listings: GenerationMemo[tuple[list[Record], dict[str, int]]] = GenerationMemo(
            self.state, LISTINGS_KEPT)

    # -- rendering -------------------------------------------------------------------------
    def _links(self, request: web.Request, vid: str) -> list[dict[str, str]]:
        base = origin(request)
        pid = request.match_info.get("project_id", "")
        return [{"rel": "self",
                 "href": f"{base}{PREFIX}/{api_version(request)}/{pid}/volumes/{vid}"},
                {"rel": "bookmark", "href": f"{base}{PREFIX}/{pid}/volumes/{vid}"}]

    def _attachments(self, vol: Record) -> list[dict[str, Any]]:
        out = [dict(a) for a in vol.get("attachments") or []]
        if self.cloud.profile.cinder_max_microversion is None:
            for item in out:  # Liberty's view has no attached_at yet
                item.pop("attached_at", None)
        return out

    def render(self, request: web.Request, vol: Record, ctx: AuthContext) -> dict[str, Any]:
        version = api_version(request)
        liberty = self.cloud.profile.cinder_max_microversion is None
        out: dict[str, Any] = {
            "id": vol["id"],
            "status": vol.get("status"),
            "size": vol.get("size"),
            "availability_zone": vol.get("availability_zone", "nova"),
            "created_at": vol.get("created_at"),
            "updated_at": vol.get("updated_at"),
            "attachments": self._attachments(vol),
            "volume_type": vol.get("volume_type"),
            "snapshot_id": vol.get("snapshot_id"),
            "source_volid": vol.get("source_volid"),
            "metadata": dict(vol.get("metadata") or {}),
            "bootable": str(bool(vol.get("bootable"))).lower(),
            "encrypted": bool(vol.get("encrypted")),
            "multiattach": bool(vol.get("multiattach")),
        }
        if version == "v1":
            out["display_name"] = vol.get("name")
            out["display_description"] = vol.get("description")
            del out["updated_at"]
        else:
            out["name"] = vol.get("name")
            out["description"] = vol.get("description")
            out["links"] = self._links(request, vol["id"])
            out["user_id"] = vol.get("user_id")
            out["replication_status"] = vol.get("replication_status", "disabled")
            out["consistencygroup_id"] = None
        # Liberty's policy shows the owning project to admins only; modern to project readers.
        if ctx.is_admin or not liberty:
            out["os-vol-tenant-attr:tenant_id"] = vol.get("project_id")
        if ctx.is_admin:
            out["os-vol-host-attr:host"] = vol.get("_host", "sim@lvm#lvm")
            out["os-vol-mig-status-attr:migstat"] = None
            out["os-vol-mig-status-attr:name_id"] = None
            if version != "v1":
                out["migration_status"] = None
        if vol.get("volume_image_metadata"):
            out["volume_image_metadata"] = dict(vol["volume_image_metadata"])
        if version == "v3":
            self._microversion_fields(request, vol, ctx, out)
        return out

    def _microversion_fields(self, request: web.Request, vol: Record, ctx: AuthContext,
                             out: dict[str, Any]) -> None:
        if mv_at_least(request, "3.13"):
            out["group_id"] = vol.get("group_id")
        if ctx.is_admin and mv_at_least(request, "3.21"):
            out["provider_id"] = None
        if mv_at_least(request, "3.48"):
            out["shared_targets"] = False
            out["service_uuid"] = "00000000-0000-4000-8000-5e7f1ce0000a"
        if ctx.is_admin and mv_at_least(request, "3.61"):
            out["cluster_name"] = None
        if mv_at_least(request, "3.63"):
            vtype = find_type(self.cloud, vol["volume_type"]) if vol.get("volume_type") else None
            out["volume_type_id"] = vtype["id"] if vtype else None
        if mv_at_least(request, "3.65"):
            out["consumes_quota"] = True

    def summary(self, request: web.Request, vol: Record, ctx: AuthContext) -> dict[str, Any]:
        if api_version(request) == "v1":  # v1 lists full entities even without /detail
            return self.render(request, vol, ctx)
        return {"id": vol["id"], "name": vol.get("name"), "links": self._links(request, vol["id"])}

    # -- list and show ---------------------------------------------------------------------
    def _visible(self, request: web.Request, ctx: AuthContext
                 ) -> tuple[list[Record], dict[str, int]]:
        """The volumes a listing selects, newest first, with each one's position. Kept until
        the state changes (per caller and filters, marker and limit aside): each page of a
        20,000-volume scan filtered and sorted them all again (~0.4 s of a discovery)."""
        q = request.query
        everyone = ctx.is_admin and bool_param(q.get("all_tenants", "0"))
        listing_key = (api_version(request), ctx.project_id, everyone,
                       tuple(sorted((k, v) for k, v in q.items()
                                    if k not in ("marker", "limit"))))
        found = self._listings.get(listing_key)
        if found is not None:
            return found
        items = (list(self.state.values("volumes")) if everyone
                 else self.state.where("volumes", "project_id", ctx.project_id))
        if everyone and q.get("project_id"):
            items = [v for v in items if v.get("project_id") == q["project_id"]]
        name_key = "display_name" if api_version(request) == "v1" else "name"
        if name_key in q:
            items = [v for v in items if v.get("name") == q[name_key]]
        for key in ("status", "availability_zone"):
            if key in q:
                items = [v for v in items if v.get(key) == q[key]]
        if "bootable" in q:
            want = bool_param(q["bootable"])
            items = [v for v in items if bool(v.get("bootable")) == want]
        # Newest first, as Cinder's default sort (created_at desc, id desc).
        items.sort(key=lambda v: (v.get("created_at") or "", v["id"]), reverse=True)
        position = {v["id"]: n for n, v in enumerate(items)}
        self._listings.put(listing_key, (items, position))
        return items, position

    async def list_volumes(self, request: web.Request) -> web.Response:
        return self._list(request, detail=False)

    async def list_detail(self, request: web.Request) -> web.Response:
        return self._list(request, detail=True)

    def _list(self, request: web.Request, *, detail: bool) -> web.Response:
        ctx = check_url_project(request)
        items, position = self._visible(request, ctx)
        chunk, marker = page(items, request, default_limit=1000, position=position)
        render = self.render if detail else self.summary
        body: dict[str, Any] = {"volumes": [render(request, v, ctx) for v in chunk]}
        if marker is not None:
            body["volumes_links"] = [{"rel": "next", "href": next_href(request, marker)}]
        return json_response(body)

    async def show(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        return json_response({"volume": self.render(request, self._get(request, ctx), ctx)})

    # -- create ----------------------------------------------------------------------------
    def _resolve_type(self, ctx: AuthContext, ref: Any) -> Record | None:
        if not ref:
            return default_type(self.cloud)
        vtype = find_type(self.cloud, str(ref))
        if vtype is None or not type_visible(ctx, vtype):
            raise SimHTTPError(404, f"Volume type with name {ref} could not be found.")
        return vtype

    def _snapshot_source(self, ctx: AuthContext, ref: Any) -> Record | None:
        """The snapshot a volume is created from (``snapshot_id``), available and visible."""
        if not ref:
            return None
        snap = self.state.get("snapshots", str(ref))
        if snap is None or not (ctx.is_admin or snap.get("project_id") == ctx.project_id):
            raise SimHTTPError(404, f"Snapshot {ref} could not be found.")
        if snap.get("status") != "available":
            raise SimHTTPError(400, "Invalid snapshot: Originating snapshot status must be "
                                    "one of 'available' values")
        return snap

    def _resolve_image(self, ctx: AuthContext, ref: Any, size: int) -> Record:
        image = self.state.get("images", str(ref)) or None
        if image is None or not image_visible(ctx, self.cloud, image):
            raise SimHTTPError(400, "Invalid image identifier or unable to access requested "
                                    "image.")
        if image.get("status") != "active" or not image.get("_content"):
            raise SimHTTPError(400, f"Invalid input received: Image {image['id']} is not "
                                    "active.")
        image_gib = (int(image.get("size") or 0) + GIB - 1) // GIB
        if image_gib > size:
            raise SimHTTPError(400, f"Invalid input received: Size of specified image "
                                    f"{image_gib}GB is larger than volume size {size}GB.")
        if size < int(image.get("min_disk") or 0):
            raise SimHTTPError(400, f"Invalid input received: Volume size {size}GB cannot be "
                                    f"smaller than the image minDisk size "
                                    f"{image['min_disk']}GB.")
        return image

    async def create(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        body = require(await read_json(request), "volume")
        v1 = api_version(request) == "v1"
        name = body.get("display_name" if v1 else "name")
        description = body.get("display_description" if v1 else "description")
        if not v1 and name is None and "display_name" in body:  # v2 still accepts the old key
            name = body["display_name"]
        source: Record | None = None
        if body.get("source_volid"):
            source = self.state.get("volumes", str(body["source_volid"]))
            if source is None or not (ctx.is_admin or source.get("project_id") == ctx.project_id):
                raise SimHTTPError(404, f"Volume {body['source_volid']} could not be found.")
            if source.get("status") not in ("available", "in-use"):
                raise SimHTTPError(400, f"Invalid volume: Source volume {source['id']} status "
                                        f"must be available or in-use.")
        snapshot = self._snapshot_source(ctx, body.get("snapshot_id"))
        if snapshot is not None:
            source = self.state.get("volumes", snapshot["volume_id"]) or {}
        size = self._size(body.get("size", source["size"] if source else None))
        if snapshot is not None and size < int(snapshot["size"]):
            raise SimHTTPError(400, f"Invalid input received: Volume size '{size}'GB cannot be "
                                    f"smaller than the snapshot size {snapshot['size']}GB. "
                                    "They must be >= original snapshot size.")
        if snapshot is None and source is not None and size < int(source["size"]):
            raise SimHTTPError(400, f"Invalid input received: Volume size '{size}'GB cannot be "
                                    f"smaller than original volume size  {source['size']}GB. "
                                    "They must be >= original volume size.")
        image = None
        image_ref = body.get("imageRef") or body.get("image_id")
        if image_ref:
            image = self._resolve_image(ctx, image_ref, size)
        vtype = self._resolve_type(ctx, body.get("volume_type"))
        if vtype is None and source is not None and source.get("volume_type"):
            vtype = find_type(self.cloud, source["volume_type"])
        zone = body.get("availability_zone") or "nova"
        if zone != "nova":
            raise SimHTTPError(400, f"Invalid input received: Availability zone '{zone}' is "
                                    "invalid.")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise SimHTTPError(400, "Invalid input received: metadata must be a dict")
        assert ctx.project_id is not None
        check_volume_quota(self.cloud, ctx.project_id, size, vtype["name"] if vtype else None)
        stamp = now_iso_micro()
        vid = new_id()
        vol: Record = {
            "id": vid, "name": name, "description": description, "status": "creating",
            "size": size, "volume_type": vtype["name"] if vtype else None,
            "bootable": bool(source and source.get("bootable")), "encrypted": False,
            "multiattach": bool(body.get("multiattach", False)),
            "metadata": {str(k): str(v) for k, v in metadata.items()},
            "volume_image_metadata": dict(source.get("volume_image_metadata") or {})
            if source else {},
            "project_id": ctx.project_id, "user_id": ctx.user_id, "availability_zone": zone,
            "attachments": [], "source_volid": source["id"] if source and not snapshot
            else None, "snapshot_id": snapshot["id"] if snapshot else None,
            "created_at": stamp, "updated_at": stamp,
            "_content": blank_spec(vid, size) if image is None and source is None else None,
        }
        if snapshot is not None:
            vol.update(bootable=bool(snapshot.get("_bootable")), volume_image_metadata=dict(
                snapshot.get("_volume_image_metadata") or {}))
        self.state.put("volumes", vol)
        if snapshot is not None:
            self._spawn(self._fill(vol, snapshot["_content"], None))
        elif image is not None:
            self._spawn(self._fill(vol, image["_content"], image))
        elif source is not None:
            self._spawn(self._fill(vol, source["_content"], None))
        else:
            self.cloud.later(self.cloud.profile.delays.volume_create,
                             lambda: self._settle(vol, "creating", "available"))
        status = 200 if api_version(request) == "v1" else 202
        return json_response({"volume": self.render(request, vol, ctx)}, status=status)

    def _image_metadata(self, image: Record) -> dict[str, str]:
        meta = {"image_id": image["id"], "image_name": image.get("name") or "",
                "checksum": image.get("checksum") or "",
                "container_format": image.get("container_format") or "",
                "disk_format": image.get("disk_format") or "",
                "min_disk": str(image.get("min_disk") or 0),
                "min_ram": str(image.get("min_ram") or 0),
                "size": str(image.get("size") or 0)}
        meta.update({str(k): str(v) for k, v in (image.get("properties") or {}).items()})
        if self.cloud.profile.cinder_max_microversion is not None:
            meta["signature_verified"] = "False"
        return meta

    async def _fill(self, vol: Record, source: dict[str, Any], image: Record | None) -> None:
        """Copy bytes into a new volume: ``downloading`` while an image is read, as Cinder."""
        if image is not None:
            self._touch(vol, status="downloading")
        try:
            spec, _size, md5 = await read_into_volume(self.cloud, source, vol["id"])
        except OSError as exc:
            log.warning("volume %s: reading its source failed: %s", vol["id"], exc)
            self._settle(vol, vol["status"], "error")
            return
        if self.state.get("volumes", vol["id"]) is None:
            return
        if image is not None and image.get("checksum") and md5 != image["checksum"]:
            # Cinder's image download verifies the checksum and fails the volume.
            self._touch(vol, status="error", _content=spec)
            return
        changes: dict[str, Any] = {"_content": spec}
        if image is not None:
            changes.update(bootable=True, volume_image_metadata=self._image_metadata(image))
        self._touch(vol, **changes)
        expected = vol["status"]
        self.cloud.later(self.cloud.profile.delays.volume_create,
                         lambda: self._settle(vol, expected, "available"))

    # -- update and delete -----------------------------------------------------------------
    async def update(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        vol = self._get(request, ctx)
        body = require(await read_json(request), "volume")
        v1 = api_version(request) == "v1"
        changes: dict[str, Any] = {}
        for wire, field in (("display_name", "name"), ("display_description", "description"),
                            ("name", "name"), ("description", "description")):
            if wire in body and (not v1 or wire.startswith("display_")):
                changes[field] = body[wire]
        if "metadata" in body:
            if not isinstance(body["metadata"], dict):
                raise SimHTTPError(400, "Invalid input received: metadata must be a dict")
            changes["metadata"] = {str(k): str(v) for k, v in body["metadata"].items()}
        self._touch(vol, **changes)
        return json_response({"volume": self.render(request, vol, ctx)})

    async def delete(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        vol = self._get(request, ctx)
        cascade = bool_param(request.query.get("cascade", "false"))
        snapshots = self.state.find("snapshots", volume_id=vol["id"])
        if vol.get("status") not in DELETABLE or vol.get("attachments") or (
                snapshots and not cascade):
            raise SimHTTPError(
                400, "Invalid volume: Volume status must be available or error or "
                     "error_restoring or error_extending or error_managing and must not be "
                     "migrating, attached, belong to a group, have snapshots or be "
                     "disassociated from snapshots after volume transfer.")
        for snap in snapshots:  # cascade: the snapshots go first, as Cinder deletes them
            delete_snapshot(self.cloud, snap)
        self._begin_delete(vol)
        return web.Response(status=202)

    # -- metadata --------------------------------------------------------------------------
    async def get_metadata(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        return json_response({"metadata": dict(self._get(request, ctx).get("metadata") or {})})

    async def set_metadata(self, request: web.Request) -> web.Response:
        """POST merges, PUT replaces; both answer with the whole metadata."""
        ctx = check_url_project(request)
        vol = self._get(request, ctx)
        body = await read_json(request)
        meta = body.get("metadata")
        if not isinstance(meta, dict):
            raise SimHTTPError(400, "Malformed request body")
        new = {} if request.method == "PUT" else dict(vol.get("metadata") or {})
        new.update({str(k): str(v) for k, v in meta.items()})
        self._touch(vol, metadata=new)
        return json_response({"metadata": new})

    async def get_metadata_item(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        key = request.match_info["key"]
        meta = self._get(request, ctx).get("metadata") or {}
        if key not in meta:
            raise SimHTTPError(404, "Metadata item was not found")
        return json_response({"meta": {key: meta[key]}})

    async def put_metadata_item(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        vol = self._get(request, ctx)
        key = request.match_info["key"]
        meta = (await read_json(request)).get("meta")
        if not isinstance(meta, dict) or key not in meta or len(meta) > 1:
            raise SimHTTPError(400, "Request body and URI mismatch")
        new = dict(vol.get("metadata") or {})
        new[key] = str(meta[key])
        self._touch(vol, metadata=new)
        return json_response({"meta": {key: new[key]}})

    async def delete_metadata_item(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        vol = self._get(request, ctx)
        key = request.match_info["key"]
        new = dict(vol.get("metadata") or {})
        if new.pop(key, None) is None:
            raise SimHTTPError(404, "Metadata item was not found")
        self._touch(vol, metadata=new)
        return web.Response(status=200)

def add_volume_routes(router: web.UrlDispatcher, base: str, api: VolumeAPI,
                      wrap: Any) -> None:
    """The volume routes under ``base`` (``/volume/vN/{project_id}``)."""
    router.add_get(f"{base}/volumes", wrap(api.list_volumes))
    router.add_get(f"{base}/volumes/detail", wrap(api.list_detail))
    router.add_post(f"{base}/volumes", wrap(api.create))
    router.add_get(f"{base}/volumes/{{volume_id}}", wrap(api.show))
    router.add_put(f"{base}/volumes/{{volume_id}}", wrap(api.update))
    router.add_delete(f"{base}/volumes/{{volume_id}}", wrap(api.delete))
    router.add_post(f"{base}/volumes/{{volume_id}}/action", wrap(api.action))
    meta = f"{base}/volumes/{{volume_id}}/metadata"
    router.add_get(meta, wrap(api.get_metadata))
    router.add_post(meta, wrap(api.set_metadata))
    router.add_put(meta, wrap(api.set_metadata))
    router.add_get(f"{meta}/{{key}}", wrap(api.get_metadata_item))
    router.add_put(f"{meta}/{{key}}", wrap(api.put_metadata_item))
    router.add_delete(f"{meta}/{{key}}", wrap(api.delete_metadata_item))
