"""Helpers shared by the rules: name-clash decisions and the quota dependency."""

from __future__ import annotations

from migrator.plan.context import PlanState
from migrator.plan.target_names import TargetEntry


def decide_clash(state: PlanState, kind: str, legacy_name: str, wanted: str,
                 existing: dict[str, TargetEntry], source_id: str
                 ) -> tuple[str, str | None]:
    """(target name, id of a target resource to adopt) for a resource named ``wanted``.

    A resource of that name which migrator did not create from this source id is a clash:
    ``conflicts`` decides (per legacy or target name, else ``conflicts.default``): adopt it,
    rename ours (suffix ``conflicts.rename_suffix``), or fail (an error naming it)."""
    entry = existing.get(wanted)
    if entry is None or entry.source_id == source_id:
        return wanted, None
    conflicts = state.config.conflicts
    per_kind = getattr(conflicts, f"{kind}s")
    decision = per_kind.get(legacy_name) or per_kind.get(wanted) or conflicts.default
    record = state.resolved["conflicts"]
    if decision == "adopt":
        record[f"{kind} {wanted}"] = {"decision": "adopt", "target_id": entry.id}
        return wanted, entry.id
    if decision == "rename":
        renamed = f"{wanted}{conflicts.rename_suffix}"
        other = existing.get(renamed)
        if other is not None and other.source_id != source_id:
            state.error(f"{kind} {wanted!r}: renamed to {renamed!r} because of a clash, but "
                        f"{renamed!r} exists on the target too ({other.id}); choose another "
                        "conflicts.rename_suffix or adopt")
        record[f"{kind} {wanted}"] = {"decision": "rename", "name": renamed}
        return renamed, None
    owner = f", it carries source id {entry.source_id}" if entry.source_id else ""
    state.error(f"{kind} {wanted!r} (legacy {legacy_name}) already exists on the target "
                f"({entry.id}{owner}) and was not created by migrator from {source_id}; "
                f"decide in conflicts.{kind}s.{legacy_name}: adopt, rename or fail")
    return wanted, None


def network_quota(state: PlanState, tenant_id: str | None) -> list[str]:
    """The tenant's network quota step, which networks, subnets, routers and security groups
    consume (when it is planned)."""
    key = state.key_if("quota", f"network:{tenant_id}") if tenant_id else None
    return [key] if key else []
