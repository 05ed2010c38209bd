"""``execute``: run (or resume) a run's steps with the checkpointing executor."""

from __future__ import annotations

from collections.abc import Mapping

from migrator.engine.executor import Executor, ExecutorConfig, Observer, RunResult
from migrator.engine.handlers import HandlerRegistry
from migrator.engine.interrupt import graceful_sigint
from migrator.operations.context import database_errors, open_state
from migrator.store.db import session_factory

__all__ = ["RunResult", "execute_run"]


def execute_run(
    url: str,
    run_name: str,
    *,
    workers: int = 8,
    resume: bool = False,
    force_unlock: bool = False,
    max_attempts: int = 3,
    backoff_base: float = 2.0,
    observer: Observer | None = None,
    registry: HandlerRegistry | None = None,
    handle_sigint: bool = True,
    services: Mapping[str, object] | None = None,
) -> RunResult:
    """Execute the run ``run_name`` (a name or an id) in the state database at ``url``.

    With ``resume`` a run that was interrupted, crashed or failed continues: done steps never
    run again, steps found running are reconciled by their handler, failed steps get a new
    budget of ``max_attempts`` and the steps they blocked go back to pending. With
    ``handle_sigint`` (and on the main thread) the first Ctrl-C stops gracefully and the run
    ends ``interrupted``; the second one exits the process at once. ``services`` (cloud
    handles by name, e.g. ``{"target": TargetCloud(...)}``) reach every handler through
    ``StepContext.services``.
    """
    config = ExecutorConfig(workers=workers, max_attempts=max_attempts, backoff_base=backoff_base)
    with open_state(url) as engine, database_errors(url):
        executor = Executor(
            session_factory(engine),
            run_name,
            config=config,
            registry=registry,
            observer=observer,
            services=services,
        )
        if not handle_sigint:
            return executor.run(resume=resume, force_unlock=force_unlock)
        with graceful_sigint(executor.request_stop):
            return executor.run(resume=resume, force_unlock=force_unlock)
