"""Small images are not held back by the run's transfer slots: ``parallel_transfers: 1`` and
``small_copy_bytes: 64KiB`` against the simulator (plan -> execute, a real SQLite state
database), the 1 MiB + 1 image (physics-odd) is the one copy that holds the slot.

Made independent of the machine's speed by the transfer progress hook, which runs in the
worker thread inside each copy (after its slot, if it takes one, is held): the big copy does
not go on until two small copies have begun, and a small copy does not go on until the big
one has begun. Both can only happen when small copies run while the big one holds the only
slot; with the slot held by every copy, the first copy to begin waits in vain (each wait is
bounded and recorded, so a regression fails instead of hanging)."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import select

from migrator.operations.execute import ExecuteOptions, execute_plan
from migrator.operations.plan import make_plan
from migrator.store.db import make_engine
from migrator.store.models import Event, Step
from tests.handlers.data_world import DataWorld, faults, forget_target_images, world
from tests.timing import scaled

__all__ = ["faults", "world"]
SMALL = 64 << 10


class Rendezvous:
    """Transfer progress (handlers.data.TransferProgress) that makes the big copy and the
    small ones wait for each other, recording every wait that ran out."""

    def __init__(self, big: str, small: set[str], timeout: float) -> None:
        self.big, self.small, self.timeout = big, small, timeout
        self.big_began = threading.Event()
        self.small_began: set[str] = set()
        self.cond = threading.Condition()
        self.timed_out: list[str] = []

    def started(self, key: str, label: str, total: int | None) -> None:
        if key == self.big:
            self.big_began.set()
            with self.cond:
                if not self.cond.wait_for(lambda: len(self.small_began) >= 2, self.timeout):
                    self.timed_out.append(key)
        elif key in self.small:
            with self.cond:
                self.small_began.add(key)
                self.cond.notify_all()
            if not self.big_began.wait(self.timeout):
                self.timed_out.append(key)

    def advanced(self, key: str, done: int) -> None:
        pass

    def ended(self, key: str, ok: bool) -> None:
        pass


def test_small_images_run_while_the_one_slot_is_held(world: DataWorld, tmp_path: Path
                                                     ) -> None:
    forget_target_images(world.sim)
    url = world.url(tmp_path)
    config = world.config(tmp_path, **{"parallel_transfers: 4": "parallel_transfers: 1",
                                       "small_copy_bytes: 16MiB": "small_copy_bytes: 64KiB"})
    planned = make_plan(url, config=config, clouds_yaml=world.sim.clouds_yaml,
                        output=tmp_path / "plan.yaml", kinds=["project", "image"])
    images = {s.key: int(s.spec.get("lookup", {}).get("size") or 0)
              for s in planned.plan.steps if s.kind == "image"}
    (big,) = [key for key, size in images.items() if size > SMALL]
    small = {key for key, size in images.items() if 0 < size <= SMALL}
    assert len(small) >= 2
    hook = Rendezvous(big, small, scaled(60))

    done = execute_plan(url, planned.path, ExecuteOptions(
        clouds_yaml=world.sim.clouds_yaml, handle_sigint=False, backoff_base=0.05,
        transfer_progress=hook))

    assert done.run is not None and done.run.status == "finished", done.run
    assert hook.timed_out == []
    # The state database saw them run at once: small copies started before the big one was
    # complete and completed after it started, the big one's claim not held back by them.
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Step.key, Event.trigger, Event.id).join(
                Event, Event.step_id == Step.id).where(
                    Step.kind == "image", Event.trigger.in_(["start", "complete"]))).all()
            planned_bytes = dict(conn.execute(select(Step.key, Step.planned_bytes).where(
                Step.kind == "image")).all())
    finally:
        engine.dispose()
    at = {(key, trigger): event_id for key, trigger, event_id in rows}
    beside_big = {key for key in small if at[key, "start"] < at[big, "complete"]
                  and at[key, "complete"] > at[big, "start"]}
    assert len(beside_big) >= 2, (beside_big, at)
    assert planned_bytes == images


def test_a_small_image_grown_since_the_plan_is_refused_before_a_byte_goes(
        world: DataWorld, tmp_path: Path) -> None:
    """Claimed as small (no slot), an image whose legacy bytes grew after the plan cannot
    become a big copy outside the slots: the copy refuses a source that declares another size
    than the inventory's before anything is sent, and the step fails saying so (plan again:
    the plan's check against the inventory does not see a change made after discover)."""
    from migrator.sim import images

    forget_target_images(world.sim)  # copied by an earlier test: the bytes go again
    url = world.url(tmp_path)
    config = world.config(tmp_path, **{"parallel_transfers: 4": "parallel_transfers: 1",
                                       "small_copy_bytes: 16MiB": "small_copy_bytes: 64KiB"})
    planned = make_plan(url, config=config, clouds_yaml=world.sim.clouds_yaml,
                        output=tmp_path / "plan.yaml", kinds=["project", "image"],
                        tenants=["chemistry"])
    (key, source_id) = next((s.key, str(s.source_id)) for s in planned.plan.steps
                            if s.kind == "image"
                            and 0 < int(s.spec.get("lookup", {}).get("size") or 0) <= SMALL)
    legacy = world.sim.cloud("legacy")
    grown = {"kind": "generated", "seed": 99, "size": 1 << 20}
    before: dict[str, object] = {}

    def grow() -> None:
        record = legacy.state.get("images", source_id)
        assert record is not None
        before.update(content=record["_content"], size=record["size"],
                      checksum=record.get("checksum"))
        images.set_content(legacy, record, grown, legacy.digest(grown))

    def restore() -> None:  # the world is shared by the module's tests
        record = legacy.state.get("images", source_id)
        assert record is not None
        content = dict(before["content"])  # type: ignore[call-overload]
        images.set_content(legacy, record, content, legacy.digest(content))

    world.sim.call(grow)
    try:
        done = execute_plan(url, planned.path, ExecuteOptions(
            clouds_yaml=world.sim.clouds_yaml, handle_sigint=False, backoff_base=0.05,
            max_attempts=1))
    finally:
        world.sim.call(restore)
    assert done.run is not None and done.run.status == "failed", done.run
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            state, error, planned_bytes = conn.execute(select(
                Step.state, Step.last_error, Step.planned_bytes).where(Step.key == key)).one()
    finally:
        engine.dispose()
    assert state == "failed" and planned_bytes == before["size"]
    assert f"declares {1 << 20} bytes, the inventory says {before['size']}: it changed" in \
        str(error)


def test_a_copy_takes_a_slot_unless_planned_and_found_small() -> None:
    from migrator.handlers.data import data_services_for

    services = data_services_for(parallel_transfers=1, small_copy_bytes=SMALL)
    assert not services.needs_slot(SMALL) and not services.needs_slot(0, found=SMALL)
    assert services.needs_slot(SMALL + 1) and services.needs_slot(None)
    # A volume grown since the plan (its temporary image bigger than small): a slot.
    assert services.needs_slot(SMALL, found=SMALL + 1)
    off = data_services_for(parallel_transfers=1, small_copy_bytes=0)
    assert off.needs_slot(1)
