"""``rollback``: remove from the target what a run created, and only that.

:func:`plan_rollback` decides, from the run's steps, checkpoints and id map, what to undo:

- a resource is undone only when the run's id map holds it (or, for a step the run left in
  doubt, when the target has a resource carrying the step's source id mark that no other run
  mapped) and the run made it: a resource adopted by decision (``adopted: decision``, a
  pre-existing project the plan chose to use) is left alone, and so is a resource the run
  only found again (the id map of another migration or rehearsal run holds it, or it lives
  in a project that existed before the run);
- the undo steps depend on each other in the reverse of the run's dependencies (an interface
  before its subnet and router, a volume before its project), through the steps that have
  nothing to undo.

:func:`rollback` registers those steps as a run of kind ``rollback`` (``<run>-rollback``;
checkpointed like any run: a rollback killed halfway continues when run again) and executes
it with the undo handlers (handlers/undo.py): each removal is a checkpoint event of the
rollback run, and the undone step goes ``done -> rolled_back`` in its own run's audit trail.
When nothing is left to undo, the run's status becomes ``rolled_back``, and its id map no
longer answers the lookups of later runs (handlers/idmap.py). The source is never written,
except through a source restorer of handlers/undo.py (a volume copy's temporary images; a
server's snapshot and temporary images, and its start when it was ACTIVE before its cutover).

A server step is undone as a whole (handlers/undo_servers.py): its undo carries the step's
checkpoint, its target project and the source ids of its ports and volumes; a cutover that
booted no server yet (target id ``-``) is undone too, for what it made and stopped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy.orm import Session, sessionmaker

from migrator.engine import machine
from migrator.engine.executor import Observer, RunResult
from migrator.engine.runs import create_run, find_run, set_run_status
from migrator.engine.workers import active_workers, reap_lost_workers
from migrator.errors import ConcurrencyError, ConfigError
from migrator.operations.context import database_errors, open_state
from migrator.services import Services
from migrator.spec import Spec, UndoSpec
from migrator.store.db import session_factory
from migrator.store.run_kinds import (
    MIGRATION,
    REHEARSAL,
    ROLLBACK,
    RunInfo,
    RunStep,
    dependency_keys,
    mapped_elsewhere,
    run_info,
    runs_of_kind,
    steps_with_targets,
    undone_step_keys,
)

__all__ = ["Kept", "RollbackPlan", "RollbackResult", "Undo", "plan_rollback", "rollback"]

# Kinds whose target resource carries the source id (found again for a step left in doubt).
MARKED_KINDS = frozenset({"project", "user", "network", "subnet", "router", "security_group",
                          "security_group_rule", "image", "volume"})
# Kinds without a mark, looked up in doubt by what they belong to (an interface by its router
# and subnet, a keypair by its user and name), undone only when that was made by the run.
IN_PLACE_KINDS = frozenset({"router_interface", "keypair"})
UNDONE_STATES = frozenset({machine.PENDING, machine.BLOCKED, machine.ROLLED_BACK})


@dataclass(frozen=True)
class Undo:
    key: str  # the original step's key
    kind: str
    tenant: str | None
    name: str | None
    target_id: str
    action: str  # delete, revoke, remove_interface, remove_member, reset_quotas
    why: str
    step_id: int = 0  # the original step's row
    source_id: str | None = None
    # What the undo needs beyond the target and source ids (a keypair's fingerprint, a
    # volume's or server's checkpoint, a server's project, ports and volumes).
    extra: UndoSpec = field(default_factory=UndoSpec)


@dataclass(frozen=True)
class Kept:
    key: str
    kind: str
    tenant: str | None
    name: str | None
    target_id: str
    reason: str


@dataclass
class RollbackPlan:
    run: str
    run_id: int
    tenant: str | None
    undo: list[Undo] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    # An unfinished rollback of this run, continued instead of planning again.
    resuming: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "tenant": self.tenant, "resuming": self.resuming,
                "undo": [asdict(u) for u in self.undo], "kept": [asdict(k) for k in self.kept]}


@dataclass(frozen=True)
class RollbackResult:
    plan: RollbackPlan
    rollback_run: str | None
    result: RunResult | None
    counts: dict[str, int]  # outcome -> steps (removed, already gone, left, reset)

    @property
    def ok(self) -> bool:
        return self.result is None or self.result.status == "finished"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"plan": self.plan.as_dict(), "rollback_run": self.rollback_run,
                               "outcomes": self.counts}
        if self.result is not None:
            out["status"] = self.result.status
            out["failed_steps"] = self.result.failed_steps
        return out


# -- planning --------------------------------------------------------------------------------


def _original_run(factory: sessionmaker[Session], name: str) -> RunInfo:
    ref = find_run(factory, name)
    info = run_info(factory, ref.id)
    if info.kind not in (MIGRATION, REHEARSAL):
        raise ConfigError(f"run {info.name!r} is a {info.kind.replace('_', ' ')}, not a "
                          "migration or a rehearsal: only those are rolled back")
    return info


def _check_idle(factory: sessionmaker[Session], run: RunInfo) -> None:
    reap_lost_workers(factory, run.id)
    busy = active_workers(factory, run.id)
    if busy:
        raise ConcurrencyError(
            f"run {run.name!r} is being executed by worker(s) {', '.join(busy)}; stop them "
            f"first ('migrator run cancel {run.name}'), then roll back")


def decide(steps: list[RunStep], elsewhere: set[tuple[str, str]],
           found_in_doubt: Mapping[str, str]) -> tuple[list[Undo], list[Kept]]:
    """What to undo and what to leave, per step (see the module docstring)."""
    kept_projects = {s.tenant for s in steps if s.kind == "project"
                     and s.checkpoint.get("adopted") == "decision"}
    created_projects = {s.target_id for s in steps if s.kind == "project" and s.target_id
                        and s.checkpoint.get("adopted") != "decision"
                        and ("project", s.target_id) not in elsewhere}
    undo: list[Undo] = []
    kept: list[Kept] = []
    # Unmarked things the run found in place (a grant, an interface, a keypair): decided
    # once the rest is, by whether what they belong to was made by the run.
    found_in_place: list[tuple[RunStep, str]] = []
    targets = {s.key: s.target_id for s in steps}
    for s in steps:
        target_id, why = s.target_id, "created by the run"
        if target_id is None and s.key in found_in_doubt:
            target_id, why = found_in_doubt[s.key], "found on the target (step left in doubt)"
        if s.state == machine.ROLLED_BACK:
            continue
        if target_id is None:
            if s.kind == "quota" and s.state not in UNDONE_STATES:
                # Quotas carry no mark: a try killed between its PUT and its checkpoint
                # leaves no trace but the values. On a project the run created, a reset
                # (a DELETE, harmless where nothing was set) leaves no quota rows behind.
                project = targets.get(str((s.spec.get("refs") or {}).get("project_id")))
                if project in created_projects:
                    service = str((s.spec.get("lookup") or {}).get("service")
                                  or (s.source_id or "").partition(":")[0])
                    undo.append(Undo(s.key, s.kind, s.tenant, s.name, f"{service}:{project}",
                                     "reset_quotas", "quotas a try left in doubt may have "
                                     "set on a project the run created", s.id, s.source_id))
                continue
            if s.kind == "server" and s.state not in UNDONE_STATES and s.checkpoint:
                # A cutover that booted no server (yet) may have made its ports, boot image
                # and volumes, and stopped the source.
                undo.append(Undo(s.key, s.kind, s.tenant, s.name, "-", "delete",
                                 "what a cutover that booted no server made", s.id,
                                 s.source_id, _server_extra(s, targets)))
                continue
            if s.kind == "volume" and s.state not in UNDONE_STATES and (
                    s.checkpoint.get("copy") or s.state != machine.DONE):
                # A copy that made no target volume may have left temporary images.
                undo.append(Undo(s.key, s.kind, s.tenant, s.name, "-", "temporaries",
                                 "temporary images of a copy that did not finish", s.id,
                                 s.source_id, {"original_checkpoint": s.checkpoint}))
            continue
        adopted = s.checkpoint.get("adopted")
        if s.target_id is None and s.kind in IN_PLACE_KINDS:
            adopted = "in-doubt"  # no mark to tell: judged by what it belongs to, below

        def keep(reason: str, step: RunStep = s, tid: str = target_id) -> None:
            kept.append(Kept(step.key, step.kind, step.tenant, step.name, tid, reason))

        if adopted == "decision":
            keep("adopted by decision: it existed before the run")
            continue
        if (s.kind, target_id) in elsewhere:
            keep("another run made or adopted it (its id map holds it too)")
            continue
        if s.kind == "quota":
            project = target_id.partition(":")[2]
            if project in created_projects:
                undo.append(Undo(s.key, s.kind, s.tenant, s.name, target_id, "reset_quotas",
                                 "quotas of a project the run created", s.id, s.source_id))
            else:
                keep("quotas of a project that existed before the run: left as they are")
            continue
        if adopted and s.tenant in kept_projects:
            keep("found on a project that existed before the run")
            continue
        if s.kind in ("role_assignment", "router_interface", "keypair") and adopted:
            found_in_place.append((s, target_id))
            continue
        if s.kind == "security_group_rule" and s.checkpoint.get("adopted_rule"):
            keep("an identical rule was there already (it goes with its group)")
            continue
        action = {"role_assignment": "revoke", "router_interface": "remove_interface",
                  "image_member": "remove_member"}.get(s.kind, "delete")
        extra = _keypair_extra(s)
        if s.kind == "volume":
            extra["original_checkpoint"] = s.checkpoint
        if s.kind == "server":
            extra = _server_extra(s, targets)
        undo.append(Undo(s.key, s.kind, s.tenant, s.name, target_id, action, why, s.id,
                         s.source_id, extra))
    made = {u.key for u in undo if u.action == "delete"}
    for s, target_id in found_in_place:
        # A keypair of a user, a grant on a project or to a user, an interface of a router or
        # on a subnet the run made cannot have been there before the run: an earlier try of
        # this run made it (a crash between the call and its checkpoint).
        owners = {str(v) for v in (s.spec.get("refs") or {}).values() if isinstance(v, str)}
        if owners & made:
            action = {"role_assignment": "revoke",
                      "router_interface": "remove_interface"}.get(s.kind, "delete")
            undo.append(Undo(s.key, s.kind, s.tenant, s.name, target_id, action,
                             "found in place, on what the run created", s.id, s.source_id,
                             _keypair_extra(s)))
        else:
            kept.append(Kept(s.key, s.kind, s.tenant, s.name, target_id,
                             f"the {s.kind.replace('_', ' ')} was there before the run"))
    return undo, kept


def _keypair_extra(s: RunStep) -> UndoSpec:
    if s.kind != "keypair":
        return UndoSpec()
    from migrator.clouds.target import fingerprint

    key = str((s.spec.get("attrs") or {}).get("public_key") or "")
    return UndoSpec(fingerprint=fingerprint(key)) if key else UndoSpec()


def _server_extra(s: RunStep, targets: Mapping[str, str | None]) -> UndoSpec:
    """What a server's undo needs besides its target id: the checkpoint (ports, boot image,
    volumes, the source's power state), its project and the source ids its things carry."""
    lookup = s.spec.get("lookup") or {}
    project_ref = (s.spec.get("refs") or {}).get("project_id")
    ports: Any = lookup.get("ports") or []
    volumes: Any = lookup.get("volumes") or []
    return UndoSpec(original_checkpoint=dict(s.checkpoint),
                    project_id=targets.get(project_ref) if isinstance(project_ref, str)
                    else None,
                    source_ports=[str(p["source_id"]) for p in ports],
                    source_volumes=[str(v["source_id"]) for v in volumes])


