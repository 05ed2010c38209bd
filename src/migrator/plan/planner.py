"""Inventory -> plan: selection, waves, the rules, the DAG checks, the summary.

:func:`build_plan` is pure (no database, no cloud calls except through the
:class:`~migrator.plan.target_names.TargetNames` it is given, a few LIST calls in total).
Problems are collected over the whole inventory and refused together in one
:class:`PlanRefused` whose ``problems`` holds them all (the CLI prints one per line).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from migrator.config_schema import Config
from migrator.errors import PlanError
from migrator.plan.context import Inventory, PlanState
from migrator.plan.kinds import parse_kinds, select_kinds
from migrator.plan.model import KINDS, Plan
from migrator.plan.planfile import check_graph
from migrator.plan.rules import apply_rules
from migrator.plan.target_names import TargetNames

# What the rules read from a snapshot (flavors are mapped, not migrated: a server carries its
# flavor's name).
INPUT_KINDS = ("domain", "project", "user", "role", "role_assignment", "quota", "network",
               "subnet", "router", "security_group", "security_group_rule", "keypair",
               "image", "volume", "server")
MAX_PASSES = 20


class PlanRefused(PlanError):
    """The inventory cannot be planned as configured; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[str]) -> None:
        unique = list(dict.fromkeys(problems))
        message = unique[0] if len(unique) == 1 else (
            f"the selection cannot be planned: {len(unique)} problems (each on a line below); "
            "no plan file was written")
        super().__init__(message, unique)


def resolve_tenants(inventory: Inventory, requested: Sequence[str], exclude: Sequence[str],
                    discovered: Sequence[str], cloud: str) -> list[str]:
    """Project ids for the requested names or ids (all discovered tenants when empty)."""
    by_name: dict[str, list[str]] = {}
    for pid, name in inventory.project_names.items():
        by_name.setdefault(name, []).append(pid)
    out: list[str] = []
    if requested:
        for wanted in requested:
            if wanted in inventory.project_names:
                out.append(wanted)
                continue
            ids = by_name.get(wanted, [])
            if len(ids) > 1:
                raise PlanError(f"tenant name {wanted!r} is ambiguous ({', '.join(sorted(ids))}); "
                                "select it by id")
            if not ids:
                known = ", ".join(sorted(by_name)[:10])
                raise PlanError(f"unknown tenant {wanted!r}: not in inventory snapshot "
                                f"{inventory.snapshot_id} of {cloud} (known: {known}"
                                f"{', ...' if len(by_name) > 10 else ''}); check the name or "
                                "discover it")
            out.append(ids[0])
        return list(dict.fromkeys(out))
    candidates = [t for t in discovered if t in inventory.project_names] or sorted(
        inventory.project_names)
    skip = set(exclude)
    return [pid for pid in candidates
            if pid not in skip and inventory.project_names[pid] not in skip]


def assign_waves(inventory: Inventory, tenants: Sequence[str], waves: Sequence[Sequence[str]]
                 ) -> dict[str, int]:
    """project id -> wave (1-based); every step is wave 1 when no waves are configured."""
    if not waves:
        return dict.fromkeys(tenants, 1)
    index: dict[str, int] = {}
    for position, wave in enumerate(waves, start=1):
        for tenant in wave:
            index[tenant] = position
    out: dict[str, int] = {}
    for pid in tenants:
        name = inventory.project_names.get(pid, pid)
        number = index.get(pid, index.get(name))
        if number is None:
            raise PlanError(f"tenant {name} is selected but in no wave of selection.waves; add "
                            "it to a wave")
        out[pid] = number
    # Renumber to 1..n over the waves actually used.
    used = {w: i for i, w in enumerate(sorted(set(out.values())), start=1)}
    return {pid: used[w] for pid, w in out.items()}


