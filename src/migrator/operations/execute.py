"""``execute``: run (or resume) a run's steps with the checkpointing executor; a plan file is
loaded, verified, checked against the target, registered as a run and executed
(:func:`execute_plan`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from migrator.bulk_gc import frozen_heap
from migrator.config_schema import Config, RetriesConfig
from migrator.engine.executor import Executor, ExecutorConfig, Observer, RunResult
from migrator.engine.handlers import HandlerRegistry
from migrator.engine.interrupt import graceful_sigint
from migrator.engine.leases import DEFAULT_LEASE_SECONDS, ClaimLimits
from migrator.engine.runs import find_run
from migrator.engine.steps import read_connection
from migrator.errors import PlanChangedError, PlanError, StalePlanError
from migrator.operations.context import database_errors, open_state
from migrator.operations.plan import (
    Registered,
    check_fresh,
    find_plan_run,
    load_plan,
    make_plan,
    register_plan,
    target_problems,
)
from migrator.operations.rehearse import rehearsal_problems
from migrator.plan.model import Plan
from migrator.plan.planfile import DEFAULT_MAX_PLAN_BYTES, load_plan_data
from migrator.plan.target_names import CloudTargetNames, TargetNames
from migrator.services import Services
from migrator.store.db import session_factory
from migrator.store.plans import run_target_cloud

__all__ = ["DryRunReport", "ExecuteOptions", "PlanExecution", "RunResult",
           "execute_existing_run", "execute_plan", "execute_run"]


def execute_run(
    url: str,
    run_name: str,
    *,
    workers: int = 8,
    resume: bool = False,
    force_unlock: bool = False,
    max_attempts: int | None = None,
    backoff_base: float | None = None,
    observer: Observer | None = None,
    registry: HandlerRegistry | None = None,
    handle_sigint: bool = True,
    services: Services | None = None,
    join: bool = False,
    limits: ClaimLimits | None = None,
    lease_seconds: float | None = None,
    retries: RetriesConfig | None = None,
) -> RunResult:
    """Execute the run ``run_name`` (a name or an id) in the state database at ``url``.

    With ``resume`` a run that was interrupted, crashed or failed continues: done steps never
    run again, steps found running are reconciled by their handler, failed steps get a new
    budget of ``max_attempts`` and the steps they blocked go back to pending. With
    ``handle_sigint`` (and on the main thread) the first Ctrl-C stops gracefully and the run
    ends ``interrupted``; the second one exits the process at once. ``services`` (the clouds
    and the data path, e.g. ``handlers.services_for(connection)``) reach every handler through
    ``StepContext.services``. ``retries`` (the configuration's ``retries`` section) gives the
    attempts per step and the step backoff unless ``max_attempts``/``backoff_base`` do. With
    ``join`` this process takes part in a run other workers are executing (``migrator
    worker``); ``limits`` hold across all of them.
    """
    steps = retries or RetriesConfig()
    config = ExecutorConfig(
        workers=workers,
        max_attempts=max_attempts if max_attempts is not None else steps.step_attempts,
        backoff_base=backoff_base if backoff_base is not None else steps.step_backoff,
        backoff_max=steps.step_backoff_max, limits=limits or ClaimLimits(),
        lease_seconds=lease_seconds or DEFAULT_LEASE_SECONDS)
    with open_state(url) as engine, database_errors(url):
        executor = Executor(
            session_factory(engine),
            run_name,
            config=config,
            registry=registry,
            observer=observer,
            services=services,
        )
        # Another executor of the run is no longer a lock to break: it is a worker whose
        # leases expire when it dies (force_unlock is accepted for scripts and ignored).
        del force_unlock
        with frozen_heap():  # the collector's full passes skip the imports and the plan
            if not handle_sigint:
                return executor.run(resume=resume, join=join)
            with graceful_sigint(executor.request_stop):
                return executor.run(resume=resume, join=join)


# -- executing a plan file -------------------------------------------------------------------

# What ``execute PLAN --dry-run`` verifies (reported as is: nothing else is checked).
DRY_RUN_CHECKS = (
    "the plan file loads: YAML, format, fields, step kinds, content hash, dependencies, "
    "no cycle",
    "the plan is not stale: the latest inventory snapshot of the source is the one planned from",
    "the target answers with the plan's credentials (a few read-only LIST calls)",
    "mappings resolve on the target: domains, roles, external networks, subnet pools, "
    "flavors",
    "no project name planned for creation has been taken on the target since planning",
    "the planned networks, subnets, routers, security groups and rules fit the network quota "
    "the plan gives each tenant",
    "the run can be registered (wave exists, earlier waves finished, no conflicting run)",
    "credentials and endpoints of both clouds; permissions per step kind (probed with read "
    "calls, named where no read can tell)",
    "quotas and free capacity per tenant against what the plan consumes; volume types, "
    "flavors, user names; image formats and properties after translation; the source's "
    "images and volumes",
    "bytes to copy and the estimated duration; nothing is written on either cloud, the "
    "findings are recorded as a run of kind dry_run",
)


@dataclass(frozen=True)
class DryRunReport:
    plan: str
    steps: int
    waves: list[int]
    checks: tuple[str, ...]
    problems: list[str]
    run_name: str | None
    # The deep checks' findings per tenant, the estimate, the calls made
    # (operations/dry_run.py); None when they could not run.
    deep: Any = None

    @property
    def ok(self) -> bool:
        return not self.problems and (self.deep is None or self.deep.ok)


@dataclass(frozen=True)
class PlanExecution:
    plan: Plan
    path: Path
    run: RunResult | None = None
    registered: Registered | None = None
    dry_run: DryRunReport | None = None
    replanned: bool = False


@dataclass(frozen=True)
class ExecuteOptions:
    """How :func:`execute_plan` (and :func:`execute_existing_run`) run: what the command line
    sets, then the hooks that tests and other programs pass in."""

    wave: int | None = None  # run only this wave of the plan
    resume: bool = False  # continue the plan's interrupted, crashed or failed run
    replan: bool = False  # a stale or edited plan: plan again into the same file, go on
    dry_run: bool = False  # check everything, write nothing anywhere
    run_name: str | None = None  # default: the plan's name (-wave-N)
    # Steps at a time; None: transfer.metadata_workers of the configuration for a plan with
    # images or volumes, else 8. A plan with data adds parallel_transfers threads.
    workers: int | None = None
    # Tries per step and the first retry's delay (doubled each time); None: the
    # configuration's retries.step_attempts and retries.step_backoff.
    max_attempts: int | None = None
    backoff_base: float | None = None
    force_unlock: bool = False  # take the run from an executor that cannot be checked
    clouds_yaml: str | Path | None = None  # default: openstacksdk's search
    config: str | Path | None = None  # migrator.yaml; default: the one the plan names
    parallel_transfers: int | None = None  # default: transfer.parallel_transfers
    bandwidth: int | None = None  # bytes/s; default: transfer.bandwidth (0: unlimited)
    max_plan_bytes: int = DEFAULT_MAX_PLAN_BYTES  # a bigger plan file is refused unread
    # Hooks.
    observer: Observer | None = None  # step events (progress display)
    transfer_progress: Any = None  # byte progress of copies (handlers.data.TransferProgress)
    registry: HandlerRegistry | None = None  # handlers; default: the tenant and data kinds
    handle_sigint: bool = True  # Ctrl-C stops gracefully (main thread only)
    services: Services | None = None  # the clouds, the data path; default: opened here
    target_names: TargetNames | None = None  # the target's names; default: read from it
    # Local worker processes (each with ``workers`` threads) instead of this process's threads.
    processes: int = 1


def execute_plan(url: str, plan_path: str | Path,
                 options: ExecuteOptions = ExecuteOptions()) -> PlanExecution:
    """Execute (or rehearse, or resume) the plan file at ``plan_path``.

    The plan is loaded and verified (hash, staleness: refused unless ``options.replan``, which
    plans again with the same selection into the same file and goes on with the new plan),
    checked against the target (every problem found is listed in the PlanError), registered
    as a run (``<plan name>`` or ``<plan name>-wave-N``; the existing run of this plan with
    ``resume``) and executed with the tenant handlers, the target cloud reaching them as
    ``services.target``. ``dry_run`` stops after the checks and writes nothing anywhere.

    A plan with images or volumes also opens the source cloud (``services.source``) and
    the run's data-path services (``services.transfer``: bandwidth cap, transfer slots,
    volume options, ``transfer_progress``) from the ``transfer`` section of the configuration
    the plan names (or ``options.config``); ``parallel_transfers`` and ``bandwidth`` override
    it.
    The same configuration's ``retries`` section sets how each cloud's calls are retried and,
    unless ``options.max_attempts``/``backoff_base`` are given, the attempts per step and the
    step backoff.
    With ``options.processes`` > 1 the run is executed by that many local worker processes.
    """
    path = Path(plan_path)
    o = options
    replanned = False
    try:
        plan = load_plan(path, max_bytes=o.max_plan_bytes)
    except PlanChangedError:
        if not o.replan:
            raise
        plan, replanned = _replan(url, path, o), True
    with open_state(url) as engine, database_errors(url):
        factory = session_factory(engine)
        try:
            check_fresh(factory, plan, path)
        except StalePlanError:
            if not o.replan or replanned:
                raise
            plan, replanned = _replan(url, path, o), True
        retries = _settings(plan, o.config).retries
        with _target(plan, o.clouds_yaml, o.services, o.target_names, retries) as (svc, names), \
                _data_services(plan, svc, o.clouds_yaml, o.config, o.parallel_transfers,
                               o.bandwidth, o.transfer_progress, retries) as (svc, settings):
            workers = o.workers
            if settings is not None:
                workers = (settings.metadata_workers if workers is None else workers) \
                    + settings.parallel_transfers
            if o.dry_run:
                from migrator.operations.dry_run_plan import dry_run_plan

                report = dry_run_plan(factory, plan, path, svc, names, settings, o,
                                      workers or 8, _run_problems)
                return PlanExecution(plan, path, dry_run=report, replanned=replanned)
            problems = target_problems(plan, names)
            problems += _run_problems(factory, plan, path, o.wave, o.resume)
            problems += rehearsal_problems(factory, plan)
            if problems:
                found = problems[0] if len(problems) == 1 else (
                    f"{len(problems)} problems (each on a line below)")
                raise PlanError(f"{path}: {found}; nothing was changed on the target",
                                problems)
            existing = find_plan_run(factory, plan, o.wave)
            if existing is not None and (o.resume or existing.status == "created"):
                registered = existing
            else:
                registered = register_plan(factory, plan, path, run_name=o.run_name,
                                           wave=o.wave)
            if o.processes > 1:
                from migrator.operations.worker import run_processes

                result = run_processes(
                    url, registered.run_name, o.processes, slots=workers or 8,
                    resume=o.resume and registered.status != "created",
                    clouds_yaml=o.clouds_yaml, config=o.config, max_attempts=o.max_attempts,
                    observer=o.observer, handle_sigint=o.handle_sigint)
                return PlanExecution(plan, path, run=result, registered=registered,
                                     replanned=replanned)
            from migrator.handlers import register_handlers

            handlers = register_handlers(o.registry)
            result = execute_run(url, registered.run_name, workers=workers or 8,
                                 resume=o.resume and registered.status != "created",
                                 force_unlock=o.force_unlock, max_attempts=o.max_attempts,
                                 backoff_base=o.backoff_base, observer=o.observer,
                                 registry=handlers, handle_sigint=o.handle_sigint,
                                 services=svc, retries=retries,
                                 limits=transfer_limits(settings))
    return PlanExecution(plan, path, run=result, registered=registered, replanned=replanned)


def _run_problems(factory: sessionmaker[Session], plan: Plan, path: Path, wave: int | None,
                  resume: bool) -> list[str]:
    problems = []
    if wave is not None and wave not in plan.waves:
        problems.append(f"wave {wave} does not exist (waves: "
                        f"{', '.join(map(str, plan.waves))})")
        return problems
    existing = find_plan_run(factory, plan, wave)
    label = f" wave {wave}" if wave is not None else ""
    if resume and existing is None:
        problems.append(f"nothing to resume: plan {plan.name}{label} has no run yet (run it "
                        "without --resume)")
    elif not resume and existing is not None and existing.status != "created":
        problems.append(f"plan {plan.name}{label} was already executed as run "
                        f"{existing.run_name} (status {existing.status}); use --resume to "
                        "continue it")
    for earlier in plan.waves if wave is not None else []:
        if earlier >= wave:  # type: ignore[operator]
            break
        done = find_plan_run(factory, plan, earlier) or find_plan_run(factory, plan, None)
        if done is None or done.status != "finished":
            state = "has not run" if done is None else f"is {done.status}"
            problems.append(f"wave {earlier} of plan {plan.name} {state}; run it first: "
                            f"migrator execute {path} --wave {earlier}")
    return problems


def _replan(url: str, path: Path, options: ExecuteOptions) -> Plan:
    """Plan again with what the plan file records (configuration, requested tenants)."""
    try:
        raw = load_plan_data(path, max_bytes=options.max_plan_bytes) or {}
    except PlanError:
        raw = {}
    source = raw.get("source") if isinstance(raw, dict) else None
    selection = raw.get("selection") if isinstance(raw, dict) else None
    config = options.config or (source if isinstance(source, dict) else {}).get("config")
    if not config:
        raise PlanError(f"{path}: cannot replan: the plan does not name its configuration; "
                        "pass --config")
    selection = selection if isinstance(selection, dict) else {}
    result = make_plan(url, config=config, tenants=selection.get("requested") or None,
                       include_dependencies=bool(selection.get("include_dependencies")),
                       output=path, name=str(raw.get("name") or path.stem),
                       clouds_yaml=options.clouds_yaml, target_names=options.target_names)
    return result.plan


@contextmanager
def _target(plan: Plan, clouds_yaml: str | Path | None, services: Services | None,
            names: TargetNames | None, retries: RetriesConfig
            ) -> Iterator[tuple[Services, TargetNames]]:
    """The services for the handlers and the target's names: given, or opened from the
    plan's target cloud (closed afterwards)."""
    from migrator.clouds.target import TargetCloud

    if services is not None and services.target is not None:
        yield services, names or CloudTargetNames(services.target)
        return
    from migrator.clouds.connection import open_cloud

    cloud = str(plan.target.get("cloud"))
    handle = open_cloud(cloud, config_file=clouds_yaml, role="target",
                        retry=retries.call_policy(cloud))
    try:
        tc = TargetCloud(handle, name=cloud, source_cloud=str(plan.source.get("cloud")))
        yield replace(services or Services(), target=tc), names or CloudTargetNames(tc)
    finally:
        handle.close()