def undo_dependencies(undo: list[Undo], deps: list[tuple[str, str]]
                      ) -> list[tuple[str, str]]:
    """(undo key, undo key it waits for): ``undo:A`` waits for ``undo:B`` when B depended on
    A in the run, directly or through steps with nothing to undo."""
    dependents: dict[str, list[str]] = defaultdict(list)
    for step, needs in deps:
        dependents[needs].append(step)
    undone = {u.key for u in undo}
    out: list[tuple[str, str]] = []
    for u in undo:
        seen: set[str] = set()
        stack = list(dependents.get(u.key, ()))
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            if key in undone:
                out.append((f"undo:{u.key}", f"undo:{key}"))
            else:
                stack.extend(dependents.get(key, ()))
    return out


def _find_in_doubt(tc: Any, factory: sessionmaker[Session], steps: list[RunStep]
                   ) -> dict[str, str]:
    """Target ids of what the steps the run left in doubt (no id map entry) may have made:
    found by the source id they carry, with the original handler's own lookup."""
    from migrator.engine.handlers import StepContext
    from migrator.engine.steps import StepSnapshot
    from migrator.handlers import handlers
    from migrator.handlers.base import ResourceHandler, resolve_attrs
    from migrator.transfer.volume_api import Api
    from migrator.transfer.volume_copy import SOURCE_KEY

    out: dict[str, str] = {}
    known = handlers()
    targets = {s.key: s.target_id for s in steps}
    for s in steps:
        if s.target_id is not None or s.kind not in MARKED_KINDS | IN_PLACE_KINDS | {"server"} \
                or s.state in UNDONE_STATES or s.state == machine.DONE or not s.source_id:
            continue
        if s.kind == "image":
            tag = f"migrator-src-{s.source_id}"
            images = [i for i in Api(tc.handle).pages(
                "image", "images", "images", f"listing images tagged {tag}",
                {"tag": tag, "visibility": "all"}) if "migrator-tmp" not in (i.get("tags") or [])]
            if len(images) == 1:
                out[s.key] = str(images[0]["id"])
            continue
        if s.kind == "server":
            server_id = _server_in_doubt(tc, s, targets)
            if server_id is not None:
                out[s.key] = server_id
            continue
        if s.kind == "volume":
            vols = Api(tc.handle).pages("block_storage", "volumes/detail", "volumes",
                                        f"listing volumes of source {s.source_id}",
                                        {"all_tenants": "1"})
            mine = [v for v in vols if (v.get("metadata") or {}).get(SOURCE_KEY) == s.source_id]
            if len(mine) == 1:
                out[s.key] = str(mine[0]["id"])
            continue
        handler = known.get(s.kind)
        if not isinstance(handler, ResourceHandler):
            continue
        snapshot = StepSnapshot(s.id, s.run_id, s.key, s.kind, s.state, s.phase,
                                s.checkpoint, 0, s.version, None, None, cast(Spec, s.spec),
                                s.lease_token,
                                s.source_id, s.tenant, s.name)
        import threading

        ctx = StepContext(factory, snapshot, threading.Event(), "rollback",
                          Services(target=tc))
        try:
            attrs = resolve_attrs(ctx, snapshot)
            found = handler.find(tc, snapshot, s.source_id, attrs)
        except Exception:  # a reference that never resolved: nothing was made
            continue
        if found is not None:
            out[s.key] = handler.target_id_of(found, attrs)
    return out


