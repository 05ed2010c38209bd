"""Nova servers: create (from an image, or from a volume with ``block_device_mapping_v2``),
list (``all_tenants`` for admins, the filters openstacksdk and openstackclient send), show,
update, delete, metadata, addresses, and the actions ``os-stop``, ``os-start`` and
``createImage``. What happens after the API's answer runs in nova_compute.py; the views are
in nova_server_view.py; volume attachments and interfaces in nova_server_children.py.

Internal form of a server (the seed loader writes the same):

    id, name, description, project_id, user_id, vm_state (building|active|stopped|error),
    task_state, power_state (0 none, 1 running, 4 shutdown), flavor {id, name, vcpus, ram,
    disk, ephemeral, swap, extra_specs} (a copy, as Nova keeps one), image_id ("" when booted
    from a volume), image_meta {min_disk, min_ram, disk_format, container_format, properties}
    (Nova's system metadata), key_name, metadata, security_groups (names asked for),
    availability_zone, requested_availability_zone, host, node, instance_name, hostname,
    reservation_id, created_at, updated_at, launched_at, config_drive, access_ipv4/6,
    locked, tags, user_data, ports (ids, in order), _nova_ports (the ones Nova made),
    block_devices [{volume_id, device_name, boot_index, delete_on_termination, source_type,
    destination_type, volume_size, attachment_id, bdm_uuid, tag, disk_bus, device_type}],
    root_device_name, fault {code, created, message, details} | None, progress,
    _content (the root disk's bytes of an image-backed server, a content spec).
"""

from __future__ import annotations

import json
import re
import secrets
import string
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from migrator.sim import images
from migrator.sim.cinder_common import GIB, image_visible
from migrator.sim.cloud import SimCloud
from migrator.sim.http import (
    AuthContext,
    SimHTTPError,
    json_response,
    next_href,
    origin,
    page,
    read_json,
)
from migrator.sim.microversion import at_least
from migrator.sim.neutron_common import NETWORKS, NeutronCore
from migrator.sim.nova_common import check_url_project, policy_error, quota_limits
from migrator.sim.nova_compute import (
    ACTIVE,
    AVAILABILITY_ZONE,
    BUILDING,
    ERROR,
    NOSTATE,
    ROOT_DEVICE,
    STOPPED,
    BuildPlan,
    Compute,
    check_server_quota,
    empty_digest,
)
from migrator.sim.nova_server_view import ServerView, server_links
from migrator.sim.state import Record, new_id, now_iso

VOLUME_CORE_KEYS = {"checksum", "container_format", "disk_format", "image_name", "image_id",
                    "min_disk", "min_ram", "name", "size", "signature_verified"}
NON_INHERITABLE = ("cache_in_nova", "bittorrent", "img_signature", "img_signature_hash_method",
                   "img_signature_key_type", "img_signature_certificate_uuid",
                   "cinder_encryption_key_id", "cinder_encryption_key_deletion_policy")
STATUS_TO_VM_STATE = {"BUILD": BUILDING, "ACTIVE": ACTIVE, "SHUTOFF": STOPPED, "ERROR": ERROR}
# Filters any caller may use, by the microversion that allowed them (Nova's
# _get_server_search_options); admins may use every filter.
USER_FILTERS = (("2.1", ("reservation_id", "name", "status", "image", "flavor", "ip",
                         "changes-since", "all_tenants")),
                ("2.5", ("ip6",)), ("2.66", ("changes-before",)), ("2.73", ("locked",)),
                ("2.83", ("availability_zone", "config_drive", "key_name", "created_at",
                          "launched_at", "terminated_at", "power_state", "task_state",
                          "vm_state", "progress", "user_id")),
                ("2.90", ("hostname",)))
SORT_KEYS = {"created_at": "created_at", "updated_at": "updated_at", "display_name": "name",
             "uuid": "id", "vm_state": "vm_state", "task_state": "task_state",
             "power_state": "power_state", "launched_at": "launched_at", "key_name": "key_name",
             "project_id": "project_id", "user_id": "user_id", "host": "host",
             "availability_zone": "availability_zone",
             # Nova's own tie-breaker: the database row's integer id, in creation order.
             "id": "_seq"}


def schema_error(field: str, value: Any, reason: str) -> SimHTTPError:
    """Nova's JSON-schema refusal."""
    return SimHTTPError(400, f"Invalid input for field/attribute {field}. Value: {value}. "
                             f"{reason}")


def ref_id(ref: Any) -> str:
    """An id given as itself or as the last segment of a URL (imageRef, flavorRef)."""
    return str(ref).rstrip("/").rsplit("/", 1)[-1]


def is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "t", "true", "on", "y", "yes")