DATA_KINDS = frozenset({"image", "image_member", "volume", "server"})
# The kinds that copy bytes: their number at once is the run's parallel_transfers, counted
# over every worker of the run.
TRANSFER_KINDS = frozenset({"image", "volume", "server"})


def transfer_limits(settings: Any) -> ClaimLimits:
    """The claim limits of a run whose transfer settings are ``settings`` (None: no data)."""
    if settings is None:
        return ClaimLimits()
    return ClaimLimits(TRANSFER_KINDS, settings.parallel_transfers,
                       small_copy_bytes=settings.small_copy_bytes)


@contextmanager
def run_services(plan: Plan, *, clouds_yaml: str | Path | None = None,
                 config: str | Path | None = None, transfer_progress: Any = None,
                 ) -> Iterator[tuple[Services, Any, RetriesConfig]]:
    """The services a worker of a run of ``plan`` needs (target, and source and transfers
    when the plan moves data), opened from the plan's clouds and configuration; the transfer
    settings (None without data steps) and the retries settings."""
    retries = _settings(plan, config).retries
    with _target(plan, clouds_yaml, None, None, retries) as (svc, _names), \
            _data_services(plan, svc, clouds_yaml, config, None, None, transfer_progress,
                           retries) as (svc, settings):
        yield svc, settings, retries


