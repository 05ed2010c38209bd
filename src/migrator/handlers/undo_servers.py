"""Undoing a server step (the ``undo_server`` steps of a rollback, handlers/undo.py).

On the target, in this order (each only when it carries the mark the cutover gave it, so a
thing someone else made or re-purposed is never touched):

1. the target server (metadata ``migrator_source_id`` = the source server's id): deleted,
   and waited for until Nova has removed it (bounded), which releases its ports and detaches
   its volumes;
2. its ports (the checkpoint's ``port_ids``, and those tagged with one of the server's
   source port ids in its project, made by a try killed before its checkpoint): deleted;
3. its boot image (tagged ``migrator-boot`` and with the source server's id) and the
   temporary images of its volume copies (tagged temporary and with a source volume's id);
4. its volumes (the checkpoint's ``volumes.<source id>.target_volume_id`` whose metadata
   carries that source volume id; a copy whose checkpoint has no volume yet: the one volume
   of its project carrying the mark): waited for until detached (bounded), deleted, waited
   for until gone.

On the source (the ``restore_source`` phase, :func:`restore_server_source`): the snapshot
image and the temporary volume images the cutover made (their names are fixed by the source
ids) are deleted, and a server that was ACTIVE before the cutover (the checkpoint's
``power_state``) and is SHUTOFF now is started again and waited for until ACTIVE (bounded).
Nothing else of the source is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from migrator.clouds.target import TargetCloud, migrated_source_id
from migrator.errors import StepFailedError
from migrator.handlers.server_phases import BOOT_TAG, SNAPSHOT_PREFIX, read_server
from migrator.handlers.server_phases import SOURCE_KEY as SERVER_MARK
from migrator.spec import UndoSpec
from migrator.transfer.volume_api import Api
from migrator.transfer.volume_copy import SOURCE_KEY, SOURCE_TAG_PREFIX, TEMP_TAG, temp_image_name

# How long the source server may take to be ACTIVE again once started.
SOURCE_START_TIMEOUT = 600.0
# Cinder refuses to delete a volume in these states (a server still holds it, or a create or
# a transfer is under way).
HELD_VOLUME_STATES = frozenset({"in-use", "creating", "attaching", "detaching", "reserved",
                                "downloading", "uploading", "extending", "backing-up",
                                "restoring-backup"})


def server_mark_problem(server: Mapping[str, Any], source_id: str) -> str | None:
    mark = (server.get("metadata") or {}).get(SERVER_MARK)
    if mark != source_id:
        return f"its metadata {SERVER_MARK} is {mark!r}, not {source_id!r}"
    return None


def undo_server(tc: TargetCloud, spec: UndoSpec) -> dict[str, Any]:
    """Everything the cutover made on the target (module docstring); what was removed."""
    api = Api(tc.handle)
    source_id = str(spec.get("source_id"))
    target_id = str(spec.get("target_id") or "-")
    cp = dict(spec.get("original_checkpoint") or {})
    out: dict[str, Any] = {"server_removed": None}
    if target_id != "-":
        server = read_server(api, target_id)
        if server is not None:
            problem = server_mark_problem(server, source_id)
            if problem:
                # Not the server the run booted: it and what it uses are left alone.
                return {"outcome": "left", "reason": problem}
            api.request("compute", "DELETE", f"servers/{target_id}",
                        f"deleting server {target_id}", missing_ok=True)
            tc.wait_until(f"server {target_id} to be deleted",
                          lambda: read_server(api, target_id) is None, interval=0.2)
            out["server_removed"] = target_id
    out["ports_removed"] = _remove_ports(tc, spec, cp)
    out["images_removed"] = _remove_images(api, spec)
    out["volumes_removed"] = _remove_volumes(tc, api, spec, cp)
    removed = out["server_removed"] or any(out[k] for k in (
        "ports_removed", "images_removed", "volumes_removed"))
    out["outcome"] = "removed" if removed else "already gone"
    return out


def _remove_ports(tc: TargetCloud, spec: UndoSpec, cp: Mapping[str, Any]) -> list[str]:
    marks = set(spec.get("source_ports") or [])
    project = spec.get("project_id")
    ids = [str(p) for p in cp.get("port_ids") or []]
    if project:
        for source_port in sorted(marks):
            found = tc.request("network", "GET", "/ports", op="list ports",
                               what=f"tagged {SOURCE_TAG_PREFIX}{source_port}",
                               params={"tags": f"{SOURCE_TAG_PREFIX}{source_port}",
                                       "project_id": project})
            ids += [str(p["id"]) for p in found.get("ports") or []]
    removed = []
    for port_id in dict.fromkeys(ids):
        port = tc.request("network", "GET", f"/ports/{port_id}", op="read port",
                          what=port_id, missing_ok=True)
        record = (port or {}).get("port") if isinstance(port, dict) else None
        if not isinstance(record, dict) or migrated_source_id(record) not in marks:
            continue
        tc.request("network", "DELETE", f"/ports/{port_id}", op="delete port", what=port_id,
                   missing_ok=True)
        removed.append(port_id)
    return removed


def _remove_images(api: Api, spec: UndoSpec) -> list[str]:
    """The boot image (and any earlier try's) and the volume copies' temporary images."""
    removed = []
    wanted = [(str(spec.get("source_id")), BOOT_TAG)]
    wanted += [(str(v), TEMP_TAG) for v in spec.get("source_volumes") or []]
    for source_id, tag in wanted:
        mark = f"{SOURCE_TAG_PREFIX}{source_id}"
        for image in api.pages("image", "images", "images", f"listing images tagged {mark}",
                               {"tag": mark, "visibility": "all"}):
            tags = image.get("tags") or []
            if tag in tags and mark in tags:
                api.delete_image(str(image["id"]))
                removed.append(str(image["id"]))
    return removed


def _remove_volumes(tc: TargetCloud, api: Api, spec: UndoSpec, cp: Mapping[str, Any]
                    ) -> list[str]:
    done = dict(cp.get("volumes") or {})
    project = spec.get("project_id")
    removed = []
    for source_volume in spec.get("source_volumes") or []:
        vid = str(source_volume)
        known = (done.get(vid) or {}).get("target_volume_id")
        if known:
            candidates = [str(known)]
        elif project and vid in done:
            # A copy begun (in the checkpoint) that had not recorded its volume yet.
            candidates = [str(v["id"]) for v in api.volumes_with_metadata(SOURCE_KEY, vid)
                          if v.get("os-vol-tenant-attr:tenant_id", project) == project]
        else:
            candidates = []
        for volume_id in candidates:
            record = api.volume(volume_id)
            if record is None or record.get("status") == "deleting":
                continue
            if (record.get("metadata") or {}).get(SOURCE_KEY) != vid:
                continue
            tc.wait_until(f"volume {volume_id} to be released before its deletion",
                          partial(_volume_free, api, volume_id), interval=0.2)
            api.delete_volume(volume_id)
            tc.wait_until(f"volume {volume_id} to be deleted",
                          partial(_volume_gone, api, volume_id), interval=0.2)
            removed.append(volume_id)
    return removed


def _volume_gone(api: Api, volume_id: str) -> bool:
    return api.volume(volume_id) is None


def _volume_free(api: Api, volume_id: str) -> bool:
    record = api.volume(volume_id)
    return record is None or record.get("status") not in HELD_VOLUME_STATES


def restore_server_source(source: Any, spec: UndoSpec, *,
                          sleep: Callable[[float], None] = time.sleep,
                          timeout: float = SOURCE_START_TIMEOUT) -> Mapping[str, Any]:
    """The source as it was before the cutover (module docstring); what was done."""
    api = Api(source)
    source_id = str(spec.get("source_id"))
    cp = spec.get("original_checkpoint") or {}
    names = [f"{SNAPSHOT_PREFIX}{source_id}"]
    names += [temp_image_name(str(v)) for v in spec.get("source_volumes") or []]
    images = []
    for name in names:
        for image in api.images_named(name):
            api.delete_image(str(image["id"]))
            images.append(str(image["id"]))
    out: dict[str, Any] = {"source_images_removed": images, "started": False}
    if cp.get("power_state") != "ACTIVE":
        return out
    what = f"source server {source_id}"
    deadline = time.monotonic() + timeout
    while True:
        server = read_server(api, source_id)
        if server is None:
            raise StepFailedError(f"{what} is gone: its power state cannot be restored")
        status, task = server.get("status"), server.get("OS-EXT-STS:task_state")
        if status == "ACTIVE" and not task:
            return out
        if status == "SHUTOFF" and not task:
            api.request("compute", "POST", f"servers/{source_id}/action",
                        f"starting {what} again", body={"os-start": None}, ok=(202, 409))
            out["started"] = True
        elif status == "ERROR":
            raise StepFailedError(f"{what} is in ERROR: it cannot be started again")
        if time.monotonic() >= deadline:
            raise StepFailedError(f"{what} is still {status} after {timeout:g} s: it was "
                                  "ACTIVE before the cutover")
        sleep(0.2)
