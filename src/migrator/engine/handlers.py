"""Step handlers: what a step of a given kind does, phase by phase.

A handler is written once per kind (``project``, ``image``, ``volume``...) and registered:

    class ImageHandler(Handler):
        phases = ("download", "upload", "properties")

        def run_phase(self, ctx, step, phase):
            if phase == "upload":
                image_id = ...            # cloud calls happen here, between commits
                return {"target_id": image_id}   # merged into the step's checkpoint

        def verify(self, ctx, step): ...  # raise to fail the step
        def reconcile(self, ctx, step): ...  # in doubt after a crash: adopt, resume or restart

    register("image", ImageHandler())

The executor calls :meth:`Handler.run`; the default runs the phases the step's checkpoint has
not reached yet, in order, records a checkpoint after each one and stops between phases when
the operator pressed Ctrl-C. Handlers are shared by all worker threads: keep per-step state
in the checkpoint, not on ``self``.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine.steps import StepSnapshot, checkpoint_step
from migrator.errors import ConfigError
from migrator.services import Services


class StepInterrupted(Exception):
    """Raised between phases when the executor is stopping; the step goes back to pending."""


class SkipStep(Exception):
    """Raised by a handler when the resource is already on the target and identical."""


class Reconciliation(enum.Enum):
    """What a step found ``running`` after a crash turned out to be."""

    # Everything the step does is on the target (and recorded in its checkpoint): verify it.
    DONE = "done"
    # Continue from the last checkpoint (the handler cleaned up or adopted what it found).
    RESUME = "resume"
    # Start over from the first phase: the checkpoint is cleared.
    RESTART = "restart"


class StepContext:
    """What a handler gets besides the step: checkpointing, the stop flag, a logger, the
    run's services (:class:`~migrator.services.Services`) and the state database's session
    factory."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        step: StepSnapshot,
        stop: threading.Event,
        run_name: str,
        services: Services | None = None,
        interrupted: Callable[[], bool] | None = None,
    ) -> None:
        self._factory = factory
        self._stop = stop
        # Besides the run's stop flag: this step must stop too (the run was paused, or the
        # step's lease was taken over by another worker).
        self._interrupted = interrupted or (lambda: False)
        self.step = step
        self.run_name = run_name
        # The clouds and the data path, shared by every step of the run (see
        # Executor(services=...)); handlers read them, never replace them.
        self.services: Services = services or Services()
        self.log = logging.getLogger(f"migrator.step.{step.kind}")
        # Writes of the handler's own (the id map), committed with the next checkpoint.
        self._writes: list[Callable[[Connection], None]] = []
        # What the target answered during this execution of the step (a create's answer),
        # which verification may use instead of reading the resource again; never persisted:
        # a resumed or reclaimed step reads the target.
        self.answers: dict[str, Any] = {}

    @property
    def factory(self) -> sessionmaker[Session]:
        """The state database (for handler bookkeeping such as the id map)."""
        return self._factory

    @property
    def stop_event(self) -> threading.Event:
        """The run's stop flag, for long waits that poll it (a data transfer)."""
        return self._stop

    @property
    def stopping(self) -> bool:
        """True once the operator asked to stop (or pause), or the step's lease was lost:
        finish or checkpoint, then return."""
        return self._stop.is_set() or self._interrupted()

    def raise_if_stopping(self) -> None:
        if self.stopping:
            raise StepInterrupted(self.step.key)

    def write_with_checkpoint(self, write: Callable[[Connection], None]) -> None:
        """Run ``write`` in the transaction of the next checkpoint, after the step's row was
        updated: fenced like it (a step taken over by another worker writes nothing)."""
        self._writes.append(write)

    def checkpoint(self, phase: str, data: Mapping[str, Any] | None = None, *,
                   last: bool = False) -> StepSnapshot:
        """Commit ``phase`` as reached, merging ``data`` into the checkpoint, with the writes
        handed to :meth:`write_with_checkpoint`; one transaction. ``last``: the step's work is
        done, it goes on to ``verifying`` in the same commit."""
        writes, self._writes = tuple(self._writes), []
        self.step = checkpoint_step(self._factory, self.step, phase, data or {},
                                    then="verify" if last else None, writes=writes)
        return self.step


class Handler:
    """Base class of step handlers. Subclasses set ``phases`` and implement ``run_phase``."""

    phases: tuple[str, ...] = ("apply",)

    def run(self, ctx: StepContext, step: StepSnapshot) -> None:
        """Run the phases after the last checkpointed one; checkpoint after each."""
        remaining = self.remaining_phases(step)
        for phase in remaining:
            ctx.raise_if_stopping()
            data = self.run_phase(ctx, ctx.step, phase)
            ctx.checkpoint(phase, data, last=phase == remaining[-1])

    def remaining_phases(self, step: StepSnapshot) -> tuple[str, ...]:
        if step.phase is None:
            return self.phases
        if step.phase not in self.phases:
            raise ConfigError(
                f"step {step.key!r} was checkpointed at phase {step.phase!r}, which kind "
                f"{step.kind!r} does not have (phases: {', '.join(self.phases)})"
            )
        return self.phases[self.phases.index(step.phase) + 1 :]

    def run_phase(
        self, ctx: StepContext, step: StepSnapshot, phase: str
    ) -> Mapping[str, Any] | None:
        """Do one phase; return what to merge into the checkpoint (ids created, bytes...)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement run_phase")

    def verify(self, ctx: StepContext, step: StepSnapshot) -> None:
        """Check the result on the target; raise to fail the step. Default: nothing to check."""

    def reconcile(self, ctx: StepContext, step: StepSnapshot) -> Reconciliation:
        """Decide about a step found running/verifying after a crash.

        Look on the target for what the step may have created (by the source id it carries in
        metadata), adopt it with ``ctx.checkpoint`` or delete it, and say how to go on. The
        default trusts the checkpoint: phases after it are redone, so they must be idempotent.
        """
        return Reconciliation.RESUME


class HandlerRegistry:
    """Handlers by step kind."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()

    def register(self, kind: str, handler: Handler, *, replace: bool = False) -> None:
        with self._lock:
            if kind in self._handlers and not replace and self._handlers[kind] is not handler:
                raise ConfigError(f"a handler for step kind {kind!r} is already registered")
            self._handlers[kind] = handler

    def get(self, kind: str) -> Handler:
        try:
            return self._handlers[kind]
        except KeyError:
            raise ConfigError(
                f"no handler for step kind {kind!r} (known kinds: {self.describe()})"
            ) from None

    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    def describe(self) -> str:
        return ", ".join(self.kinds()) or "none registered"


# The process-wide registry the executor uses unless given another one.
REGISTRY = HandlerRegistry()


def register(kind: str, handler: Handler, *, replace: bool = False) -> None:
    REGISTRY.register(kind, handler, replace=replace)
