"""Reading Neutron of a legacy cloud: networks, subnets, routers (with their interfaces),
security groups and rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from migrator.clouds.errors import CloudCallError
from migrator.clouds.source_base import (
    DENIED,
    Collector,
    SourceBase,
    Tenant,
    tenant_of,
)
from migrator.store.inventory import Item


class NetworkReads(SourceBase):
    """Neutron listings (admin-wide, or per tenant in limited mode)."""
    _NEUTRON = (("network", "/networks", "networks"), ("subnet", "/subnets", "subnets"),
                ("router", "/routers", "routers"),
                ("port", "/ports", "ports"),
                ("security_group", "/security-groups", "security_groups"))

    def _read_network(self, selected: Sequence[Tenant], limited: bool,
                      out: Collector) -> None:
        lists: dict[str, list[dict[str, Any]]] = {}
        per_tenant: list[str] = []
        for kind, path, key in self._NEUTRON:
            params = {"device_owner": "network:router_interface"} if kind == "port" else {}
            if limited:
                per_tenant.append(kind)
                continue
            try:
                lists[kind] = self.list_all(self.admin, "network", path, key, params)
            except CloudCallError as exc:
                if exc.status not in DENIED:
                    raise
                per_tenant.append(kind)
        if per_tenant:
            for kind, path, key in self._NEUTRON:
                if kind not in per_tenant:
                    continue
                params = {"device_owner": "network:router_interface"} if kind == "port" else {}
                keep: Callable[[dict[str, Any]], bool] | None = None
                if kind == "network":
                    keep = usable_network
                elif kind == "subnet":
                    # Subnets of shared and external networks (a router interface on a shared
                    # network refers to one): owned by another project, yet the tenant's.
                    keep = on_networks({str(n["id"]) for n in lists.get("network", [])
                                         if usable_network(n)})
                lists[kind] = self._per_tenant_lists(
                    selected, kind, "network", path, key, params, out,
                    owner=("tenant_id", "project_id"), keep_foreign=keep)
        self._add_network(lists, out)

    def _add_network(self, lists: Mapping[str, list[dict[str, Any]]], out: Collector) -> None:
        interfaces: dict[str, list[dict[str, Any]]] = {}
        for port in lists.get("port", []):
            for fixed in port.get("fixed_ips") or []:
                interfaces.setdefault(str(port.get("device_id")), []).append(
                    {"subnet_id": fixed.get("subnet_id"), "port_id": port["id"],
                     "ip_address": fixed.get("ip_address")})
        for kind in ("network", "subnet", "router", "security_group"):
            for raw in lists.get(kind, []):
                tenant = tenant_of(raw, "tenant_id", "project_id")
                attrs = dict(raw)
                if kind == "router":
                    attrs["interfaces"] = sorted(interfaces.get(raw["id"], []),
                                                 key=lambda i: (i["subnet_id"] or "",
                                                                i["port_id"]))
                out.add(Item(kind, raw["id"], tenant, raw.get("name"), attrs))
                if kind == "security_group":
                    for rule in raw.get("security_group_rules") or []:
                        out.add(Item("security_group_rule", rule["id"],
                                     tenant_of(rule, "tenant_id", "project_id") or tenant,
                                     None, dict(rule)))


def usable_network(raw: Mapping[str, Any]) -> bool:
    return bool(raw.get("shared") or raw.get("router:external"))


def on_networks(network_ids: set[str]) -> Callable[[dict[str, Any]], bool]:
    """Whether a subnet belongs to one of ``network_ids``."""
    return lambda raw: str(raw.get("network_id")) in network_ids
