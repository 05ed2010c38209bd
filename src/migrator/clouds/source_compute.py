"""Reading Nova of a legacy cloud: flavors (extra specs, access lists), quotas, keypairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from migrator.clouds.errors import CloudCallError
from migrator.clouds.source_base import (
    DENIED,
    KEYPAIR_MICROVERSION,
    Collector,
    SourceBase,
    Tenant,
    Unreadable,
)
from migrator.store.inventory import Item


class ComputeReads(SourceBase):
    """Nova: flavors, quotas (Neutron's too), keypairs per user."""
    def _read_flavors(self, out: Collector) -> None:
        try:
            flavors = self.list_all(self.admin, "compute", "/flavors/detail", "flavors",
                                    {"is_public": "None"})
        except CloudCallError as exc:
            if exc.status not in DENIED:
                raise
            out.denied(Unreadable(None, None, "flavor", f"HTTP {exc.status}"))
            return

        def details(raw: dict[str, Any]) -> None:
            fid = raw["id"]
            attrs = dict(raw)
            attrs.pop("links", None)
            body = self.admin.get_json("compute", f"/flavors/{fid}/os-extra_specs",
                                       resource=f"flavor {fid}")
            attrs["extra_specs"] = (body or {}).get("extra_specs") or {}
            is_public = raw.get("os-flavor-access:is_public", True)
            attrs["is_public"] = is_public
            if not is_public:
                try:
                    access = self.admin.get_json(
                        "compute", f"/flavors/{fid}/os-flavor-access",
                        resource=f"flavor {fid}", allow_404=True)
                except CloudCallError as exc:
                    if exc.status not in DENIED:
                        raise
                    out.denied(Unreadable(None, None, "flavor",
                                          f"access list of private flavor {raw.get('name')} "
                                          f"(HTTP {exc.status})"))
                    access = None
                attrs["access"] = sorted(a["tenant_id"] for a in
                                         (access or {}).get("flavor_access") or [])
            out.add(Item("flavor", fid, None, raw.get("name"), attrs))

        self._map(details, flavors)

    def _read_quotas(self, selected: Sequence[Tenant], out: Collector) -> None:
        network: dict[str, dict[str, Any]] = {}
        try:
            for raw in self.list_all(self.admin, "network", "/quotas", "quotas", paged=False):
                pid = raw.get("tenant_id") or raw.get("project_id")
                if pid:
                    network[pid] = raw
        except CloudCallError as exc:
            if exc.status not in DENIED:
                raise

        def one(tenant: Tenant) -> None:
            found: list[Item] = []
            for service, proxy, path, key in (
                ("compute", "compute", f"/os-quota-sets/{tenant.id}", "quota_set"),
                ("volume", "block_storage", f"/os-quota-sets/{tenant.id}", "quota_set"),
                ("network", "network", f"/quotas/{tenant.id}", "quota"),
            ):
                if service == "network" and tenant.id in network:
                    raw = dict(network[tenant.id])
                else:
                    raw = self._tenant_read(tenant, "quota", proxy, path, key, out)
                    if raw is None:
                        continue
                raw.pop("id", None)
                found.append(Item("quota", f"{service}:{tenant.id}", tenant.id, service, raw))
            out.add_all(found)

        self._map(one, selected)

    def _tenant_read(self, tenant: Tenant, kind: str, service: str, path: str, key: str,
                     out: Collector, params: Mapping[str, Any] | None = None,
                     microversion: str | None = None) -> Any:
        """One GET for a tenant: with the admin token, else the tenant's own token."""
        try:
            body = self.admin.get_json(service, path, params=params, resource=kind,
                                       microversion=microversion)
            return body.get(key) if key else body
        except CloudCallError as exc:
            if exc.status not in DENIED:
                raise
            first = exc
        handle = self._tenant_handle(tenant)
        if handle is None or handle is self.admin:
            out.denied(Unreadable(tenant.id, tenant.name, kind,
                                  f"HTTP {first.status} with the admin credentials; "
                                  + self._no_handle_reason(tenant)))
            return None
        try:
            body = handle.get_json(service, path, params=params, resource=kind,
                                   microversion=microversion)
            return body.get(key) if key else body
        except CloudCallError as exc:
            if exc.status not in DENIED:
                raise
            out.denied(Unreadable(tenant.id, tenant.name, kind,
                                  f"HTTP {exc.status} with the tenant's own credentials too"))
            return None

    def _read_keypairs(self, selected: Sequence[Tenant], users: Sequence[Item],
                       out: Collector) -> None:
        by_id = {t.id: t for t in selected}

        def one(user: Item) -> None:
            tenant_id = user.tenant if user.tenant in by_id else next(
                iter(sorted(self._assigned.get(user.source_id, set()) & set(by_id))), None)
            if tenant_id is None:
                return
            tenant = by_id[tenant_id]
            raw = self._keypairs_of(user.source_id, tenant, out)
            found: list[Item] = []
            for entry in raw or []:
                keypair = dict(entry.get("keypair") or entry)
                keypair.setdefault("user_id", user.source_id)
                name = keypair.get("name")
                found.append(Item("keypair", f"{user.source_id}:{name}", tenant_id, name,
                                  keypair))
            out.add_all(found)

        self._map(one, users)

    def _keypairs_of(self, user_id: str, tenant: Tenant, out: Collector) -> Any:
        try:
            body = self.admin.get_json("compute", "/os-keypairs", params={"user_id": user_id},
                                       microversion=KEYPAIR_MICROVERSION, resource="keypairs")
            return body.get("keypairs")
        except CloudCallError as exc:
            if exc.status not in DENIED:
                raise
            status = exc.status
        handle = self._tenant_handle(tenant)
        if handle is not None and handle is not self.admin and handle.user_id == user_id:
            body = handle.get_json("compute", "/os-keypairs",
                                   microversion=KEYPAIR_MICROVERSION, resource="keypairs")
            return body.get("keypairs")
        out.denied(Unreadable(tenant.id, tenant.name, "keypair",
                              f"keypairs of user {user_id} (HTTP {status}): only admins "
                              "or the user itself may list them"))
        return None
