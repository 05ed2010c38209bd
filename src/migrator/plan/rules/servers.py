"""Nova servers: one ``server`` step per ACTIVE or SHUTOFF server of a selected tenant.

A server step depends on its project and the project's compute quota, its owner (the user
whose key it boots with), its key pair, the networks and subnets of its ports, the security
groups of its ports, its image's step (image-backed) and what its volumes needed (their
project's volume quota). Its attached volumes (boot volume and data volumes) are moved BY the
server step, inside the cutover window, after the source is stopped: the ``volume`` steps the
storage rule planned for them are taken over (their translated attributes, mapped type and
references move into the server's spec) and removed from the plan, so that no volume is
copied while its server still writes to it.

The plan fixes, per server (``spec.cutover``, readable in the plan file, ``plan --format
json`` and ``--address-map``):

- the target flavor: ``mappings.flavors``, else a target flavor of the same name; neither is
  a plan error naming the server and the flavor;
- each port's target: the migrated network and the /64 of each of its IPv4 subnets, the same
  MAC (``servers.keep_mac``), hence the IPv6 address (EUI-64 of the MAC in the /64: SLAAC
  computes it, DHCPv6-stateful is asked for it); each floating IPv4 of the port is replaced
  by that global IPv6 address (the target has no floating IPs);
- the boot image's properties, translated by the image rules (the AArch64 UEFI rule applies
  to the server's snapshot image as to any image);
- the bytes to copy and the estimated downtime (bytes / bandwidth + ``boot_overhead``; with
  ``cutover: snapshot_running`` the copy is outside the window).

Refused at plan time, one line each naming the server: a server in ERROR (with Nova's fault),
one in another state than ACTIVE or SHUTOFF, an unmapped flavor, a volume or port that cannot
be planned.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from migrator.clouds.image_formats import FORMAT_KEY
from migrator.plan.context import PlanState
from migrator.spec import Lookup
from migrator.store.inventory import Item
from migrator.transfer.properties import image_properties, translate

MOVABLE = ("ACTIVE", "SHUTOFF")
EUI64_MODES = ("slaac", "dhcpv6-stateless", "dhcpv6-stateful")


def eui64(cidr: str, mac: str) -> str:
    """The SLAAC address of ``mac`` in the /64 ``cidr`` (RFC 4291 modified EUI-64)."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    interface = int.from_bytes(bytes([*octets[:3], 0xFF, 0xFE, *octets[3:]]), "big")
    net = ipaddress.IPv6Network(cidr)
    return str(ipaddress.IPv6Address(int(net.network_address) + interface))


def plan(state: PlanState) -> None:
    if not state.kinds.wants("server"):
        return
    for sid, item, tenant, project_key in state.owned("server"):
        _server(state, sid, item, tenant, project_key)


def _what(state: PlanState, item: Item) -> str:
    return (f"server {item.name or item.source_id} ({item.source_id}) of tenant "
            f"{state.inventory.tenant_name(item.tenant)}")


def _flavor(state: PlanState, item: Item) -> tuple[str, str | None] | None:
    legacy = str(item.attributes.get("flavor_name") or "")
    maps = state.config.mappings.flavors
    names: Any = state.names
    targets: dict[str, str] = dict(names.flavors()) if state.names.checked and hasattr(
        names, "flavors") else {}
    wanted = maps.get(legacy)
    if wanted is not None:
        if state.names.checked and wanted not in targets and wanted not in targets.values():
            state.error(f"{_what(state, item)}: mappings.flavors maps flavor {legacy!r} to "
                        f"{wanted!r}, which does not exist on the target")
            return None
        state.resolved["flavors"][legacy] = {"target": wanted, **(
            {"id": targets[wanted]} if wanted in targets else {})}
        return wanted, targets.get(wanted)
    if legacy in targets:
        state.resolved["flavors"][legacy] = {"target": legacy, "id": targets[legacy]}
        return legacy, targets[legacy]
    where = ("and the target has no flavor of that name" if state.names.checked
             else "(the target was not read: --offline)")
    state.error(f"{_what(state, item)}: flavor {legacy!r} has no mapping in mappings.flavors "
                f"{where}")
    return None


