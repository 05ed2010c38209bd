"""The executor: one worker process of a run, executing its steps on a pool of threads.

Each thread claims its next step (one transaction: a lease, engine/leases.py) and drives it
through its handler: phases (checkpoint after each), ``verify``, ``complete``. Every state
change is its own transaction and cloud calls happen between them, so killing the process at
any instant leaves a state database that another worker, or a resume, continues from.

Any number of executors (``migrator execute``, ``migrator worker``, on one host over SQLite or
on many over PostgreSQL) can work on one run at once: there is no coordinator. A heartbeat
thread renews the leases of the steps this process holds and reads the run's control (pause,
cancel); a step whose lease another worker took over is dropped at its next write. The run
ends when no step is pending or running anywhere; the worker that sees it writes the run's
final status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
from migrator.engine.leases import (
    DEFAULT_LEASE_SECONDS,
    Claim,
    ClaimLimits,
    HeldSteps,
    claim_steps,
    complete_and_claim,
    holds_transfer_slot,
    release_unstarted,
)
from migrator.engine.steps import StepSnapshot, advance, utcnow
from migrator.engine.workers import (
    active_workers,
    heartbeat,
    reap_lost_workers,
    register_worker,
    stop_worker,
)
from migrator.errors import ConcurrencyError, ConfigError, MigratorError
from migrator.retry import Backoff
from migrator.services import Services

log = logging.getLogger(__name__)

# Run statuses written by the executor.
RUNNING, FINISHED, FAILED, INTERRUPTED = "running", "finished", "failed", "interrupted"
PAUSED, CANCELLED = "paused", "cancelled"
# A run in one of these states has workers, or is waiting for them.
JOINABLE = frozenset({"created", RUNNING, PAUSED})
# After a claim that tried transfers first and got none, the claims of the next moment
# take the other steps first (one query instead of three).
DATA_FIRST_PAUSE_S = 0.5
# The operator's requests (runs.control), obeyed by every worker at its next checkpoint.
PAUSE, CANCEL = "pause", "cancel"


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
    # A step's lease: renewed by the heartbeat every lease / 3; lost after this long without.
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    # Limits every worker of the run respects together (transfers at once).
    limits: ClaimLimits = field(default_factory=ClaimLimits)

    @property
    def heartbeat_interval(self) -> float:
        return self.lease_seconds / 3

    @property
    def reclaim_interval(self) -> float:
        """How often claims look for expired leases: a small part of the lease, so a dead
        worker's steps are taken over about as soon as its leases end."""
        return min(1.0, self.lease_seconds / 10)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, not {self.workers}")
        if self.max_attempts < 1:
            raise ConfigError(f"max attempts must be at least 1, not {self.max_attempts}")
        if self.lease_seconds <= 0:
            raise ConfigError(f"the lease must be longer than 0 s, not {self.lease_seconds}")


