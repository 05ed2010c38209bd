"""``rehearse``: the plan run for real into a rehearsal namespace of the target, measured,
then removed.

:func:`rehearsal_plan` copies the plan with every project, user, network, subnet, router,
security group (but ``default``, which Neutron names), image and volume renamed with the
suffix, and marked as a rehearsal (the project and Neutron tag ``migrator-rehearsal``, an
image tag, a volume metadata key, a user description): nothing it creates can take a name the
real run needs. Decisions to adopt an existing project or user are dropped (a rehearsal
creates its own instead of touching one that is in use). The copy has its own content hash,
so the real plan's run, its waves and ``--resume`` never see the rehearsal. Server steps
are left out (a cutover stops its source server, a downtime a rehearsal must not cause) and
listed in the report.

:func:`rehearse` registers the copy as a run of kind ``rehearsal``, executes it with the
ordinary handlers, measures each step kind's time and the throughput from its events, then
removes what it created with the rollback (operations/rollback.py), and reports the dry
run's estimate against the measurement. Run again after an interruption, it continues the
rehearsal, or its removal, where it stopped.
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from migrator.engine.executor import Observer, RunResult
from migrator.errors import ConfigError
from migrator.operations.context import database_errors, open_state
from migrator.operations.dry_run import Estimate, estimate
from migrator.plan.model import Plan, PlanStep
from migrator.services import Services
from migrator.store.db import session_factory
from migrator.store.run_kinds import (
    REHEARSAL,
    Measured,
    latest_measured,
    measure_run,
    runs_of_kind,
)

__all__ = ["RehearsalReport", "rehearsal_plan", "rehearse"]

REHEARSAL_TAG = "migrator-rehearsal"
RENAMED = frozenset({"project", "user", "network", "subnet", "router", "security_group",
                     "image", "volume"})
TAGGED = frozenset({"project", "network", "subnet", "router", "security_group", "image"})
# Kinds a rehearsal leaves out: a server's cutover stops its source server (and moves the
# volumes attached to it), a downtime a rehearsal must not cause.
NOT_REHEARSED = frozenset({"server"})


def rehearsal_plan(plan: Plan, suffix: str) -> Plan:
    """The plan renamed into the rehearsal namespace (see the module docstring)."""
    if not suffix or suffix != suffix.strip():
        raise ConfigError(f"--suffix {suffix!r}: a rehearsal needs a non-empty suffix "
                          "without spaces around it")
    left_out = not_rehearsed(plan)
    steps = []
    for step in plan.steps:
        if step.key in left_out:
            continue
        spec = copy.deepcopy(step.spec)
        attrs = spec.setdefault("attrs", {})
        lookup = spec.get("lookup")
        if isinstance(lookup, dict):
            lookup.pop("adopt_id", None)
        name = step.name
        if step.kind in RENAMED and attrs.get("name") and not (
                step.kind == "security_group" and attrs.get("name") == "default"):
            attrs["name"] = f"{attrs['name']}{suffix}"
            name = f"{name}{suffix}" if name else name
        if step.kind in TAGGED:
            attrs["tags"] = sorted({*(attrs.get("tags") or []), REHEARSAL_TAG})
        if step.kind == "volume":
            attrs["metadata"] = {**(attrs.get("metadata") or {}), REHEARSAL_TAG: "true"}
        if step.kind == "user":
            attrs["description"] = f"rehearsal of {plan.name}; removed after it"
        steps.append(PlanStep(step.key, step.kind, step.tenant, step.source_id, name,
                              step.wave, [d for d in step.depends_on if d not in left_out],
                              spec))
    out = Plan(f"{plan.name}{suffix}", plan.created_at, dict(plan.source),
               {**plan.target, "rehearsal_of": plan.name}, dict(plan.selection),
               plan.mappings, dict(plan.summary), steps, list(plan.warnings), plan.format)
    # Its own hash: the real plan's runs are found by theirs.
    out.content_hash = hashlib.sha256(
        f"{plan.content_hash}:rehearsal:{suffix}".encode()).hexdigest()
    return out


def not_rehearsed(plan: Plan) -> list[str]:
    """The keys of the steps a rehearsal leaves out (:data:`NOT_REHEARSED` kinds and what
    depends on them), in plan order."""
    out = {s.key for s in plan.steps if s.kind in NOT_REHEARSED}
    grew = True
    while grew:
        grew = False
        for s in plan.steps:
            if s.key not in out and any(d in out for d in s.depends_on):
                out.add(s.key)
                grew = True
    return [s.key for s in plan.steps if s.key in out]


@dataclass(frozen=True)
class KindTiming:
    kind: str
    steps: int
    mean_seconds: float
    estimated_seconds: float


@dataclass
class RehearsalReport:
    plan: str
    run: str
    suffix: str
    status: str
    estimate: Estimate
    elapsed_seconds: float | None = None
    bytes: int = 0
    throughput: float | None = None  # bytes/s over the copies' span
    kinds: list[KindTiming] = field(default_factory=list)
    cleanup_run: str | None = None
    cleanup_status: str | None = None
    cleanup_outcomes: dict[str, int] = field(default_factory=dict)
    failed_steps: list[str] = field(default_factory=list)
    # Steps of the plan the rehearsal leaves out (server cutovers: they stop the source).
    not_rehearsed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "finished" and self.cleanup_status in ("finished", "nothing")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        if self.elapsed_seconds:
            out["estimate_error"] = round(
                (self.estimate.seconds - self.elapsed_seconds) / self.elapsed_seconds, 3)
        return out


def rehearse(url: str, plan_path: str | Path, *, suffix: str = "-rehearsal",
             clouds_yaml: str | Path | None = None, config: str | Path | None = None,
             workers: int | None = None, observer: Observer | None = None,
             handle_sigint: bool = True,
             services: Services | None = None) -> RehearsalReport:
    """Run ``plan_path`` into the rehearsal namespace, measure it, remove it (see the module
    docstring); what ``services`` holds replaces what is opened from the plan (tests)."""
    from migrator.handlers import register_handlers
    from migrator.operations.execute import (
        execute_run,
        run_services,
        transfer_limits,
    )
    from migrator.operations.plan import check_fresh, load_plan, register_plan
    from migrator.operations.rollback import rollback

    path = Path(plan_path)
    real = load_plan(path)
    plan = rehearsal_plan(real, suffix)
    with open_state(url) as engine, database_errors(url):
        factory = session_factory(engine)
        check_fresh(factory, real, path)
        existing = _existing(factory, plan.content_hash)
        with run_services(plan, clouds_yaml=clouds_yaml, config=config) as (
                svc, settings, retries):
            if services is not None:
                svc = replace(svc, **{f.name: getattr(services, f.name)
                                      for f in fields(services)
                                      if getattr(services, f.name) is not None})
            threads = (workers or (settings.metadata_workers if settings else 8)) + (
                settings.parallel_transfers if settings else 0)
            measured_before = latest_measured(factory)
            planned = estimate(plan, getattr(settings, "bandwidth", None), measured_before,
                               threads - (settings.parallel_transfers if settings else 0),
                               getattr(settings, "parallel_transfers", 4))
            if existing is None:
                registered = register_plan(factory, plan, path)
                run_name, status = registered.run_name, "created"
                _tag_run(factory, registered.run_id, real, suffix)
            else:
                run_name, status = existing
            report = RehearsalReport(real.name, run_name, suffix, status, planned)
            report.not_rehearsed = not_rehearsed(real)
            result: RunResult | None = None
            if status in ("created", "running", "interrupted", "failed", "paused",
                          "cancelled"):
                began = time.monotonic()
                result = execute_run(url, run_name, workers=threads,
                                     resume=status != "created",
                                     registry=register_handlers(), services=svc,
                                     observer=observer, handle_sigint=handle_sigint,
                                     retries=retries, limits=transfer_limits(settings))
                report.status = result.status
                report.failed_steps = list(result.failed_steps)
                if status == "created":
                    report.elapsed_seconds = round(time.monotonic() - began, 3)
                if result.status == "interrupted":
                    return report
            _measure(factory, run_name, report)
            if report.status in ("finished", "failed"):
                undone = rollback(url, run_name, target=svc.target,
                                  source=svc.source, clouds_yaml=clouds_yaml,
                                  handle_sigint=handle_sigint)
                report.cleanup_run = undone.rollback_run
                report.cleanup_status = (undone.result.status if undone.result is not None
                                         else "nothing")
                report.cleanup_outcomes = undone.counts
    return report


def rehearsal_problems(factory: sessionmaker[Session], plan: Plan) -> list[str]:
    """A rehearsal of ``plan`` whose resources are not removed yet: the real run would find
    them by the source ids they carry and adopt them, so it waits until they are gone."""
    out = []
    for run in runs_of_kind(factory, REHEARSAL, of_plan_hash=plan.content_hash):
        if run.status != "rolled_back":
            out.append(f"rehearsal {run.name} of plan {plan.name} is {run.status} and its "
                       "resources are still on the target (they carry the same source ids "
                       "and would be adopted): finish it first with 'migrator rehearse "
                       f"{run.options.get('plan_file') or plan.name}' (or 'migrator rollback "
                       f"--run {run.name}')")
    return out


def _existing(factory: sessionmaker[Session], content_hash: str) -> tuple[str, str] | None:
    """The rehearsal run of this plan and suffix, unless it was removed already."""
    for run in runs_of_kind(factory, REHEARSAL, plan_hash=content_hash):
        if run.status != "rolled_back":
            return run.name, run.status
    return None


def _tag_run(factory: sessionmaker[Session], run_id: int, real: Plan, suffix: str) -> None:
    from migrator.store.run_kinds import update_options

    update_options(factory, run_id, {"kind": REHEARSAL, "of_plan": real.name,
                                     "of_plan_hash": real.content_hash, "suffix": suffix,
                                     "plan_hash": rehearsal_plan(real, suffix).content_hash})


def _measure(factory: sessionmaker[Session], run_name: str, report: RehearsalReport) -> None:
    from migrator.engine.runs import find_run

    run_id = find_run(factory, run_name).id
    measured: Measured = measure_run(factory, run_id)
    report.bytes = measured.data_bytes
    report.throughput = round(measured.rate, 1) if measured.rate else None
    if report.elapsed_seconds is None:
        from migrator.store.run_kinds import run_span

        report.elapsed_seconds = run_span(factory, run_id)
    per_kind_estimate = report.estimate
    report.kinds = [KindTiming(kind, measured.steps[kind], round(seconds, 3),
                               _estimated_step(per_kind_estimate, kind))
                    for kind, seconds in sorted(measured.step_seconds.items())]


def _estimated_step(e: Estimate, kind: str) -> float:
    """The per-step time the estimate assumed for ``kind`` (measured earlier or default)."""
    from migrator.operations.dry_run import DEFAULT_STEP_SECONDS

    return float(e.step_times.get(kind, DEFAULT_STEP_SECONDS))
