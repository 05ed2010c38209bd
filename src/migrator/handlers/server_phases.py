"""The phases of a server's cutover (order and guarantees: handlers/servers.py). Each is
``phase(cut, checkpoint) -> dict`` (what to merge into the step's checkpoint) and looks for
what an earlier, killed try made before it makes anything.

Who makes what: the source is read and acted on with the source admin; the target boot image
and volumes are made with migrator's user scoped to the migrated project (they belong to
it); the target ports by the target admin (a port's MAC can only be chosen by an admin) in
that project; the target server is booted with the owner's credentials (the user migrator
created, with the password it recorded: Nova looks a ``key_name`` up among the keypairs of
the calling user), or, when the owner has no password migrator knows (``password_policy:
external``, an owner who is not migrated), by migrator's user with the owner's public key
imported under the same name for the boot and deleted after it (handlers/owner_key.py: one
such boot per key name at a time, across worker processes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from migrator.clouds.target import TargetCloudError
from migrator.config_schema import ServersConfig
from migrator.engine.handlers import StepContext, StepInterrupted
from migrator.engine.steps import StepSnapshot
from migrator.errors import StepFailedError, TargetGoneError
from migrator.handlers.base import resolve_attrs, source_id_of, spec_part, target_cloud
from migrator.handlers.data import DataServices, data_services, scoped_target, source_cloud
from migrator.handlers.owner_key import owner_api, owner_key_imported
from migrator.handlers.server_errors import ServerFailed
from migrator.spec import Lookup
from migrator.transfer.errors import TransferError
from migrator.transfer.glance_io import fresh_for_upload
from migrator.transfer.properties_rules import RuleSet
from migrator.transfer.stream import copy_image_data
from migrator.transfer.volume import run_volume_copy
from migrator.transfer.volume_api import Api
from migrator.transfer.volume_copy import (
    SOURCE_TAG_PREFIX,
    VolumeCopy,
    target_volumes,
    temp_image_name,
)

log = logging.getLogger(__name__)

SNAPSHOT_PREFIX = "migrator-snap-"
BOOT_TAG = "migrator-boot"
SOURCE_KEY = "migrator_source_id"  # target server metadata: the source server id


@dataclass
class Cutover:
    ctx: StepContext
    step: StepSnapshot
    attrs: dict[str, Any]
    lookup: Lookup
    src: Api  # the source admin
    dst: Api  # migrator's user scoped to the migrated project
    settings: ServersConfig
    services: DataServices
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    @property
    def source_id(self) -> str:
        return source_id_of(self.step)

    @property
    def project_id(self) -> str:
        return str(self.attrs["project_id"])

    @property
    def name(self) -> str:
        return str(self.attrs.get("name") or self.source_id)

    def what(self) -> str:
        return f"server {self.name} ({self.source_id})"

    @property
    def stop(self) -> threading.Event:
        return self.ctx.stop_event

    @property
    def poll(self) -> float:
        return self.services.options.poll_interval

    def save(self, data: dict[str, Any]) -> None:
        """Merge ``data`` into the checkpoint without moving the phase (a sub-step)."""
        self.ctx.checkpoint(str(self.ctx.step.phase), data)

    def admin(self) -> Any:
        return target_cloud(self.ctx)


def make_cutover(ctx: StepContext, step: StepSnapshot) -> Cutover:
    attrs = resolve_attrs(ctx, step)
    if not attrs.get("project_id"):
        raise StepFailedError(f"step {step.key!r}: no target project (spec.refs.project_id)")
    services = data_services(ctx)
    return Cutover(ctx, step, attrs, spec_part(step, "lookup"), Api(source_cloud(ctx)),
                   Api(scoped_target(ctx, str(attrs["project_id"]))),
                   ctx.services.servers or ServersConfig(), services)


def wait_for(cut: Cutover, what: str, timeout: float, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if cut.stop.is_set():
            raise StepInterrupted(cut.step.key)
        if time.monotonic() >= deadline:
            raise ServerFailed(f"{what}: still not done after {timeout:g} s")
        cut.sleep(cut.poll)


def read_server(api: Api, server_id: str) -> dict[str, Any] | None:
    found = api.request("compute", "GET", f"servers/{server_id}",
                        f"reading server {server_id}", missing_ok=True)
    server = found.get("server") if isinstance(found, dict) else None
    return server if isinstance(server, dict) else None


def fault_of(server: dict[str, Any]) -> str:
    fault = server.get("fault")
    message = fault.get("message") if isinstance(fault, dict) else None
    return str(message or "no fault message")


# -- record ----------------------------------------------------------------------------------
def record(cut: Cutover, cp: dict[str, Any]) -> dict[str, Any]:
    """The source's power state before anything is done (restored on rollback, kept on the
    target) and, with ``cutover: stop``, the start of the downtime window."""
    if cp.get("power_state"):
        return {}
    server = read_server(cut.src, cut.source_id)
    if server is None:
        raise ServerFailed(f"{cut.what()} does not exist on the source any more")
    status = str(server.get("status"))
    if status == "ERROR":
        raise ServerFailed(f"{cut.what()} is in ERROR on the source: {fault_of(server)}")
    if status not in ("ACTIVE", "SHUTOFF"):
        raise StepFailedError(f"{cut.what()} is {status} on the source: waiting for it to "
                              "settle (ACTIVE or SHUTOFF)")
    check_quota(cut)
    out: dict[str, Any] = {"power_state": status}
    if cut.settings.cutover == "stop":
        out["stopped_at"] = cut.clock()
    return out


def check_quota(cut: Cutover) -> None:
    """Refuse before the source is touched when the target project cannot hold one more
    server of the mapped flavor (instances, cores, RAM: Nova's own counts)."""
    admin = Api(cut.admin().handle)
    flavor_ref = cut.lookup.get("flavor_id") or cut.attrs["flavor"]
    found = admin.request("compute", "GET", f"flavors/{flavor_ref}",
                          f"reading flavor {flavor_ref}", missing_ok=True)
    flavor = (found or {}).get("flavor") if isinstance(found, dict) else None
    if not isinstance(flavor, dict):
        raise ServerFailed(f"{cut.what()}: flavor {cut.attrs['flavor']!r} is not on the target")
    body = admin.request("compute", "GET", f"os-quota-sets/{cut.project_id}/detail",
                         f"reading the compute quota of project {cut.project_id}") or {}
    quota = body.get("quota_set") or {}
    needs = {"instances": 1, "cores": int(flavor.get("vcpus") or 0),
             "ram": int(flavor.get("ram") or 0)}
    over = []
    for key, need in needs.items():
        entry = quota.get(key)
        if not isinstance(entry, dict):
            continue
        limit, used = int(entry.get("limit", -1)), int(entry.get("in_use", 0)) + int(
            entry.get("reserved", 0))
        if 0 <= limit < used + need:
            over.append(f"{key} {used} + {need} > {limit}")
    if over:
        raise ServerFailed(f"{cut.what()}: the target project is over its quota "
                           f"({'; '.join(over)}); the source was not touched")


def undo_refused_boot(cut: Cutover, cp: dict[str, Any]) -> None:
    """A boot the target refused for good: the ports made for it deleted, the source started
    again when it was running (its service back while the cause is fixed)."""
    tc = cut.admin()
    for port_id in cp.get("port_ids") or []:
        tc.delete_port(str(port_id))
    # Back to "copy done": a resumed step makes its ports again.
    cut.ctx.checkpoint("copy", {"port_ids": []})
    restart_source(cut, cp)


def restart_source(cut: Cutover, cp: dict[str, Any]) -> bool:
    """The source started again when it was running before the cutover (its service back
    while the cause of a failure is fixed); True when it was."""
    if cp.get("power_state") != "ACTIVE":
        return False
    server = read_server(cut.src, cut.source_id)
    if server is None or server.get("status") != "SHUTOFF":
        return False
    cut.src.request("compute", "POST", f"servers/{cut.source_id}/action",
                    f"starting {cut.what()} again", body={"os-start": None}, ok=(202, 409))
    return True


# -- stop_source -----------------------------------------------------------------------------
def ensure_stopped(cut: Cutover) -> None:
    what = f"stopping {cut.what()} on the source"

    def probe() -> dict[str, Any] | None:
        server = read_server(cut.src, cut.source_id)
        if server is None:
            raise ServerFailed(f"{cut.what()} does not exist on the source any more")
        status = str(server.get("status"))
        if status == "SHUTOFF":
            return server
        if status == "ACTIVE" and not server.get("OS-EXT-STS:task_state"):
            cut.src.request("compute", "POST", f"servers/{cut.source_id}/action", what,
                            body={"os-stop": None}, ok=(202, 409))
        elif status == "ERROR":
            raise ServerFailed(f"{cut.what()} went into ERROR on the source: {fault_of(server)}")
        return None

    wait_for(cut, what, cut.settings.stop_timeout, probe)


def stop_source(cut: Cutover, cp: dict[str, Any]) -> dict[str, Any]:
    if cut.settings.cutover == "stop":
        ensure_stopped(cut)
    return {}


# -- snapshot --------------------------------------------------------------------------------
def snapshot(cut: Cutover, cp: dict[str, Any]) -> dict[str, Any]:
    """Image-backed: the source's disk into a snapshot image (createImage), active. A
    snapshot of a killed try is adopted (active or still saving); a failed one deleted."""
    if cut.lookup.get("boot") != "image":
        return {}
    name = f"{SNAPSHOT_PREFIX}{cut.source_id}"
    what = f"snapshot image {name} of {cut.what()}"
    keep: dict[str, Any] | None = None
    for rec in sorted(cut.src.images_named(name), key=lambda r: str(r.get("created_at"))):
        if keep is None and rec.get("status") in ("active", "saving", "queued"):
            keep = rec
        else:
            cut.src.delete_image(str(rec["id"]))
    if keep is None:
        cut.src.request("compute", "POST", f"servers/{cut.source_id}/action",
                        f"createImage of {cut.what()}",
                        body={"createImage": {"name": name,
                                              "metadata": {SOURCE_KEY: cut.source_id}}},
                        ok=(202,))
        made = cut.src.images_named(name)
        if not made:
            raise TransferError(f"{what}: not listed after createImage", retryable=True)
        keep = made[0]
    image_id = str(keep["id"])

    def probe() -> dict[str, Any] | None:
        rec = cut.src.image(image_id)
        status = rec.get("status") if rec else "deleted"
        if rec is None or status in ("killed", "deleted", "pending_delete"):
            raise TransferError(f"{what} is {status}: it is made again", retryable=True)
        return rec if status == "active" else None

    rec = wait_for(cut, what, cut.settings.snapshot_timeout, probe)
    return {"snapshot_id": image_id,
            "snapshot": {"size": rec.get("size"), "checksum": rec.get("checksum")}}


# -- copy ------------------------------------------------------------------------------------
def copy(cut: Cutover, cp: dict[str, Any]) -> dict[str, Any]:
    """The bytes: the snapshot into the target boot image, the volumes through the volume
    path, under one of the run's transfer slots."""
    services = cut.services
    # The snapshot of a running server's disk may be far bigger than the image it booted
    # from (what the plan knew): judged again on the snapshot's own size.
    snapshot = (cp.get("snapshot") or {}).get("size")
    slot = services.needs_slot(cut.step.planned_bytes,
                               int(snapshot) if snapshot is not None else None)
    if slot and not services.slots.acquire(cut.stop):
        raise StepInterrupted(cut.step.key)
    began = time.monotonic()
    label = f"server {cut.name}" + (f" ({cut.step.tenant})" if cut.step.tenant else "")
    progress = services.track(cut.step.key, label, int(cut.lookup.get("size") or 0) or None)
    ok = False
    out: dict[str, Any] = {}
    moved = [0]  # bytes of the copies finished before the current one

    def advance(done: int) -> None:
        progress(moved[0] + done)

    try:
        if cut.lookup.get("boot") == "image":
            out.update(_copy_boot_image(cut, cp, advance))
            moved[0] += int((cp.get("snapshot") or {}).get("size") or 0)
        volumes = dict(cp.get("volumes") or {})
        options = replace(services.options, allow_force_upload=True)
        for index, vol in enumerate(cut.lookup.get("volumes") or []):
            vid = str(vol["source_id"])
            done = dict(volumes.get(vid) or {})
            if done.get("verified"):
                continue
            attrs = dict(vol.get("attrs") or {})
            extra = cut.attrs.get(f"volume{index}") or {}
            source = {k: v for k, v in attrs.items() if k != "volume_type"}
            source["id"] = vid
            vc = VolumeCopy(cut.src.conn, cut.dst.conn, source,
                            volume_type=attrs.get("volume_type"), options=options,
                            rules=RuleSet(), image_ids=dict(extra.get("image_ids") or {}),
                            limiter=services.limiter, progress=advance, stop=cut.stop)

            def save(checkpoint: dict[str, Any], vid: str = vid) -> None:
                volumes[vid] = checkpoint
                cut.save({"volumes": dict(volumes)})

            if not done:
                # Already attached to this server's target (a state database lost after
                # the boot): adopted, not copied again.
                attached = [v for v in target_volumes(vc) if v.get("status") == "in-use"]
                if attached:
                    volumes[vid] = {"phase": "verify", "verified": True,
                                    "target_volume_id": attached[0]["id"]}
                    continue
            volumes[vid] = run_volume_copy(vc, done, save=save)
            moved[0] += int((volumes[vid].get("copied") or {}).get("bytes") or 0)
        out["volumes"] = volumes
        out["copy_seconds"] = round(float(cp.get("copy_seconds") or 0.0)
                                    + time.monotonic() - began, 3)
        ok = True
        return out
    finally:
        if slot:
            services.slots.release()
        services.done(cut.step.key, ok)


def _boot_images(cut: Cutover) -> list[dict[str, Any]]:
    tag = f"{SOURCE_TAG_PREFIX}{cut.source_id}"
    return list(cut.dst.pages("image", "images", "images", f"listing images tagged {tag}",
                              {"tag": tag}))


def _copy_boot_image(cut: Cutover, cp: dict[str, Any],
                     progress: Callable[[int], None]) -> dict[str, Any]:
    snap_id = str(cp.get("snapshot_id") or "")
    expected = cp.get("snapshot") or {}
    if not snap_id:
        raise StepFailedError(f"{cut.what()}: no snapshot in the checkpoint")
    image = dict(cut.lookup.get("image") or {})
    complete: dict[str, Any] | None = None
    queued: dict[str, Any] | None = None
    for rec in _boot_images(cut):
        if complete is None and rec.get("status") == "active" and rec.get(
                "checksum") == expected.get("checksum") and rec.get("size") == expected.get(
                "size"):
            complete = rec
        elif queued is None and fresh_for_upload(rec):
            queued = rec
        else:
            cut.dst.delete_image(str(rec["id"]))
    if complete is not None:
        if queued is not None:
            cut.dst.delete_image(str(queued["id"]))
        return {"target_image_id": complete["id"]}
    if queued is None:
        body = {**{str(k): str(v) for k, v in (image.get("properties") or {}).items()},
                "name": f"{cut.name}-boot", "disk_format": image.get("disk_format") or "raw",
                "container_format": "bare", "visibility": "private",
                "tags": [BOOT_TAG, f"{SOURCE_TAG_PREFIX}{cut.source_id}"]}
        queued = cut.dst.create_image(body)
    target_id = str(queued["id"])
    options = cut.services.options
    try:
        copy_image_data(cut.src.conn, snap_id, cut.dst.conn, target_id,
                        expected_md5=expected.get("checksum"),
                        expected_size=expected.get("size"), chunk_size=options.chunk_size,
                        limiter=cut.services.limiter, progress=progress, stop=cut.stop,
                        timeout=options.request_timeout)
    except TransferError:
        # A target image that received part of an upload is never uploaded into again.
        with suppress(TransferError):
            cut.dst.delete_image(target_id)
        raise
    return {"target_image_id": target_id}


# -- ports -----------------------------------------------------------------------------------
def ports(cut: Cutover, cp: dict[str, Any]) -> dict[str, Any]:
    tc = cut.admin()
    out: list[str] = []
    for index, port in enumerate(cut.lookup.get("ports") or []):
        source_port = str(port["source_id"])
        network_id = cut.attrs.get(str(port["network"]))
        marker = {"project_id": cut.project_id, "network_id": network_id}
        found = tc.find_port_by_source(source_port, marker)
        if found is None:
            fixed = []
            for entry in port.get("fixed_ips") or []:
                ip: dict[str, Any] = {"subnet_id": cut.attrs.get(str(entry["subnet"]))}
                if entry.get("explicit") and entry.get("ipv6"):
                    ip["ip_address"] = entry["ipv6"]
                fixed.append(ip)
                if entry.get("ipv4_subnet"):
                    fixed.append({"subnet_id": cut.attrs.get(str(entry["ipv4_subnet"])),
                                  "ip_address": entry.get("legacy")})
            body: dict[str, Any] = {
                "name": f"{cut.name}-port{index}", "network_id": network_id,
                "project_id": cut.project_id, "fixed_ips": fixed,
                "security_groups": list(cut.attrs.get(str(port["groups"])) or [])}
            if port.get("mac_address"):
                body["mac_address"] = port["mac_address"]
            try:
                found = tc.create_port(source_port, body)
            except TargetCloudError as exc:
                if exc.transient:  # it may have happened: the retry looks it up first
                    raise TransferError(str(exc), retryable=True) from exc
                raise ServerFailed(f"{cut.what()}: its port {index} cannot be made on the "
                                   f"target: {exc}") from exc
        out.append(str(found["id"]))
    return {"port_ids": out}


# -- boot ------------------------------------------------------------------------------------
def _target_servers(cut: Cutover) -> list[dict[str, Any]]:
    admin = Api(cut.admin().handle)
    return [s for s in admin.pages("compute", "servers/detail", "servers",
                                   f"listing servers of {cut.what()}",
                                   {"all_tenants": 1, "project_id": cut.project_id})
            if (s.get("metadata") or {}).get(SOURCE_KEY) == cut.source_id
            and s.get("status") != "DELETED"]


def boot(cut: Cutover, cp: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if cut.settings.cutover == "snapshot_running" and not cp.get("stopped_at"):
        out["stopped_at"] = cut.clock()
        cut.save({"stopped_at": out["stopped_at"]})
    ensure_stopped(cut)
    for server in _target_servers(cut):
        if server.get("status") == "ERROR":
            # A boot of an earlier try that failed: removed before booting again (its
            # ports were made by us and are only detached by Nova).
            log.info("%s: deleting target server %s in ERROR", cut.what(), server["id"])
            Api(cut.admin().handle).request("compute", "DELETE", f"servers/{server['id']}",
                                            f"deleting server {server['id']}",
                                            missing_ok=True)
            _wait_gone(cut, str(server["id"]))
            continue
        return {**out, "target_server_id": str(server["id"])}
    body: dict[str, Any] = {
        "name": cut.name, "flavorRef": cut.lookup.get("flavor_id") or cut.attrs["flavor"],
        "networks": [{"port": pid} for pid in cp.get("port_ids") or []],
        "metadata": {**(cut.attrs.get("metadata") or {}), SOURCE_KEY: cut.source_id},
    }
    if cut.attrs.get("key_name"):
        body["key_name"] = cut.attrs["key_name"]
    mappings: list[dict[str, Any]] = []
    if cut.lookup.get("boot") == "image":
        body["imageRef"] = cp["target_image_id"]
    volumes = cp.get("volumes") or {}
    for vol in cut.lookup.get("volumes") or []:
        target_volume = (volumes.get(str(vol["source_id"])) or {}).get("target_volume_id")
        if not target_volume:
            raise StepFailedError(f"{cut.what()}: volume {vol['source_id']} was not copied")
        mapping = {"source_type": "volume", "destination_type": "volume",
                   "uuid": target_volume, "delete_on_termination": False}
        if vol.get("boot"):
            mapping["boot_index"] = 0
        mappings.append(mapping)
    if mappings:
        body["block_device_mapping_v2"] = mappings
    return {**out, **_boot(cut, cp, body)}


def _boot(cut: Cutover, cp: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The boot as the owner, else as migrator's user with the owner's key imported
    (handlers/owner_key.py)."""
    owner = owner_api(cut)
    if owner is not None:
        return _post_server(cut, cp, owner, body)
    with owner_key_imported(cut) as ready:
        ready()
        return _post_server(cut, cp, cut.dst, body)


def _post_server(cut: Cutover, cp: dict[str, Any], api: Api, body: dict[str, Any]
                 ) -> dict[str, Any]:
    try:
        answer = api.request("compute", "POST", "servers", f"booting {cut.what()} on the target",
                             body={"server": body}, ok=(202,))
    except TransferError as exc:
        if exc.status_code in (403, 413) or "quota" in str(exc).lower():
            undo_refused_boot(cut, cp)
            raise ServerFailed(f"{cut.what()}: the target project refuses another server "
                               f"(quota): {exc}; its ports were removed and the source "
                               "restored") from exc
        if not exc.retryable:
            undo_refused_boot(cut, cp)
            raise ServerFailed(f"{cut.what()}: the target refuses the boot: {exc}") from exc
        raise
    created = (answer or {}).get("server") or {}
    if not created.get("id"):
        raise TransferError(f"booting {cut.what()}: no server in the answer", retryable=True)
    return {"target_server_id": str(created["id"])}


def _wait_gone(cut: Cutover, server_id: str) -> None:
    admin = Api(cut.admin().handle)

    def probe() -> bool | None:
        return True if read_server(admin, server_id) is None else None

    wait_for(cut, f"deleting target server {server_id}", cut.settings.active_timeout, probe)


# -- wait_active -----------------------------------------------------------------------------
def wait_active(cut: Cutover, cp: dict[str, Any]) -> dict[str, Any]:
    server_id = str(cp["target_server_id"])
    admin = Api(cut.admin().handle)
    what = f"target server {server_id} of {cut.what()}"

    def probe() -> dict[str, Any] | None:
        server = read_server(admin, server_id)
        if server is None:
            raise TargetGoneError(f"{what} is gone")
        status = server.get("status")
        if status == "ERROR":
            restarted = restart_source(cut, cp)
            raise ServerFailed(f"{what} is in ERROR on the target: {fault_of(server)}"
                               + ("; the source was started again" if restarted else ""))
        return server if status in ("ACTIVE", "SHUTOFF") else None

    server = wait_for(cut, f"{what} until ACTIVE", cut.settings.active_timeout, probe)
    if cp.get("power_state") == "ACTIVE" and server.get("status") == "SHUTOFF":
        # Adopted stopped (a target server of an earlier try stopped since): started.
        admin.request("compute", "POST", f"servers/{server_id}/action", f"starting {what}",
                      body={"os-start": None}, ok=(202, 409))

        def started() -> dict[str, Any] | None:
            now = read_server(admin, server_id)
            if now is None:
                raise TargetGoneError(f"{what} is gone")
            return now if now.get("status") == "ACTIVE" else None

        server = wait_for(cut, f"{what} until ACTIVE", cut.settings.active_timeout, started)
    out: dict[str, Any] = {"active_at": cp.get("active_at") or cut.clock()}
    if cp.get("power_state") == "SHUTOFF" and server.get("status") != "SHUTOFF":
        def stopped() -> dict[str, Any] | None:
            now = read_server(admin, server_id)
            if now is None:
                raise TargetGoneError(f"{what} is gone")
            if now.get("status") == "SHUTOFF":
                return now
            if now.get("status") == "ACTIVE" and not now.get("OS-EXT-STS:task_state"):
                admin.request("compute", "POST", f"servers/{server_id}/action",
                              f"stopping {what}", body={"os-stop": None}, ok=(202, 409))
            return None

        wait_for(cut, f"{what} until SHUTOFF", cut.settings.stop_timeout, stopped)
    return out


# -- verify_target ---------------------------------------------------------------------------
def verify_target(cut: Cutover, cp: dict[str, Any]) -> dict[str, Any]:
    server_id = str(cp["target_server_id"])
    admin = Api(cut.admin().handle)
    server = read_server(admin, server_id)
    if server is None:
        raise TargetGoneError(f"target server {server_id} of {cut.what()} is gone")
    problems: list[str] = []
    flavor_id = cut.lookup.get("flavor_id")
    have_flavor = server.get("flavor") or {}
    if flavor_id and have_flavor.get("id") and have_flavor.get("id") != flavor_id:
        problems.append(f"flavor {have_flavor.get('id')}, planned {flavor_id}")
    if have_flavor.get("original_name") and have_flavor["original_name"] != cut.attrs["flavor"]:
        problems.append(f"flavor {have_flavor['original_name']}, planned {cut.attrs['flavor']}")
    if (server.get("key_name") or None) != (cut.attrs.get("key_name") or None):
        problems.append(f"key {server.get('key_name')!r}, planned {cut.attrs.get('key_name')!r}")
    meta = server.get("metadata") or {}
    for key, value in (cut.attrs.get("metadata") or {}).items():
        if meta.get(key) != value:
            problems.append(f"metadata {key}={meta.get(key)!r}, the source has {value!r}")
    tc = cut.admin()
    for index, (port_id, port) in enumerate(zip(cp.get("port_ids") or [],
                                                cut.lookup.get("ports") or [], strict=False)):
        rec = tc.get_port(str(port_id))
        if rec.get("device_id") != server_id:
            problems.append(f"port {index} ({port_id}) is not the server's")
        have = {ip.get("ip_address") for ip in rec.get("fixed_ips") or []}
        for entry in port.get("fixed_ips") or []:
            if entry.get("ipv6") and entry["ipv6"] not in have:
                problems.append(f"port {index} has {sorted(have)}, planned {entry['ipv6']}")
        if port.get("mac_address") and rec.get("mac_address") != port["mac_address"]:
            problems.append(f"port {index} MAC {rec.get('mac_address')}, the source's "
                            f"{port['mac_address']}")
    volumes = cp.get("volumes") or {}
    want = [(volumes.get(str(v["source_id"])) or {}).get("target_volume_id")
            for v in cut.lookup.get("volumes") or []]
    attached = admin.request("compute", "GET", f"servers/{server_id}/os-volume_attachments",
                             f"listing volume attachments of server {server_id}") or {}
    rows = sorted(attached.get("volumeAttachments") or [],
                  key=lambda a: (len(str(a.get("device"))), str(a.get("device"))))
    have_volumes = [a.get("volumeId") for a in rows]
    if have_volumes != want:
        problems.append(f"volumes attached {have_volumes}, planned in order {want}")
    if cut.lookup.get("boot") == "image":
        image = cut.dst.image(str(cp.get("target_image_id")))
        if image is None:
            problems.append("its boot image is gone")
        else:
            for key, value in ((cut.lookup.get("image") or {}).get("properties") or {}).items():
                if str(image.get(key)) != str(value):
                    problems.append(f"boot image {key}={image.get(key)!r}, planned {value!r}")
    if problems:
        raise ServerFailed(f"verification of target server {server_id} of {cut.what()}: "
                           + "; ".join(problems))
    verified_at = cut.clock()
    stopped_at = float(cp.get("stopped_at") or verified_at)
    downtime = max(0.0, verified_at - stopped_at)
    _record_downtime(cut, cp, server_id, stopped_at, float(cp.get("active_at") or verified_at),
                     verified_at, downtime)
    return {"verified": True, "verified_at": verified_at, "downtime_seconds": round(downtime, 3)}


def copied_bytes(cp: dict[str, Any]) -> int:
    """The bytes the cutover copied: the snapshot's and each volume's temporary image's."""
    total = int((cp.get("snapshot") or {}).get("size") or 0) if cp.get("snapshot_id") else 0
    for vol in (cp.get("volumes") or {}).values():
        total += int((vol.get("copied") or {}).get("bytes") or 0)
    return total


def _record_downtime(cut: Cutover, cp: dict[str, Any], server_id: str, stopped_at: float,
                     active_at: float, verified_at: float, downtime: float) -> None:
    from migrator.engine.leases import fenced_transaction
    from migrator.store.downtimes import record_downtime

    step = cut.ctx.step
    copy_seconds = float(cp.get("copy_seconds") or 0.0) if cut.settings.cutover == "stop" \
        else 0.0
    row = {"run_id": step.run_id, "step_id": step.id, "tenant": step.tenant,
           "source_id": cut.source_id, "target_id": server_id, "name": cut.name,
           "power_state": str(cp.get("power_state")),
           "stopped_at": datetime.fromtimestamp(stopped_at, UTC),
           "active_at": datetime.fromtimestamp(active_at, UTC),
           "verified_at": datetime.fromtimestamp(verified_at, UTC),
           "downtime_seconds": downtime, "copy_seconds": copy_seconds,
           "bytes": copied_bytes(cp)}
    # Only while this worker still holds the step (another that took it over writes its own).
    with fenced_transaction(cut.ctx.factory, step) as conn:
        record_downtime(conn, row)


# -- cleanup ---------------------------------------------------------------------------------
def cleanup(cut: Cutover, cp: dict[str, Any]) -> dict[str, Any]:
    """The source snapshot image and every temporary image of the volumes, on both sides.
    The target boot image stays: the server's image."""
    names = [f"{SNAPSHOT_PREFIX}{cut.source_id}"]
    names += [temp_image_name(str(v["source_id"])) for v in cut.lookup.get("volumes") or []]
    for api in (cut.src, cut.dst):
        for name in names:
            for rec in api.images_named(name):
                api.delete_image(str(rec["id"]))
    return {"cleaned": True}


PHASES: tuple[tuple[str, Callable[[Cutover, dict[str, Any]], dict[str, Any]]], ...] = (
    ("record", record),
    ("stop_source", stop_source),
    ("snapshot", snapshot),
    ("copy", copy),
    ("ports", ports),
    ("boot", boot),
    ("wait_active", wait_active),
    ("verify_target", verify_target),
    ("cleanup", cleanup),
)
