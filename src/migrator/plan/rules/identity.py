"""Keystone kinds: project, quota, user, role_assignment.

- project: the legacy (v2) tenant becomes a v3 project in the mapped domain
  (``target.domain`` for the legacy default domain, ``mappings.domains`` for others), renamed
  by ``mappings.projects``; a name taken on the target is a clash (``conflicts.projects``).
- quota: one step per service (compute, volume, network) after its project, values by the
  quota policy (copy, scale by factor rounded up, fixed), ``quotas.fixed`` overriding; none
  for a service the target's catalog lacks (plan/kinds.py).
- user: after its default project (when planned); never a password in the plan, only the
  password policy. A name taken on the target is a clash (``conflicts.users``).
- role_assignment: after its user and its project; the legacy role name is mapped
  (``mappings.roles``, default ``_member_`` -> ``member``) and, when the target was checked,
  resolved to the target role's id.
"""

from __future__ import annotations

import math
from typing import Any

from migrator.plan.context import PlanState
from migrator.plan.rules.common import decide_clash
from migrator.spec import Lookup
from migrator.store.inventory import Item

QUOTA_SKIP = frozenset({"id", "tenant_id", "project_id"})


def plan(state: PlanState) -> None:
    wants = state.kinds.wants
    if wants("project"):
        _projects(state)
    if wants("quota"):
        _quotas(state)
    users = _users(state) if wants("user") else {}
    if wants("role_assignment"):
        _role_assignments(state, users)


def target_domain(state: PlanState, legacy_domain_id: str | None) -> str | None:
    """The target domain id for a legacy domain (None after an error was recorded)."""
    legacy_id = legacy_domain_id or "default"
    cache = state.resolved["domains"]
    legacy_name = state.inventory.domain_names.get(legacy_id, legacy_id)
    if legacy_name in cache:
        return str(cache[legacy_name]["id"]) if cache[legacy_name].get("id") else None
    if legacy_name in state.config.mappings.domains:
        wanted, setting = state.config.mappings.domains[legacy_name], "mappings.domains"
    elif legacy_id == "default":
        wanted, setting = state.config.target.domain, "target.domain"
    else:
        wanted, setting = legacy_name, "mappings.domains"
    found = state.names.domain_id(wanted)
    cache[legacy_name] = {"target": wanted, "id": found}
    if found is None:
        state.error(f"domain {wanted!r} (for legacy domain {legacy_name}) does not exist on the "
                    f"target; set {setting}")
    return found


def _projects(state: PlanState) -> None:
    renames = state.config.mappings.projects
    existing_by_domain: dict[str, Any] = {}
    for pid in sorted(state.tenants):
        item = state.inventory.get("project", pid)
        if item is None:
            continue
        attrs = item.attributes
        legacy_name = item.name or pid
        domain_id = target_domain(state, attrs.get("domain_id"))
        if domain_id is None:
            continue
        if domain_id not in existing_by_domain:
            existing_by_domain[domain_id] = state.names.projects(domain_id)
        wanted = renames.get(legacy_name, legacy_name)
        if wanted != legacy_name:
            state.resolved["projects"][legacy_name] = wanted
        name, adopt_id = decide_clash(state, "project", legacy_name, wanted,
                                      existing_by_domain[domain_id], pid)
        target = {"name": name, "domain_id": domain_id,
                  "description": attrs.get("description") or "",
                  "enabled": bool(attrs.get("enabled", True))}
        lookup: Lookup = {"adopt_id": adopt_id} if adopt_id else {}
        state.add("project", pid, tenant_id=pid, name=name, attrs=target, lookup=lookup,
                  source_name=legacy_name)


def quota_values(state: PlanState, service: str, raw: dict[str, Any]) -> dict[str, int]:
    config = state.config.quotas
    values = {k: v for k, v in raw.items()
              if k not in QUOTA_SKIP and isinstance(v, int) and not isinstance(v, bool)}
    if config.policy == "fixed":
        values = {}
    elif config.policy == "scale":
        values = {k: v if v < 0 else math.ceil(v * config.factor) for k, v in values.items()}
    values.update(config.fixed.get(service, {}))
    return dict(sorted(values.items()))


def _quotas(state: PlanState) -> None:
    for source_id, item in sorted(state.inventory.kind("quota").items()):
        service, _, pid = source_id.partition(":")
        project_key = state.key_if("project", pid)
        if project_key is None or pid not in state.tenants or not state.kinds.quota_wanted(
                service):
            continue
        state.add("quota", source_id, tenant_id=pid, name=service,
                  attrs=quota_values(state, service, item.attributes),
                  refs={"project_id": project_key}, lookup={"service": service})


