"""The SQL of the runs that are not migrations: rollbacks, dry runs and rehearsals.

A run's kind lives in ``runs.options["kind"]`` (``rollback``, ``dry_run``, ``rehearsal``; a
migration has none), so that no schema change is needed and every existing query over runs
still sees them as runs. They never have a ``plan_id`` that ``find_plan_run`` would match
(rollbacks and dry runs have none; a rehearsal's plan is the renamed copy, with its own
content hash), so ``execute --resume`` and the wave checks of a real run never meet them.

What a rollback reads of the run it undoes (its steps, their dependencies, the id map and who
else mapped the same target ids) is here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, select, update

from migrator.engine.steps import DEPS, STEPS, read_connection, write_transaction
from migrator.store.models import IdMap, Run
from migrator.store.models import Plan as PlanRow

RUNS = cast(Table, Run.__table__)
IDMAP = cast(Table, IdMap.__table__)
PLANS = cast(Table, PlanRow.__table__)

MIGRATION = "migration"
ROLLBACK = "rollback"
DRY_RUN = "dry_run"
REHEARSAL = "rehearsal"
# Runs whose id map says what a real migration made (a dry run writes none; a rollback's
# "target ids" are deletions).
MAPPING_KINDS = frozenset({MIGRATION, REHEARSAL})


def kind_of(options: Mapping[str, Any] | None) -> str:
    return str((options or {}).get("kind") or MIGRATION)


@dataclass(frozen=True)
class RunInfo:
    id: int
    name: str
    status: str
    kind: str
    options: dict[str, Any]
    plan_id: int | None


def run_info(factory: Any, run_id: int) -> RunInfo:
    with read_connection(factory) as conn:
        row = conn.execute(select(RUNS.c.id, RUNS.c.name, RUNS.c.status, RUNS.c.options,
                                  RUNS.c.plan_id).where(RUNS.c.id == run_id)).one()
    options = dict(row.options or {})
    return RunInfo(row.id, row.name, row.status, kind_of(options), options, row.plan_id)


def runs_of_kind(factory: Any, kind: str, **match: Any) -> list[RunInfo]:
    """Runs of ``kind`` whose options hold every ``match`` item, newest first. The options
    are JSON: filtered here, over the runs only (a handful, never steps)."""
    with read_connection(factory) as conn:
        rows = conn.execute(select(RUNS.c.id, RUNS.c.name, RUNS.c.status, RUNS.c.options,
                                   RUNS.c.plan_id).order_by(RUNS.c.id.desc())).all()
    out = []
    for row in rows:
        options = dict(row.options or {})
        if kind_of(options) == kind and all(options.get(k) == v for k, v in match.items()):
            out.append(RunInfo(row.id, row.name, row.status, kind, options, row.plan_id))
    return out


def mark_dry_run(factory: Any, run_id: int) -> None:
    """The ``dry_run`` column too, so that status and the report label the run."""
    with write_transaction(factory) as conn:
        conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(dry_run=True))


# -- what a rollback reads of the run it undoes ------------------------------------------------


@dataclass(frozen=True)
class RunStep:
    id: int
    run_id: int
    key: str
    kind: str
    source_id: str | None
    tenant: str | None
    name: str | None
    state: str
    phase: str | None
    checkpoint: dict[str, Any]
    spec: dict[str, Any]
    version: int
    lease_token: int
    target_id: str | None  # from the run's id map


def steps_with_targets(factory: Any, run_id: int, tenant: str | None = None
                       ) -> list[RunStep]:
    """Every step of the run with the target id its id map holds (None: not mapped)."""
    query = (select(STEPS.c.id, STEPS.c.run_id, STEPS.c.key, STEPS.c.kind,
                    STEPS.c.source_id, STEPS.c.tenant, STEPS.c.name, STEPS.c.state,
                    STEPS.c.phase, STEPS.c.checkpoint,
                    STEPS.c.spec, STEPS.c.version, STEPS.c.lease_token,
                    IDMAP.c.target_id)
             .select_from(STEPS.outerjoin(IDMAP, (IDMAP.c.run_id == STEPS.c.run_id)
                                          & (IDMAP.c.kind == STEPS.c.kind)
                                          & (IDMAP.c.source_id == STEPS.c.source_id)))
             .where(STEPS.c.run_id == run_id).order_by(STEPS.c.id))
    if tenant is not None:
        query = query.where(STEPS.c.tenant == tenant)
    with read_connection(factory) as conn:
        rows = conn.execute(query).all()
    return [RunStep(r.id, r.run_id, r.key, r.kind, r.source_id, r.tenant, r.name, r.state, r.phase,
                    dict(r.checkpoint or {}), dict(r.spec or {}), r.version, r.lease_token,
                    None if r.target_id is None else str(r.target_id)) for r in rows]


def dependency_keys(factory: Any, run_id: int) -> list[tuple[str, str]]:
    """(step key, key of the step it depends on) of every dependency of the run."""
    dep_step = STEPS.alias("dep")
    query = (select(STEPS.c.key, dep_step.c.key.label("needs"))
             .select_from(DEPS.join(STEPS, STEPS.c.id == DEPS.c.step_id)
                          .join(dep_step, dep_step.c.id == DEPS.c.depends_on_id))
             .where(STEPS.c.run_id == run_id))
    with read_connection(factory) as conn:
        return [(str(r.key), str(r.needs)) for r in conn.execute(query)]


def mapped_elsewhere(factory: Any, run_id: int, pairs: Iterable[tuple[str, str]]
                     ) -> set[tuple[str, str]]:
    """Which (kind, target id) pairs the id map of another migration or rehearsal run holds
    too: a resource another run made or adopted, which this run only found again."""
    wanted = set(pairs)
    if not wanted:
        return set()
    kinds = sorted({k for k, _ in wanted})
    with read_connection(factory) as conn:
        rows = conn.execute(
            select(IDMAP.c.kind, IDMAP.c.target_id, RUNS.c.options)
            .join(RUNS, RUNS.c.id == IDMAP.c.run_id)
            .where(IDMAP.c.run_id != run_id, IDMAP.c.kind.in_(kinds))).all()
    return {(str(r.kind), str(r.target_id)) for r in rows
            if kind_of(r.options) in MAPPING_KINDS and (str(r.kind), str(r.target_id)) in wanted}


def target_cloud_of(factory: Any, run_id: int) -> str | None:
    """The target cloud of the plan the run was registered from."""
    with read_connection(factory) as conn:
        found = conn.execute(select(PLANS.c.target_cloud).join(RUNS, RUNS.c.plan_id == PLANS.c.id)
                             .where(RUNS.c.id == run_id)).scalar()
    return None if found is None else str(found)


def taken_names(factory: Any, prefix: str) -> set[str]:
    with read_connection(factory) as conn:
        return set(conn.execute(select(RUNS.c.name).where(RUNS.c.name.like(f"{prefix}%")))
                   .scalars())


def undo_outcomes(factory: Any, run_id: int) -> dict[str, int]:
    """Steps of a rollback run per outcome (removed, already gone, left, reset), and those
    not done yet (``pending``)."""
    with read_connection(factory) as conn:
        rows = conn.execute(select(STEPS.c.state, STEPS.c.checkpoint)
                            .where(STEPS.c.run_id == run_id)).all()
    out: dict[str, int] = {}
    for row in rows:
        outcome = (row.checkpoint or {}).get("outcome") if row.state == "done" else row.state
        key = str(outcome or row.state)
        out[key] = out.get(key, 0) + 1
    return out


def undone_step_keys(factory: Any, run_ids: Iterable[int]) -> set[str]:
    """The keys of the undone run's steps that these rollback runs finished undoing."""
    ids = list(run_ids)
    if not ids:
        return set()
    with read_connection(factory) as conn:
        specs = conn.execute(select(STEPS.c.spec).where(STEPS.c.run_id.in_(ids),
                                                        STEPS.c.state == "done")).scalars()
        return {str(((spec or {}).get("undo") or {}).get("step_key")) for spec in specs}


