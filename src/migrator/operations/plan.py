"""``plan``: the latest inventory snapshot -> a reviewable plan file; loading, checking and
registering a plan for execution.

- :func:`make_plan` reads the configuration and the latest snapshot of the source cloud,
  reads the target's names once (clash detection, mappings; skipped with ``offline``),
  builds the plan and writes the file. Nothing is written to the state database.
- :func:`load_plan` reads and validates a plan file (planfile.py); :func:`check_fresh`
  refuses a plan whose source inventory changed since (a stale plan).
- :func:`target_problems` re-checks a plan against the target (mappings resolve, no new name
  clash, quotas fit): what ``execute --dry-run`` reports and ``execute`` refuses on.
- :func:`register_plan` stores the Plan row, a Run and its steps (engine.runs.create_run).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from migrator.bulk_gc import relaxed_gc
from migrator.config import DEFAULT_CONFIG, load_config
from migrator.config_schema import Config
from migrator.engine.runs import create_run
from migrator.engine.steps import read_connection, write_transaction
from migrator.errors import ConfigError, PlanError, StalePlanError
from migrator.operations.context import database_errors, open_state
from migrator.plan.context import Inventory
from migrator.plan.kinds import service_problems
from migrator.plan.model import Plan
from migrator.plan.planfile import DEFAULT_MAX_PLAN_BYTES, read_plan, write_plan
from migrator.plan.planner import INPUT_KINDS, build_plan
from migrator.plan.target_names import CloudTargetNames, OfflineTarget, TargetNames
from migrator.store import plans as plan_rows
from migrator.store.db import session_factory
from migrator.store.inventory import SnapshotInfo, latest_snapshot, load_items

__all__ = ["PlanResult", "Registered", "check_fresh", "load_plan", "make_plan",
           "open_target_names", "register_plan", "target_problems"]


@dataclass(frozen=True)
class PlanResult:
    plan: Plan
    path: Path
    snapshot_id: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.plan.name, "file": str(self.path), "snapshot_id": self.snapshot_id,
                "content_hash": self.plan.content_hash, "target_checked":
                    self.plan.target.get("checked"), "selection": self.plan.selection,
                "summary": self.plan.summary, "warnings": self.plan.warnings,
                "timings": {k: round(v, 3) for k, v in self.timings.items()},
                **({"servers": servers} if (servers := self.servers()) else {})}

    def servers(self) -> list[dict[str, Any]]:
        """Per server: target flavor, addresses old -> new, bytes, estimated downtime."""
        from migrator.plan.servers_view import server_rows

        return server_rows(self.plan.steps)


@contextmanager
def open_target_names(cloud: str, clouds_yaml: str | Path | None = None
                      ) -> Iterator[CloudTargetNames]:
    """The target's names through a TargetCloud over ``open_cloud(cloud)``."""
    from migrator.clouds.connection import open_cloud
    from migrator.clouds.target import TargetCloud

    handle = open_cloud(cloud, config_file=clouds_yaml, role="target")
    try:
        yield CloudTargetNames(TargetCloud(handle, name=cloud))
    finally:
        handle.close()


@relaxed_gc()
def make_plan(url: str, *, config: str | Path | Config = DEFAULT_CONFIG,
              tenants: Sequence[str] | None = None, include_dependencies: bool = False,
              output: str | Path | None = None, name: str | None = None,
              clouds_yaml: str | Path | None = None, offline: bool = False,
              target_names: TargetNames | None = None, kinds: Sequence[str] | None = None,
              exclude_kinds: Sequence[str] | None = None) -> PlanResult:
    """Plan the selected tenants from the latest snapshot of the source cloud and write the
    plan file (default ``plans/<name>.yaml``; name default: the file's stem, else ``plan``).
    ``kinds``/``exclude_kinds`` (names, comma-separated allowed) override the configuration's
    ``selection.kinds``/``selection.exclude_kinds``."""
    timings: dict[str, float] = {}
    began = time.monotonic()
    cfg = config if isinstance(config, Config) else load_config(config)
    config_file = cfg.path
    out = Path(output) if output else Path("plans") / f"{name or 'plan'}.yaml"
    plan_name = name or out.stem
    with open_state(url, read_only=True) as engine, database_errors(url):
        factory = session_factory(engine)
        snapshot = latest_snapshot(factory, cfg.source.cloud)
        if snapshot is None:
            raise PlanError(f"no inventory snapshot of {cfg.source.cloud} in the state "
                            f"database; run 'migrator discover --cloud {cfg.source.cloud}' "
                            "first")
        inventory = Inventory(load_items(factory, snapshot.id, kinds=INPUT_KINDS), snapshot.id)
    timings["load"] = time.monotonic() - began
    source_info = _source_info(snapshot, config_file)
    mark = time.monotonic()
    options: dict[str, Any] = {
        "source_info": source_info, "tenants": tenants, "kinds": kinds,
        "exclude_kinds": exclude_kinds, "include_dependencies": include_dependencies,
        "discovered": snapshot.selection.get("tenants") or ()}
    if target_names is not None or offline:
        plan = build_plan(cfg, inventory, target_names or OfflineTarget(), name=plan_name,
                          **options)
    else:
        with open_target_names(cfg.target.cloud, clouds_yaml) as names:
            plan = build_plan(cfg, inventory, names, name=plan_name, **options)
    timings["build"] = time.monotonic() - mark
    del inventory
    mark = time.monotonic()
    path = write_plan(plan, out)
    timings["write"] = time.monotonic() - mark
    timings["total"] = time.monotonic() - began
    return PlanResult(plan, path, snapshot.id, timings)


