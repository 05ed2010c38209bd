"""Neutron kinds: network, subnet, router, router_interface.

- network: after its project and the project's network quota; networks mapped to an existing
  target network (``mappings.shared_networks`` / ``external_networks``, or a same-named
  external network on the target) are not migrated. A name taken on the target (in the
  project, or by a shared or external network) is a clash (``conflicts.networks``).
- subnet: after its network. Every legacy subnet becomes an IPv6 subnet: a /64 of
  ``address_plan.ipv6_prefix`` (address_plan.py) or of the ``subnet_pool``, RA and address
  mode from ``ipv6_mode``; with ``keep_ipv4`` the IPv4 subnet is recreated beside it (step
  source id ``<subnet id>:ipv4``).
- router: after its project and quota; its gateway goes on the mapped external network.
- router_interface (source id ``<router id>:<subnet id>``): after the router and the subnet;
  an interface on a subnet of a mapped shared network uses that network's IPv6 subnet on the
  target; on a subnet of a tenant that is not selected it is refused (or that tenant is
  pulled in with --include-dependencies).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from migrator.plan import address_plan
from migrator.plan.context import PlanState
from migrator.plan.rules.common import decide_clash, network_quota
from migrator.plan.target_names import TargetEntry
from migrator.spec import Lookup
from migrator.store.inventory import Item

NETWORK_FIELDS = ("admin_state_up", "shared", "description", "mtu", "port_security_enabled")


def plan(state: PlanState) -> None:
    wants = state.kinds.wants
    if wants("network"):
        _networks(state)
    if wants("subnet"):
        _subnets(state)
    if wants("router"):
        _routers(state)


def _network_clashes(state: PlanState, item: Item, project_adopted: str | None
                     ) -> dict[str, TargetEntry]:
    """Target networks that would clash with a network created in this project: same name in
    the (adopted or already migrated) project, or shared or external."""
    out: dict[str, TargetEntry] = {}
    name = item.name or ""
    for entry in state.target_networks().get(name, []):
        if entry.shared or entry.external or (project_adopted and
                                              entry.project_id == project_adopted):
            out.setdefault(name, entry)
    return out


def _networks(state: PlanState) -> None:
    for nid, item in sorted(state.inventory.kind("network").items()):
        if not state.selected(item) or state.mapped_network(item) is not None:
            continue
        attrs = item.attributes
        tenant = str(item.tenant)
        project = state.steps.get(f"project:{tenant}")
        if project is None:
            continue
        legacy_name = item.name or nid
        adopted_project = project.spec["lookup"].get("adopt_id")
        name, adopt_id = decide_clash(state, "network", legacy_name, legacy_name,
                                      _network_clashes(state, item, adopted_project), nid)
        target: dict[str, Any] = {"name": name}
        for key in NETWORK_FIELDS:
            if attrs.get(key) is not None and attrs.get(key) != "":
                target[key] = attrs[key]
        if attrs.get("router:external"):
            target["router:external"] = True
        state.add("network", nid, tenant_id=tenant, name=name, attrs=target,
                  refs={"project_id": project.key}, lookup={"adopt_id": adopt_id}
                  if adopt_id else {}, after=network_quota(state, tenant),
                  source_name=legacy_name)


def _allocations(state: PlanState) -> dict[str, str]:
    prefix = state.config.address_plan.ipv6_prefix
    if not prefix:
        return {}
    recorded = {}
    for entry in state.names.subnets():
        if entry.source_id and entry.cidr and ":" in entry.cidr:
            recorded[entry.source_id] = entry.cidr
    every_subnet = list(state.inventory.kind("subnet"))
    allocated = address_plan.allocate(prefix, every_subnet, recorded)
    return allocated


def _subnets(state: PlanState) -> None:
    config = state.config.address_plan
    if not config.ipv6_prefix and not config.subnet_pool:
        if any(state.selected(s) for s in state.inventory.kind("subnet").values()):
            state.error("address_plan: neither ipv6_prefix nor subnet_pool is set; the "
                        "target is IPv6-only, so every legacy subnet needs an IPv6 /64")
        return
    allocated = _allocations(state)
    ra_mode, address_mode = address_plan.ipv6_modes(config.ipv6_mode)
    pool_lookup: Lookup = {}
    if config.subnet_pool:
        pool_lookup = {"subnetpool": config.subnet_pool}
        if state.names.checked:
            pool = state.names.subnet_pool(config.subnet_pool)
            if pool is None:
                state.error(f"address_plan.subnet_pool: subnet pool {config.subnet_pool!r} "
                            "does not exist on the target")
            else:
                pool_lookup["subnetpool_id"] = pool.id
        state.resolved["address_plan"]["subnet_pool"] = pool_lookup
    for sid, item in sorted(state.inventory.kind("subnet").items()):
        attrs = item.attributes
        network_key = state.key_if("network", str(attrs.get("network_id")))
        if network_key is None or not state.selected(item):
            continue
        tenant = str(item.tenant)
        refs = {"network_id": network_key, "project_id": f"project:{tenant}"}
        name = item.name or ""
        target: dict[str, Any] = {"name": name, "ip_version": 6, "ipv6_ra_mode": ra_mode,
                                  "ipv6_address_mode": address_mode, "enable_dhcp": True}
        if config.subnet_pool:
            target["prefixlen"] = address_plan.SUBNET_PREFIXLEN
        else:
            target["cidr"] = allocated[sid]
        if config.dns_nameservers:
            target["dns_nameservers"] = list(config.dns_nameservers)
        if attrs.get("description"):
            target["description"] = attrs["description"]
        state.add("subnet", sid, tenant_id=tenant, name=name, attrs=target, refs=refs,
                  lookup=pool_lookup.copy(), source_name=name)
        if config.keep_ipv4 and attrs.get("ip_version") == 4:
            ipv4: dict[str, Any] = {"name": name, "ip_version": 4, "cidr": attrs.get("cidr"),
                                    "enable_dhcp": bool(attrs.get("enable_dhcp", True))}
            for key in ("gateway_ip", "allocation_pools", "dns_nameservers", "host_routes"):
                if attrs.get(key) not in (None, []):
                    ipv4[key] = attrs[key]
            state.add("subnet", f"{sid}:ipv4", tenant_id=tenant, name=name, attrs=ipv4,
                      refs=refs, source_name=name, source_ref=sid)


def _routers(state: PlanState) -> None:
    for rid, item, tenant, project_key in state.owned("router"):
        attrs = item.attributes
        name = item.name or ""
        what = f"router {name} ({rid})"
        target: dict[str, Any] = {"name": name,
                                  "admin_state_up": bool(attrs.get("admin_state_up", True))}
        if attrs.get("description"):
            target["description"] = attrs["description"]
        refs: dict[str, Any] = {"project_id": project_key}
        lookup: Lookup = {}
        gateway = (attrs.get("external_gateway_info") or {}).get("network_id")
        if gateway:
            _gateway(state, what, tenant, str(gateway), refs, lookup)
        key = state.add("router", rid, tenant_id=tenant, name=name, attrs=target, refs=refs,
                        lookup=lookup, after=network_quota(state, tenant))
        if not state.kinds.wants("router_interface"):
            continue
        for interface in attrs.get("interfaces") or []:
            _interface(state, item, key, str(interface.get("subnet_id")))


def _gateway(state: PlanState, what: str, tenant: str, network_id: str,
             refs: dict[str, Any], lookup: Lookup) -> None:
    net = state.inventory.get("network", network_id)
    if net is None:
        state.missing(what, tenant, "network", network_id)
        return
    mapped = state.mapped_network(net)
    if mapped is not None:
        lookup["external_network"] = mapped.name
        if mapped.id:
            lookup["external_network_id"] = mapped.id
        return
    planned = state.key_if("network", network_id)
    if planned is not None:
        refs["external_gateway_info.network_id"] = planned
        return
    checked = ("and no network of that name on the target" if state.names.checked
               else "(the target was not checked for a network of that name)")
    state.error(f"{what} of tenant {state.inventory.tenant_name(tenant)} has its gateway on "
                f"external network {net.name} ({network_id}), which has no mapping in "
                f"mappings.external_networks {checked}")


def _interface(state: PlanState, router: Item, router_key: str, subnet_id: str) -> None:
    tenant = str(router.tenant)
    source_id = f"{router.source_id}:{subnet_id}"
    what = f"router_interface {source_id}"
    subnet_key = state.key_if("subnet", subnet_id)
    if subnet_key is not None:
        state.add("router_interface", source_id, tenant_id=tenant, name=router.name,
                  attrs={}, refs={"router_id": router_key, "subnet_id": subnet_key})
        twin = state.key_if("subnet", f"{subnet_id}:ipv4")
        if twin is not None:
            state.add("router_interface", f"{source_id}:ipv4", tenant_id=tenant,
                      name=router.name, attrs={}, refs={"router_id": router_key,
                                                        "subnet_id": twin},
                      source_ref=source_id)
        return
    subnet = state.inventory.get("subnet", subnet_id)
    if subnet is None:
        state.missing(what, tenant, "subnet", subnet_id)
        return
    net = state.inventory.get("network", subnet.attributes.get("network_id"))
    mapped = state.mapped_network(net) if net is not None else None
    if mapped is not None:
        _mapped_interface(state, router, router_key, source_id, mapped.name, mapped.id)
        return
    if state.selected(subnet):
        return  # its network could not be planned: that error is already recorded
    state.not_selected(what, tenant, "subnet", subnet, mapping="mappings.shared_networks")


def _mapped_interface(state: PlanState, router: Item, router_key: str, source_id: str,
                      network: str, network_id: str | None) -> None:
    tenant = str(router.tenant)
    if network_id is None:
        state.error(f"router_interface {source_id} of tenant "
                    f"{state.inventory.tenant_name(tenant)} is on the mapped network "
                    f"{network}: resolving its target subnet needs the target (plan without "
                    "--offline)")
        return
    subnets = [s for s in state.names.subnets() if s.network_id == network_id and s.cidr
               and ipaddress.ip_network(s.cidr).version == 6]
    if len(subnets) != 1:
        state.error(f"router_interface {source_id} of tenant "
                    f"{state.inventory.tenant_name(tenant)}: the mapped target network "
                    f"{network} has {len(subnets)} IPv6 subnets (1 needed)")
        return
    state.add("router_interface", source_id, tenant_id=tenant, name=router.name,
              attrs={"subnet_id": subnets[0].id}, refs={"router_id": router_key},
              lookup={"network": network, "subnet": subnets[0].name})