def build_plan(config: Config, inventory: Inventory, names: TargetNames, *, name: str,
               source_info: dict[str, Any], tenants: Sequence[str] | None = None,
               include_dependencies: bool = False, discovered: Sequence[str] = (),
               created_at: str | None = None, kinds: Sequence[str] | None = None,
               exclude_kinds: Sequence[str] | None = None) -> Plan:
    """The plan of the selected tenants (``tenants``, else ``selection.tenants``, else every
    discovered tenant minus ``selection.exclude``) and kinds (``kinds``/``exclude_kinds``,
    else the configuration's; see plan/kinds.py)."""
    cloud = str(source_info.get("cloud"))
    services = names.services() if names.checked else None
    chosen = select_kinds(
        parse_kinds(kinds if kinds is not None else config.selection.kinds,
                    "--kinds" if kinds is not None else "selection.kinds"),
        parse_kinds(exclude_kinds if exclude_kinds is not None
                    else config.selection.exclude_kinds,
                    "--exclude-kinds" if exclude_kinds is not None
                    else "selection.exclude_kinds"),
        services, cloud=config.target.cloud)
    requested = list(tenants or config.selection.tenants)
    selected = resolve_tenants(inventory, requested, config.selection.exclude, discovered,
                               cloud)
    if not selected:
        raise PlanError(f"no tenant to plan in inventory snapshot {inventory.snapshot_id} of "
                        f"{cloud} (selection.exclude leaves none)")
    waves = assign_waves(inventory, selected, config.selection.waves)
    pulled: set[str] = set()
    for _ in range(MAX_PASSES):
        state = PlanState(config=config, inventory=inventory, names=names, tenants=waves,
                          include_dependencies=include_dependencies, kinds=chosen)
        apply_rules(state)
        new = state.needed_tenants - set(waves)
        if not new or state.errors:
            break
        # A pulled-in tenant goes to the first wave: its resources are needed by others.
        first_wave = min(waves.values())
        for pid in sorted(new):
            waves[pid] = first_wave
            pulled.add(pid)
    else:  # pragma: no cover - the tenant set only grows and is finite
        raise PlanError("--include-dependencies did not settle")
    if state.errors:
        raise PlanRefused(state.errors)
    steps = state.ordered_steps()
    plan = Plan(
        name=name,
        created_at=created_at or datetime.now(UTC).isoformat(timespec="seconds"),
        source=dict(source_info),
        target={"cloud": config.target.cloud, "checked": bool(names.checked),
                **({"services": sorted(services)} if services is not None else {})},
        selection={**_selection(inventory, requested, waves, pulled, include_dependencies),
                   **chosen.as_dict()},
        mappings=_mappings(config, state),
        summary=summarise(steps),
        steps=steps,
        warnings=sorted([*state.warnings, *chosen.warnings()]),
    )
    check_graph(plan, f"plan {name}")
    return plan


def _selection(inventory: Inventory, requested: list[str], waves: dict[str, int],
               pulled: set[str], include_dependencies: bool) -> dict[str, Any]:
    per_wave: dict[int, list[str]] = {}
    for pid, wave in waves.items():
        per_wave.setdefault(wave, []).append(inventory.tenant_name(pid))
    return {
        "requested": requested,
        "tenants": sorted(inventory.tenant_name(pid) for pid in waves),
        "waves": [sorted(per_wave[w]) for w in sorted(per_wave)],
        "include_dependencies": include_dependencies,
        "pulled_in": sorted(inventory.tenant_name(pid) for pid in pulled),
    }


def _mappings(config: Config, state: PlanState) -> dict[str, Any]:
    address = config.address_plan
    out: dict[str, Any] = {
        "target_domain": config.target.domain,
        "address_plan": {"ipv6_prefix": address.ipv6_prefix, "subnet_pool": address.subnet_pool,
                         "ipv6_mode": address.ipv6_mode, "keep_ipv4": address.keep_ipv4},
        "quotas": {"policy": config.quotas.policy, "factor": config.quotas.factor},
        "users": {"password_policy": config.users.password_policy},
    }
    for section, values in sorted(state.resolved.items()):
        if section == "address_plan":
            out["address_plan"].update(values)
        elif values:
            out[section] = dict(sorted(values.items()))
    return out


def summarise(steps: Sequence[Any]) -> dict[str, Any]:
    per_kind = Counter(s.kind for s in steps)
    per_tenant = Counter(s.tenant or "-" for s in steps)
    per_wave = Counter(s.wave for s in steps)
    out: dict[str, Any] = {
        "steps": len(steps),
        "per_kind": {k: per_kind[k] for k in KINDS if per_kind[k]},
        "per_wave": [per_wave[w] for w in sorted(per_wave)],
        "per_tenant": dict(sorted(per_tenant.items())),
    }
    data = data_summary(steps)
    if data:
        out["data"] = data
    return out


def data_summary(steps: Sequence[Any]) -> dict[str, dict[str, int]]:
    """Per tenant: images and their bytes, volumes and their bytes (size in GiB * 2**30)."""
    out: dict[str, dict[str, int]] = {}
    for step in steps:
        if step.kind not in ("image", "volume"):
            continue
        row = out.setdefault(step.tenant or "-", {"images": 0, "image_bytes": 0,
                                                   "volumes": 0, "volume_bytes": 0})
        if step.kind == "image":
            row["images"] += 1
            row["image_bytes"] += int(step.spec.get("lookup", {}).get("size") or 0)
        else:
            row["volumes"] += 1
            row["volume_bytes"] += int(step.spec.get("attrs", {}).get("size") or 0) << 30
    return dict(sorted(out.items()))
