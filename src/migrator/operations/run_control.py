"""``migrator run pause|resume|cancel``: what the operator asks every worker of a run.

The request is written on the run (``runs.control``); each worker reads it with its heartbeat
and obeys at its next checkpoint: pause stops claiming and hands running steps back at their
next phase boundary, resume lets them claim again, cancel makes them leave (the run ends
``cancelled`` when the last one has; ``migrator execute ... --resume`` continues it later).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from migrator.engine import runs
from migrator.engine.executor import CANCEL, CANCELLED, PAUSE, PAUSED, RUNNING
from migrator.engine.workers import active_workers
from migrator.errors import IllegalTransitionError
from migrator.operations.context import database_errors, open_state
from migrator.store.db import session_factory

ACTIONS = ("pause", "resume", "cancel")
# Runs that no worker will take again without an operator's --resume.
_ENDED = frozenset({"finished", "failed", "interrupted", CANCELLED})


@dataclass(frozen=True)
class RunControlResult:
    run: str
    action: str
    status: str  # the run's status afterwards
    workers: int  # active workers that will obey at their next checkpoint

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def control_run(url: str, run_name: str, action: str) -> RunControlResult:
    """Pause, resume or cancel the run ``run_name``."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    with open_state(url) as engine, database_errors(url):
        factory = session_factory(engine)
        run = runs.find_run(factory, run_name)
        if run.status in _ENDED:
            raise IllegalTransitionError(
                f"run {run.name!r} is {run.status}: there is nothing to {action} (continue it "
                "with 'migrator execute PLAN --resume')")
        if action == "pause":
            runs.set_run_control(factory, run.id, PAUSE)
            runs.set_run_status(factory, run.id, PAUSED)
            status = PAUSED
        elif action == "resume":
            runs.set_run_control(factory, run.id, None)
            status = RUNNING if run.status == PAUSED else run.status
            if run.status == PAUSED:
                runs.set_run_status(factory, run.id, RUNNING)
        else:
            runs.set_run_control(factory, run.id, CANCEL)
            status = run.status
            if not active_workers(factory, run.id):
                # Nobody will read the request: the run ends here.
                status = runs.finish_run(factory, run.id, CANCELLED, {"control": CANCEL})
        return RunControlResult(run.name, action, status, len(active_workers(factory, run.id)))