def _source_info(snapshot: SnapshotInfo, config_file: str | None) -> dict[str, Any]:
    return {"cloud": snapshot.cloud, "snapshot_id": snapshot.id,
            "inventory_hash": snapshot.content_hash or "",
            "taken_at": snapshot.taken_at.isoformat(timespec="seconds"),
            "config": config_file}


@relaxed_gc()
def load_plan(path: str | Path, *, max_bytes: int = DEFAULT_MAX_PLAN_BYTES) -> Plan:
    """Read and validate a plan file (at most ``max_bytes``); PlanError naming the file, the
    line or the step and field otherwise."""
    return read_plan(path, max_bytes=max_bytes)


def check_fresh(factory: sessionmaker[Session], plan: Plan, file: str | Path) -> None:
    """Refuse a stale plan: the latest snapshot of its source cloud is not the inventory it
    was planned from."""
    cloud = str(plan.source.get("cloud"))
    latest = latest_snapshot(factory, cloud)
    if latest is None:
        raise StalePlanError(f"{file}: stale plan: the state database has no inventory "
                             f"snapshot of {cloud} (was it made with another database?)")
    if (latest.content_hash or "") != plan.inventory_hash:
        raise StalePlanError(
            f"{file}: stale plan: the inventory of {cloud} changed since planning (planned "
            f"from snapshot {plan.source.get('snapshot_id')}, latest is snapshot {latest.id} "
            f"taken {latest.taken_at:%Y-%m-%d %H:%M}); plan again or pass --replan")


# -- checks against the target -------------------------------------------------------------


def target_problems(plan: Plan, names: TargetNames) -> list[str]:
    """What would make the plan fail on the target as it is now: services its catalog lacks,
    mappings that do not resolve (servers' flavors included), names taken since planning,
    quotas the planned resources do not fit in."""
    problems: list[str] = []
    services = names.services() if names.checked else None
    if services is not None:
        problems += service_problems(plan.steps, services,
                                     str(plan.target.get("cloud") or "target"))
    has_network = services is None or "network" in services
    roles = names.roles() if names.checked else {}
    projects: dict[str, Any] = {}
    for step in plan.steps:
        attrs, lookup = step.spec.get("attrs", {}), step.spec.get("lookup") or {}
        if not names.checked:
            break
        if step.kind in ("router", "subnet") and not has_network:
            continue
        source_id = step.spec.get("source", {}).get("id", step.source_id)
        if step.kind == "project" and not lookup.get("adopt_id"):
            domain = str(attrs.get("domain_id"))
            if domain not in projects:
                projects[domain] = names.projects(domain)
            entry = projects[domain].get(str(attrs.get("name")))
            if entry is not None and entry.source_id != source_id:
                problems.append(f"step {step.key}: project {attrs.get('name')!r} now exists on "
                                f"the target ({entry.id}) and was not created by migrator from "
                                f"{source_id}; plan again to decide (conflicts.projects)")
        elif step.kind == "role_assignment":
            role = lookup.get("role_name")
            if role and role not in roles:
                problems.append(f"step {step.key}: role {role!r} does not exist on the target")
        elif step.kind == "router" and lookup.get("external_network"):
            nets = [e for e in names.networks().get(str(lookup["external_network"]), [])]
            if not nets:
                problems.append(f"step {step.key}: external network "
                                f"{lookup['external_network']!r} does not exist on the target")
        elif step.kind == "subnet" and lookup.get("subnetpool") and names.subnet_pool(
                str(lookup["subnetpool"])) is None:
            problems.append(f"step {step.key}: subnet pool {lookup['subnetpool']!r} does not "
                            "exist on the target")
        elif step.kind == "server" and hasattr(names, "flavors"):
            flavors = dict(names.flavors())
            wanted = str(attrs.get("flavor"))
            if wanted not in flavors and lookup.get("flavor_id") not in flavors.values():
                problems.append(f"step {step.key}: server {step.name}: flavor {wanted!r} "
                                "does not exist on the target")
    return problems + quota_problems(plan)