def hostname_of(name: str) -> str:
    """Nova's sanitize_hostname: lower case, [a-z0-9-], at most 63 characters."""
    text = re.sub(r"[^\w.-]+", "-", name.lower()).replace("_", "-").replace(".", "-")
    return text.strip("-")[:63] or "server"


def image_meta_from_image(image: Record) -> dict[str, Any]:
    props = {k: v for k, v in (image.get("properties") or {}).items()
             if k not in NON_INHERITABLE}
    return {"min_disk": int(image.get("min_disk") or 0), "min_ram": int(image.get("min_ram") or 0),
            "disk_format": image.get("disk_format"),
            "container_format": image.get("container_format"), "properties": props}


def image_meta_from_volume(meta: dict[str, Any]) -> dict[str, Any]:
    """A boot volume's image metadata as Nova's system metadata keeps it."""
    return {"min_disk": int(meta.get("min_disk") or 0), "min_ram": int(meta.get("min_ram") or 0),
            "disk_format": meta.get("disk_format"),
            "container_format": meta.get("container_format"),
            "properties": {k: v for k, v in meta.items() if k not in VOLUME_CORE_KEYS}}


class ServerAPI:
    def __init__(self, cloud: SimCloud, compute: Compute) -> None:
        self.cloud = cloud
        self.state = cloud.state
        self.compute = compute
        self.view = ServerView(cloud)
        self.liberty = cloud.profile.nova_url_has_project
        self.neutron: NeutronCore = compute.ports.core

    # -- lookups ---------------------------------------------------------------------------
    def get_server(self, request: web.Request, ctx: AuthContext,
                   key: str = "server_id") -> Record:
        sid = request.match_info[key]
        server = self.state.get("servers", sid)
        if server is None or not (ctx.is_admin or server.get("project_id") == ctx.project_id):
            raise SimHTTPError(404, f"Instance {sid} could not be found.")
        return server

    def invalid_state(self, action: str, server: Record) -> SimHTTPError:
        if server.get("task_state") is not None:
            attr, state = "task_state", server["task_state"]
        else:
            attr, state = "vm_state", server.get("vm_state")
        return SimHTTPError(409, f"Cannot '{action}' instance {server['id']} while it is in "
                                 f"{attr} {state}")

    # -- list and show ---------------------------------------------------------------------
    def _allowed_filters(self, request: web.Request, ctx: AuthContext) -> set[str] | None:
        if ctx.is_admin:
            return None
        allowed: set[str] = set()
        for version, names in USER_FILTERS:
            if at_least(request, version):
                allowed.update(names)
        return allowed

    def _listed(self, request: web.Request, ctx: AuthContext, *, detail: bool
                ) -> list[Record]:
        allowed = self._allowed_filters(request, ctx)
        q = {k: v for k, v in request.query.items()
             if allowed is None or k in allowed or k in ("limit", "marker", "sort_key",
                                                          "sort_dir")}
        everyone = "all_tenants" in q and (q["all_tenants"] == "" or truthy(q["all_tenants"]))
        if everyone and not ctx.is_admin:
            kind = "detail" if detail else "index"
            raise policy_error(f"os_compute_api:servers:{kind}:get_all_tenants")
        wanted = ctx.project_id if not everyone else q.get("project_id") or q.get("tenant_id")
        items = (self.state.where("servers", "project_id", wanted) if wanted or not everyone
                 else list(self.state.values("servers")))
        items = self._filter(request, q, items)
        return self._sort(request, items)

    def _filter(self, request: web.Request, q: dict[str, str], items: list[Record]
                ) -> list[Record]:
        if "status" in q:
            states = {STATUS_TO_VM_STATE.get(s.upper()) for s in request.query.getall("status")}
            states.discard(None)
            if not states and at_least(request, "2.38"):
                raise SimHTTPError(400, "Invalid status value")
            items = [s for s in items if s.get("vm_state") in states]
        if "name" in q:
            items = [s for s in items if _regex(q["name"], s.get("name") or "")]
        if "ip" in q or "ip6" in q:
            items = [s for s in items if self._ip_match(s, q)]
        exact = {"image": "image_id", "reservation_id": "reservation_id",
                 "key_name": "key_name", "availability_zone": "availability_zone",
                 "user_id": "user_id", "host": "host", "vm_state": "vm_state",
                 "task_state": "task_state", "uuid": "id"}
        for param, field in exact.items():
            if param in q:
                items = [s for s in items if str(s.get(field) or "") == ref_id(q[param])
                         or str(s.get(field) or "") == q[param]]
        if "flavor" in q:
            items = [s for s in items if str(s["flavor"]["id"]) == ref_id(q["flavor"])]
        if "power_state" in q:
            items = [s for s in items if str(s.get("power_state")) == q["power_state"]]
        if "locked" in q:
            items = [s for s in items if bool(s.get("locked")) == truthy(q["locked"])]
        if "changes-since" in q:
            items = [s for s in items if (s.get("updated_at") or "") >= q["changes-since"]]
        if "changes-before" in q:
            items = [s for s in items if (s.get("updated_at") or "") <= q["changes-before"]]
        return items

    def _ip_match(self, server: Record, q: dict[str, str]) -> bool:
        addresses = [a["addr"] for entries in self.view.addresses(server).values()
                     for a in entries]
        for key, version in (("ip", 4), ("ip6", 6)):
            if key in q and not any(_regex(q[key], a) for a in addresses
                                    if (":" in a) == (version == 6)):
                return False
        return True

    def _sort(self, request: web.Request, items: list[Record]) -> list[Record]:
        keys = [k for k in request.query.getall("sort_key", []) if k in SORT_KEYS]
        dirs = request.query.getall("sort_dir", [])
        if not keys:
            keys, dirs = ["created_at", "id"], ["desc", "desc"]
        pairs = [(k, dirs[i] if i < len(dirs) else "desc") for i, k in enumerate(keys)]
        if "id" not in keys:
            pairs.append(("id", pairs[0][1]))
        for key, direction in reversed(pairs):
            items = sorted(items, key=_sort_value(SORT_KEYS[key]),
                           reverse=direction == "desc")
        return items

    def _list(self, request: web.Request, *, detail: bool) -> web.Response:
        ctx = check_url_project(request)
        items = self._listed(request, ctx, detail=detail)
        wanted = request.query.get("marker")
        if wanted and not any(s["id"] == wanted for s in items):
            raise SimHTTPError(400, f"marker [{wanted}] not found")
        chunk, marker = page(items, request, default_limit=1000)
        rendered = [self.view.detail(request, s, ctx) if detail else
                    self.view.summary(request, s) for s in chunk]
        body: dict[str, Any] = {"servers": rendered}
        if marker is not None:
            body["servers_links"] = [{"rel": "next", "href": next_href(request, marker)}]
        return json_response(body)

    async def list_servers(self, request: web.Request) -> web.Response:
        return self._list(request, detail=False)

    async def list_detail(self, request: web.Request) -> web.Response:
        return self._list(request, detail=True)

    async def show(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        server = self.get_server(request, ctx)
        return json_response({"server": self.view.detail(request, server, ctx, show=True)})

    async def ips(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        server = self.get_server(request, ctx)
        addresses = {} if server.get("vm_state") == BUILDING else self.view.addresses(server)
        return json_response({"addresses": {
            net: [{"version": a["version"], "addr": a["addr"]} for a in entries]
            for net, entries in addresses.items()}})

    # -- create ----------------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        body = await read_json(request)
        spec = body.get("server")
        if not isinstance(spec, dict):
            raise schema_error("server", spec, "'server' is a required property")
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise schema_error("name", name, "'name' is a required property")
        if spec.get("flavorRef") in (None, ""):
            raise schema_error("server", spec, "'flavorRef' is a required property")
        if at_least(request, "2.37") and "networks" not in spec:
            raise schema_error("server", spec, "'networks' is a required property")
        if int(spec.get("min_count", 1)) != 1 or int(spec.get("max_count", 1)) != 1:
            raise SimHTTPError(400, "The simulator boots one server per request "
                                    "(min_count/max_count 1)")
        metadata = self._metadata(spec.get("metadata"), ctx)
        zone = spec.get("availability_zone")
        if zone not in (None, "", AVAILABILITY_ZONE):
            raise SimHTTPError(400, "The requested availability zone is not available")
        flavor = self._flavor(spec["flavorRef"], ctx)
        plan = BuildPlan()
        image_ref = ref_id(spec["imageRef"]) if spec.get("imageRef") else ""
        plan.block_devices = self._block_devices(spec, ctx, image_ref)
        boot_volume = next((b for b in plan.block_devices if b.get("boot_index") == 0), None)
        image_meta: dict[str, Any]
        if boot_volume is None:
            if not image_ref:
                raise SimHTTPError(400, "Block Device Mapping is Invalid: Boot sequence for "
                                        "the instance and image/block device mapping "
                                        "combination is not valid.")
            plan.image = self._boot_image(image_ref, ctx, flavor)
            image_meta = image_meta_from_image(plan.image)
        else:
            image_meta = boot_volume.pop("_image_meta")
            image_ref = ""
        for bdm in plan.block_devices:
            bdm.pop("_image_meta", None)
        key_name = spec.get("key_name")
        keypair = self.state.get("keypairs", f"{ctx.user_id}:{key_name}") if key_name else None
        if key_name and keypair is None:
            raise SimHTTPError(400, "Invalid key_name provided.")
        assert ctx.project_id is not None
        groups = self.security_groups_for(spec.get("security_groups"), ctx.project_id)
        plan.security_group_ids = [g["id"] for g in groups]
        plan.networks = self.requested_networks(request, spec.get("networks"), ctx)
        new_ports = sum(1 for n in plan.networks if n.get("port") is None)
        limit = self.neutron.quota_limits(ctx.project_id).get("port", -1)
        if new_ports and 0 <= limit < self.neutron.usage(ctx.project_id)["port"] + new_ports:
            raise SimHTTPError(403, "Maximum number of ports exceeded")
        check_server_quota(self.cloud, ctx.project_id, flavor)
        server = self._new_server(request, spec, ctx, flavor, image_ref, image_meta,
                                  metadata, groups)
        # The key Nova copies into the instance (the metadata service's public-keys; not
        # shown by the API): what the guest will let in, whatever happens to the key pair.
        server["_public_key"] = keypair["public_key"] if keypair is not None else None
        self.state.put("servers", server)
        self.compute.reserve(server, plan)
        self.compute.start_build(server, plan)
        requested = spec.get("security_groups")
        out = {"id": server["id"], "links": server_links(request, server["id"]),
               "OS-DCF:diskConfig": "MANUAL",
               "security_groups": requested if requested is not None
               else [{"name": "default"}],
               "adminPass": spec.get("adminPass") or _password()}
        return json_response({"server": out}, status=202,
                             headers={"Location": out["links"][0]["href"]})

    def _new_server(self, request: web.Request, spec: dict[str, Any], ctx: AuthContext,
                    flavor: Record, image_ref: str, image_meta: dict[str, Any],
                    metadata: dict[str, str], groups: list[Record]) -> Record:
        sid = new_id()
        stamp = now_iso()
        description = spec.get("description") if at_least(request, "2.19") else spec["name"]
        return {
            "id": sid, "name": spec["name"], "description": description,
            "project_id": ctx.project_id, "user_id": ctx.user_id, "vm_state": BUILDING,
            "task_state": "scheduling", "power_state": NOSTATE,
            "flavor": {"id": flavor["id"], "name": flavor["name"], "vcpus": flavor["vcpus"],
                       "ram": flavor["ram"], "disk": flavor["disk"],
                       "ephemeral": int(flavor.get("ephemeral") or 0),
                       "swap": int(flavor.get("swap") or 0),
                       "extra_specs": dict(flavor.get("extra_specs") or {})},
            "image_id": image_ref, "image_meta": image_meta, "key_name": spec.get("key_name"),
            "metadata": metadata, "security_groups": [g["name"] for g in groups],
            "availability_zone": AVAILABILITY_ZONE,
            "requested_availability_zone": spec.get("availability_zone") or None,
            "host": None, "node": None, "instance_name": f"instance-{int(sid[:8], 16):08x}",
            "hostname": hostname_of(spec["name"]),
            "reservation_id": "r-" + secrets.token_hex(4), "created_at": stamp,
            "updated_at": stamp, "launched_at": None, "config_drive": "",
            "access_ipv4": spec.get("accessIPv4") or "",
            "access_ipv6": spec.get("accessIPv6") or "", "locked": False,
            "tags": list(spec.get("tags") or []), "user_data": spec.get("user_data"),
            "ports": [], "_nova_ports": [], "block_devices": [],
            "root_device_name": ROOT_DEVICE, "fault": None, "progress": 0, "_content": None,
            "_seq": self.compute.next_seq()}

    def _metadata(self, raw: Any, ctx: AuthContext) -> dict[str, str]:
        if raw is None:
            return {}
        if not isinstance(raw, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 255
                and len(v) <= 255 for k, v in raw.items()):
            raise schema_error("metadata", raw, "Metadata keys and values are strings of at "
                                                "most 255 characters")
        allowed = quota_limits(self.cloud, ctx.project_id or "")["metadata_items"]
        if 0 <= allowed < len(raw):
            raise SimHTTPError(403, f"Maximum number of metadata items exceeds {allowed}")
        return dict(raw)

    def _flavor(self, ref: Any, ctx: AuthContext) -> Record:
        fid = ref_id(ref)
        flavor = self.state.get("flavors", fid)
        if flavor is None or not (ctx.is_admin or flavor.get("is_public", True)
                                  or ctx.project_id in (flavor.get("_access") or [])):
            if self.liberty:
                raise SimHTTPError(400, "Invalid flavorRef provided.")
            raise SimHTTPError(400, f"Flavor {fid} could not be found.")
        return flavor

    def _visible_image(self, image_id: str, ctx: AuthContext) -> Record | None:
        image = self.state.get("images", image_id)
        if image is None or not image_visible(ctx, self.cloud, image):
            return None
        return image

    def _boot_image(self, image_id: str, ctx: AuthContext, flavor: Record) -> Record:
        image = self._visible_image(image_id, ctx)
        if image is None:
            raise SimHTTPError(400, "Can not find requested image")
        if image.get("status") != "active":
            raise SimHTTPError(400, f"Image {image_id} is not active.")
        disk = int(flavor.get("disk") or 0) * GIB
        size = int(image.get("size") or 0)
        min_disk = int(image.get("min_disk") or 0) * GIB
        if disk and size > disk:
            raise SimHTTPError(400, f"Flavor's disk is too small for requested image. Flavor "
                                    f"disk is {disk} bytes, image is {size} bytes.")
        if disk and min_disk > disk:
            raise SimHTTPError(400, f"Flavor's disk is smaller than the minimum size "
                                    f"specified in image metadata. Flavor disk is {disk} "
                                    f"bytes, minimum size is {min_disk} bytes.")
        if int(image.get("min_ram") or 0) > int(flavor.get("ram") or 0):
            raise SimHTTPError(400, "Flavor's memory is too small for requested image.")
        return image

    def _block_devices(self, spec: dict[str, Any], ctx: AuthContext, image_ref: str
                       ) -> list[dict[str, Any]]:
        if spec.get("block_device_mapping"):
            raise SimHTTPError(400, "The simulator takes block_device_mapping_v2 only")
        raw = spec.get("block_device_mapping_v2") or []
        if not isinstance(raw, list):
            raise schema_error("block_device_mapping_v2", raw, "is not of type 'array'")
        out = []
        for item in raw:
            if not isinstance(item, dict) or item.get("source_type") not in (
                    "image", "volume", "snapshot", "blank"):
                raise SimHTTPError(400, "Block Device Mapping is Invalid: Missing or invalid "
                                        "source_type.")
            source, dest = item["source_type"], item.get("destination_type") or (
                "volume" if item["source_type"] in ("volume", "snapshot") else "local")
            boot_index = item.get("boot_index")
            boot_index = int(boot_index) if boot_index not in (None, "", "none") else None
            if source == "image" and dest == "local":
                if boot_index == 0 and image_ref and ref_id(item.get("uuid")) != image_ref:
                    raise SimHTTPError(400, "Block Device Mapping is Invalid: Boot sequence "
                                            "for the instance and image/block device mapping "
                                            "combination is not valid.")
                continue  # the image boot itself, as imageRef says
            if dest != "volume":
                raise SimHTTPError(400, "The simulator attaches volumes only "
                                        "(destination_type volume)")
            bdm = {"source_type": source, "uuid": item.get("uuid"), "boot_index": boot_index,
                   "volume_size": item.get("volume_size"),
                   "delete_on_termination": truthy(item.get("delete_on_termination", False)),
                   "device_name": item.get("device_name"), "disk_bus": item.get("disk_bus"),
                   "device_type": item.get("device_type"), "tag": item.get("tag"),
                   "volume_type": item.get("volume_type")}
            bdm["_image_meta"] = self._check_bdm_source(bdm, ctx)
            out.append(bdm)
        return out

    def _check_bdm_source(self, bdm: dict[str, Any], ctx: AuthContext) -> dict[str, Any]:
        """Nova's _validate_bdm: the source exists and fits; the image metadata it boots."""
        source, ref = bdm["source_type"], str(bdm.get("uuid") or "")
        if source == "volume":
            vol = self.state.get("volumes", ref)
            if vol is None or not (ctx.is_admin or vol.get("project_id") == ctx.project_id):
                raise SimHTTPError(400, f"Block Device Mapping is Invalid: failed to get "
                                        f"volume {ref}.")
            if vol.get("status") != "available":
                raise SimHTTPError(400, f"Invalid volume: volume '{ref}' status must be "
                                        f"'available'. Currently in '{vol.get('status')}'")
            if bdm["boot_index"] == 0 and not vol.get("bootable"):
                raise SimHTTPError(400, f"Block Device {ref} is not bootable.")
            bdm["volume_size"] = vol["size"]
            return image_meta_from_volume(vol.get("volume_image_metadata") or {})
        if source == "snapshot":
            snap = self.state.get("snapshots", ref)
            if snap is None or not (ctx.is_admin or snap.get("project_id") == ctx.project_id):
                raise SimHTTPError(400, f"Block Device Mapping is Invalid: failed to get "
                                        f"snapshot {ref}.")
            bdm["volume_size"] = int(bdm.get("volume_size") or snap["size"])
            return image_meta_from_volume(snap.get("_volume_image_metadata") or {})
        size = bdm.get("volume_size")
        try:
            bdm["volume_size"] = int(size or 0)
        except (TypeError, ValueError) as exc:
            raise SimHTTPError(400, "Block Device Mapping is Invalid: Images with "
                                    "destination_type 'volume' need to have a non-zero size "
                                    "specified") from exc
        if bdm["volume_size"] <= 0:
            raise SimHTTPError(400, "Block Device Mapping is Invalid: Images with "
                                    "destination_type 'volume' need to have a non-zero size "
                                    "specified")
        if source == "blank":
            return image_meta_from_volume({})
        image = self._visible_image(ref, ctx)
        if image is None:
            raise SimHTTPError(400, f"Block Device Mapping is Invalid: failed to get image "
                                    f"{ref}.")
        if image.get("status") != "active":
            raise SimHTTPError(400, f"Image {ref} is not active.")
        need = max(-(-int(image.get("size") or 0) // GIB), int(image.get("min_disk") or 0))
        if bdm["volume_size"] < need:
            raise SimHTTPError(400, f"Volume is smaller than the minimum size specified in "
                                    f"image metadata. Volume size is "
                                    f"{bdm['volume_size'] * GIB} bytes, minimum size is "
                                    f"{need * GIB} bytes.")
        return image_meta_from_image(image)

    def security_groups_for(self, raw: Any, project_id: str) -> list[Record]:
        if raw is None:
            raw = [{"name": "default"}]
        if not isinstance(raw, list) or not all(isinstance(g, dict) for g in raw):
            raise schema_error("security_groups", raw, "is not of type 'array'")
        self.neutron.ensure_default_group(project_id)
        owned = self.state.where("security_groups", "project_id", project_id)
        out: list[Record] = []
        for wanted in dict.fromkeys(str(g.get("name")) for g in raw if g.get("name")):
            matches = [g for g in owned if g["id"] == wanted] or [
                g for g in owned if g["name"] == wanted]
            if not matches:
                raise SimHTTPError(400, f"Security group {wanted} not found.")
            if len(matches) > 1:
                raise SimHTTPError(409, f"Multiple security groups found matching '{wanted}'."
                                        " Use an ID to be more specific.")
            out.append(matches[0])
        return out

    def requested_networks(self, request: web.Request, raw: Any, ctx: AuthContext
                  ) -> list[dict[str, Any]]:
        if raw == "none":
            return []
        if raw is None or raw == "auto":
            # The project's networks and the shared ones, in the order of the networks.
            found = {n["id"]: n for n in (*self.state.where("networks", "project_id",
                                                            ctx.project_id),
                                          *self.state.lookup("networks", "shared", True))}
            order = self.state.positions("networks")
            candidates = [n for n in sorted(found.values(), key=lambda n: order[n["id"]])
                          if not n.get("router:external") and (
                              n.get("project_id") == ctx.project_id or n.get("shared"))]
            if len(candidates) > 1:
                raise SimHTTPError(409, "Multiple possible networks found, use a Network ID "
                                        "to be more specific.")
            if not candidates and raw == "auto":
                raise SimHTTPError(400, f"Unable to automatically allocate a network for "
                                        f"project {ctx.project_id}")
            return [{"network": candidates[0]}] if candidates else []
        if not isinstance(raw, list):
            raise schema_error("networks", raw, "is not of type 'array'")
        out: list[dict[str, Any]] = []
        seen_ports: set[str] = set()
        for item in raw:
            if not isinstance(item, dict):
                raise SimHTTPError(400, "Bad networks format")
            if item.get("port"):
                pid = str(item["port"])
                if pid in seen_ports:
                    raise SimHTTPError(400, f"Port ID '{pid}' was specified twice: you cannot "
                                            "attach a port multiple times.")
                seen_ports.add(pid)
                port = self.state.get("ports", pid)
                if port is None or not (ctx.is_admin or port.get("project_id")
                                        == ctx.project_id):
                    raise SimHTTPError(400, f"Port id {pid} could not be found.")
                if port.get("device_id"):
                    raise SimHTTPError(409, f"Port {pid} is still in use.")
                out.append({"port": port})
                continue
            if "uuid" not in item:
                raise SimHTTPError(400, "Bad network format: missing 'uuid'")
            net_id = str(item["uuid"])
            if not is_uuid(net_id):
                raise SimHTTPError(400, f"Bad networks format: network uuid is not in proper "
                                        f"format ({net_id})")
            network = self.state.get("networks", net_id)
            if network is None or not self.neutron.visible(NETWORKS, network, ctx):
                raise SimHTTPError(400, f"Network {net_id} could not be found.")
            if network.get("router:external") and not ctx.is_admin and not network.get(
                    "shared"):
                raise SimHTTPError(403, f"It is not allowed to create an interface on "
                                        f"external network {net_id}")
            if not self.state.find("subnets", network_id=net_id):
                raise SimHTTPError(400, f"Network {net_id} requires a subnet in order to "
                                        "boot instances on.")
            out.append({"network": network, "fixed_ip": item.get("fixed_ip")})
        return out

    # -- update and delete -----------------------------------------------------------------
    async def update(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        server = self.get_server(request, ctx)
        body = (await read_json(request)).get("server")
        if not isinstance(body, dict):
            raise schema_error("server", body, "'server' is a required property")
        changes: dict[str, Any] = {}
        if "name" in body:
            if not isinstance(body["name"], str) or not body["name"].strip():
                raise schema_error("name", body["name"], "is not a valid name")
            changes["name"] = body["name"]
        for wire, key in (("accessIPv4", "access_ipv4"), ("accessIPv6", "access_ipv6")):
            if wire in body:
                changes[key] = body[wire] or ""
        if "description" in body and at_least(request, "2.19"):
            changes["description"] = body["description"]
        self.compute.touch(server, **changes)
        return json_response({"server": self.view.detail(request, server, ctx)})

    async def delete(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        server = self.get_server(request, ctx)
        if server.get("locked") and not ctx.is_admin:
            raise SimHTTPError(409, f"Instance {server['id']} is locked")
        if server.get("task_state") != "deleting":
            self.compute.delete(server)
        return web.Response(status=204)

    # -- metadata --------------------------------------------------------------------------
    async def get_metadata(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        return json_response({"metadata": dict(self.get_server(request, ctx)["metadata"])})

    async def set_metadata(self, request: web.Request) -> web.Response:
        """POST merges, PUT replaces; both answer with the whole metadata."""
        ctx = check_url_project(request)
        server = self.get_server(request, ctx)
        body = await read_json(request)
        new = {} if request.method == "PUT" else dict(server.get("metadata") or {})
        new.update(self._metadata(body.get("metadata"), ctx))
        self._metadata(new, ctx)
        self.compute.touch(server, metadata=new)
        return json_response({"metadata": new})

    async def get_metadata_item(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        key = request.match_info["key"]
        meta = self.get_server(request, ctx).get("metadata") or {}
        if key not in meta:
            raise SimHTTPError(404, "Metadata item was not found")
        return json_response({"meta": {key: meta[key]}})

    async def put_metadata_item(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        server = self.get_server(request, ctx)
        key = request.match_info["key"]
        meta = (await read_json(request)).get("meta")
        if not isinstance(meta, dict) or list(meta) != [key]:
            raise SimHTTPError(400, "Request body and URI mismatch")
        new = {**(server.get("metadata") or {}), **self._metadata(meta, ctx)}
        self._metadata(new, ctx)
        self.compute.touch(server, metadata=new)
        return json_response({"meta": {key: new[key]}})

    async def delete_metadata_item(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        server = self.get_server(request, ctx)
        key = request.match_info["key"]
        new = dict(server.get("metadata") or {})
        if new.pop(key, None) is None:
            raise SimHTTPError(404, "Metadata item was not found")
        self.compute.touch(server, metadata=new)
        return web.Response(status=204)

    # -- actions ---------------------------------------------------------------------------
    async def action(self, request: web.Request) -> web.Response:
        ctx = check_url_project(request)
        server = self.get_server(request, ctx)
        body = await read_json(request)
        if len(body) != 1:
            raise SimHTTPError(400, "Malformed request body")
        name, params = next(iter(body.items()))
        if name == "os-stop":
            allowed = (ACTIVE, ERROR, "rescued") if self.liberty else (ACTIVE, ERROR)
            if server.get("vm_state") not in allowed or server.get("task_state") is not None:
                raise self.invalid_state("stop", server)
            self.compute.stop(server)
            return web.Response(status=202)
        if name == "os-start":
            if server.get("vm_state") != STOPPED or server.get("task_state") is not None:
                raise self.invalid_state("start", server)
            self.compute.start(server)
            return web.Response(status=202)
        if name == "createImage":
            return await self._create_image(request, ctx, server, params)
        raise SimHTTPError(400, f"There is no such action: {name}")

    async def _create_image(self, request: web.Request, ctx: AuthContext, server: Record,
                            params: Any) -> web.Response:
        if not isinstance(params, dict) or not isinstance(params.get("name"), str) or not (
                params["name"].strip()):
            raise schema_error("createImage", params, "'name' is a required property")
        extra = params.get("metadata") or {}
        if not isinstance(extra, dict):
            raise schema_error("metadata", extra, "is not of type 'object'")
        volume_backed = not server.get("image_id")
        allowed = [ACTIVE, STOPPED] if volume_backed and self.liberty else [
            ACTIVE, STOPPED, "paused", "suspended"]
        if server.get("vm_state") not in allowed or server.get("task_state") is not None:
            raise self.invalid_state("createImage", server)
        image = self._snapshot_image(request, ctx, server, params["name"].strip(),
                                     {str(k): str(v) for k, v in extra.items()},
                                     volume_backed=volume_backed)
        if at_least(request, "2.45"):
            return json_response({"image_id": image["id"]}, status=202)
        return web.Response(status=202, headers={
            "Location": f"{origin(request)}/image/images/{image['id']}"})

    def _snapshot_image(self, request: web.Request, ctx: AuthContext, server: Record,
                        name: str, extra: dict[str, str], *, volume_backed: bool) -> Record:
        meta = server.get("image_meta") or {}
        props = {k: str(v) for k, v in (meta.get("properties") or {}).items()
                 if k not in NON_INHERITABLE}
        if not volume_backed:
            props.update(instance_uuid=server["id"], user_id=str(ctx.user_id),
                         image_type="snapshot", base_image_ref=server["image_id"],
                         image_location="snapshot", image_state="available",
                         owner_id=str(server["project_id"]))
            if not self.liberty:
                props.update(self._owner_names(server))
        props.update(extra)
        fields: dict[str, Any] = {"min_disk": int(meta.get("min_disk") or 0),
                                  "min_ram": int(meta.get("min_ram") or 0)}
        if not self.liberty:
            fields["visibility"] = ("private" if ctx.project_id == server["project_id"]
                                    else "shared")
        else:
            fields["visibility"] = "private"
        if volume_backed:
            props["root_device_name"] = server.get("root_device_name") or ROOT_DEVICE
            props["block_device_mapping"] = json.dumps(
                self.compute.snapshot_volumes(server, name))
            props["bdm_v2"] = "True"
        image = images.new_image(self.cloud, name=name, owner=ctx.project_id,
                                 properties=props, **fields)
        if fields["visibility"] == "shared":
            stamp = now_iso()
            self.state.put("image_members", {
                "id": f"{image['id']}:{server['project_id']}", "image_id": image["id"],
                "member_id": server["project_id"], "status": "pending",
                "created_at": stamp, "updated_at": stamp})
        if volume_backed:
            self._activate_empty(image)
        else:
            self.compute.snapshot_image_backed(server, image)
        return image

    def _activate_empty(self, image: Record) -> None:
        """A zero-byte image: Liberty's Glance v1 activates it with size 0 and no formats;
        modern Nova uploads zero bytes as raw/bare (Glance v2 has no other way)."""
        spec = {"kind": "generated", "seed": 0, "size": 0}
        if self.liberty:
            image.update(status="active", size=0, _content=spec, updated_at=now_iso())
            self.state.touch("images", image)
            return
        image.update(disk_format="raw", container_format="bare")
        images.set_content(self.cloud, image, spec, empty_digest())

    def _owner_names(self, server: Record) -> dict[str, str]:
        project = self.state.get("projects", server["project_id"]) or {}
        user = self.state.get("users", server.get("user_id") or "") or {}
        return {"owner_project_name": str(project.get("name") or ""),
                "owner_user_name": str(user.get("name") or "")}


def _sort_value(field: str) -> Callable[[Record], tuple[bool, Any]]:
    if field == "_seq":
        return lambda server: (False, int(server.get("_seq") or 0))
    return lambda server: (server.get(field) is None, str(server.get(field) or ""))


def _regex(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return pattern in text


def _password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(12))


def add_server_routes(router: web.UrlDispatcher, base: str, api: ServerAPI, wrap: Any) -> None:
    servers = f"{base}/servers"
    router.add_get(servers, wrap(api.list_servers))
    router.add_post(servers, wrap(api.create))
    router.add_get(f"{servers}/detail", wrap(api.list_detail))
    one = f"{servers}/{{server_id}}"
    router.add_get(one, wrap(api.show))
    router.add_put(one, wrap(api.update))
    router.add_delete(one, wrap(api.delete))
    router.add_post(f"{one}/action", wrap(api.action))
    router.add_get(f"{one}/ips", wrap(api.ips))
    router.add_get(f"{one}/metadata", wrap(api.get_metadata))
    router.add_post(f"{one}/metadata", wrap(api.set_metadata))
    router.add_put(f"{one}/metadata", wrap(api.set_metadata))
    router.add_get(f"{one}/metadata/{{key}}", wrap(api.get_metadata_item))
    router.add_put(f"{one}/metadata/{{key}}", wrap(api.put_metadata_item))
    router.add_delete(f"{one}/metadata/{{key}}", wrap(api.delete_metadata_item))

