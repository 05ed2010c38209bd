"""Reading Keystone (v3) of a legacy cloud: projects, users, roles, domains, assignments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from migrator.clouds.connection import CloudHandle, open_cloud
from migrator.clouds.errors import CloudCallError
from migrator.clouds.source_base import (
    DENIED,
    Collector,
    Identity,
    SourceBase,
    Tenant,
    Unreadable,
    clean,
)
from migrator.errors import CloudError, ConfigError
from migrator.store.inventory import Item


class IdentityReads(SourceBase):
    """Keystone v3: the identity listings, tenant selection, limited-mode reads."""
    def _read_identity(self, out: Collector) -> Identity:
        ident = Identity()
        admin = self.admin
        try:
            ident.projects = {p["id"]: p for p in self.list_all(
                admin, "identity", "/projects", "projects", paged=False)}
        except CloudCallError as exc:
            if exc.status not in DENIED:
                raise
            ident.limited = True
            me = admin.user_id
            mine = self.list_all(admin, "identity", f"/users/{me}/projects", "projects",
                                 paged=False)
            ident.projects = {p["id"]: p for p in mine}
            self._operator_projects = set(ident.projects)
            out.denied(Unreadable(None, None, "project",
                                  f"the admin credentials may not list projects "
                                  f"(HTTP {exc.status}); reading tenant by tenant"))
        for kind, path, key, target in (("domain", "/domains", "domains", ident.domains),
                                        ("role", "/roles", "roles", ident.roles),
                                        ("user", "/users", "users", ident.users)):
            try:
                for raw in self.list_all(admin, "identity", path, key, paged=False):
                    target[raw["id"]] = raw
            except CloudCallError as exc:
                if exc.status not in DENIED:
                    raise
                out.denied(Unreadable(None, None, kind,
                                      f"listing needs admin (HTTP {exc.status})"))
        try:
            ident.assignments = self.list_all(admin, "identity", "/role_assignments",
                                              "role_assignments", paged=False)
        except CloudCallError as exc:
            if exc.status not in DENIED:
                raise
            out.denied(Unreadable(None, None, "role_assignment",
                                  f"listing needs admin (HTTP {exc.status})"))
        # Tenants named in the configuration that the admin cannot see: their own token
        # names their project.
        for wanted in self.tenant_credentials:
            if any(wanted in (p["id"], p["name"]) for p in ident.projects.values()):
                continue
            if not ident.limited:
                continue
            probe = Tenant(id=wanted, name=wanted)
            handle = self._credentials_handle(probe)
            if handle is None:
                continue
            uid = handle.user_id
            for p in self.list_all(handle, "identity", f"/users/{uid}/projects", "projects",
                                   paged=False):
                if wanted in (p["id"], p["name"]):
                    ident.projects[p["id"]] = p
                    with self._handles_lock:
                        self._handles[p["id"]] = handle
        return ident

    def _credentials_handle(self, tenant: Tenant) -> CloudHandle | None:
        name = self.tenant_credentials.get(tenant.name) or self.tenant_credentials.get(
            tenant.id)
        if not name:
            return None
        try:
            handle = open_cloud(name, config_file=self.admin.config_file, role="source",
                                timeout=self.admin.timeout, counter=self.admin.counter)
            handle.lean_reads = self.admin.lean_reads
            return handle
        except CloudError as exc:
            self._handle_errors[tenant.id] = exc.message
            return None

    def _resolve(self, ident: Identity, wanted: Sequence[str] | None
                 ) -> tuple[list[Tenant], list[str]]:
        tenants = {pid: Tenant(pid, str(p.get("name") or pid))
                   for pid, p in ident.projects.items() if not p.get("is_domain")}
        self._names = {t.id: t.name for t in tenants.values()}
        if wanted is None:
            return list(tenants.values()), []
        by_name: dict[str, list[Tenant]] = {}
        for tenant in tenants.values():
            by_name.setdefault(tenant.name, []).append(tenant)
        selected: dict[str, Tenant] = {}
        missing: list[str] = []
        for name in wanted:
            if name in tenants:
                selected[name] = tenants[name]
            elif len(by_name.get(name, [])) == 1:
                tenant = by_name[name][0]
                selected[tenant.id] = tenant
            elif by_name.get(name):
                raise ConfigError(f"tenant {name!r} is ambiguous on cloud {self.cloud}: "
                                  f"projects {', '.join(t.id for t in by_name[name])}; "
                                  "give the id")
            elif ident.limited:
                missing.append(name)
            else:
                known = sorted(by_name)
                shown = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
                raise ConfigError(f"unknown tenant {name!r} on cloud {self.cloud} "
                                  f"(known: {shown})")
        return list(selected.values()), missing

    def _read_identity_per_tenant(self, selected: Sequence[Tenant], ident: Identity,
                                  out: Collector) -> None:
        """Limited mode: each tenant's token shows its own user and role assignments."""
        for tenant in selected:
            handle = self._tenant_handle(tenant)
            if handle is None:
                for kind in ("user", "role_assignment"):
                    out.denied(Unreadable(tenant.id, tenant.name, kind,
                                          self._no_handle_reason(tenant)))
                continue
            auth: Any = handle.conn.session.auth
            access = auth.get_access(handle.conn.session)
            uid = access.user_id
            if uid not in ident.users:
                try:
                    raw = handle.get_json("identity", f"/users/{uid}", resource="user")
                    ident.users[uid] = raw["user"]
                except CloudCallError as exc:
                    if exc.status not in DENIED:
                        raise
            for role_id, role_name in zip(access.role_ids, access.role_names, strict=False):
                ident.roles.setdefault(role_id, {"id": role_id, "name": role_name})
                ident.assignments.append({"role": {"id": role_id}, "user": {"id": uid},
                                          "scope": {"project": {"id": tenant.id}},
                                          "_read_from": "token"})
            out.denied(Unreadable(tenant.id, tenant.name, "user",
                                  "only the credentials' own user and role assignments are "
                                  "readable without admin"))
            out.denied(Unreadable(tenant.id, tenant.name, "keypair",
                                  "keypairs belong to users: only the credentials' own user's "
                                  "are readable without admin"))

    def _add_identity(self, ident: Identity, selected: set[str], everything: bool,
                      out: Collector) -> None:
        for raw in ident.domains.values():
            out.add(Item("domain", raw["id"], None, raw.get("name"), clean(raw)))
        for raw in ident.roles.values():
            out.add(Item("role", raw["id"], None, raw.get("name"), clean(raw)))
        assigned: dict[str, set[str]] = {}
        for raw in ident.assignments:
            user = (raw.get("user") or {}).get("id")
            project = ((raw.get("scope") or {}).get("project") or {}).get("id")
            role = (raw.get("role") or {}).get("id")
            if not (user and project and role):
                continue  # group or domain assignments: not migrated
            if not everything and project not in selected:
                continue
            assigned.setdefault(user, set()).add(project)
            out.add(Item("role_assignment", f"{user}:{project}:{role}", project, None,
                         clean(raw)))
        for raw in ident.projects.values():
            if everything or raw["id"] in selected:
                out.add(project_item(raw))
        for raw in ident.users.values():
            default = raw.get("default_project_id")
            if everything or default in selected or raw["id"] in assigned:
                out.add(user_item(raw, selected if not everything else None, assigned))
        self._assigned = assigned


def project_item(raw: Mapping[str, Any]) -> Item:
    return Item("project", raw["id"], raw["id"], raw.get("name"), clean(raw))


def user_item(raw: Mapping[str, Any], selected: set[str] | None,
               assigned: Mapping[str, set[str]]) -> Item:
    attrs = {k: v for k, v in clean(raw).items() if "password" not in k.lower()}
    tenant = raw.get("default_project_id")
    if selected is not None and tenant not in selected:
        candidates = sorted(assigned.get(raw["id"], set()) & selected)
        tenant = candidates[0] if candidates else tenant
    return Item("user", raw["id"], tenant or None, raw.get("name"), attrs)
