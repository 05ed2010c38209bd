"""What the image and volume handlers share: the run's data-path services and progress.

``services.transfer`` (a :class:`DataServices`, made once per run by
:func:`data_services_for`) holds the limits every worker shares (the bandwidth cap, the slots
for parallel transfers), the volume options from the configuration, a progress sink and the
target handles scoped to migrated projects (a Cinder volume is created in the project of the
token). ``services.source`` is the legacy cloud's handle (a CloudHandle or a Connection).

Progress goes through :class:`TransferProgress` (bytes per transfer): the CLI draws bars or
prints lines; nothing here imports rich.

:func:`run_again_on_transient` runs a phase again when it failed on something that may pass
(a 5xx or a dropped connection on a create): only phases that look up what an earlier try
made before they make anything (by the source id tag, the temporary image's name, the
``migrator_source_id`` metadata), so a second try does not duplicate. It uses the target
cloud's retry policy and budget (migrator/retry.py). Byte copies are not run again here: a
failed copy fails the step, whose retry streams the bytes afresh (never a half-consumed body
sent again), after the step backoff, within the step's attempts (``retries`` settings).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from migrator.engine.handlers import StepContext, StepInterrupted
from migrator.errors import ConfigError
from migrator.retry import Failed, RetryPolicy, call_with_retries
from migrator.transfer.errors import TransferError, TransferInterrupted
from migrator.transfer.limits import BandwidthLimiter, TransferSlots
from migrator.transfer.volume_copy import PhaseRewind, VolumeOptions

T = TypeVar("T")

# The role migrator's target user gets on a migrated project to create volumes in it (a
# volume is made in the project of the token). Not admin: with their default policies, Cinder
# (29) and Glance (33) allow every call of the volume path to a member of the project
# (role:member and project_id match: volume:create, create_from_image, get/get_all through
# member's implied reader, update for os-set_bootable, create_volume_metadata,
# volume_image_metadata:set/remove; Glance add_image for an image it owns, upload_image,
# get_image, delete_image), and member is a role every modern Keystone bootstraps.
SCOPE_ROLE = "member"


class TransferProgress(Protocol):
    """Bytes per transfer: ``started`` once, ``advanced`` with the bytes done so far,
    ``ended`` once (ok or not). Called from worker threads."""

    def started(self, key: str, label: str, total: int | None) -> None: ...

    def advanced(self, key: str, done: int) -> None: ...

    def ended(self, key: str, ok: bool) -> None: ...


@dataclass
class DataServices:
    slots: TransferSlots
    limiter: BandwidthLimiter | None = None
    options: VolumeOptions = field(default_factory=VolumeOptions)
    progress: TransferProgress | None = None
    # transfer.small_copy_bytes: a copy of at most this many bytes takes no slot (0: all do).
    small_copy_bytes: int = 0
    _scoped: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def needs_slot(self, planned: int | None, found: int | None = None) -> bool:
        """Whether a copy the plan put at ``planned`` bytes (None: not known) takes one of
        the run's slots, as the claim judged it (engine/leases.py); ``found``: the bytes the
        copy turns out to move, known before the first one goes (a volume grown since the
        plan): a copy found bigger than small takes a slot, though its claim did not count
        it."""
        small = self.small_copy_bytes
        return (small <= 0 or planned is None or planned > small
                or (found is not None and found > small))

    def track(self, key: str, label: str, total: int | None) -> Callable[[int], None]:
        """A ``progress(bytes)`` callback for one transfer (announced as started)."""
        sink = self.progress
        if sink is None:
            return lambda _done: None
        sink.started(key, label, total)
        return lambda done: sink.advanced(key, done)

    def done(self, key: str, ok: bool) -> None:
        if self.progress is not None:
            self.progress.ended(key, ok)

    def scoped(self, project_id: str, make: Callable[[], Any]) -> Any:
        """A handle scoped to ``project_id``, made once per run (``make`` does it)."""
        with self._lock:
            found = self._scoped.get(project_id)
        if found is not None:
            return found
        made = make()
        with self._lock:
            return self._scoped.setdefault(project_id, made)

    def close(self) -> None:
        with self._lock:
            handles, self._scoped = list(self._scoped.values()), {}
        for handle in handles:
            close = getattr(handle, "close", None)
            if callable(close):
                close()


def data_services_for(*, parallel_transfers: int = 4, bandwidth: int | None = None,
                      options: VolumeOptions | None = None,
                      progress: TransferProgress | None = None,
                      small_copy_bytes: int = 0) -> DataServices:
    return DataServices(slots=TransferSlots(parallel_transfers),
                        limiter=BandwidthLimiter(bandwidth) if bandwidth else None,
                        options=options or VolumeOptions(), progress=progress,
                        small_copy_bytes=small_copy_bytes)


_DEFAULT: DataServices | None = None
_DEFAULT_LOCK = threading.Lock()


def data_services(ctx: StepContext) -> DataServices:
    """The run's DataServices (a process-wide default when the executor was given none)."""
    found = ctx.services.transfer
    if found is not None:
        return found
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = data_services_for()
        return _DEFAULT


def source_cloud(ctx: StepContext) -> Any:
    source = ctx.services.source
    if source is None:
        raise ConfigError(f"step {ctx.step.key!r} needs the source cloud, but the executor "
                          "was given no 'source' service")
    return source


def scoped_target(ctx: StepContext, project_id: str) -> Any:
    """The target handle with a token scoped to ``project_id`` (the migrated project): the
    target user gets the :data:`SCOPE_ROLE` role there first (an idempotent grant)."""
    from migrator.handlers.base import target_cloud

    tc = target_cloud(ctx)
    handle = tc.handle

    def make() -> Any:
        user_id = handle.conn.session.get_user_id() if hasattr(handle, "conn") else \
            handle.session.get_user_id()
        role_id = tc.role_id(SCOPE_ROLE)
        if not tc.has_project_role(project_id, user_id, role_id):
            tc.grant_project_role(project_id, user_id, role_id)
        if hasattr(handle, "scoped_to"):
            return handle.scoped_to(project_id)
        return handle.connect_as_project(project_id)

    return data_services(ctx).scoped(project_id, make)


def run_again_on_transient(ctx: StepContext, phase: str, run: Callable[[], T],
                           policy: RetryPolicy) -> T:
    """``run()`` (a phase that is safe to run again, see the module doc), again after a
    backoff when it raises a retryable TransferError, under ``policy`` (its retries and its
    budget). A rewind, an interruption or a stopping run is never retried here."""

    def once() -> T | Failed:
        try:
            return run()
        except (PhaseRewind, TransferInterrupted):
            raise
        except TransferError as exc:
            if ctx.stop_event.is_set():
                raise StepInterrupted(ctx.step.key) from exc
            return Failed(exc, retryable=exc.retryable)

    def note(attempt: int, delay: float, error: BaseException) -> None:
        ctx.log.info("step %s: %s failed (%s); running it again (%d/%d) in %.2f s",
                     ctx.step.key, phase, error, attempt, policy.retries, delay)

    return call_with_retries(once, policy, on_retry=note)
