"""store/run_kinds.py's queries on SQLite and PostgreSQL: runs by kind, a run's steps with
their id map, who else mapped a target id, the dependencies by key, the steps a rollback
finished, the timings of a run from its events, a run without steps (a dry run)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, Row, insert, select, update

from migrator.engine.runs import StepSpec, create_run, find_run
from migrator.engine.steps import EVENTS, STEPS, utcnow, write_transaction
from migrator.spec import Spec, UndoSpec
from migrator.store.db import make_engine, session_factory
from migrator.store.run_kinds import (
    IDMAP,
    RUNS,
    dependency_keys,
    mapped_elsewhere,
    mark_dry_run,
    measure_run,
    run_info,
    run_span,
    runs_of_kind,
    steps_with_targets,
    undone_step_keys,
    update_options,
)


def test_the_queries_of_rollbacks_dry_runs_and_rehearsals(url: str) -> None:
    engine = make_engine(url)
    try:
        factory = session_factory(engine)
        steps = [StepSpec("project:p", "project", source_id="p", tenant="physics"),
                 StepSpec("image:i", "image", {"attrs": {}}, source_id="i", tenant="physics"),
                 StepSpec("volume:v", "volume", {"attrs": {"size": 2}}, source_id="v",
                          tenant="chemistry")]
        run_id = create_run(factory, "wave", steps, [("image:i", "project:p"),
                                                     ("volume:v", "project:p")])
        other = create_run(factory, "other", steps[:1], [])
        rehearsal = create_run(factory, "wave-rehearsal", steps[:1], [])
        update_options(factory, rehearsal, {"kind": "rehearsal", "of_plan_hash": "h"})
        dry = create_run(factory, "wave-dry-run", [], [], options={"kind": "dry_run"})
        mark_dry_run(factory, dry)
        began = utcnow()
        with write_transaction(factory) as conn:
            conn.execute(insert(IDMAP), [
                {"run_id": run_id, "kind": "project", "source_id": "p", "target_id": "P"},
                {"run_id": run_id, "kind": "image", "source_id": "i", "target_id": "I"},
                {"run_id": run_id, "kind": "volume", "source_id": "v", "target_id": "V"},
                {"run_id": other, "kind": "project", "source_id": "p", "target_id": "P"},
                {"run_id": dry, "kind": "image", "source_id": "i", "target_id": "I"}])
            ids = {s.key: s.id for s in [find_step(conn, run_id, k) for k in
                                         ("project:p", "image:i", "volume:v")]}
            conn.execute(update(STEPS).where(STEPS.c.id == ids["image:i"]).values(
                state="done", checkpoint={"bytes": 1000}))
            conn.execute(update(STEPS).where(STEPS.c.id == ids["volume:v"]).values(
                state="done", checkpoint={"copy": {"copied": {"bytes": 3000}}}))
            for key, start, end in (("image:i", 0, 2), ("volume:v", 1, 4)):
                for trigger, at in (("start", start), ("complete", end)):
                    conn.execute(insert(EVENTS).values(
                        run_id=run_id, step_id=ids[key], trigger=trigger, actor="t", pid=1,
                        at=began + timedelta(seconds=at), detail={}))

        assert [r.name for r in runs_of_kind(factory, "rehearsal", of_plan_hash="h")] == [
            "wave-rehearsal"]
        assert [r.name for r in runs_of_kind(factory, "migration")] == ["other", "wave"]
        assert run_info(factory, dry).kind == "dry_run"
        with engine.connect() as conn:
            assert conn.execute(select(RUNS.c.dry_run).where(RUNS.c.id == dry)
                                ).scalar_one() is True

        found = {s.key: (s.target_id, s.state) for s in steps_with_targets(factory, run_id)}
        assert found == {"project:p": ("P", "pending"), "image:i": ("I", "done"),
                         "volume:v": ("V", "done")}
        assert [s.key for s in steps_with_targets(factory, run_id, "chemistry")] == [
            "volume:v"]
        # The dry run's id map does not count: only migrations and rehearsals made things.
        assert mapped_elsewhere(factory, run_id, {("project", "P"), ("image", "I")}) == {
            ("project", "P")}
        assert sorted(dependency_keys(factory, run_id)) == [("image:i", "project:p"),
                                                            ("volume:v", "project:p")]
        undo = create_run(factory, "wave-rollback",
                          [StepSpec("undo:image:i", "undo_image",
                                    Spec(undo=UndoSpec(step_key="image:i")))], [])
        with write_transaction(factory) as conn:
            conn.execute(update(STEPS).where(STEPS.c.run_id == undo).values(state="done"))
        assert undone_step_keys(factory, [undo]) == {"image:i"}

        measured = measure_run(factory, run_id)
        assert measured.steps == {"image": 1, "volume": 1}
        assert measured.step_seconds == {"image": 2.0, "volume": 3.0}
        assert (measured.data_bytes, measured.data_seconds) == (4000, 4.0)
        assert measured.rate == 1000.0 and measured.bytes_per_volume_gib == 1500.0
        assert run_span(factory, run_id) == 4.0
        assert run_span(factory, dry) is None
        assert find_run(factory, "wave-dry-run").status == "created"
    finally:
        engine.dispose()


def find_step(conn: Connection, run_id: int, key: str) -> Row[tuple[int, str]]:
    return conn.execute(select(STEPS.c.id, STEPS.c.key).where(
        STEPS.c.run_id == run_id, STEPS.c.key == key)).one()


def test_a_server_step_moved_its_snapshot_and_its_volumes_copies() -> None:
    from migrator.store.run_kinds import _moved_bytes

    cp = {"snapshot_id": "S", "snapshot": {"size": 4096},
          "volumes": {"v1": {"copied": {"bytes": 1000}}, "v2": {"phase": "upload"}}}
    assert _moved_bytes("server", cp) == 5096
    # Volume-backed: no snapshot; nothing copied yet.
    assert _moved_bytes("server", {"volumes": {"v1": {"copied": {"bytes": 7}}}}) == 7
    assert _moved_bytes("server", {}) == 0