def _server_in_doubt(tc: Any, s: RunStep, targets: Mapping[str, str | None]) -> str | None:
    """The one server of the step's project carrying its source id (a boot whose answer was
    lost); only looked for in the project the run made or adopted for it."""
    from migrator.handlers.undo_servers import SERVER_MARK
    from migrator.transfer.volume_api import Api

    ref = (s.spec.get("refs") or {}).get("project_id")
    project = targets.get(ref) if isinstance(ref, str) else None
    if not project:
        return None
    servers = Api(tc.handle).pages("compute", "servers/detail", "servers",
                                   f"listing servers of source server {s.source_id}",
                                   {"all_tenants": "1", "project_id": project})
    mine = [str(v["id"]) for v in servers
            if (v.get("metadata") or {}).get(SERVER_MARK) == s.source_id
            and v.get("status") != "DELETED"]
    return mine[0] if len(mine) == 1 else None


def plan_rollback(url: str, run: str, *, tenant: str | None = None, target: Any = None,
                  clouds_yaml: str | Path | None = None) -> RollbackPlan:
    """What :func:`rollback` would do (read-only on the target and the database)."""
    with open_state(url) as engine, database_errors(url):
        factory = session_factory(engine)
        info = _original_run(factory, run)
        return _plan(factory, info, tenant, target, clouds_yaml)


