"""The rows behind ``migrator status``, as plain data (no SQLAlchemy here: the standard-library
path of operations/status.py builds them too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

# Kinds whose steps move bytes, and where they record them (handlers/image.py: the upload
# phase's checkpoint; handlers/volume.py: the copy's checkpoint).
DATA_KINDS = ("image", "volume")
GIB = 1 << 30
FINISHED_STATES = ("done", "skipped")
WORKING_STATES = ("running", "verifying")


@dataclass(frozen=True, slots=True)
class KindCount:
    run_id: int
    tenant: str | None
    kind: str
    state: str
    count: int


@dataclass(frozen=True, slots=True)
class DataStep:
    run_id: int
    tenant: str | None
    kind: str
    state: str
    moved: int | None  # bytes recorded as sent (None: not yet)
    planned: int | None  # bytes expected: an image's legacy size, a volume's GiB
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class FailedStep:
    run: str
    tenant: str | None
    kind: str
    name: str | None
    key: str
    attempts: int
    last_error: str | None
    failed_at: datetime | None


@dataclass(frozen=True, slots=True)
class WorkerRow:
    run: str
    owner: str  # host:pid of the executor holding the steps
    steps: int  # steps it is running or verifying
    last_change: datetime | None  # the latest change it made to one of them


@dataclass(frozen=True, slots=True)
class WorkerProcess:
    """An active worker process of a run (the workers table): where, since when, and when it
    last heartbeat."""

    run: str
    name: str  # the lease owner of the steps it holds
    host: str
    pid: int
    slots: int
    since: datetime | None
    heartbeat_at: datetime | None


@dataclass(frozen=True, slots=True)
class TenantDowntime:
    """A tenant's servers cut over in the runs (table ``server_downtimes``, store/downtimes.py)."""

    tenant: str | None
    servers: int  # servers moved (target ACTIVE, or left SHUTOFF, and verified)
    total_seconds: float
    worst_seconds: float
    copy_seconds: float
    bytes: int


def json_int(value: object) -> int | None:
    """A JSON number read out as text (None: absent, null or not a number)."""
    if value is None:
        return None
    text = str(value)
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return int(float(text))
    except ValueError:
        return None


# (id, name, status, dry run, created at, started at, finished at) of a run.
RunRow = tuple[int, str, str, bool, datetime, datetime | None, datetime | None]


@dataclass
class ProgressRows:
    """What both paths (store/progress.py, store/progress_sqlite.py) read: the same rows, in
    the same order and types."""

    runs: list[RunRow]
    counts: list[KindCount] = field(default_factory=list)
    data: list[DataStep] = field(default_factory=list)
    finished: dict[int, dict[str | None, int]] = field(default_factory=dict)
    failed: list[FailedStep] = field(default_factory=list)
    workers: list[WorkerRow] = field(default_factory=list)
    processes: list[WorkerProcess] = field(default_factory=list)
    downtimes: list[TenantDowntime] = field(default_factory=list)


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without their zone; every timestamp we write is UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
