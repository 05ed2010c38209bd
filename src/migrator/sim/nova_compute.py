"""The compute side of the simulated Nova: where a server runs and what happens to it after the
API has answered (build, power, snapshot, delete), with what it asks of Neutron (ports) and
Cinder (volumes, attachments, snapshots) on the way.

Everything after the API's answer runs on the loop, as Nova's compute service runs after the
API's 202: the server goes BUILD -> ACTIVE after ``delays.server_build`` (0: at the next turn
of the loop), a stop or start takes ``delays.server_power``, a snapshot upload
``delays.server_snapshot``. What cannot be scheduled or built ends in ERROR with the ``fault``
Nova records (code, message, details, created).

Two simulated hypervisors serve each cloud, one x86_64 and one aarch64, with Nova's default
allocation ratios (16 for CPUs, 1.5 for RAM). A server goes to the host of its image's
``architecture`` (either when the image names none); nothing fitting is Nova's NoValidHost.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from migrator.sim import images
from migrator.sim.cinder_common import check_volume_quota
from migrator.sim.cinder_snapshots import new_snapshot
from migrator.sim.cinder_volumes import VolumeAPI
from migrator.sim.cloud import SimCloud
from migrator.sim.content import Hasher
from migrator.sim.http import SimHTTPError
from migrator.sim.neutron_common import PORTS, NeutronCore
from migrator.sim.neutron_floatingips import disassociate_floating_ips
from migrator.sim.neutron_routers import RouterHandlers
from migrator.sim.nova_common import quota_limits
from migrator.sim.state import Record, new_id, now_iso, now_iso_micro
from migrator.sim.volume_bytes import (
    blank_spec,
    read_into_volume,
    volume_blob,
    write_into_image,
)

log = logging.getLogger(__name__)

# vm_state, task_state and power_state values as Nova stores them.
BUILDING, ACTIVE, STOPPED, ERROR = "building", "active", "stopped", "error"
NOSTATE, RUNNING, SHUTDOWN = 0, 1, 4
STATUS = {BUILDING: "BUILD", ACTIVE: "ACTIVE", STOPPED: "SHUTOFF", ERROR: "ERROR"}
AVAILABILITY_ZONE = "nova"
ROOT_DEVICE = "/dev/vda"
CPU_RATIO, RAM_RATIO = 16.0, 1.5
ARCH_ALIASES = {"amd64": "x86_64", "x86-64": "x86_64", "x64": "x86_64", "i686": "x86_64",
                "arm64": "aarch64", "armv8": "aarch64", "armv8l": "aarch64"}
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."


@dataclass(frozen=True)
class Host:
    name: str
    arch: str
    vcpus: int
    ram_mb: int


HOSTS = (Host("compute-x86-1", "x86_64", 64, 262144),
         Host("compute-arm-1", "aarch64", 80, 262144))


@dataclass
class BuildPlan:
    """What the API validated and the compute side carries out."""

    networks: list[dict[str, Any]] = field(default_factory=list)  # {"network": rec, ...}
    security_group_ids: list[str] = field(default_factory=list)
    block_devices: list[dict[str, Any]] = field(default_factory=list)
    image: Record | None = None


def normalized_arch(value: Any) -> str | None:
    if not value:
        return None
    text = str(value).strip().lower()
    return ARCH_ALIASES.get(text, text)


def server_usage(cloud: SimCloud, project_id: str) -> dict[str, int]:
    """Instances, cores and RAM a project's servers hold (what Nova's quota counts)."""
    used = {"instances": 0, "cores": 0, "ram": 0}
    for server in cloud.state.where("servers", "project_id", project_id):
        used["instances"] += 1
        used["cores"] += int(server["flavor"]["vcpus"])
        used["ram"] += int(server["flavor"]["ram"])
    return used


def check_server_quota(cloud: SimCloud, project_id: str, flavor: Record) -> None:
    """Refuse one more server as Nova's TooManyInstances (403; Liberty adds Retry-After)."""
    limits = quota_limits(cloud, project_id)
    used = server_usage(cloud, project_id)
    deltas = {"instances": 1, "cores": int(flavor["vcpus"]), "ram": int(flavor["ram"])}
    overs = sorted(k for k, d in deltas.items() if limits[k] >= 0 and used[k] + d > limits[k])
    if not overs:
        return
    names = ", ".join(overs)
    requested = ", ".join(str(deltas[k]) for k in overs)
    in_use = ", ".join(str(used[k]) for k in overs)
    allowed = ", ".join(str(limits[k]) for k in overs)
    headers = {"Retry-After": "0"} if cloud.profile.nova_url_has_project else None
    raise SimHTTPError(403, f"Quota exceeded for {names}: Requested {requested}, but already "
                            f"used {in_use} of {allowed} {names}", headers=headers)