def _plan(factory: sessionmaker[Session], info: RunInfo, tenant: str | None, target: Any,
          clouds_yaml: str | Path | None) -> RollbackPlan:
    earlier = runs_of_kind(factory, ROLLBACK, of_run_id=info.id)
    pending = [r for r in earlier if r.status != "finished"]
    if pending:
        return RollbackPlan(info.name, info.id, tenant, resuming=pending[0].name)
    undone = undone_step_keys(factory, [r.id for r in earlier])
    steps = [s for s in steps_with_targets(factory, info.id, tenant) if s.key not in undone]
    with _target_cloud(factory, info, target, clouds_yaml) as tc:
        in_doubt = _find_in_doubt(tc, factory, steps)
    pairs = {(s.kind, s.target_id) for s in steps if s.target_id}
    pairs |= {(s.kind, in_doubt[s.key]) for s in steps if s.key in in_doubt}
    elsewhere = mapped_elsewhere(factory, info.id, pairs)
    undo, kept = decide(steps, elsewhere, in_doubt)
    return RollbackPlan(info.name, info.id, tenant, undo, kept)


class _Target:
    """The target adapter of a run: given, or opened from the run's plan's target cloud."""

    def __init__(self, factory: sessionmaker[Session], info: RunInfo, given: Any,
                 clouds_yaml: str | Path | None) -> None:
        self.factory, self.info, self.given, self.clouds_yaml = factory, info, given, clouds_yaml
        self.handle: Any = None

    def __enter__(self) -> Any:
        from migrator.clouds.target import TargetCloud

        if self.given is not None:
            return self.given if isinstance(self.given, TargetCloud) else TargetCloud(self.given)
        from migrator.clouds.connection import open_cloud
        from migrator.store.run_kinds import target_cloud_of

        cloud = target_cloud_of(self.factory, self.info.id)
        if not cloud:
            raise ConfigError(f"run {self.info.name!r} was not registered from a plan: its "
                              "target cloud is unknown")
        self.handle = open_cloud(cloud, config_file=self.clouds_yaml, role="target")
        return TargetCloud(self.handle, name=cloud)

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()


