"""``migrator worker``: a process that joins a run (or waits for one) and executes its steps
until none is left, beside any number of others on this host or on others (PostgreSQL).

What the worker needs besides the state database comes from the run: its plan file (which
names the clouds and the configuration) is loaded and checked as ``execute`` does; the
clouds.yaml is this host's (``--clouds-yaml`` or openstacksdk's usual places).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from migrator.engine.executor import JOINABLE, Observer, RunResult
from migrator.engine.runs import find_run
from migrator.engine.steps import read_connection
from migrator.errors import NotFoundError, PlanError
from migrator.operations.context import database_errors, open_state
from migrator.store.db import session_factory
from migrator.store.plans import oldest_run_in, run_options

WAIT_POLL_SECONDS = 2.0
log = logging.getLogger(__name__)


def run_worker(
    url: str,
    run_name: str | None = None,
    *,
    slots: int = 8,
    clouds_yaml: str | Path | None = None,
    config: str | Path | None = None,
    wait: float | None = None,
    max_attempts: int | None = None,
    observer: Observer | None = None,
    transfer_progress: Any = None,
    lease_seconds: float | None = None,
    registry: Any = None,
    handle_sigint: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> RunResult:
    """Join ``run_name`` (or, without one, the oldest run waiting for workers, waiting up to
    ``wait`` seconds for one to appear; None waits for ever) and work on it until no step is
    left for this worker."""
    from migrator.handlers import register_handlers
    from migrator.operations.execute import execute_run, run_services, transfer_limits
    from migrator.operations.plan import load_plan

    with open_state(url) as engine, database_errors(url):
        factory = session_factory(engine)
        name = run_name or _wait_for_run(factory, wait, sleep)
        run = find_run(factory, name)
        plan_file = _plan_file(factory, run.id)
    if plan_file is None:
        # A run built by a program (tests): the handlers get no clouds.
        return execute_run(url, run.name, workers=slots, join=True, observer=observer,
                           registry=registry, max_attempts=max_attempts,
                           handle_sigint=handle_sigint, lease_seconds=lease_seconds)
    if not Path(plan_file).is_file():
        raise PlanError(f"run {run.name!r} was registered from {plan_file}, which is not on "
                        "this host: copy the plan file there (same path)")
    plan = load_plan(plan_file)
    with run_services(plan, clouds_yaml=clouds_yaml, config=config,
                      transfer_progress=transfer_progress) as (services, settings, retries):
        return execute_run(url, run.name, workers=slots, join=True, observer=observer,
                           registry=register_handlers(registry), services=services,
                           max_attempts=max_attempts, handle_sigint=handle_sigint,
                           limits=transfer_limits(settings), lease_seconds=lease_seconds,
                           retries=retries)


def _plan_file(factory: sessionmaker[Session], run_id: int) -> str | None:
    with read_connection(factory) as conn:
        found = run_options(conn, run_id).get("plan_file")
    return str(found) if found else None


def _wait_for_run(factory: sessionmaker[Session], wait: float | None,
                  sleep: Callable[[float], None]) -> str:
    """The oldest run that takes workers (created, running or paused), once there is one."""
    waited = 0.0
    while True:
        with read_connection(factory) as conn:
            found = oldest_run_in(conn, JOINABLE)
        if found is not None:
            return found
        if wait is not None and waited >= wait:
            raise NotFoundError(f"no run to join after waiting {wait:g} s (a run is joinable "
                                "while it is created, running or paused)")
        sleep(WAIT_POLL_SECONDS)
        waited += WAIT_POLL_SECONDS


# -- several local worker processes (execute --processes N) -----------------------------------

PROGRESS_POLL_SECONDS = 0.5
PROGRESS_EVERY_SECONDS = 2.0  # the run's counts, read from the database, at most this often


def run_processes(
    url: str,
    run_name: str,
    processes: int,
    *,
    slots: int = 8,
    resume: bool = False,
    clouds_yaml: str | Path | None = None,
    config: str | Path | None = None,
    max_attempts: int | None = None,
    lease_seconds: float | None = None,
    observer: Observer | None = None,
    handle_sigint: bool = True,
) -> RunResult:
    """Execute ``run_name`` with ``processes`` local ``migrator worker`` processes (each with
    ``slots`` threads) and wait for them; progress is read from the state database.

    Ctrl-C (or SIGTERM) is passed on to the workers, which hand their steps back at the next
    checkpoint; a second one kills them (their steps are taken over on resume).
    """
    import os
    import signal
    import subprocess
    import sys
    import tempfile

    from migrator.engine import runs
    from migrator.engine.executor import RUNNING
    from migrator.engine.interrupt import graceful_sigint
    from migrator.engine.steps import utcnow

    began = time.monotonic()
    with open_state(url) as engine, database_errors(url):
        factory = session_factory(engine)
        run = find_run(factory, run_name)
        if resume:
            runs.reset_for_resume(factory, run.id)
            runs.set_run_control(factory, run.id, None)
        if resume or run.status == "created":
            runs.set_run_status(factory, run.id, RUNNING, started=True,
                                detail={"resume": resume, "processes": processes})
        done_before = _satisfied(runs.state_counts(factory, run.id))
        args = ["--run", run.name, "--slots", str(slots)]
        if max_attempts is not None:
            args += ["--max-attempts", str(max_attempts)]
        if clouds_yaml:
            args += ["--clouds-yaml", str(clouds_yaml)]
        if config:
            args += ["--config", str(config)]
        if lease_seconds:
            args += ["--lease", str(lease_seconds)]
        # The database URL (it may hold a password) goes in the environment, not in argv.
        env = {**os.environ, "MIGRATOR_DB": url}
        logs = Path(tempfile.mkdtemp(prefix=f"migrator-workers-{run.id}-"))
        children: list[tuple[subprocess.Popen[bytes], Path]] = []
        for i in range(processes):
            log_path = logs / f"worker-{i}.log"
            with log_path.open("wb") as log_file:
                children.append((subprocess.Popen(
                    [sys.executable, "-m", "migrator", "worker", *args], env=env,
                    stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT),
                    log_path))

        presses = 0

        def interrupt() -> None:
            nonlocal presses
            presses += 1
            for child, _ in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM if presses == 1 else signal.SIGKILL)

        def watch() -> None:
            last: dict[str, int] = {}
            said = 0.0
            while any(child.poll() is None for child, _ in children):
                time.sleep(PROGRESS_POLL_SECONDS)
                if observer is None or time.monotonic() - said < PROGRESS_EVERY_SECONDS:
                    continue
                counts = runs.state_counts(factory, run.id)
                if counts != last:
                    observer(_progress(run.name, counts, processes))
                    last, said = counts, time.monotonic()

        if handle_sigint:
            with graceful_sigint(interrupt):
                watch()
        else:
            watch()
        # 0: the run finished (or the worker left it to the others), 1: the run failed,
        # 130: interrupted; anything else is a worker that died.
        failures = [(child.returncode, path) for child, path in children
                    if child.returncode not in (0, 1, 130)]
        status = find_run(factory, run.id).status
        if status in (RUNNING, "paused"):
            # Every worker died without writing the run's end: it is interrupted.
            status = runs.finish_run(factory, run.id, "interrupted",
                                     {"processes": processes, "at": utcnow().isoformat()})
        counts = runs.state_counts(factory, run.id)
        failed = [s.key for s in runs.steps_in_states(factory, run.id, ["failed"])]
    for code, path in failures:
        tail = path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        log.warning("worker exited %s: %s (log: %s)", code, tail[0], path)
    return RunResult(run.id, run.name, status, counts, _satisfied(counts) - done_before,
                     time.monotonic() - began, failed)


def _satisfied(counts: dict[str, int]) -> int:
    return counts.get("done", 0) + counts.get("skipped", 0)


def _progress(run: str, counts: dict[str, int], processes: int) -> Any:
    from migrator.engine.executor import Progress

    return Progress("progress", run, None, counts, sum(counts.values()),
                    f"{processes} worker processes")