def _settings(plan: Plan, config: str | Path | None) -> Config:
    """The configuration (``config``, else the one the plan names when that file still
    exists; defaults otherwise)."""
    from migrator.config import load_config

    path = config or plan.source.get("config")
    if path and Path(str(path)).is_file():
        return load_config(str(path))
    if config:
        return load_config(config)  # the error names the missing file
    return Config(path=None)


@contextmanager
def _data_services(plan: Plan, services: Services, clouds_yaml: str | Path | None,
                   config: str | Path | None, parallel_transfers: int | None,
                   bandwidth: int | None, progress: Any, retries: RetriesConfig
                   ) -> Iterator[tuple[Services, Any]]:
    """``services`` plus the source handle and the data-path services when the plan moves
    images or volumes (opened here unless given, closed afterwards)."""
    if not any(step.kind in DATA_KINDS for step in plan.steps):
        yield services, None
        return
    from migrator.handlers.data import data_services_for
    from migrator.transfer.volume_copy import VolumeOptions

    settings = _settings(plan, config).transfer
    if parallel_transfers is not None:
        settings = replace(settings, parallel_transfers=parallel_transfers)
    if bandwidth is not None:
        settings = replace(settings, bandwidth=bandwidth or None)
    out = services
    opened: list[Any] = []
    if out.servers is None:
        out = replace(out, servers=_settings(plan, config).servers)
    if out.transfer is None:
        times = settings.timeouts
        data = data_services_for(
            parallel_transfers=settings.parallel_transfers, bandwidth=settings.bandwidth,
            small_copy_bytes=settings.small_copy_bytes,
            options=VolumeOptions(allow_force_upload=settings.allow_force_upload,
                                  poll_interval=times.poll_interval,
                                  image_timeout=times.image_active,
                                  volume_timeout=times.volume_available,
                                  request_timeout=times.request),
            progress=progress)
        out = replace(out, transfer=data)
        opened.append(data)
    if out.source is None:
        from migrator.clouds.connection import open_cloud

        name = str(plan.source.get("cloud"))
        source = open_cloud(name, config_file=clouds_yaml, role="source",
                            retry=retries.call_policy(name))
        out = replace(out, source=source)
        opened.append(source)
    try:
        yield out, settings
    finally:
        for item in opened:
            item.close()