# Neutron creates a default group (with 4 rules) per project and 2 egress rules per group.
_NETWORK_USAGE = {"network": "network", "subnet": "subnet", "router": "router",
                  "security_group": "security_group",
                  "security_group_rule": "security_group_rule"}


def quota_problems(plan: Plan) -> list[str]:
    """Planned resources per tenant against the network quota the plan gives that tenant
    (counting what Neutron adds by itself: the default group and the egress rules)."""
    usage: dict[str, Counter[str]] = defaultdict(Counter)
    quotas: dict[str, dict[str, Any]] = {}
    for step in plan.steps:
        tenant = step.tenant or "-"
        if step.kind == "quota" and step.source_id.startswith("network:"):
            quotas[tenant] = step.spec.get("attrs", {})
        elif step.kind in _NETWORK_USAGE:
            usage[tenant][_NETWORK_USAGE[step.kind]] += 1
            if step.kind == "security_group" and step.name != "default":
                usage[tenant]["security_group_rule"] += 2
    problems = []
    for tenant, used in sorted(usage.items()):
        limits = quotas.get(tenant)
        if not limits:
            continue
        if not any(s.tenant == tenant and s.kind == "security_group" and s.name == "default"
                   for s in plan.steps):
            used["security_group"] += 1
            used["security_group_rule"] += 4
        for key, count in sorted(used.items()):
            limit = limits.get(key)
            if isinstance(limit, int) and 0 <= limit < count:
                problems.append(f"tenant {tenant}: {count} {key.replace('_', ' ')}(s) planned "
                                f"but its network quota allows {limit} ({key}); raise it "
                                "(quotas.fixed or quotas.factor)")
    return problems


# -- registering -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    plan_id: int
    run_id: int
    run_name: str
    created: bool  # False: an existing run of this plan (and wave) was found
    status: str


def find_plan_run(factory: sessionmaker[Session], plan: Plan, wave: int | None
                  ) -> Registered | None:
    """The latest run of this plan (same content hash) for ``wave`` (None: the whole plan)."""
    with read_connection(factory) as conn:
        rows = plan_rows.runs_of_plan(conn, plan.content_hash)
    for row in rows:
        if row.options.get("wave") == wave:
            return Registered(row.plan_id, row.run_id, row.run_name, False, row.status)
    return None


@relaxed_gc()
def register_plan(factory: sessionmaker[Session], plan: Plan, path: str | Path, *,
                  run_name: str | None = None, wave: int | None = None,
                  dry_run: bool = False) -> Registered:
    """The Plan row (reused when this plan was registered before), a Run and its steps.

    With ``wave`` only that wave's steps are registered; their dependencies on earlier waves
    are left out (those steps ran in the earlier waves' runs, and their target ids are found
    in the id map by later runs). A dependency on a later wave cannot exist (checked when the
    plan is loaded)."""
    steps = [s for s in plan.steps if wave is None or s.wave == wave]
    if not steps:
        raise PlanError(f"{path}: wave {wave} has no steps (waves: "
                        f"{', '.join(map(str, plan.waves)) or 'none'})")
    keys = {s.key for s in steps}
    deps = [(s.key, d) for s in steps for d in s.depends_on if d in keys]
    base = run_name or (plan.name if wave is None else f"{plan.name}-wave-{wave}")
    with write_transaction(factory) as conn:
        found = plan_rows.find_plan_id(conn, plan.content_hash)
        new_plan = found is None
        if found is None:
            found = plan_rows.create_plan(
                conn, name=plan.name, file_path=str(path), content_hash=plan.content_hash,
                inventory_hash=plan.inventory_hash, source_cloud=plan.source.get("cloud"),
                target_cloud=plan.target.get("cloud"))
        plan_id = found
        taken = plan_rows.run_names_like(conn, base)
    name = base
    if name in taken:
        if run_name:
            raise ConfigError(f"a run named {run_name!r} already exists; choose another --run")
        name = f"{base}-{plan.content_hash[:8]}"
        counter = 2
        while name in taken:
            name, counter = f"{base}-{plan.content_hash[:8]}-{counter}", counter + 1
    try:
        run_id = create_run(factory, name, steps, deps, plan_id=plan_id,
                            options={"wave": wave, "plan_file": str(path),
                                     "dry_run": dry_run})
    except Exception:
        if new_plan:
            with write_transaction(factory) as conn:
                plan_rows.delete_plan(conn, plan_id)
        raise
    return Registered(plan_id, run_id, name, True, "created")
