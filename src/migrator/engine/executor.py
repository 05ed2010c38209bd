"""The executor: runs a run's ready steps on a pool of worker threads, checkpointed.

The main thread claims ready steps (one query, one transaction) and hands them to workers;
a worker drives one step through its handler: phases (checkpoint after each), ``verify``,
``complete``. Every state change is its own transaction, cloud calls happen between them,
so killing the process at any instant leaves a state database that ``resume`` continues from.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine import machine, runs
from migrator.engine.handlers import (
    REGISTRY,
    HandlerRegistry,
    Reconciliation,
    SkipStep,
    StepContext,
    StepInterrupted,
)
from migrator.engine.lock import acquire_run_lock, release_run_lock
from migrator.engine.steps import StepSnapshot, advance, fire_many, utcnow
from migrator.errors import ConcurrencyError, ConfigError, MigratorError
from migrator.retry import Backoff

log = logging.getLogger(__name__)

# Run statuses written by the executor.
RUNNING, FINISHED, FAILED, INTERRUPTED = "running", "finished", "failed", "interrupted"


@dataclass(frozen=True)
class ExecutorConfig:
    workers: int = 8
    # A step is tried this many times in one execution before it fails for good.
    max_attempts: int = 3
    # Retry n waits backoff_base * 2**(n-1) seconds, at most backoff_max.
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    # Longest the main thread sleeps before looking at the database again.
    poll_interval: float = 0.2

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, not {self.workers}")
        if self.max_attempts < 1:
            raise ConfigError(f"max attempts must be at least 1, not {self.max_attempts}")


@dataclass(frozen=True)
class Progress:
    """What an observer hears about: ``event`` is run-started, step-started, step-done,
    step-skipped, step-retry, step-failed, step-blocked, step-requeued, stopping or
    run-finished."""

    event: str
    run: str
    step: str | None
    counts: Mapping[str, int]
    total: int
    message: str | None = None
    # What the step is about, for people: "network physics-net (physics)".
    label: str | None = None


Observer = Callable[[Progress], None]


@dataclass(frozen=True)
class RunResult:
    run_id: int
    run_name: str
    status: str
    counts: dict[str, int]
    # Steps this invocation brought to done (or skipped).
    completed: int
    elapsed_s: float
    failed_steps: list[str] = field(default_factory=list)
    # The error that stopped the run although no step was at fault (MigratorError.stops_run:
    # a cloud that cannot be reached); the run is then "interrupted", to be resumed.
    stopped_by: MigratorError | None = None


class Executor:
    def __init__(
        self,
        factory: sessionmaker[Session],
        run_name_or_id: str | int,
        *,
        config: ExecutorConfig | None = None,
        registry: HandlerRegistry | None = None,
        observer: Observer | None = None,
        services: Mapping[str, object] | None = None,
    ) -> None:
        self.factory = factory
        # Handed to every StepContext: cloud handles by name ("target", "source"...).
        self.services: Mapping[str, object] = dict(services or {})
        self.run_ref = runs.find_run(factory, run_name_or_id)
        self.config = config or ExecutorConfig()
        self.registry = registry or REGISTRY
        self.observer = observer
        self.stop = threading.Event()
        self._observer_lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._completed = 0
        self._lease_owner = f"{socket.gethostname()}:{os.getpid()}"
        # Worker coordination: claims, the busy count and the end of the run.
        self._wake = threading.Condition()
        self._busy = 0
        self._exhausted = False
        self._fatal: BaseException | None = None
        self._stopped_by: MigratorError | None = None
        self._in_doubt: deque[StepSnapshot] = deque()

    def request_stop(self) -> None:
        """Start nothing new; running steps stop at their next phase boundary."""
        if not self.stop.is_set():
            self.stop.set()
            self._notify("stopping", None, "finishing running phases")
        # Idle workers wake at their next poll anyway; no lock is taken here because this
        # runs inside a signal handler, which must not wait for a worker.

    def run(self, *, resume: bool = False, force_unlock: bool = False) -> RunResult:
        run = self.run_ref
        missing = runs.kinds_of_run(self.factory, run.id) - set(self.registry.kinds())
        if missing:
            raise ConfigError(
                f"run {run.name!r} has steps of kind(s) {', '.join(sorted(missing))} with no "
                f"handler registered (known kinds: {self.registry.describe()})"
            )
        began = time.monotonic()
        acquire_run_lock(self.factory, run.id, run.name, force=force_unlock)
        try:
            status = runs.find_run(self.factory, run.id).status
            if status != "created" and not resume:
                raise ConfigError(
                    f"run {run.name!r} was already executed (status {status}); "
                    "use --resume to continue it"
                )
            runs.set_run_status(
                self.factory,
                run.id,
                RUNNING,
                started=True,
                detail={"resume": resume, "workers": self.config.workers},
            )
            in_doubt = self._prepare_resume() if resume else []
            self._counts = runs.state_counts(self.factory, run.id)
            self._notify("run-started", None, None)
            fatal: BaseException | None = None
            try:
                self._loop(in_doubt)
            except BaseException as exc:  # keep the run's status honest, then re-raise
                fatal = exc
            final, detail = self._final_status(fatal)
            runs.set_run_status(self.factory, run.id, final, finished=True, detail=detail)
            if fatal is not None:
                raise fatal
        finally:
            release_run_lock(self.factory, run.id)
        counts = runs.state_counts(self.factory, run.id)
        failed = [s.key for s in runs.steps_in_states(self.factory, run.id, [machine.FAILED])]
        result = RunResult(
            run.id, run.name, final, counts, self._completed, time.monotonic() - began, failed,
            self._stopped_by,
        )
        self._notify("run-finished", None, final)
        return result

    # -- scheduling ---------------------------------------------------------------------

    def _prepare_resume(self) -> list[StepSnapshot]:
        """Failed steps get a new attempt budget, steps they blocked go back to pending, and
        the steps found running/verifying are returned: they are in doubt."""
        resume = {"reason": "resume"}
        failed = runs.steps_in_states(self.factory, self.run_ref.id, [machine.FAILED])
        fire_many(
            self.factory,
            [s.id for s in failed],
            "retry",
            detail=resume,
            attempts=0,
            not_before=None,
        )
        blocked = runs.steps_in_states(self.factory, self.run_ref.id, [machine.BLOCKED])
        fire_many(self.factory, [s.id for s in blocked], "unblock", detail=resume)
        return runs.steps_in_states(self.factory, self.run_ref.id, machine.IN_DOUBT_STATES)

    def _loop(self, in_doubt: list[StepSnapshot]) -> None:
        """Start the workers and wait for them. Each worker claims its own next step, so no
        dispatcher thread sits between a finished step and the next one."""
        self._in_doubt = deque(in_doubt)
        threads = [
            threading.Thread(target=self._worker, name=f"migrator-worker-{i}", daemon=True)
            for i in range(self.config.workers)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    # Short joins keep the main thread free to run the SIGINT handler.
                    thread.join(self.config.poll_interval)
        except BaseException:
            self.request_stop()  # e.g. KeyboardInterrupt: workers stop at their next phase
            for thread in threads:
                thread.join()
            raise
        if self._fatal is not None:
            raise self._fatal

    def _worker(self) -> None:
        try:
            while (job := self._next_job()) is not None:
                run_step, step = job
                try:
                    run_step(step)
                finally:
                    with self._wake:
                        self._busy -= 1
                        self._wake.notify_all()  # its dependents may be ready now
        except BaseException as exc:  # engine-level (database, lost lease): stop the run
            log.error("worker stopped the run: %s", _one_line(exc))
            with self._wake:
                self._fatal = self._fatal or exc
                self.stop.set()
                self._wake.notify_all()

    def _next_job(self) -> tuple[Callable[[StepSnapshot], None], StepSnapshot] | None:
        """The next step for a worker: an in-doubt one, else a newly claimed ready one; waits
        while running steps or backoffs may make more ready; None when the run is over."""
        with self._wake:
            while not (self.stop.is_set() or self._exhausted):
                if self._in_doubt:
                    self._busy += 1
                    return self._reconcile_step, self._in_doubt.popleft()
                # Taken before the claim: a backoff that expires between the claim and the
                # wake-up query below must still count as a reason to wait, not as the end.
                claim_time = utcnow()
                claimed = runs.claim_ready(
                    self.factory, self.run_ref.id, 1, lease_owner=self._lease_owner
                )
                if claimed:
                    self._busy += 1
                    self._moved(machine.PENDING, machine.RUNNING, "step-started", claimed[0])
                    return self._execute_step, claimed[0]
                timeout = self.config.poll_interval
                if self._busy == 0:
                    # Nothing running can free a dependency: only a backoff can end the wait.
                    wake = runs.next_wakeup(self.factory, self.run_ref.id, after=claim_time)
                    if wake is None:
                        self._exhausted = True
                        self._wake.notify_all()
                        break
                    timeout = min(timeout, max((wake - utcnow()).total_seconds(), 0.001))
                self._wake.wait(timeout)
            return None

    def _final_status(self, fatal: BaseException | None) -> tuple[str, dict[str, object]]:
        counts = runs.state_counts(self.factory, self.run_ref.id)
        unfinished = sum(counts.get(s, 0) for s in (machine.PENDING, *machine.IN_DOUBT_STATES))
        detail: dict[str, object] = {"counts": counts}
        if fatal is not None:
            detail["error"] = f"{type(fatal).__name__}: {fatal}"
            return INTERRUPTED, detail
        if self.stop.is_set() and unfinished:
            return INTERRUPTED, detail
        if counts.get(machine.FAILED) or counts.get(machine.BLOCKED) or unfinished:
            return FAILED, detail
        return FINISHED, detail

    # -- one step (worker threads) ------------------------------------------------------

    def _execute_step(self, step: StepSnapshot) -> None:
        handler = self.registry.get(step.kind)
        ctx = StepContext(
            self.factory, step, self.stop, self.run_ref.name, services=self.services
        )
        try:
            handler.run(ctx, ctx.step)
            self._verify_and_complete(ctx)
        except StepInterrupted:
            self._requeue(ctx.step, {"reason": "interrupted"})
        except SkipStep as skip:
            snap = advance(
                self.factory,
                ctx.step,
                "skip",
                detail={"reason": str(skip)},
                lease_owner=None,
            )
            self._moved(ctx.step.state, snap.state, "step-skipped", snap, str(skip))
        except (ConcurrencyError, SQLAlchemyError):
            raise
        except Exception as exc:
            self._fail(ctx.step, exc)

    def _reconcile_step(self, step: StepSnapshot) -> None:
        handler = self.registry.get(step.kind)
        ctx = StepContext(
            self.factory, step, self.stop, self.run_ref.name, services=self.services
        )
        try:
            outcome = handler.reconcile(ctx, ctx.step)
            log.info("step %s was in doubt: %s", step.key, outcome.value)
            if outcome is Reconciliation.DONE:
                self._verify_and_complete(ctx, {"reconciled": outcome.value})
            elif outcome is Reconciliation.RESTART:
                self._requeue(
                    ctx.step,
                    {"reason": "in doubt", "reconciled": outcome.value},
                    checkpoint={},
                    phase=None,
                )
            else:
                self._requeue(ctx.step, {"reason": "in doubt", "reconciled": outcome.value})
        except (ConcurrencyError, SQLAlchemyError):
            raise
        except Exception as exc:
            self._fail(ctx.step, exc)

    def _verify_and_complete(
        self, ctx: StepContext, detail: Mapping[str, str] | None = None
    ) -> None:
        handler = self.registry.get(ctx.step.kind)
        before = ctx.step.state
        if ctx.step.state == machine.RUNNING:
            ctx.step = advance(
                self.factory,
                ctx.step,
                "verify",
                detail=detail,
            )
        handler.verify(ctx, ctx.step)
        ctx.step = advance(
            self.factory,
            ctx.step,
            "complete",
            lease_owner=None,
        )
        self._moved(before, machine.DONE, "step-done", ctx.step)

    def _requeue(self, step: StepSnapshot, detail: dict[str, str], **changes: object) -> None:
        snap = advance(
            self.factory,
            step,
            "requeue",
            detail=detail,
            lease_owner=None,
            **changes,
        )
        self._moved(step.state, snap.state, "step-requeued", snap, detail["reason"])

    def _fail(self, step: StepSnapshot, exc: Exception) -> None:
        message = _one_line(exc)
        log.warning("step %s failed (attempt %d): %s", step.key, step.attempts + 1, message)
        # The traceback is for --debug: an expected cloud error needs no stack on the console.
        log.debug("step %s failure traceback", step.key, exc_info=exc)
        attempts = step.attempts + 1
        final = bool(getattr(exc, "final", False))
        detail: dict[str, object] = {"error": message, "attempt": attempts}
        if final:
            detail["final"] = True  # retrying cannot help: no backoff spent on it
        snap = advance(
            self.factory,
            step,
            "fail",
            detail=detail,
            attempts=attempts,
            last_error=message,
            lease_owner=None,
        )
        if attempts < self.config.max_attempts and not final:
            delay = Backoff(self.config.backoff_base, self.config.backoff_max).delay(attempts)
            snap = advance(
                self.factory,
                snap,
                "retry",
                detail={"attempt": attempts, "backoff_s": delay},
                not_before=utcnow() + timedelta(seconds=delay),
            )
            self._moved(step.state, machine.PENDING, "step-retry", snap, message)
            return
        if isinstance(exc, MigratorError) and exc.stops_run and not final:
            # Not the step's fault (a cloud that cannot be reached, every attempt): it goes
            # back to pending with a fresh budget, and the run stops as on Ctrl-C instead of
            # failing every other step the same way; --resume continues it.
            snap = advance(
                self.factory,
                snap,
                "retry",
                detail={"attempt": attempts, "stopped_run": True},
                attempts=0,
                not_before=None,
            )
            self._moved(step.state, machine.PENDING, "step-retry", snap, message)
            with self._wake:
                self._stopped_by = self._stopped_by or exc
            self.request_stop()
            return
        self._moved(step.state, machine.FAILED, "step-failed", snap, message)
        for blocked in runs.block_descendants(self.factory, step.id, step.key):
            self._moved(machine.PENDING, machine.BLOCKED, "step-blocked", blocked, step.key)

    # -- progress -----------------------------------------------------------------------

    def _moved(
        self, source: str, dest: str, event: str, step: StepSnapshot, message: str | None = None
    ) -> None:
        with self._observer_lock:
            self._counts[source] = self._counts.get(source, 0) - 1
            self._counts[dest] = self._counts.get(dest, 0) + 1
            if dest in machine.SATISFIED_STATES:
                self._completed += 1
        self._notify(event, step.key, message, _label(step))

    def _notify(self, event: str, step: str | None, message: str | None,
                label: str | None = None) -> None:
        if self.observer is None:
            return
        with self._observer_lock:
            progress = Progress(
                event,
                self.run_ref.name,
                step,
                dict(self._counts),
                sum(self._counts.values()),
                message,
                label,
            )
            try:
                self.observer(progress)
            except Exception:  # a broken progress display must not break the run
                log.exception("progress observer failed")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, MigratorError):
        text = f"{type(exc).__name__}: {text}"
    return text[:500]


def _label(step: StepSnapshot) -> str:
    text = f"{step.kind} {step.name or step.source_id or step.key}"
    return f"{text} ({step.tenant})" if step.tenant else text