# -- what earlier runs measured (the dry run's estimate, the rehearsal's report) ---------------


@dataclass(frozen=True)
class Measured:
    """Timings of one earlier run: per step kind, the mean seconds from a step's last start
    to its completion, and the bytes its data steps moved over the span they took."""

    run: str
    step_seconds: dict[str, float]
    steps: dict[str, int]
    data_bytes: int
    data_seconds: float
    # What the volume steps moved per GiB of volume size (a raw upload of a full volume:
    # 1 GiB; less for sparse or compressed uploads).
    volume_bytes: int = 0
    volume_gib: int = 0

    @property
    def rate(self) -> float | None:
        return self.data_bytes / self.data_seconds if self.data_seconds > 0 else None

    @property
    def bytes_per_volume_gib(self) -> float | None:
        return self.volume_bytes / self.volume_gib if self.volume_gib else None


def measure_run(factory: Any, run_id: int) -> Measured:
    """What the run's own events say about its speed (see :class:`Measured`)."""
    from migrator.engine.steps import EVENTS, as_utc

    with read_connection(factory) as conn:
        name = conn.execute(select(RUNS.c.name).where(RUNS.c.id == run_id)).scalar_one()
        events = conn.execute(
            select(EVENTS.c.step_id, EVENTS.c.trigger, EVENTS.c.at, STEPS.c.kind,
                   STEPS.c.checkpoint, STEPS.c.spec)
            .join(STEPS, STEPS.c.id == EVENTS.c.step_id)
            .where(EVENTS.c.run_id == run_id, EVENTS.c.trigger.in_(("start", "complete")))
            .order_by(EVENTS.c.id)).all()
    started: dict[int, Any] = {}
    spans: dict[str, list[float]] = {}
    data_first: Any = None
    data_last: Any = None
    data_bytes = volume_bytes = volume_gib = 0
    for row in events:
        at = as_utc(row.at)
        if row.trigger == "start":
            started[row.step_id] = at
            continue
        begin = started.get(row.step_id)
        if begin is None or at is None:
            continue
        spans.setdefault(row.kind, []).append((at - begin).total_seconds())
        if row.kind in ("image", "volume", "server"):
            moved = _moved_bytes(row.kind, dict(row.checkpoint or {}))
            if moved:
                data_bytes += moved
                size = ((row.spec or {}).get("attrs") or {}).get("size")
                if row.kind == "volume" and isinstance(size, int) and size > 0:
                    volume_bytes += moved
                    volume_gib += size
                data_first = begin if data_first is None else min(data_first, begin)
                data_last = at if data_last is None else max(data_last, at)
    seconds = (data_last - data_first).total_seconds() if data_first is not None else 0.0
    return Measured(str(name), {k: sum(v) / len(v) for k, v in spans.items()},
                    {k: len(v) for k, v in spans.items()}, data_bytes, seconds, volume_bytes,
                    volume_gib)