def _server(state: PlanState, sid: str, item: Item, tenant: str, project_key: str) -> None:
    attrs = item.attributes
    what = _what(state, item)
    status = str(attrs.get("status") or "")
    if status == "ERROR":
        fault = (attrs.get("fault") or {}).get("message") if isinstance(
            attrs.get("fault"), dict) else None
        state.error(f"{what} is in ERROR on the source"
                    + (f" ({fault})" if fault else "")
                    + ": repair or delete it there, or exclude its tenant")
        return
    if status not in MOVABLE:
        state.error(f"{what} is {status or 'in an unknown state'} on the source: only ACTIVE "
                    "and SHUTOFF servers are cut over; let it settle and plan again")
        return
    flavor = _flavor(state, item)
    refs: dict[str, Any] = {"project_id": project_key}
    after: list[str] = [k for k in [state.key_if("quota", f"compute:{tenant}")] if k]
    ok = flavor is not None
    owner = _owner(state, item, refs, after)
    key_name = attrs.get("key_name")
    if key_name:
        user_id = str(attrs.get("user_id") or "")
        key = state.key_if("keypair", f"{user_id}:{key_name}")
        if key is None:
            state.error(f"{what}: its key pair {key_name!r} of user {user_id} is not planned "
                        "(not in the inventory, or its user is not migrated)")
            ok = False
        else:
            refs["keypair"] = key
    ports, addresses, ports_ok = _ports(state, item, refs)
    volumes, volumes_ok = _volumes(state, item, refs, after)
    ok = ok and ports_ok and volumes_ok
    boot = str(attrs.get("boot") or "image")
    image: dict[str, Any] = {}
    if boot == "image":
        image_id = str((attrs.get("image") or {}).get("id") or "")
        source_image = state.inventory.get("image", image_id)
        image_key = state.key_if("image", image_id)
        if image_key is not None:
            after.append(image_key)
        before = image_properties({k: v for k, v in (source_image.attributes if source_image
                                                     else {}).items()
                                   if k not in ("members",)}) if source_image else {}
        props, _changes = translate(before, state.config.image_rules)
        # The format the image step planned (the bytes' own when they contradict the
        # label): a target that checks formats refuses the label alone.
        planned = state.steps[image_key].spec["attrs"].get("disk_format") if image_key else None
        legacy = source_image.attributes if source_image else {}
        image = {"source_image_id": image_id or None,
                 "disk_format": planned or legacy.get(FORMAT_KEY) or legacy.get("disk_format")
                 or "raw",
                 "properties": props}
    if not ok or flavor is None:
        return
    size = int(item.size_bytes or 0)
    servers = state.config.servers
    bandwidth = state.config.transfer.bandwidth or servers.estimate_bandwidth
    copy_seconds = size / bandwidth if bandwidth else 0.0
    downtime = servers.boot_overhead + (copy_seconds if servers.cutover == "stop" else 0.0)
    target = {
        "name": item.name or sid,
        "flavor": flavor[0],
        "key_name": key_name or None,
        "metadata": {str(k): str(v) for k, v in (attrs.get("metadata") or {}).items()},
        "security_groups": sorted({str(g.get("name")) for g in attrs.get("security_groups")
                                   or [] if isinstance(g, dict) and g.get("name")}),
        "description": attrs.get("description"),
    }
    lookup: Lookup = {
        "source_status": status,
        "boot": boot,
        "flavor_id": flavor[1],
        "source_flavor": attrs.get("flavor_name"),
        "owner": owner,
        "image": image,
        "ports": ports,
        "volumes": volumes,
        "size": size,
        "policy": servers.cutover,
    }
    key = state.add("server", sid, tenant_id=tenant, name=item.name or sid, attrs=target,
                    refs=refs, lookup=lookup, after=after)
    state.steps[key].spec["cutover"] = {
        "flavor": f"{attrs.get('flavor_name')} -> {flavor[0]}",
        "power_state": status,
        "boot": boot,
        "addresses": addresses,
        "bytes": size,
        "copy_seconds": round(copy_seconds, 1),
        "estimated_downtime_seconds": round(downtime, 1),
        "policy": servers.cutover,
    }


def _owner(state: PlanState, item: Item, refs: dict[str, Any], after: list[str]
           ) -> dict[str, Any]:
    """How the target server gets its owner's key: booted as the owner (the user migrator
    created, with the password it recorded, once its roles on the project are granted),
    else as migrator's user with the owner's public key imported under the same name for
    the boot (``method: import``)."""
    user_id = str(item.attributes.get("user_id") or "")
    user_key = state.key_if("user", user_id)
    prefix = f"role_assignment:{user_id}:{item.tenant}:"
    roles = sorted(k for k in state.steps if k.startswith(prefix))
    if user_key is None or not roles:
        return {"method": "import", "user_id": user_id}
    after.extend(k for k in roles if k not in after)
    user = state.steps[user_key].spec
    lookup = user.get("lookup") or {}
    refs["owner_user"] = user_key
    policy = lookup.get("password_policy", "random")
    out: dict[str, Any] = {"method": "import" if policy == "external" else "password",
                           "user_id": user_id, "name": user["attrs"].get("name"),
                           "domain_id": user["attrs"].get("domain_id"),
                           "password_policy": policy}
    for field in ("password_file", "password_env"):
        if lookup.get(field):
            out[field] = lookup[field]
    return out