def execute_existing_run(url: str, run_name: str,
                         options: ExecuteOptions = ExecuteOptions()) -> RunResult:
    """``execute RUN``: a run by name (``options``: workers, resume, force_unlock,
    max_attempts, backoff_base, clouds_yaml and the hooks); when it was registered from a
    plan, the handlers get that plan's target cloud."""
    o = options
    run_options: dict[str, Any] = {
        "workers": o.workers or 8, "resume": o.resume, "force_unlock": o.force_unlock,
        "max_attempts": o.max_attempts, "backoff_base": o.backoff_base, "observer": o.observer,
        "registry": o.registry, "handle_sigint": o.handle_sigint}
    with open_state(url) as engine, database_errors(url):
        factory = session_factory(engine)
        run = find_run(factory, run_name)
        with read_connection(factory) as conn:
            cloud = run_target_cloud(conn, run.id)
    if not cloud or o.services is not None:
        return execute_run(url, run_name, services=o.services, **run_options)
    from migrator.clouds.connection import open_cloud
    from migrator.clouds.target import TargetCloud
    from migrator.handlers import register_handlers, services_for

    handle = open_cloud(str(cloud), config_file=o.clouds_yaml, role="target")
    try:
        run_options["registry"] = register_handlers(o.registry)
        return execute_run(url, run_name, services=services_for(TargetCloud(
            handle, name=str(cloud))), **run_options)
    finally:
        handle.close()
