"""Cinder volume actions (``POST /volumes/{id}/action``) and the helpers every volume route
uses: lookup with Cinder's visibility, status changes, background work.

The actions are the ones a migration needs: upload to an image (with the volume's real bytes),
bootable flag, extend, reset status, attach/detach (for ``in-use``), image metadata, force
delete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from migrator.sim import images
from migrator.sim.cinder_common import (
    api_version,
    bool_param,
    check_url_project,
    check_volume_quota,
    find_type,
    mv_at_least,
)
from migrator.sim.cloud import SimCloud
from migrator.sim.http import AuthContext, SimHTTPError, json_response, read_json
from migrator.sim.state import Record, new_id, now_iso, now_iso_micro
from migrator.sim.volume_bytes import forget_volume_bytes, write_into_image

log = logging.getLogger(__name__)

# Image keys Cinder keeps as columns, not as properties (glance_core_properties' default).
GLANCE_CORE_PROPERTIES = {"checksum", "container_format", "disk_format", "image_name",
                          "image_id", "min_disk", "min_ram", "name", "size"}
DISK_FORMATS = ("raw", "vmdk", "vdi", "qcow2", "vhd", "vhdx", "ploop")
CONTAINER_FORMATS = ("bare", "ovf", "ova", "docker", "compressed")


class VolumeCore:
    """Lookups and status changes shared by the volume routes."""

    def __init__(self, cloud: SimCloud) -> None:
        self.cloud = cloud
        self.state = cloud.state
        self.tasks: set[asyncio.Task[None]] = set()


    def _get(self, request: web.Request, ctx: AuthContext) -> Record:
        vid = request.match_info["volume_id"]
        vol = self.state.get("volumes", vid)
        if vol is None or not (ctx.is_admin or vol.get("project_id") == ctx.project_id):
            raise SimHTTPError(404, f"Volume {vid} could not be found.")
        return vol

    def _touch(self, vol: Record, **changes: Any) -> None:
        vol.update(changes)
        vol["updated_at"] = now_iso_micro()
        self.state.touch_record(vol)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _size(self, raw: Any) -> int:
        if isinstance(raw, bool) or raw is None:
            raise SimHTTPError(400, f"Volume size '{raw}' must be an integer and greater than 0")
        try:
            size = int(raw)
        except (TypeError, ValueError) as exc:
            raise SimHTTPError(
                400, f"Volume size '{raw}' must be an integer and greater than 0") from exc
        if size <= 0 or str(raw).strip() != str(size):
            raise SimHTTPError(400, f"Volume size '{raw}' must be an integer and greater than 0")
        return size


    def _settle(self, vol: Record, expected: str, status: str) -> None:
        """Finish a transition unless the volume went away or moved on meanwhile."""
        current = self.state.get("volumes", vol["id"])
        if current is not None and current.get("status") == expected:
            self._touch(current, status=status)


    def _begin_delete(self, vol: Record) -> None:
        self._touch(vol, status="deleting")

        def gone() -> None:
            current = self.state.get("volumes", vol["id"])
            if current is not None and current.get("status") == "deleting":
                forget_volume_bytes(self.cloud, current)
                self.state.delete("volumes", vol["id"])

        self.cloud.later(self.cloud.profile.delays.volume_delete, gone)


class VolumeActions(VolumeCore):
    # -- actions ---------------------------------------------------------------------------
    async def action(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        vol = self._get(request, ctx)
        body = await read_json(request)
        if len(body) != 1:
            raise SimHTTPError(400, "Malformed request body")
        name, params = next(iter(body.items()))
        handler = {
            "os-volume_upload_image": self._upload_image,
            "os-set_bootable": self._set_bootable,
            "os-extend": self._extend,
            "os-reset_status": self._reset_status,
            "os-attach": self._attach,
            "os-detach": self._detach,
            "os-set_image_metadata": self._set_image_metadata,
            "os-unset_image_metadata": self._unset_image_metadata,
            "os-force_delete": self._force_delete,
        }.get(name)
        if handler is None:
            raise SimHTTPError(400, f"There is no such action: {name}")
        return await handler(request, ctx, vol, params if params is not None else {})

    async def _upload_image(self, request: web.Request, ctx: AuthContext, vol: Record,
                            params: Any) -> web.Response:
        if not isinstance(params, dict) or not params.get("image_name"):
            raise SimHTTPError(400, "No image_name was specified in request.")
        modern = api_version(request) == "v3"
        visibility: str | None = None
        protected = False
        if modern:
            allowed = {"image_name", "force", "disk_format", "container_format"}
            if mv_at_least(request, "3.1"):
                allowed |= {"visibility", "protected"}
                visibility = str(params.get("visibility", "private"))
                if visibility not in ("public", "private", "shared", "community"):
                    raise SimHTTPError(400, f"Invalid input for field/attribute visibility. "
                                            f"Value: {visibility}.")
                protected = bool_param(params.get("protected", False))
            extra = sorted(set(params) - allowed)
            if extra:
                # Cinder's JSON schema for os-volume_upload_image before 3.1.
                raise SimHTTPError(400, "Invalid input for field/attribute "
                                        "os-volume_upload_image. Value: "
                                        f"{params}. Additional properties are not allowed "
                                        f"('{extra[0]}' was unexpected)")
        # Liberty reads only the four keys it knows: visibility/protected are ignored there.
        try:
            force = bool_param(params.get("force", False))
        except SimHTTPError as exc:
            raise SimHTTPError(400, f"Invalid value for 'force': '{params.get('force')}'"
                               ) from exc
        disk_format = params.get("disk_format", "raw")
        container_format = params.get("container_format", "bare")
        if modern and disk_format not in DISK_FORMATS:
            raise SimHTTPError(400, f"Invalid input for field/attribute disk_format. Value: "
                                    f"{disk_format}.")
        if modern and container_format not in CONTAINER_FORMATS:
            raise SimHTTPError(400, f"Invalid input for field/attribute container_format. "
                                    f"Value: {container_format}.")
        # The simulated cloud runs with enable_force_upload: force lets an in-use volume go.
        expected = ("available", "in-use") if force else ("available",)
        if vol.get("status") not in expected:
            raise SimHTTPError(400, f"Invalid volume: Volume {vol['id']} status must be "
                                    f"{' or '.join(expected)}")
        properties = {k: v for k, v in (vol.get("volume_image_metadata") or {}).items()
                      if k not in GLANCE_CORE_PROPERTIES}
        fields: dict[str, Any] = {"disk_format": disk_format,
                                  "container_format": container_format,
                                  "properties": properties}
        if visibility is not None:
            fields.update(visibility=visibility, protected=protected)
        image = images.new_image(self.cloud, name=str(params["image_name"]),
                                 owner=vol.get("project_id"), **fields)
        previous = vol["status"]
        self._touch(vol, status="uploading")
        self._spawn(self._upload(vol, image, previous))
        response: dict[str, Any] = {
            "id": vol["id"], "updated_at": vol["updated_at"], "status": "uploading",
            "display_description": vol.get("description"), "size": vol.get("size"),
            "volume_type": self._type_view(vol), "image_id": image["id"],
            "container_format": container_format, "disk_format": disk_format,
            "image_name": image["name"]}
        if visibility is not None:
            response.update(visibility=visibility, protected=protected)
        return json_response({"os-volume_upload_image": response}, status=202)

    def _type_view(self, vol: Record) -> dict[str, Any] | None:
        vtype = find_type(self.cloud, vol["volume_type"]) if vol.get("volume_type") else None
        if vtype is None:
            return None
        return {"id": vtype["id"], "name": vtype["name"],
                "description": vtype.get("description"), "is_public": vtype.get("is_public",
                                                                                True),
                "extra_specs": dict(vtype.get("extra_specs") or {}), "deleted": False,
                "created_at": vtype.get("created_at"), "updated_at": None,
                "deleted_at": None, "qos_specs_id": None}

    async def _upload(self, vol: Record, image: Record, previous: str) -> None:
        """Write the volume's bytes into the queued image, then free the volume."""
        await asyncio.sleep(self.cloud.profile.delays.volume_upload)
        if image.get("disk_format") is None or image.get("container_format") is None:
            # Liberty takes an explicit null format (the SDK's v2 proxy sends one when none
            # is given) and fails in the volume manager, which deletes the image and puts
            # the volume back as it was.
            log.warning("upload of volume %s: no disk or container format", vol["id"])
            if self.state.get("images", image["id"]) is not None:
                images.delete_image(self.cloud, image)
            self._settle(vol, "uploading", previous)
            return
        image["status"] = "saving"
        self.state.touch_record(image)
        try:
            spec, digest = await write_into_image(self.cloud, vol["_content"], image["id"])
        except OSError as exc:
            log.warning("upload of volume %s failed: %s", vol["id"], exc)
            image["status"] = "killed"
            self._settle(vol, "uploading", "error")
            return
        if self.state.get("images", image["id"]) is not None:
            images.set_content(self.cloud, image, spec, digest)
        self._settle(vol, "uploading", previous)

    async def _set_bootable(self, request: web.Request, ctx: AuthContext, vol: Record,
                            params: Any) -> web.Response:
        if not isinstance(params, dict) or "bootable" not in params:
            raise SimHTTPError(400, "Must specify bootable in request.")
        try:
            bootable = bool_param(params["bootable"])
        except SimHTTPError as exc:
            raise SimHTTPError(400, "Bad value for 'bootable'") from exc
        self._touch(vol, bootable=bootable)
        return web.Response(status=200)

    async def _extend(self, request: web.Request, ctx: AuthContext, vol: Record,
                      params: Any) -> web.Response:
        if not isinstance(params, dict) or "new_size" not in params:
            raise SimHTTPError(400, "Unable to parse 'new_size' value")
        new_size = self._size(params["new_size"])
        if vol.get("status") != "available":
            raise SimHTTPError(400, f"Invalid volume: Volume {vol['id']} status must be "
                                    f"'available' to extend, currently {vol.get('status')}.")
        if new_size <= int(vol["size"]):
            raise SimHTTPError(400, f"Invalid input received: New size for extend must be "
                                    f"greater than current size. (current: {vol['size']}, "
                                    f"extended: {new_size}).")
        check_volume_quota(self.cloud, vol["project_id"], new_size - int(vol["size"]),
                           vol.get("volume_type"), count=0)
        # Bytes beyond the old end read as whatever the content spec holds: nothing to copy.
        self._touch(vol, size=new_size)
        return web.Response(status=202)

    async def _reset_status(self, request: web.Request, ctx: AuthContext, vol: Record,
                            params: Any) -> web.Response:
        if not ctx.is_admin:
            raise SimHTTPError(403, 'Policy doesn\'t allow volume_extension:volume_admin_'
                                    'actions:reset_status to be performed.')
        status = params.get("status") if isinstance(params, dict) else None
        if status:
            self._touch(vol, status=str(status))
        return web.Response(status=202)

    async def _attach(self, request: web.Request, ctx: AuthContext, vol: Record,
                      params: Any) -> web.Response:
        if not isinstance(params, dict) or not (params.get("instance_uuid")
                                                or params.get("host_name")):
            raise SimHTTPError(400, "Invalid request to attach volume to an invalid target")
        if vol.get("status") not in ("available", "in-use") or (
                vol.get("attachments") and not vol.get("multiattach")):
            raise SimHTTPError(400, f"Invalid volume: Volume {vol['id']} status must be "
                                    "available or attaching")
        attachment = {"id": new_id(), "attachment_id": None, "volume_id": vol["id"],
                      "server_id": params.get("instance_uuid"),
                      "host_name": params.get("host_name"),
                      "device": params.get("mountpoint"), "attached_at": now_iso()}
        attachment["attachment_id"] = attachment["id"]
        self._touch(vol, status="in-use",
                    attachments=[*(vol.get("attachments") or []), attachment])
        return web.Response(status=202)

    async def _detach(self, request: web.Request, ctx: AuthContext, vol: Record,
                      params: Any) -> web.Response:
        wanted = params.get("attachment_id") if isinstance(params, dict) else None
        remaining = [a for a in vol.get("attachments") or []
                     if wanted and a.get("attachment_id") != wanted]
        self._touch(vol, attachments=remaining,
                    status="in-use" if remaining else "available")
        return web.Response(status=202)

    async def _set_image_metadata(self, request: web.Request, ctx: AuthContext, vol: Record,
                                  params: Any) -> web.Response:
        meta = params.get("metadata") if isinstance(params, dict) else None
        if not isinstance(meta, dict):
            raise SimHTTPError(400, "Malformed request body.")
        new = dict(vol.get("volume_image_metadata") or {})
        new.update({str(k): str(v) for k, v in meta.items()})
        self._touch(vol, volume_image_metadata=new)
        return json_response({"metadata": new})

    async def _unset_image_metadata(self, request: web.Request, ctx: AuthContext, vol: Record,
                                    params: Any) -> web.Response:
        key = params.get("key") if isinstance(params, dict) else None
        new = dict(vol.get("volume_image_metadata") or {})
        if key not in new:
            raise SimHTTPError(404, f"Glance metadata for volume {vol['id']} with key {key} "
                                    "cannot be found.")
        del new[key]
        self._touch(vol, volume_image_metadata=new)
        return web.Response(status=200)

    async def _force_delete(self, request: web.Request, ctx: AuthContext, vol: Record,
                            params: Any) -> web.Response:
        if not ctx.is_admin:
            raise SimHTTPError(403, "Policy doesn't allow volume_extension:volume_admin_"
                                    "actions:force_delete to be performed.")
        self._begin_delete(vol)
        return web.Response(status=202)