def _moved_bytes(kind: str, checkpoint: Mapping[str, Any]) -> int:
    if kind == "server":
        # The snapshot's bytes (image-backed) and each of its volumes' copies.
        total = int((checkpoint.get("snapshot") or {}).get("size") or 0) \
            if checkpoint.get("snapshot_id") else 0
        for vol in (checkpoint.get("volumes") or {}).values():
            total += int(((vol or {}).get("copied") or {}).get("bytes") or 0)
        return total
    if kind == "image":
        value = checkpoint.get("bytes") or checkpoint.get("size")
    else:
        copy = checkpoint.get("copy") or {}
        value = (copy.get("copied") or {}).get("bytes") or (
            copy.get("source_temp_image") or {}).get("size")
    return int(value) if isinstance(value, int) else 0


def latest_measured(factory: Any) -> Measured | None:
    """The measurements of the latest finished migration or rehearsal run that moved bytes
    (else of the latest that finished at all)."""
    fallback = None
    for kind in (REHEARSAL, MIGRATION):
        for run in runs_of_kind(factory, kind)[:10]:
            if run.status not in ("finished", "rolled_back"):
                continue
            measured = measure_run(factory, run.id)
            if measured.data_bytes:
                return measured
            fallback = fallback or (measured if measured.steps else None)
    return fallback


def update_options(factory: Any, run_id: int, values: Mapping[str, Any]) -> None:
    """Merge ``values`` into the run's options (its kind and what it refers to)."""
    with write_transaction(factory) as conn:
        current = conn.execute(select(RUNS.c.options).where(RUNS.c.id == run_id)).scalar_one()
        conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(
            options={**(current or {}), **values}))


def run_span(factory: Any, run_id: int) -> float | None:
    """Seconds from the run's first step start to its last step completion."""
    from sqlalchemy import func

    from migrator.engine.steps import EVENTS, as_utc

    with read_connection(factory) as conn:
        first = conn.execute(select(func.min(EVENTS.c.at)).where(
            EVENTS.c.run_id == run_id, EVENTS.c.trigger == "start")).scalar()
        last = conn.execute(select(func.max(EVENTS.c.at)).where(
            EVENTS.c.run_id == run_id, EVENTS.c.trigger == "complete")).scalar()
    if first is None or last is None:
        return None
    begin, end = as_utc(first), as_utc(last)
    assert begin is not None and end is not None
    return round((end - begin).total_seconds(), 3)


def source_cloud_of(factory: Any, run_id: int) -> str | None:
    """The source cloud of the plan the run was registered from."""
    with read_connection(factory) as conn:
        found = conn.execute(select(PLANS.c.source_cloud).join(RUNS, RUNS.c.plan_id == PLANS.c.id)
                             .where(RUNS.c.id == run_id)).scalar()
    return None if found is None else str(found)


def wants_source(factory: Any, info: RunInfo) -> bool:
    """Whether a pending rollback of the run has steps that put something back on the
    source (their spec's ``undo`` part says ``restore_source``)."""
    with read_connection(factory) as conn:
        ids = [r.id for r in runs_of_kind(factory, ROLLBACK, of_run_id=info.id)
               if r.status != "finished"]
        if not ids:
            return False
        specs = conn.execute(select(STEPS.c.spec).where(STEPS.c.run_id.in_(ids),
                                                        STEPS.c.state != "done")).scalars()
        return any(((spec or {}).get("undo") or {}).get("restore_source") for spec in specs)