def next_device(server: Record) -> str:
    """The next free /dev/vdX after the ones the server uses (Nova's get_next_device_name)."""
    used = {bd.get("device_name") for bd in server.get("block_devices") or []}
    used.add(server.get("root_device_name") or ROOT_DEVICE)
    for letter in "bcdefghijklmnopqrstuvwxyz":
        name = f"/dev/vd{letter}"
        if name not in used:
            return name
    raise SimHTTPError(403, "The maximum allowed number of disk devices (26) to attach to a "
                            "single instance has been exceeded.")


class BuildFailed(Exception):
    """A build step failed: the server goes to ERROR with this fault message."""


class Compute:
    """One cloud's compute service: runs what the Nova API accepted."""

    def __init__(self, cloud: SimCloud) -> None:
        self.cloud = cloud
        self.state = cloud.state
        core = NeutronCore(cloud)
        # Ports Nova creates get their MACs from a generator of their own: Neutron's would
        # hand out the same sequence twice.
        core.rng = random.Random(f"nova:{cloud.name}")
        self.ports = RouterHandlers(core)
        self.volumes = VolumeAPI(cloud)
        self.tasks: set[asyncio.Task[None]] = set()
        self._seq = max((int(s.get("_seq") or 0) for s in self.state.values("servers")),
                        default=0)
        self._recover()

    def next_seq(self) -> int:
        """The next server's creation number (Nova's integer row id, its listing order)."""
        self._seq += 1
        return self._seq

    def _recover(self) -> None:
        """What Nova's compute service does with its instances when it starts again
        (``_init_instance``): a build under way fails, a stop or start completes, a snapshot
        is abandoned, a delete completes. Nothing of the previous process runs any more."""
        for server in self.state.values("servers"):
            task = server.get("task_state")
            if server.get("vm_state") == BUILDING:
                self.touch(server, vm_state=ERROR, task_state=None, power_state=NOSTATE)
            elif task == "powering-off":
                self.touch(server, vm_state=STOPPED, task_state=None, power_state=SHUTDOWN)
            elif task == "powering-on":
                self.touch(server, vm_state=ACTIVE, task_state=None, power_state=RUNNING)
            elif task == "deleting":
                self._remove(server)
            elif task is not None:
                self.touch(server, task_state=None)

    @property
    def delays(self) -> Any:
        return self.cloud.profile.delays

    # -- helpers ---------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def touch(self, server: Record, **changes: Any) -> None:
        server.update(changes)
        server["updated_at"] = now_iso()
        self.state.touch("servers", server)

    def alive(self, server: Record) -> bool:
        return self.state.get("servers", server["id"]) is server

    def settle_later(self, server: Record, delay: float, expected_task: str,
                     fn: Callable[[], None]) -> None:
        """Run ``fn`` after ``delay`` unless the server went away or its task changed."""
        def run() -> None:
            if self.alive(server) and server.get("task_state") == expected_task:
                fn()

        self.cloud.later(delay, run)

    def fail(self, server: Record, message: str, details: str = "") -> None:
        self.touch(server, vm_state=ERROR, task_state=None, power_state=NOSTATE,
                   fault={"code": 500, "created": now_iso(), "message": message,
                          "details": details or f"{message}\n  File \"nova/compute/"
                                                "manager.py\", in _build_and_run_instance"})

    # -- scheduling ------------------------------------------------------------------------
    def pick_host(self, server: Record) -> Host | None:
        flavor = server["flavor"]
        arch = normalized_arch((server.get("image_meta") or {}).get("properties", {})
                               .get("architecture"))
        placed: dict[str, tuple[int, int]] = {}
        for name in {host.name for host in HOSTS}:
            for other in self.state.lookup("servers", "host", name):
                if other is server:
                    continue
                vcpus, ram = placed.get(name, (0, 0))
                placed[name] = (vcpus + int(other["flavor"]["vcpus"]),
                                ram + int(other["flavor"]["ram"]))
        for host in HOSTS:
            if arch is not None and host.arch != arch:
                continue
            vcpus, ram = placed.get(host.name, (0, 0))
            if (vcpus + int(flavor["vcpus"]) <= host.vcpus * CPU_RATIO
                    and ram + int(flavor["ram"]) <= host.ram_mb * RAM_RATIO):
                return host
        return None

    # -- build -----------------------------------------------------------------------------
    def start_build(self, server: Record, plan: BuildPlan) -> None:
        self.spawn(self._build(server, plan))

    async def _build(self, server: Record, plan: BuildPlan) -> None:
        await asyncio.sleep(self.delays.server_build)
        if not self.alive(server) or server.get("task_state") == "deleting":
            return
        host = self.pick_host(server)
        if host is None:
            self.unreserve(plan)
            self.fail(server, NO_VALID_HOST,
                      "  File \"nova/conductor/manager.py\", in build_instances\n"
                      "    raise exception.NoValidHost(reason=\"\")\n")
            return
        self.touch(server, host=host.name, node=f"{host.name}.sim", task_state="networking")
        try:
            self._allocate_ports(server, plan)
        except SimHTTPError as exc:
            self._release_ports(server)
            self.unreserve(plan)
            self.fail(server, f"Build of instance {server['id']} aborted: Failed to allocate "
                              "the network(s), not rescheduling.", exc.message)
            return
        self.touch(server, task_state="block_device_mapping")
        try:
            await self._prepare_block_devices(server, plan)
        except (SimHTTPError, BuildFailed, OSError) as exc:
            self._release_ports(server)
            self.unreserve(plan)
            self.fail(server, f"Build of instance {server['id']} aborted: Failure prepping "
                              "block device.", str(getattr(exc, "message", exc)))
            return
        if not self.alive(server) or server.get("task_state") == "deleting":
            return
        self.touch(server, task_state="spawning")
        if plan.image is not None and plan.image.get("_content"):
            spec = plan.image["_content"]
            if spec.get("kind") == "file":
                spec, _size, _md5 = await read_into_volume(self.cloud, spec,
                                                           f"server-{server['id']}")
            server["_content"] = dict(spec)
        if not self.alive(server) or server.get("task_state") == "deleting":
            return
        for port in self._ports_of(server):
            self.ports.core.touch(port)
            port.update(status="ACTIVE", **{"binding:host_id": host.name,
                                            "binding:vif_type": "ovs"})
        self.touch(server, vm_state=ACTIVE, task_state=None, power_state=RUNNING,
                   launched_at=now_iso_micro(), progress=0)

    def _ports_of(self, server: Record) -> list[Record]:
        return [p for pid in server.get("ports") or []
                if (p := self.state.get("ports", pid)) is not None]

    def _allocate_ports(self, server: Record, plan: BuildPlan) -> None:
        owner = f"compute:{server['availability_zone']}"
        for want in plan.networks:
            if want.get("port") is not None:
                port = want["port"]
                if port.get("device_id"):
                    raise SimHTTPError(409, f"Port {port['id']} is still in use.")
                port.update(device_id=server["id"], device_owner=owner)
                self.ports.core.touch(port)
                server["ports"].append(port["id"])
                continue
            network = want["network"]
            fixed = [{"ip_address": want["fixed_ip"]}] if want.get("fixed_ip") else None
            self.ports.core.enforce_quota(PORTS, server["project_id"])
            port = self.ports.new_port(network, server["project_id"], owner, server["id"], fixed,
                                       security_groups=list(plan.security_group_ids),
                                       mac_address=self._free_mac(network))
            server["ports"].append(port["id"])
            server["_nova_ports"].append(port["id"])
        self.state.touch("servers", server)

    def _free_mac(self, network: Record) -> str:
        taken = {p.get("mac_address") for p in self.state.find("ports",
                                                                network_id=network["id"])}
        while True:
            mac = "fa:16:3e:" + ":".join(f"{self.ports.core.rng.randrange(256):02x}"
                                         for _ in range(3))
            if mac not in taken:
                return mac

    def _release_ports(self, server: Record) -> None:
        """Nova's deallocate_for_instance: delete the ports it made, unbind the others."""
        created = set(server.get("_nova_ports") or [])
        for port in self._ports_of(server):
            if port["id"] in created:
                self.delete_port(port)
            else:
                port.update(device_id="", device_owner="", status="DOWN",
                            **{"binding:host_id": "", "binding:vif_type": "unbound"})
                self.ports.core.touch(port)
        server["ports"], server["_nova_ports"] = [], []
        self.state.touch("servers", server)

    def delete_port(self, port: Record) -> None:
        disassociate_floating_ips(self.cloud, port["id"])
        self.state.delete("ports", port["id"])

    # -- block devices ---------------------------------------------------------------------
    def reserve(self, server: Record, plan: BuildPlan) -> None:
        """The volumes a boot names are reserved when the API accepts it, as Nova's API
        does (``reserved`` on modern Cinder's attachment API, ``attaching`` on Liberty)."""
        status = "attaching" if self.cloud.profile.cinder_max_microversion is None else (
            "reserved")
        for bdm in plan.block_devices:
            vol = self.state.get("volumes", str(bdm.get("uuid")))
            if bdm["source_type"] == "volume" and vol is not None:
                self.volumes._touch(vol, status=status)
                server.setdefault("_reserved", []).append(vol["id"])

    def unreserve(self, plan: BuildPlan) -> None:
        for bdm in plan.block_devices:
            vol = self.state.get("volumes", str(bdm.get("uuid")))
            if (bdm["source_type"] == "volume" and vol is not None
                    and vol.get("status") in ("attaching", "reserved")):
                self.volumes._touch(vol, status="available")

    async def _prepare_block_devices(self, server: Record, plan: BuildPlan) -> None:
        for bdm in plan.block_devices:
            if bdm["source_type"] == "volume":
                vol = self.state.get("volumes", bdm["uuid"])
                if vol is None or vol.get("status") not in ("attaching", "reserved"):
                    raise BuildFailed(f"Volume {bdm['uuid']} is not available")
            else:
                vol = await self._new_volume(server, bdm)
                if not self.alive(server) or server.get("task_state") == "deleting":
                    # Deleted while its volume was made: the volume is left as Nova
                    # leaves it, unattached (deleted if the mapping said so).
                    if bdm.get("delete_on_termination"):
                        self.volumes._begin_delete(vol)
                    self.unreserve(plan)
                    return
            self._attach_now(server, vol, bdm)

    async def _new_volume(self, server: Record, bdm: dict[str, Any]) -> Record:
        size = int(bdm["volume_size"])
        vtype = bdm.get("volume_type")
        check_volume_quota(self.cloud, server["project_id"], size, vtype)
        vid = new_id()
        stamp = now_iso_micro()
        vol: Record = {
            "id": vid, "name": "", "description": "", "status": "creating", "size": size,
            "volume_type": vtype, "bootable": False, "encrypted": False, "multiattach": False,
            "metadata": {}, "volume_image_metadata": {}, "project_id": server["project_id"],
            "user_id": server["user_id"], "availability_zone": AVAILABILITY_ZONE,
            "attachments": [], "source_volid": None, "snapshot_id": None,
            "created_at": stamp, "updated_at": stamp, "_content": None}
        self.state.put("volumes", vol)
        source: dict[str, Any] | None = None
        image: Record | None = None
        if bdm["source_type"] == "image":
            image = self.state.get("images", bdm["uuid"])
            if image is None or not image.get("_content"):
                raise BuildFailed(f"Image {bdm['uuid']} is not active.")
            source = image["_content"]
            self.volumes._touch(vol, status="downloading")
        elif bdm["source_type"] == "snapshot":
            snap = self.state.get("snapshots", bdm["uuid"])
            if snap is None:
                raise BuildFailed(f"Snapshot {bdm['uuid']} could not be found.")
            source = snap["_content"]
            vol.update(snapshot_id=snap["id"], volume_image_metadata=dict(
                snap.get("_volume_image_metadata") or {}),
                bootable=bool(snap.get("_bootable")))
        if source is None:
            vol["_content"] = blank_spec(vid, size)
        else:
            spec, _size, md5 = await read_into_volume(self.cloud, source, vid)
            vol["_content"] = spec
            if image is not None:
                if image.get("checksum") and md5 != image["checksum"]:
                    self.volumes._touch(vol, status="error")
                    raise BuildFailed(f"Image {image['id']} failed its checksum check")
                vol.update(bootable=True,
                           volume_image_metadata=self.volumes._image_metadata(image))
        self.volumes._touch(vol, status="available")
        return vol

    def add_bdm(self, server: Record, vol: Record, bdm: dict[str, Any]) -> dict[str, Any]:
        """The server's block device mapping for ``vol`` (Nova writes it before attaching)."""
        device = bdm.get("device_name") or (
            ROOT_DEVICE if bdm.get("boot_index") == 0 else next_device(server))
        record = {
            "volume_id": vol["id"], "device_name": device,
            "boot_index": bdm.get("boot_index"),
            "delete_on_termination": bool(bdm.get("delete_on_termination")),
            "source_type": bdm["source_type"], "destination_type": "volume",
            "volume_size": vol["size"], "attachment_id": new_id(), "bdm_uuid": new_id(),
            "tag": bdm.get("tag"), "disk_bus": bdm.get("disk_bus"),
            "device_type": bdm.get("device_type") or "disk"}
        server["block_devices"].append(record)
        self.touch(server)
        return record

    def cinder_attach(self, server: Record, vol: Record, bdm: dict[str, Any]) -> None:
        self.volumes._touch(vol, status="in-use", attachments=[
            *(vol.get("attachments") or []),
            attachment_entry(vol, server, bdm["device_name"], bdm["attachment_id"])])

    def _attach_now(self, server: Record, vol: Record, bdm: dict[str, Any]) -> None:
        self.cinder_attach(server, vol, self.add_bdm(server, vol, bdm))

    def attach_volume(self, server: Record, vol: Record, device: str | None, *,
                      delete_on_termination: bool, tag: str | None) -> dict[str, Any]:
        """os-volume_attachments: the mapping exists and the volume is reserved (attaching)
        when the API answers; the compute side attaches it (in-use) on a later turn."""
        record = self.add_bdm(server, vol, {
            "source_type": "volume", "device_name": device, "boot_index": None,
            "delete_on_termination": delete_on_termination, "tag": tag})
        self.volumes._touch(vol, status="attaching")

        def attach() -> None:
            current = self.state.get("volumes", vol["id"])
            if current is None or current.get("status") != "attaching":
                return
            if not self.alive(server) or record not in server["block_devices"]:
                self.volumes._touch(current, status="available")
                return
            self.cinder_attach(server, current, record)

        self.cloud.later(self.delays.volume_create, attach)
        return record

    def detach_volume(self, server: Record, vol: Record) -> None:
        bdm = next(b for b in server["block_devices"] if b["volume_id"] == vol["id"])
        server["block_devices"] = [b for b in server["block_devices"] if b is not bdm]
        self.touch(server)
        self.volumes._touch(vol, status="detaching")

        def detached() -> None:
            current = self.state.get("volumes", vol["id"])
            if current is None:
                return
            remaining = [a for a in current.get("attachments") or []
                         if a.get("attachment_id") != bdm["attachment_id"]]
            self.volumes._touch(current, attachments=remaining,
                                status="in-use" if remaining else "available")

        self.cloud.later(self.delays.volume_create, detached)

    # -- power -----------------------------------------------------------------------------
    def stop(self, server: Record) -> None:
        self.touch(server, task_state="powering-off")

        def stopped() -> None:
            self.touch(server, vm_state=STOPPED, task_state=None, power_state=SHUTDOWN)
            for port in self._ports_of(server):
                port["status"] = "DOWN"
                self.ports.core.touch(port)

        self.settle_later(server, self.delays.server_power, "powering-off", stopped)

    def start(self, server: Record) -> None:
        self.touch(server, task_state="powering-on")

        def started() -> None:
            self.touch(server, vm_state=ACTIVE, task_state=None, power_state=RUNNING)
            for port in self._ports_of(server):
                port["status"] = "ACTIVE"
                self.ports.core.touch(port)

        self.settle_later(server, self.delays.server_power, "powering-on", started)

    # -- snapshots -------------------------------------------------------------------------
    def snapshot_image_backed(self, server: Record, image: Record) -> None:
        self.touch(server, task_state="image_snapshot_pending")
        self.spawn(self._upload_snapshot(server, image))

    async def _upload_snapshot(self, server: Record, image: Record) -> None:
        await asyncio.sleep(0)
        if not self.alive(server):
            return
        self.touch(server, task_state="image_pending_upload")
        await asyncio.sleep(self.delays.server_snapshot)
        if not self.alive(server) or self.state.get("images", image["id"]) is None:
            if self.alive(server):
                self.touch(server, task_state=None)
            return
        self.touch(server, task_state="image_uploading")
        image["status"] = "saving"
        self.state.touch("images", image)
        try:
            spec, digest = await write_into_image(self.cloud, server["_content"], image["id"])
        except OSError as exc:
            log.warning("snapshot of server %s failed: %s", server["id"], exc)
            image["status"] = "killed"
            if self.alive(server):
                self.touch(server, task_state=None)
            return
        if self.state.get("images", image["id"]) is not None:
            meta = server.get("image_meta") or {}
            image.update(disk_format=meta.get("disk_format") or "qcow2",
                         container_format=meta.get("container_format") or "bare")
            images.set_content(self.cloud, image, spec, digest)
        if self.alive(server):
            self.touch(server, task_state=None)

    def snapshot_volumes(self, server: Record, image_name: str) -> list[dict[str, Any]]:
        """Cinder snapshots of every volume of a volume-backed server (``force``: in use),
        as the image's ``block_device_mapping`` lists them."""
        mapping = []
        for bdm in sorted(server["block_devices"],
                          key=lambda b: (b.get("boot_index") is None, b.get("boot_index") or 0)):
            vol = self.state.get("volumes", bdm["volume_id"])
            if vol is None:
                continue
            snap = new_snapshot(self.cloud, vol, name=f"snapshot for {image_name}",
                                description=vol.get("description"), user_id=server["user_id"])
            entry = {"source_type": "snapshot", "destination_type": "volume",
                     "snapshot_id": snap["id"], "disk_bus": bdm.get("disk_bus"),
                     "device_type": bdm.get("device_type"),
                     "boot_index": bdm.get("boot_index"),
                     "delete_on_termination": bool(bdm.get("delete_on_termination")),
                     "volume_size": vol["size"], "device_name": bdm.get("device_name"),
                     "guest_format": None, "image_id": None, "volume_id": None,
                     "no_device": None}
            if not self.cloud.profile.nova_url_has_project:
                entry.update(tag=None, volume_type=None)
            mapping.append(entry)
        return mapping

    # -- delete ----------------------------------------------------------------------------
    def delete(self, server: Record) -> None:
        self.touch(server, task_state="deleting")

        def gone() -> None:
            if self.alive(server):
                self._remove(server)

        self.cloud.later(self.delays.server_power, gone)

    def _remove(self, server: Record) -> None:
        """The end of a delete: ports released, volumes detached (deleted when asked),
        the root disk's bytes dropped, the record gone."""
        self._release_ports(server)
        for bdm in server.get("block_devices") or []:
            vol = self.state.get("volumes", bdm["volume_id"])
            if vol is None:
                continue
            remaining = [a for a in vol.get("attachments") or []
                         if a.get("server_id") != server["id"]]
            self.volumes._touch(vol, attachments=remaining,
                                status="in-use" if remaining else "available")
            if bdm.get("delete_on_termination") and not remaining:
                self.volumes._begin_delete(vol)
        for vid in server.get("_reserved") or []:  # reserved, never attached
            vol = self.state.get("volumes", vid)
            if vol is not None and vol.get("status") in ("attaching", "reserved"):
                self.volumes._touch(vol, status="available")
        forget_server_bytes(self.cloud, server)
        self.state.delete("servers", server["id"])

    # -- interfaces ------------------------------------------------------------------------
    def attach_interface(self, server: Record, want: dict[str, Any],
                         security_group_ids: list[str]) -> Record:
        before = list(server["ports"])
        self._allocate_ports(server, BuildPlan(networks=[want],
                                               security_group_ids=security_group_ids))
        port_id = next(p for p in server["ports"] if p not in before)
        port = self.state.get("ports", port_id)
        assert port is not None
        if server.get("vm_state") == ACTIVE:
            port.update(status="ACTIVE", **{"binding:host_id": server.get("host") or "",
                                            "binding:vif_type": "ovs"})
        self.touch(server)
        return port

    def detach_interface(self, server: Record, port_id: str) -> None:
        port = self.state.get("ports", port_id)
        server["ports"] = [p for p in server["ports"] if p != port_id]
        if port is not None:
            if port_id in (server.get("_nova_ports") or []):
                self.delete_port(port)
            else:
                port.update(device_id="", device_owner="", status="DOWN",
                            **{"binding:host_id": "", "binding:vif_type": "unbound"})
                self.ports.core.touch(port)
        server["_nova_ports"] = [p for p in server.get("_nova_ports") or [] if p != port_id]
        self.touch(server)


def attachment_entry(vol: Record, server: Record, device: str, attachment_id: str
                     ) -> dict[str, Any]:
    """A Cinder attachment as the volume shows it (``id`` is the volume's, as Cinder's view)."""
    return {"id": vol["id"], "attachment_id": attachment_id, "volume_id": vol["id"],
            "server_id": server["id"], "host_name": None, "device": device,
            "attached_at": now_iso_micro()}


def forget_server_bytes(cloud: SimCloud, server: Record) -> None:
    """Remove a deleted server's own copy of its root disk (never a file it only shares)."""
    spec = server.get("_content") or {}
    path = volume_blob(cloud, f"server-{server['id']}")
    if spec.get("kind") == "file" and spec.get("path") == str(path):
        path.unlink(missing_ok=True)


def empty_digest() -> Any:
    return Hasher().digest()