@dataclass(frozen=True)
class Progress:
    """What an observer hears about: ``event`` is run-started, step-started, step-done,
    step-skipped, step-retry, step-failed, step-blocked, step-requeued, step-lost (taken over
    by another worker), paused, stopping or run-finished. ``counts`` are the whole run's, as
    this worker last saw them (other workers' progress arrives with each heartbeat)."""

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
    """One worker process of a run (``config.workers`` threads)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        run_name_or_id: str | int,
        *,
        config: ExecutorConfig | None = None,
        registry: HandlerRegistry | None = None,
        observer: Observer | None = None,
        services: Services | None = None,
    ) -> None:
        self.factory = factory
        # Handed to every StepContext: the clouds and the data path.
        self.services: Services = services or Services()
        self.run_ref = runs.find_run(factory, run_name_or_id)
        self.config = config or ExecutorConfig()
        self.registry = registry or REGISTRY
        self.observer = observer
        # Set on Ctrl-C, SIGTERM, a cancel or a fatal error: this worker leaves the run.
        self.stop = threading.Event()
        # Set while the operator has paused the run: steps stop at their next checkpoint.
        self.paused = threading.Event()
        self.name: str | None = None  # the worker's name once registered (lease owner)
        self.held = HeldSteps()
        self._observer_lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._completed = 0
        self._cancelled = False
        self._left = False
        self._beat_stop = threading.Event()
        # Worker coordination: the busy count and the end of the run.
        self._wake = threading.Condition()
        self._busy = 0
        # Bumped each time a thread is done with a step: its dependents may be claimable.
        self._generation = 0
        # Steps claimed for threads that were waiting (one claim for all of them), not yet
        # taken by one: leased to this worker (counted in _busy and held, so the heartbeat
        # renews them), given back if the worker stops before a thread starts them.
        self._queued: deque[Claim] = deque()
        # Threads waiting for a step, and how many of them a claim under way is taking
        # steps for (so that two claiming threads do not both claim for the same waiters).
        self._waiting = 0
        self._promised = 0
        # When a claim next looks for expired leases (monotonic): at most every
        # reclaim_interval, not in every claim (a query per step otherwise).
        self._reclaim_at = 0.0
        # When a claim next tries ready transfers before the other steps (monotonic): at
        # once after it got one, a moment later after it found none or no free slot.
        self._data_at = 0.0
        # The id after which those claims look for ready transfers: the last one found (ids
        # grow through a plan), back to 0 when none is found after it.
        self._data_after = 0
        self._exhausted = False
        self._fatal: BaseException | None = None
        self._stopped_by: MigratorError | None = None

    def request_stop(self) -> None:
        """Start nothing new; running steps stop at their next phase boundary."""
        if not self.stop.is_set():
            self.stop.set()
            self._notify("stopping", None, "finishing running phases")
        # Idle workers wake at their next poll anyway; no lock is taken here because this
        # runs inside a signal handler, which must not wait for a worker.

    def run(self, *, resume: bool = False, join: bool = False) -> RunResult:
        """Take part in the run until no step is left for it (or until stopped).

        ``resume``: the run may have been executed before (crashed, interrupted, failed,
        cancelled): failed steps get a new attempt budget, the steps they blocked go back to
        pending, a pause or cancel request is cleared. ``join``: take part in a run that
        other workers are executing (or that is registered and waiting), as ``migrator
        worker`` does; nothing is reset.
        """
        run = self.run_ref
        missing = runs.kinds_of_run(self.factory, run.id) - set(self.registry.kinds())
        if missing:
            raise ConfigError(
                f"run {run.name!r} has steps of kind(s) {', '.join(sorted(missing))} with no "
                f"handler registered (known kinds: {self.registry.describe()})"
            )
        began = time.monotonic()
        status = runs.find_run(self.factory, run.id).status
        if resume:
            runs.set_run_control(self.factory, run.id, None)
        elif join:
            if status not in JOINABLE:
                raise ConfigError(
                    f"run {run.name!r} is {status}: nothing to join (continue it with "
                    "'migrator execute RUN --resume')")
        elif status != "created":
            raise ConfigError(
                f"run {run.name!r} was already executed (status {status}); "
                "use --resume to continue it"
            )
        self.name = register_worker(self.factory, run.id, self.config.workers)
        try:
            reap_lost_workers(self.factory, run.id, lease_seconds=self.config.lease_seconds)
            if resume:
                runs.reset_for_resume(self.factory, run.id)
            if resume or status == "created":
                runs.set_run_status(
                    self.factory, run.id, RUNNING, started=True,
                    detail={"resume": resume, "worker": self.name,
                            "workers": self.config.workers})
            self._counts = runs.state_counts(self.factory, run.id)
            self._notify("run-started", None, None)
            fatal: BaseException | None = None
            try:
                self._loop()
            except BaseException as exc:  # keep the run's status honest, then re-raise
                fatal = exc
            final = self._leave(fatal)
            if fatal is not None:
                raise fatal
        finally:
            if not self._left:
                stop_worker(self.factory, self.name)
        counts = runs.state_counts(self.factory, run.id)
        failed = [s.key for s in runs.steps_in_states(self.factory, run.id, [machine.FAILED])]
        result = RunResult(
            run.id, run.name, final, counts, self._completed, time.monotonic() - began, failed,
            self._stopped_by,
        )
        self._notify("run-finished", None, final)
        return result

    def _leave(self, fatal: BaseException | None) -> str:
        """Leave the run: mark this worker stopped (its leases are released) and, when the
        run is over or this was its last worker, write the run's status. Returns the run's
        status as this worker leaves it."""
        assert self.name is not None
        stop_worker(self.factory, self.name)
        self._left = True
        run_id = self.run_ref.id
        counts = runs.state_counts(self.factory, run_id)
        unfinished = sum(counts.get(s, 0) for s in (machine.PENDING, *machine.IN_DOUBT_STATES))
        detail: dict[str, object] = {"counts": counts, "worker": self.name}
        others = active_workers(self.factory, run_id)
        if fatal is not None:
            detail["error"] = f"{type(fatal).__name__}: {fatal}"
        if not unfinished:
            final = FAILED if counts.get(machine.FAILED) or counts.get(machine.BLOCKED) \
                else FINISHED
        elif others:
            # Other workers go on with the run: its status is theirs to write.
            return runs.find_run(self.factory, run_id).status
        elif self._cancelled:
            final = CANCELLED
        elif fatal is not None or self.stop.is_set():
            final = INTERRUPTED
        else:
            final = FAILED  # nothing can become ready: every pending step waits on a failure
        return runs.finish_run(self.factory, run_id, final, detail)

    # -- scheduling ---------------------------------------------------------------------

    def _loop(self) -> None:
        """Start the step threads and the heartbeat, and wait for them. Each thread claims its
        own next step, so no dispatcher sits between a finished step and the next one."""
        threads = [
            threading.Thread(target=self._worker, name=f"migrator-worker-{i}", daemon=True)
            for i in range(self.config.workers)
        ]
        beat = threading.Thread(target=self._heartbeat, name="migrator-heartbeat",
                                daemon=True)
        beat_stop = self._beat_stop
        beat.start()
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
        finally:
            beat_stop.set()
            beat.join()
            # Every thread gives the queue back when it stops; left over only when the last
            # ones died of an engine error (the leases then end with stop_worker's).
            with self._wake:
                unstarted = list(self._queued)
                self._queued.clear()
            try:
                self._release(unstarted)
            except SQLAlchemyError as exc:
                log.warning("could not give back unstarted steps: %s", _one_line(exc))
        if self._fatal is not None:
            raise self._fatal

    def _heartbeat(self) -> None:
        """Renew this worker's leases, notice lost ones, obey pause and cancel, reap dead
        workers and refresh the run's counts, every ``heartbeat_interval``."""
        assert self.name is not None
        while not self._beat_stop.wait(self.config.heartbeat_interval):
            try:
                asked = self.held.tokens()
                beat = heartbeat(self.factory, self.name, self.run_ref.id,
                                 lease_seconds=self.config.lease_seconds, watch=asked)
                for step_id in self.held.renewed(asked, beat.tokens):
                    log.warning("step %s: lease lost (taken over by another worker)", step_id)
                self._obey(beat.control)
                reap_lost_workers(self.factory, self.run_ref.id,
                                  lease_seconds=self.config.lease_seconds)
                counts = runs.state_counts(self.factory, self.run_ref.id)
                with self._observer_lock:
                    self._counts = counts
            except SQLAlchemyError as exc:  # the database is away: try again next beat
                log.warning("heartbeat failed: %s", _one_line(exc))

    def _obey(self, control: str | None) -> None:
        if control == CANCEL and not self._cancelled:
            self._cancelled = True
            self.request_stop()
        elif control == PAUSE and not self.paused.is_set():
            self.paused.set()
            self._notify("paused", None, "paused by the operator: running steps stop at "
                         "their next checkpoint")
        elif control is None and self.paused.is_set():
            self.paused.clear()
            with self._wake:
                self._wake.notify_all()

    def _worker(self) -> None:
        # A step verified by this thread, completed in the transaction of its next claim.
        finishing: StepSnapshot | None = None
        try:
            while (job := self._next_job(finishing)) is not None:
                finishing = None
                run_step, step = job
                try:
                    finishing = run_step(step)
                except ConcurrencyError as exc:
                    # Taken over (this worker was paused or cut off past its lease): the
                    # step is the other worker's now, and nothing more may be written here.
                    log.warning("step %s dropped: %s", step.key, _one_line(exc))
                    self._notify("step-lost", step.key, _one_line(exc), _label(step))
                finally:
                    if finishing is None:
                        self._finished(step)
        except BaseException as exc:  # engine-level (database): stop this worker
            log.error("worker stopped the run: %s", _one_line(exc))
            with self._wake:
                self._fatal = self._fatal or exc
                self.stop.set()
                self._wake.notify_all()

    def _finished(self, step: StepSnapshot, found: bool | None = None) -> None:
        """The thread is done with ``step`` (completed, failed, requeued or lost).

        ``found``: whether the claim made in the completion's own transaction found a step
        (None: the thread did not claim with it). That claim saw everything the completion
        made ready, so when it found nothing the other threads are not woken to look again
        (they claimed in vain, seven of them per step while transfers held every slot); when
        it found one, its thread wakes one more (``_next_job``), which wakes the next if it
        finds one too."""
        self.held.drop(step.id)
        with self._wake:
            self._busy -= 1
            if found is None or self._busy == 0:
                self._generation += 1
                self._wake.notify_all()  # its dependents may be ready now
            elif found:
                self._generation += 1  # a claim under way when it finished looks again

    def _next_job(self, finishing: StepSnapshot | None = None
                  ) -> tuple[Callable[[StepSnapshot], StepSnapshot | None], StepSnapshot] | None:
        """The next step for a thread: one claimed for it by another thread (queued), else
        one whose lease expired (in doubt), else a ready one; waits while running steps (of
        any worker) or backoffs may make more ready; None when the run is over for this
        worker. ``finishing``: a step the thread verified, completed in the same
        transaction as the claim. A claim takes steps for the threads waiting here too (one
        statement instead of one each) and queues them. The claim runs outside the threads'
        lock; a step finished by another thread meanwhile (``_generation``) makes it claim
        again at once instead of waiting."""
        assert self.name is not None
        while True:
            unstarted: list[Claim] = []
            with self._wake:
                idle = self.stop.is_set() or self._exhausted or self.paused.is_set()
                if finishing is None:
                    if self.stop.is_set() or self._exhausted:
                        unstarted = list(self._queued)
                        self._queued.clear()
                    elif self.paused.is_set():
                        self._wake.wait(self.config.poll_interval)
                        continue
                    elif self._queued:
                        job = self._take_queued()
                        if job is None:
                            continue
                        return job
                generation = self._generation
                # With steps queued, a finishing thread completes without claiming and
                # takes a queued one next; otherwise it claims for the waiting threads too.
                extra = 0 if idle or self._queued else max(0, self._waiting - self._promised)
                want = 0 if idle or self._queued else 1 + extra
                self._promised += extra
            if finishing is None and (self.stop.is_set() or self._exhausted):
                self._release(unstarted)
                return None
            # Taken before the claim: a backoff that expires between the claim and the
            # wake-up query below must still count as a reason to wait, not as the end.
            claim_time = utcnow()
            data_first = self._data_first()
            after = self._data_after
            try:
                if finishing is not None:
                    step, finishing = finishing, None
                    claims = self._complete_and_claim(step, want, claim_time, data_first,
                                                      after)
                else:
                    claims = claim_steps(self.factory, self.run_ref.id, self.name, want,
                                         lease_seconds=self.config.lease_seconds,
                                         limits=self.config.limits, now=claim_time,
                                         reclaim=self._reclaim_due(), data_first=data_first,
                                         data_after=after)
            finally:
                with self._wake:
                    self._promised -= extra
            # A claim that looked for transfers only after the cursor has not seen a transfer
            # put back behind it (a step requeued after a takeover, a retry): it must look
            # again from the start before the run can be judged to have nothing left.
            look_again = False
            if data_first:
                # (a small copy is claimed as a plain step: it moves no cursor)
                found = [c.step.id for c in claims
                         if holds_transfer_slot(c.step, self.config.limits)]
                with self._wake:
                    if found:
                        self._data_after = max(self._data_after, *found)
                    elif after > 0:
                        self._data_after = 0
                        look_again = not claims
                    else:
                        self._data_after = 0
                        self._data_at = time.monotonic() + DATA_FIRST_PAUSE_S
            with self._wake:
                if claims:
                    self._busy += len(claims)
                    for claim in claims:
                        self.held.add(claim.step)
                    if len(claims) > 1:
                        self._queued.extend(claims[1:])
                        self._wake.notify_all()  # the waiting threads take them
                    elif len(claims) == want:
                        # As many as asked: more may be ready. One waiting thread looks
                        # (and, finding one, wakes the next); fewer than asked: nothing is.
                        self._wake.notify()
                    return self._job(claims[0])
                if idle or look_again or self._generation != generation or self._queued:
                    continue
                timeout = self.config.poll_interval
                if self._busy == 0:
                    wait = self._idle_wait(claim_time)
                    if wait is None:
                        self._exhausted = True
                        self._wake.notify_all()
                        return None
                    timeout = min(timeout, wait)
                self._waiting += 1
                try:
                    self._wake.wait(timeout)
                finally:
                    self._waiting -= 1

    def _job(self, claim: Claim
             ) -> tuple[Callable[[StepSnapshot], StepSnapshot | None], StepSnapshot]:
        """What a thread does with ``claim`` (it is counted busy and held already)."""
        if claim.reclaimed:
            return self._reconcile_step, claim.step
        self._moved(machine.PENDING, machine.RUNNING, "step-started", claim.step)
        return self._execute_step, claim.step

    def _take_queued(self
                     ) -> tuple[Callable[[StepSnapshot], StepSnapshot | None], StepSnapshot] | None:
        """The first queued step for a thread (called under ``_wake``); None when it was
        found taken over while queued (dropped: it is another worker's now)."""
        claim = self._queued.popleft()
        if self.held.is_lost(claim.step.id):
            log.warning("step %s dropped before it started: taken over", claim.step.key)
            self._notify("step-lost", claim.step.key, "taken over before it started",
                         _label(claim.step))
            self._finished(claim.step)
            return None
        return self._job(claim)

    def _release(self, unstarted: list[Claim]) -> None:
        """Give back steps claimed for threads that never started them (the worker stops):
        they are claimable by other workers at once, not when their lease ends."""
        if not unstarted:
            return
        assert self.name is not None
        try:
            release_unstarted(self.factory, unstarted, self.name)
        finally:
            for claim in unstarted:
                self._finished(claim.step)

    def _reclaim_due(self) -> bool:
        """Whether this claim looks for steps whose lease expired (taken over from a worker
        that stopped heartbeating): at most every ``reclaim_interval`` per process."""
        now = time.monotonic()
        with self._wake:
            if now < self._reclaim_at:
                return False
            self._reclaim_at = now + self.config.reclaim_interval
            return True

    def _data_first(self) -> bool:
        """Whether this claim tries ready transfers first (ClaimLimits): the data steps of a
        run start as soon as they are ready and a slot is free, instead of after every other
        step (their step ids come last), which left a run's last tenth to a few transfers."""
        limits = self.config.limits
        if limits.transfer_limit is None or not limits.transfer_kinds:
            return False
        with self._wake:
            return time.monotonic() >= self._data_at

    def _complete_and_claim(self, step: StepSnapshot, want: int, now: datetime,
                            data_first: bool = False, data_after: int = 0) -> list[Claim]:
        assert self.name is not None
        claims: list[Claim] = []
        found: bool | None = None
        try:
            done, claims = complete_and_claim(
                self.factory, step, self.name, want, lease_seconds=self.config.lease_seconds,
                limits=self.config.limits, now=now, reclaim=want > 0 and self._reclaim_due(),
                data_first=data_first, data_after=data_after)
            # A claim that looked for transfers after the cursor only did not see them all.
            if want > 0 and not (data_first and data_after > 0 and not claims):
                found = bool(claims)
            self._moved(machine.RUNNING, machine.DONE, "step-done", done)
        except ConcurrencyError as exc:  # taken over after its verification: not ours
            log.warning("step %s dropped: %s", step.key, _one_line(exc))
            self._notify("step-lost", step.key, _one_line(exc), _label(step))
        finally:
            # (A thread that sees no busy step in between asks the database, which counts
            # the claimed step as running: it waits, it does not end.)
            self._finished(step, found)
        return claims

    def _idle_wait(self, claim_time: datetime) -> float | None:
        """Nothing claimable and nothing running here: how long to wait before claiming
        again, or None when nothing can ever become ready (the run is over for us)."""
        run_id = self.run_ref.id
        # One snapshot: on PostgreSQL another worker's completion commits before its claim
        # of the steps it made ready (two statements); counts read apart from the ready
        # steps could see neither those steps running nor them ready, and end too early.
        counts, ready = runs.idle_view(self.factory, run_id, utcnow())
        if ready or any(counts.get(s, 0) for s in machine.IN_DOUBT_STATES):
            return self.config.poll_interval  # other workers hold steps: theirs may free ours
        if not counts.get(machine.PENDING):
            return None
        # Nothing running anywhere: only a backoff can end the wait.
        wake = runs.next_wakeup(self.factory, run_id, after=claim_time)
        if wake is None:
            return None
        return max((wake - utcnow()).total_seconds(), 0.001)

    # -- one step (worker threads) ------------------------------------------------------

    def _context(self, step: StepSnapshot) -> StepContext:
        return StepContext(
            self.factory, step, self.stop, self.run_ref.name, services=self.services,
            interrupted=lambda: self.paused.is_set() or self.held.is_lost(step.id),
        )

    def _execute_step(self, step: StepSnapshot) -> StepSnapshot | None:
        """Run the step; return it verified (to be completed with the thread's next claim),
        or None when it ended otherwise (skipped, requeued, failed)."""
        handler = self.registry.get(step.kind)
        ctx = self._context(step)
        try:
            handler.run(ctx, ctx.step)
            return self._verify(ctx)
        except StepInterrupted:
            self._requeue(ctx.step, {"reason": self._interruption()})
        except SkipStep as skip:
            snap = advance(
                self.factory,
                ctx.step,
                "skip",
                detail={"reason": str(skip)},
                lease_owner=None,
                lease_expires_at=None,
            )
            self._moved(ctx.step.state, snap.state, "step-skipped", snap, str(skip))
        except (ConcurrencyError, SQLAlchemyError):
            raise
        except Exception as exc:
            self._fail(ctx.step, exc)
        return None

    def _interruption(self) -> str:
        if self.paused.is_set() and not self.stop.is_set():
            return "paused"
        return "cancelled" if self._cancelled else "interrupted"

    def _reconcile_step(self, step: StepSnapshot) -> StepSnapshot | None:
        handler = self.registry.get(step.kind)
        ctx = self._context(step)
        try:
            outcome = handler.reconcile(ctx, ctx.step)
            log.info("step %s was in doubt: %s", step.key, outcome.value)
            if outcome is Reconciliation.DONE:
                return self._verify(ctx, {"reconciled": outcome.value})
            if outcome is Reconciliation.RESTART:
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
        return None

    def _verify(
        self, ctx: StepContext, detail: Mapping[str, str] | None = None
    ) -> StepSnapshot:
        """Verify the step's result; the verified snapshot is completed by the caller (with
        its next claim, engine/leases.complete_and_claim)."""
        handler = self.registry.get(ctx.step.kind)
        if ctx.step.state == machine.RUNNING:
            ctx.step = advance(
                self.factory,
                ctx.step,
                "verify",
                detail=detail,
            )
        handler.verify(ctx, ctx.step)
        return ctx.step

    def _requeue(self, step: StepSnapshot, detail: dict[str, str], **changes: object) -> None:
        snap = advance(
            self.factory,
            step,
            "requeue",
            detail=detail,
            lease_owner=None,
            lease_expires_at=None,
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
            lease_expires_at=None,
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
