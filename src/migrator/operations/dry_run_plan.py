"""``execute PLAN --dry-run``: the plan checks of operations/execute.py and the deep checks
of operations/dry_run.py together, recorded as a run of kind ``dry_run``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from migrator.errors import MigratorError
from migrator.operations.dry_run import deep_checks, record
from migrator.operations.plan import target_problems
from migrator.operations.rehearse import rehearsal_problems
from migrator.plan.model import Plan
from migrator.plan.target_names import TargetNames
from migrator.services import Services


def dry_run_plan(factory: sessionmaker[Session], plan: Plan, path: Path,
                 services: Services, names: TargetNames, settings: Any,
                 options: Any, workers: int,
                 run_problems: Callable[..., list[str]]) -> Any:
    """Every check, the findings recorded; the DryRunReport of operations/execute.py."""
    from migrator.operations.execute import DRY_RUN_CHECKS, DryRunReport

    try:
        problems = target_problems(plan, names)
    except MigratorError as exc:
        problems = [f"the target's names cannot be read: {exc}"]
    problems += run_problems(factory, plan, path, options.wave, options.resume)
    problems += rehearsal_problems(factory, plan)
    bandwidth = options.bandwidth if options.bandwidth is not None else (
        getattr(settings, "bandwidth", None) if settings is not None else
        _configured_bandwidth(plan, options))
    deep = deep_checks(plan, services, settings, workers, bandwidth or None, factory,
                       open_source=lambda: _open_source(plan, options))
    deep.run_name = record(factory, plan, path, deep, problems, options.wave)
    return DryRunReport(plan.name, len(plan.steps), plan.waves, DRY_RUN_CHECKS, problems,
                        deep.run_name, deep)


def _configured_bandwidth(plan: Plan, options: Any) -> int | None:
    from migrator.operations.execute import _settings

    value = _settings(plan, options.config).transfer.bandwidth
    return int(value) if value else None


def _open_source(plan: Plan, options: Any) -> Any:
    from migrator.clouds.connection import open_cloud

    return open_cloud(str(plan.source.get("cloud")), config_file=options.clouds_yaml,
                      role="source")