def _ports(state: PlanState, item: Item, refs: dict[str, Any]
           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    what = _what(state, item)
    address_plan = state.config.address_plan
    keep_mac = state.config.servers.keep_mac
    ports: list[dict[str, Any]] = []
    addresses: list[dict[str, Any]] = []
    ok = True
    for index, port in enumerate(item.attributes.get("ports") or []):
        net_id = str(port.get("network_id") or "")
        net_key = state.key_if("network", net_id)
        if net_key is None:
            network = state.inventory.get("network", net_id)
            if network is not None and network.tenant and network.tenant not in state.tenants:
                state.not_selected(f"{what}: its port {port.get('id')}", item.tenant,
                                   "network", network)
            else:
                state.error(f"{what}: its port {port.get('id')} is on network "
                            f"{network.name if network else net_id}, which is not migrated "
                            "with it (a port on a shared or external network cannot be "
                            "moved)")
            ok = False
            continue
        refs[f"port{index}_network"] = net_key
        mac = str(port.get("mac_address") or "")
        fixed: list[dict[str, Any]] = []
        for j, ip in enumerate(port.get("fixed_ips") or []):
            subnet_id = str(ip.get("subnet_id") or "")
            legacy = str(ip.get("ip_address") or "")
            subnet_key = state.key_if("subnet", subnet_id)
            if subnet_key is None:
                state.error(f"{what}: its address {legacy} is on subnet {subnet_id}, which is "
                            "not planned")
                ok = False
                continue
            refs[f"port{index}_subnet{j}"] = subnet_key
            cidr = state.steps[subnet_key].spec["attrs"].get("cidr")
            ipv6 = (eui64(str(cidr), mac) if cidr and mac and keep_mac
                    and address_plan.ipv6_mode in EUI64_MODES else None)
            entry: dict[str, Any] = {"subnet": f"port{index}_subnet{j}", "legacy": legacy,
                                     "ipv6": ipv6,
                                     "explicit": address_plan.ipv6_mode == "dhcpv6-stateful"}
            v4_key = state.key_if("subnet", f"{subnet_id}:ipv4")
            if v4_key is not None:
                refs[f"port{index}_subnet{j}_ipv4"] = v4_key
                entry["ipv4_subnet"] = f"port{index}_subnet{j}_ipv4"
            fixed.append(entry)
            floating = list(port.get("floating_ips") or []) if j == 0 else []
            addresses.append({"port": index, "mac": mac, "ipv4": legacy,
                              "ipv6": ipv6 or "(assigned by the target)",
                              "floating_ipv4": floating, "floating_ipv6": (
                                  ipv6 or "(assigned by the target)") if floating else None})
        groups = []
        for gid in port.get("security_groups") or []:
            group_key = state.key_if("security_group", str(gid))
            if group_key is None:
                state.error(f"{what}: its port {port.get('id')} has security group {gid}, "
                            "which is not planned")
                ok = False
            else:
                groups.append(group_key)
        refs[f"port{index}_groups"] = groups
        ports.append({"source_id": port.get("id"), "mac_address": mac if keep_mac else None,
                      "network": f"port{index}_network", "fixed_ips": fixed,
                      "groups": f"port{index}_groups"})
    return ports, addresses, ok


def _volumes(state: PlanState, item: Item, refs: dict[str, Any], after: list[str]
             ) -> tuple[list[dict[str, Any]], bool]:
    """The attached volumes, in order, taken over from their ``volume`` steps."""
    what = _what(state, item)
    out: list[dict[str, Any]] = []
    ok = True
    for index, vol in enumerate(item.attributes.get("attached_volumes") or []):
        vid = str(vol.get("volume_id"))
        key = state.key_if("volume", vid)
        if key is None:
            state.error(f"{what}: its volume {vid} ({vol.get('device')}) cannot be planned "
                        "(see the volume's own problem, or it is not in the inventory)")
            ok = False
            continue
        step = state.steps.pop(key)
        vrefs = dict(step.spec.get("refs") or {})
        vrefs.pop("project_id", None)
        for attr, ref in vrefs.items():
            refs[f"volume{index}.{attr}"] = ref
        for dep in step.depends_on:
            if not dep.startswith("project:") and dep not in after and not dep.startswith(
                    "image:"):
                after.append(dep)
        out.append({"source_id": vid, "device": vol.get("device"), "boot": bool(vol.get("boot")),
                    "attrs": step.spec["attrs"], "refs_prefix": f"volume{index}",
                    "name": step.name})
    return out, ok