def _target_cloud(factory: sessionmaker[Session], info: RunInfo, given: Any,
                  clouds_yaml: str | Path | None) -> _Target:
    return _Target(factory, info, given, clouds_yaml)


@contextmanager
def _source_cloud(factory: sessionmaker[Session], info: RunInfo, given: Any,
                  clouds_yaml: str | Path | None) -> Iterator[Any]:
    """The source cloud, for the undo steps that put something back there (given, opened
    from the run's plan when one of them needs it, else None)."""
    from migrator.store.run_kinds import source_cloud_of, wants_source

    if given is not None or not wants_source(factory, info):
        yield given
        return
    cloud = source_cloud_of(factory, info.id)
    if not cloud:
        yield None
        return
    from migrator.clouds.connection import open_cloud

    handle = open_cloud(cloud, config_file=clouds_yaml, role="source")
    try:
        yield handle
    finally:
        handle.close()


# -- executing -------------------------------------------------------------------------------


def rollback(url: str, run: str, *, tenant: str | None = None, target: Any = None,
             source: Any = None, clouds_yaml: str | Path | None = None,
             confirm: Callable[[RollbackPlan], bool] | None = None,
             observer: Observer | None = None, handle_sigint: bool = True,
             workers: int = 4) -> RollbackResult:
    """Plan the rollback of ``run`` and, when ``confirm`` (shown the plan) agrees, execute it
    as a run of kind ``rollback``; an unfinished rollback of the run is continued."""
    from migrator.handlers.undo import undo_registry
    from migrator.operations.execute import execute_run

    with open_state(url) as engine, database_errors(url):
        factory = session_factory(engine)
        info = _original_run(factory, run)
        _check_idle(factory, info)
        plan = _plan(factory, info, tenant, target, clouds_yaml)
        if confirm is not None and not confirm(plan):
            return RollbackResult(plan, None, None, {})
        resume = plan.resuming is not None
        if plan.resuming is not None:
            name = plan.resuming
        elif not plan.undo:
            _finish(factory, info, tenant, None)
            return RollbackResult(plan, None, None, {})
        else:
            name = _register(factory, info, plan)
        with _target_cloud(factory, info, target, clouds_yaml) as tc, \
                _source_cloud(factory, info, source, clouds_yaml) as src:
            from migrator.handlers import services_for

            result = execute_run(url, name, workers=workers, resume=resume,
                                 registry=undo_registry(), services=services_for(tc, src),
                                 observer=observer, handle_sigint=handle_sigint,
                                 max_attempts=5, backoff_base=0.5)
        counts = _outcomes(factory, name)
        if result.status == "finished":
            _finish(factory, info, tenant, name)
    return RollbackResult(plan, name, result, counts)


