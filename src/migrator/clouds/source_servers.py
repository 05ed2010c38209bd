"""Reading the servers of a legacy cloud with list calls: Nova's server listing, Neutron's
compute ports and floating IPs, and the volumes' attachments (already read with the volumes).

Each server becomes an item of kind ``server`` whose attributes are Nova's raw record plus
what discovery joins to it:

- ``ports``: the server's Neutron ports in the order Nova lists its addresses (``id``,
  ``network_id``, ``mac_address``, ``fixed_ips`` [{subnet_id, ip_address}],
  ``security_groups`` ids, ``floating_ips`` [addresses]);
- ``attached_volumes``: [{volume_id, device, boot}] in device order (the boot volume of a
  volume-backed server first, with ``boot: true``);
- ``flavor_name``: the flavor's name (Liberty shows only ``{id, links}``);
- ``boot``: ``image`` or ``volume``.

The item's ``size_bytes`` is what a cutover copies: the boot image's size for an
image-backed server (its snapshot holds the same disk), plus every attached volume's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from migrator.clouds.errors import CloudCallError
from migrator.clouds.source_base import (
    DENIED,
    GIB,
    Collector,
    SourceBase,
    Tenant,
    clean,
    tenant_of,
)
from migrator.store.inventory import Item

# Nova's root device for a volume-backed server (the boot volume's attachment device).
ROOT_DEVICES = ("/dev/vda", "/dev/sda", "/dev/xvda", "/dev/hda")


class ServerReads(SourceBase):
    """Nova servers with their ports, floating IPs and attached volumes."""

    def _read_servers(self, selected: Sequence[Tenant], limited: bool, out: Collector) -> None:
        servers: list[dict[str, Any]] | None = None
        ports: list[dict[str, Any]] | None = None
        floating: list[dict[str, Any]] | None = None
        if not limited:
            try:
                servers = self.list_all(self.admin, "compute", "/servers/detail", "servers",
                                        {"all_tenants": 1})
                # Liberty ignores unknown filters: the owner is checked client side below.
                ports = self.list_all(self.admin, "network", "/ports", "ports", paged=False)
                floating = self.list_all(self.admin, "network", "/floatingips",
                                         "floatingips", paged=False)
            except CloudCallError as exc:
                if exc.status not in DENIED:
                    raise
                servers = ports = floating = None
        if servers is None or ports is None or floating is None:
            servers = self._per_tenant_lists(selected, "server", "compute", "/servers/detail",
                                             "servers", {}, out, owner=("tenant_id",))
            ports = self._per_tenant_lists(selected, "server", "network", "/ports", "ports", {},
                                           out, owner=("tenant_id", "project_id"))
            floating = self._per_tenant_lists(selected, "server", "network",
                                              "/floatingips", "floatingips", {}, out,
                                              owner=("tenant_id", "project_id"))
        by_device: dict[str, list[dict[str, Any]]] = {}
        for port in ports:
            if str(port.get("device_owner") or "").startswith("compute:"):
                by_device.setdefault(str(port.get("device_id")), []).append(port)
        fips: dict[str, list[str]] = {}
        for fip in floating:
            if fip.get("port_id") and fip.get("floating_ip_address"):
                fips.setdefault(str(fip["port_id"]), []).append(str(fip["floating_ip_address"]))
        flavors = {item.source_id: item for item in out.items.values() if item.kind == "flavor"}
        attached: dict[str, list[dict[str, Any]]] = {}
        volume_sizes: dict[str, int] = {}
        for item in out.items.values():
            if item.kind != "volume":
                continue
            volume_sizes[item.source_id] = int(item.attributes.get("size") or 0)
            for att in item.attributes.get("attachments") or []:
                if att.get("server_id"):
                    attached.setdefault(str(att["server_id"]), []).append(
                        {"volume_id": item.source_id, "device": str(att.get("device") or "")})
        images = {item.source_id: item for item in out.items.values() if item.kind == "image"}
        for raw in servers:
            attrs = clean(raw)
            sid = str(raw["id"])
            attrs["ports"] = _ports(raw, by_device.get(sid, []), fips)
            image_ref = raw.get("image")
            image_id = image_ref.get("id") if isinstance(image_ref, dict) else None
            volumes = sorted(attached.get(sid, []), key=lambda v: (len(v["device"]),
                                                                    v["device"]))
            boot = "image" if image_id else "volume"
            for vol in volumes:
                vol["boot"] = boot == "volume" and vol["device"] in ROOT_DEVICES
            volumes.sort(key=lambda v: not v["boot"])
            attrs["attached_volumes"] = volumes
            attrs["boot"] = boot
            flavor = raw.get("flavor") or {}
            fid = str(flavor.get("id") or "")
            flavor_item = flavors.get(fid)
            attrs["flavor_name"] = (flavor.get("original_name") or flavor.get("name")
                                    or (flavor_item.name if flavor_item else None) or fid)
            size = sum(volume_sizes.get(v["volume_id"], 0) for v in volumes) * GIB
            if image_id and image_id in images:
                size += int(images[image_id].size_bytes or 0)
            out.add(Item("server", sid, tenant_of(raw, "tenant_id", "project_id"),
                         raw.get("name"), attrs, size_bytes=size))


def _ports(server: dict[str, Any], ports: list[dict[str, Any]],
           fips: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The server's ports, in the order of Nova's ``addresses`` (then by creation)."""
    order: dict[str, int] = {}
    for net_addresses in (server.get("addresses") or {}).values():
        for entry in net_addresses or []:
            mac = entry.get("OS-EXT-IPS-MAC:mac_addr")
            if mac and mac not in order:
                order[mac] = len(order)
    listed = sorted(enumerate(ports), key=lambda p: (
        order.get(str(p[1].get("mac_address")), len(order)), str(p[1].get("created_at") or ""),
        p[0]))
    return [{"id": p["id"], "network_id": p.get("network_id"),
             "mac_address": p.get("mac_address"),
             "fixed_ips": [{"subnet_id": ip.get("subnet_id"), "ip_address": ip.get("ip_address")}
                           for ip in p.get("fixed_ips") or []],
             "security_groups": list(p.get("security_groups") or []),
             "floating_ips": sorted(fips.get(str(p["id"]), []))}
            for _, p in listed]