def _users(state: PlanState) -> dict[str, str]:
    """Plan the users of the selected tenants (default project, or a role there); returns
    legacy user id -> the tenant the step is filed under."""
    wanted: dict[str, str] = {}
    for item in state.inventory.kind("user").values():
        if item.tenant in state.tenants:
            wanted[item.source_id] = item.tenant
    for sid, item in sorted(state.inventory.kind("role_assignment").items()):
        user_id = sid.split(":", 1)[0]
        if item.tenant in state.tenants and user_id not in wanted:
            wanted[user_id] = item.tenant
    policy = state.config.users
    lookup: Lookup = {"password_policy": policy.password_policy}
    if policy.password_policy == "random":
        lookup["password_file"] = policy.password_file
    elif policy.password_policy == "fixed":
        lookup["password_env"] = policy.password_env
    existing_by_domain: dict[str, Any] = {}
    for uid, tenant in sorted(wanted.items()):
        user = state.inventory.get("user", uid)
        if user is None:
            state.warnings.append(f"user {uid} has a role in tenant "
                                  f"{state.inventory.tenant_name(tenant)} but is not in the "
                                  "inventory (not readable?): its role assignments are skipped")
            continue
        _user(state, user, tenant, lookup, existing_by_domain)
    planned = {uid: t for uid, t in wanted.items() if state.has("user", uid)}
    state.user_tenants.update(planned)
    return planned


def _user(state: PlanState, user: Item, tenant: str, lookup: Lookup,
          existing_by_domain: dict[str, Any]) -> None:
    attrs = user.attributes
    domain_id = target_domain(state, attrs.get("domain_id"))
    if domain_id is None:
        return
    if domain_id not in existing_by_domain:
        existing_by_domain[domain_id] = state.names.users(domain_id)
    legacy_name = user.name or user.source_id
    name, adopt_id = decide_clash(state, "user", legacy_name, legacy_name,
                                  existing_by_domain[domain_id], user.source_id)
    target: dict[str, Any] = {"name": name, "domain_id": domain_id,
                              "enabled": bool(attrs.get("enabled", True))}
    for key in ("email", "description"):
        if attrs.get(key):
            target[key] = attrs[key]
    default = attrs.get("default_project_id")
    refs = {"default_project_id": state.key_if("project", str(default)) if default else None}
    step_lookup = lookup.copy()
    if adopt_id:
        step_lookup["adopt_id"] = adopt_id
    state.add("user", user.source_id, tenant_id=tenant, name=name, attrs=target, refs=refs,
              lookup=step_lookup, source_name=legacy_name)


def _role_assignments(state: PlanState, users: dict[str, str]) -> None:
    roles_map = state.config.mappings.roles
    target_roles = state.names.roles() if state.names.checked else {}
    seen: set[tuple[str, str, str]] = set()
    for sid, item in sorted(state.inventory.kind("role_assignment").items()):
        user_id, project_id, role_id = ([*sid.split(":"), "", "", ""])[:3]
        if item.tenant not in state.tenants or user_id not in users:
            continue
        project_key = state.key_if("project", project_id)
        if project_key is None:
            continue
        legacy_role = state.inventory.role_names.get(role_id, role_id)
        role = roles_map.get(legacy_role, legacy_role)
        if (user_id, project_id, role) in seen:
            continue
        seen.add((user_id, project_id, role))
        lookup: Lookup = {"role_name": role}
        if state.names.checked:
            if role not in target_roles:
                state.error(f"role_assignment {sid} of tenant "
                            f"{state.inventory.tenant_name(project_id)}: legacy role "
                            f"{legacy_role} maps to {role!r}, which does not exist on the "
                            "target; map it in mappings.roles")
                continue
            lookup["role_id"] = target_roles[role]
        if legacy_role != role or state.names.checked:
            state.resolved["roles"][legacy_role] = {"target": role, **(
                {"id": lookup["role_id"]} if "role_id" in lookup else {})}
        user = state.inventory.get("user", user_id)
        state.add("role_assignment", sid, tenant_id=project_id,
                  name=f"{user.name if user else user_id} {role}", attrs={},
                  refs={"user_id": f"user:{user_id}", "project_id": project_key},
                  lookup=lookup)