def _register(factory: sessionmaker[Session], info: RunInfo, plan: RollbackPlan) -> str:
    from migrator.engine.runs import StepSpec
    from migrator.store.run_kinds import taken_names

    steps = [StepSpec(f"undo:{u.key}", f"undo_{u.kind}", _spec(info, u), u.source_id,
                      u.tenant, u.name) for u in plan.undo]
    base = f"{info.name}-rollback"
    taken = taken_names(factory, base)
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    create_run(factory, name, steps, undo_dependencies(plan.undo, _deps(factory, info)),
               options={"kind": ROLLBACK, "of_run": info.name, "of_run_id": info.id,
                        "tenant": plan.tenant})
    return name


def _deps(factory: sessionmaker[Session], info: RunInfo) -> list[tuple[str, str]]:
    return dependency_keys(factory, info.id)


def _spec(info: RunInfo, u: Undo) -> Spec:
    from migrator.handlers.undo import source_restorer

    undo = UndoSpec(run=info.name, run_id=info.id, step_key=u.key, step_id=u.step_id,
                    kind=u.kind, target_id=u.target_id, source_id=str(u.source_id),
                    action=u.action, why=u.why)
    undo.update(u.extra)
    undo["restore_source"] = source_restorer(u.kind) is not None
    return Spec(undo=undo)


def _outcomes(factory: sessionmaker[Session], name: str) -> dict[str, int]:
    from migrator.store.run_kinds import undo_outcomes

    return undo_outcomes(factory, find_run(factory, name).id)


def _finish(factory: sessionmaker[Session], info: RunInfo, tenant: str | None,
            rollback_run: str | None) -> None:
    """The whole run rolled back: its status says so (a rollback of one tenant leaves it)."""
    if tenant is None and info.status != "rolled_back":
        set_run_status(factory, info.id, "rolled_back", finished=True,
                       detail={"rollback_run": rollback_run})
