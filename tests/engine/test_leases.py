"""Claims, leases and fencing (engine/leases.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine.leases import (
    ClaimLimits,
    HeldSteps,
    LeaseLostError,
    claim_steps,
    fenced_transaction,
    renew_leases,
)
from migrator.engine.runs import StepSpec, create_run, state_counts
from migrator.engine.steps import advance, fire, get_step, utcnow
from migrator.engine.workers import heartbeat
from migrator.errors import ConcurrencyError
from migrator.store.models import Step

Factory = sessionmaker[Session]


def ids_by_key(factory: Factory, run_id: int) -> dict[str, int]:
    with factory() as s:
        return {k: i for k, i in s.execute(select(Step.key, Step.id).where(Step.run_id == run_id))}


def test_claims_take_only_pending_steps_whose_dependencies_are_satisfied(
    any_factory: Factory,
) -> None:
    keys = ["a", "b", "c", "d", "e", "f"]
    deps = [("c", "a"), ("c", "b"), ("d", "c"), ("f", "e")]
    run_id = create_run(any_factory, "r", [StepSpec(k, "x") for k in keys], deps)
    ids = ids_by_key(any_factory, run_id)
    fire(any_factory, ids["b"], "skip")
    fire(any_factory, ids["e"], "start")
    fire(any_factory, ids["e"], "fail")
    fire(any_factory, ids["e"], "retry", not_before=utcnow() + timedelta(hours=1))
    claimed = claim_steps(any_factory, run_id, "me", 10)
    assert [c.step.key for c in claimed] == ["a"]  # c waits for a, e for its backoff
    assert claimed[0].step.state == "running" and not claimed[0].reclaimed
    assert claimed[0].step.lease_token == 1
    assert claim_steps(any_factory, run_id, "me", 10) == []
    fire(any_factory, ids["a"], "verify")
    fire(any_factory, ids["a"], "complete", lease_owner=None)
    assert [c.step.key for c in claim_steps(any_factory, run_id, "me", 10)] == ["c"]


def test_claims_respect_the_limit(factory: Factory) -> None:
    run_id = create_run(factory, "r", [StepSpec(f"s{i}", "x") for i in range(10)], [])
    assert len(claim_steps(factory, run_id, "me", 3)) == 3
    assert state_counts(factory, run_id) == {"pending": 7, "running": 3}


def test_an_expired_lease_is_taken_over_with_a_new_token_and_fences_the_old_owner(
    any_factory: Factory,
) -> None:
    run_id = create_run(any_factory, "r", [StepSpec("a", "x")], [])
    now = utcnow()
    (first,) = claim_steps(any_factory, run_id, "w1", 1, lease_seconds=10, now=now)
    # Still leased: nobody else can take it.
    assert claim_steps(any_factory, run_id, "w2", 1, now=now + timedelta(seconds=5)) == []
    (taken,) = claim_steps(any_factory, run_id, "w2", 1, now=now + timedelta(seconds=11))
    assert taken.reclaimed and taken.previous_owner == "w1"
    assert taken.step.state == "running"
    assert taken.step.lease_token == first.step.lease_token + 1
    assert taken.step.version == first.step.version + 1
    # The old owner's writes are refused: its snapshot's version is gone.
    with pytest.raises(ConcurrencyError):
        advance(any_factory, first.step, "verify")
    with pytest.raises(LeaseLostError), fenced_transaction(any_factory, first.step) as conn:
        conn.execute(text("SELECT 1"))
    # The new owner's are not.
    with fenced_transaction(any_factory, taken.step) as conn:
        conn.execute(text("SELECT 1"))
    advance(any_factory, taken.step, "verify")


def test_a_renewal_extends_the_lease_without_changing_the_version(factory: Factory) -> None:
    run_id = create_run(factory, "r", [StepSpec("a", "x"), StepSpec("b", "x")], [])
    now = utcnow()
    claims = claim_steps(factory, run_id, "w1", 2, lease_seconds=10, now=now)
    held = renew_leases(factory, "w1", lease_seconds=10, now=now + timedelta(seconds=8))
    assert held == {c.step.id: c.step.lease_token for c in claims}
    # Renewed at +8 s for 10 s: still held at +15 s.
    assert claim_steps(factory, run_id, "w2", 2, now=now + timedelta(seconds=15)) == []
    for claim in claims:
        assert get_step(factory, claim.step.id).version == claim.step.version
    assert renew_leases(factory, "w2") == {}


def test_held_steps_report_each_lost_lease_once() -> None:
    class Snap:
        def __init__(self, sid: int, token: int) -> None:
            self.id, self.lease_token = sid, token

    held = HeldSteps()
    held.add(Snap(1, 5))  # type: ignore[arg-type]
    held.add(Snap(2, 7))  # type: ignore[arg-type]
    asked = held.tokens()
    assert held.renewed(asked, {1: 5, 2: 7}) == []
    assert held.renewed(asked, {1: 5, 2: 8}) == [2]  # taken over: a new token
    assert held.is_lost(2) and not held.is_lost(1)
    assert held.renewed(asked, {1: 5, 2: 8}) == []  # reported once
    held.drop(2)
    assert list(held.ids()) == [1]


def test_a_heartbeat_racing_a_claim_or_a_completion_loses_nothing(any_factory: Factory) -> None:
    """The heartbeat reads the database while the worker's threads claim and finish steps: a
    step claimed after the beat began, or finished before it read, was not taken over."""
    run_id = create_run(any_factory, "r", [StepSpec(k, "x") for k in "abc"], [])
    now = utcnow()
    held = HeldSteps()
    a, b = claim_steps(any_factory, run_id, "w1", 2, lease_seconds=10, now=now)
    held.add(a.step)
    held.add(b.step)
    asked = held.tokens()  # the beat begins
    (c,) = claim_steps(any_factory, run_id, "w1", 1, lease_seconds=10, now=now)
    finished = advance(any_factory, b.step, "verify")
    advance(any_factory, finished, "complete", lease_owner=None)
    beat = heartbeat(any_factory, "w1", run_id, watch=asked, lease_seconds=10,
                     now=now + timedelta(seconds=1))
    held.add(c.step)  # the claiming thread records its step after the beat read
    assert b.step.id not in beat.held and c.step.id not in asked
    assert held.renewed(asked, beat.tokens) == []
    # Past its lease, a is taken by another worker: the next beat tells.
    (taken,) = claim_steps(any_factory, run_id, "w2", 1, now=now + timedelta(seconds=30))
    assert taken.step.id == a.step.id
    asked = held.tokens()
    beat = heartbeat(any_factory, "w1", run_id, watch=asked, now=now + timedelta(seconds=31))
    assert held.renewed(asked, beat.tokens) == [a.step.id]


def test_the_transfer_limit_holds_across_workers(any_factory: Factory) -> None:
    specs = [StepSpec(f"i{i}", "image") for i in range(5)] + [
        StepSpec(f"p{i}", "project") for i in range(5)]
    run_id = create_run(any_factory, "r", specs, [])
    limits = ClaimLimits(transfer_kinds=frozenset({"image"}), transfer_limit=2)
    taken = [c.step.kind for c in claim_steps(any_factory, run_id, "w1", 10, limits=limits)]
    assert sorted(taken) == ["image", "image"] + ["project"] * 5
    # Another worker finds the transfer slots full.
    assert claim_steps(any_factory, run_id, "w2", 10, limits=limits) == []


@pytest.mark.postgres
def test_concurrent_claims_never_take_a_step_twice(pg_url: str) -> None:
    from migrator.store.db import make_engine, session_factory

    engine = make_engine(pg_url, pool_size=8)
    factory = session_factory(engine)
    try:
        run_id = create_run(factory, "r", [StepSpec(f"s{i}", "x") for i in range(400)], [])
        taken: list[int] = []
        lock = threading.Lock()

        def claimer(name: str) -> None:
            while claims := claim_steps(factory, run_id, name, 3):
                with lock:
                    taken.extend(c.step.id for c in claims)

        threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(taken) == 400 == len(set(taken))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_concurrent_claims_never_exceed_the_transfer_limit(pg_url: str) -> None:
    """Six threads claim transfers first, one step at a time, and finish each at once; the
    transfers they hold together never pass the limit (counted here before each completion
    is committed and after each claim is: never more than the database holds)."""
    import random

    from migrator.engine.leases import complete_and_claim
    from migrator.store.db import make_engine, session_factory

    seed = 20261203
    print(f"seed {seed}")
    engine = make_engine(pg_url, pool_size=8)
    factory = session_factory(engine)
    limits = ClaimLimits(frozenset({"image"}), 2)
    try:
        specs = [StepSpec(f"i{i}", "image") for i in range(60)] + [
            StepSpec(f"p{i}", "plain") for i in range(120)]
        run_id = create_run(factory, "r", specs, [])
        lock = threading.Lock()
        held, most, done = 0, 0, []

        def worker(name: str, rng: random.Random) -> None:
            nonlocal held, most
            claims = claim_steps(factory, run_id, name, 1, limits=limits, data_first=True)
            while claims:
                step = claims[0].step
                if step.kind == "image":
                    with lock:
                        held += 1
                        most = max(most, held)
                step = advance(factory, step, "verify")
                if rng.random() < 0.5:
                    threading.Event().wait(0.002)
                if step.kind == "image":
                    with lock:
                        held -= 1
                _, claims = complete_and_claim(factory, step, name, 1, limits=limits,
                                               data_first=rng.random() < 0.8)
                done.append(step.key)

        threads = [threading.Thread(target=worker, args=(f"w{i}", random.Random(seed + i)))
                   for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(done) == sorted(s.key for s in specs)
        assert 1 <= most <= 2
    finally:
        engine.dispose()


def waiting(factory: Factory, run_id: int) -> dict[str, int]:
    with factory() as s:
        return dict(s.execute(select(Step.key, Step.waiting).where(Step.run_id == run_id)).all())


def test_waiting_counts_the_dependencies_not_done(any_factory: Factory) -> None:
    deps = [("c", "a"), ("c", "b"), ("d", "c")]
    run_id = create_run(any_factory, "r", [StepSpec(k, "x") for k in "abcd"], deps)
    ids = ids_by_key(any_factory, run_id)
    assert waiting(any_factory, run_id) == {"a": 0, "b": 0, "c": 2, "d": 1}
    fire(any_factory, ids["b"], "skip")
    assert waiting(any_factory, run_id)["c"] == 1
    for trigger in ("start", "verify", "complete"):
        fire(any_factory, ids["a"], trigger)
    assert waiting(any_factory, run_id)["c"] == 0
    assert [c.step.key for c in claim_steps(any_factory, run_id, "me", 10)] == ["c"]
    fire(any_factory, ids["a"], "rollback")  # done no more: c waits for it again
    assert waiting(any_factory, run_id) == {"a": 0, "b": 0, "c": 1, "d": 1}


def test_completion_and_the_next_claim_share_one_transaction(any_factory: Factory) -> None:
    from migrator.engine.leases import complete_and_claim
    from migrator.store.models import Event

    run_id = create_run(any_factory, "r", [StepSpec("a", "x"), StepSpec("b", "x")],
                        [("b", "a")])
    (a,) = claim_steps(any_factory, run_id, "w1", 1)
    verified = advance(any_factory, a.step, "verify")
    done, (b,) = complete_and_claim(any_factory, verified, "w1", 1)
    # b became ready by a's completion and was claimed in the same commit.
    assert done.state == "done" and b.step.key == "b" and b.step.state == "running"
    with any_factory() as s:
        triggers = [t for (t,) in s.execute(select(Event.trigger).where(
            Event.step_id.is_not(None)).order_by(Event.id))]
    assert triggers == ["start", "verify", "complete", "start"]
    # A completion whose step was taken over writes nothing, the claim included.
    run2 = create_run(any_factory, "r2", [StepSpec("c", "x"), StepSpec("d", "x")], [])
    now = utcnow()
    (c,) = claim_steps(any_factory, run2, "w1", 1, lease_seconds=1, now=now)
    stale = advance(any_factory, c.step, "verify")
    (taken,) = claim_steps(any_factory, run2, "w2", 1, now=now + timedelta(seconds=5))
    assert taken.reclaimed and taken.step.key == "c"
    with pytest.raises(ConcurrencyError):
        complete_and_claim(any_factory, stale, "w1", 1)
    assert state_counts(any_factory, run2) == {"pending": 1, "verifying": 1}


def test_transfers_first_while_the_limit_has_room(any_factory: Factory) -> None:
    run_id = create_run(any_factory, "r", [StepSpec("p1", "plain"), StepSpec("p2", "plain"),
                                           StepSpec("i1", "image"), StepSpec("i2", "image")],
                        [])
    limits = ClaimLimits(frozenset({"image"}), 1)
    # Plain steps first unless asked: the transfers wait for the end of the run.
    (first,) = claim_steps(any_factory, run_id, "w", 1, limits=limits)
    assert first.step.key == "p1"
    (second,) = claim_steps(any_factory, run_id, "w", 1, limits=limits, data_first=True)
    assert second.step.key == "i1"
    # The limit (one transfer at a time) is full: plain steps, then nothing more to move.
    (third,) = claim_steps(any_factory, run_id, "w", 1, limits=limits, data_first=True)
    assert third.step.key == "p2"
    assert claim_steps(any_factory, run_id, "w", 1, limits=limits, data_first=True) == []


def image(key: str, size: int | None) -> StepSpec:
    return StepSpec(key, "image", spec={"lookup": {"size": size}})


SMALL = ClaimLimits(frozenset({"image"}), 1, small_copy_bytes=1024)


def test_the_planned_bytes_of_a_step_are_recorded_from_its_spec(any_factory: Factory) -> None:
    run_id = create_run(any_factory, "r", [
        image("i", 5), image("unknown", None),
        StepSpec("v", "volume", spec={"attrs": {"size": 2}}),
        StepSpec("s", "server", spec={"lookup": {"size": 7}}),
        StepSpec("s0", "server", spec={"lookup": {"size": 0}}),
        StepSpec("p", "project", spec={"lookup": {"size": 9}})], [])
    with any_factory() as s:
        found = dict(s.execute(select(Step.key, Step.planned_bytes)
                               .where(Step.run_id == run_id)).all())
    assert found == {"i": 5, "unknown": None, "v": 2 << 30, "s": 7, "s0": None, "p": None}


@pytest.mark.parametrize("data_first", [False, True])
def test_small_copies_are_claimed_while_the_one_slot_is_held(any_factory: Factory,
                                                             data_first: bool) -> None:
    """Transfer limit 1: a big image runs; the small ones are still claimed, one worker
    after the other, and no second big one, nor one of unknown size (NULL: counted as big),
    is claimed until the first is done."""
    specs = [image("big1", 1 << 20)] + [image(f"small{i}", 1024) for i in range(4)] + [
        image("big2", 2048), image("unknown", None)]
    run_id = create_run(any_factory, "r", specs, [])
    (big,) = claim_steps(any_factory, run_id, "w1", 1, limits=SMALL, data_first=True)
    assert big.step.key == "big1" and big.step.planned_bytes == 1 << 20
    taken = [c.step.key for worker in ("w1", "w2", "w2")
             for c in claim_steps(any_factory, run_id, worker, 2, limits=SMALL,
                                  data_first=data_first)]
    assert sorted(taken) == [f"small{i}" for i in range(4)]
    assert claim_steps(any_factory, run_id, "w2", 5, limits=SMALL, data_first=data_first) == []
    # The big one done: the next big one takes the slot, and only it.
    done = advance(any_factory, big.step, "verify")
    advance(any_factory, done, "complete", lease_owner=None)
    assert [c.step.key for c in claim_steps(any_factory, run_id, "w2", 5, limits=SMALL,
                                            data_first=data_first)] == ["big2"]
    assert claim_steps(any_factory, run_id, "w1", 5, limits=SMALL, data_first=data_first) == []


def test_without_the_exemption_a_small_copy_holds_a_slot(any_factory: Factory) -> None:
    run_id = create_run(any_factory, "r", [image("a", 10), image("b", 10)], [])
    limits = ClaimLimits(frozenset({"image"}), 1, small_copy_bytes=0)
    assert [c.step.key for c in claim_steps(any_factory, run_id, "w1", 5, limits=limits)
            ] == ["a"]
    assert claim_steps(any_factory, run_id, "w2", 5, limits=limits) == []


def test_running_small_copies_leave_the_slots_to_the_big_ones(any_factory: Factory) -> None:
    run_id = create_run(any_factory, "r", [image(f"s{i}", 1) for i in range(3)]
                        + [image("big", 4096)], [])
    small = claim_steps(any_factory, run_id, "w1", 3, limits=SMALL)
    assert [c.step.key for c in small] == ["s0", "s1", "s2"]
    (big,) = claim_steps(any_factory, run_id, "w2", 3, limits=SMALL, data_first=True)
    assert big.step.key == "big"


@pytest.mark.postgres
def test_the_transfer_limit_holds_for_big_copies_across_concurrent_workers(
        pg_url: str) -> None:
    """Workers claiming at once on PostgreSQL: every step is claimed once, and never more
    than one big copy runs (each claimer holds what it took for a while, then completes it),
    while the small ones are taken all along."""
    from migrator.store.db import make_engine, session_factory

    engine = make_engine(pg_url, pool_size=8)
    factory = session_factory(engine)
    try:
        specs = [image(f"b{i}", 1 << 20) for i in range(6)] + [
            image(f"s{i}", 100) for i in range(60)]
        run_id = create_run(factory, "r", specs, [])
        lock = threading.Lock()
        taken: list[str] = []
        big_at_once: list[int] = []
        running_big: set[str] = set()

        def claimer(name: str) -> None:
            idle = 0
            while idle < 50:
                claims = claim_steps(factory, run_id, name, 2, limits=SMALL,
                                     data_first=bool(len(taken) % 2))
                if not claims:
                    idle += 1
                    continue
                idle = 0
                with lock:
                    taken.extend(c.step.key for c in claims)
                    running_big.update(c.step.key for c in claims if c.step.key[0] == "b")
                    big_at_once.append(len(running_big))
                for c in claims:
                    done = advance(factory, c.step, "verify")
                    with lock:
                        running_big.discard(c.step.key)
                    advance(factory, done, "complete", lease_owner=None)

        threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(taken) == sorted(s.key for s in specs)
        assert max(big_at_once) == 1
    finally:
        engine.dispose()


def test_small_copies_are_claimed_in_id_order_with_the_plain_steps(any_factory: Factory
                                                                   ) -> None:
    """Only the copies that hold a slot are looked for first (long steps started early);
    a small one waits its turn beside its tenant's other steps, and moves no cursor."""
    from migrator.engine.leases import holds_transfer_slot

    run_id = create_run(any_factory, "r", [StepSpec("p1", "plain"), image("s1", 10),
                                           StepSpec("p2", "plain"), image("b1", 4096)], [])
    order = [c.step for _ in range(4)
             for c in claim_steps(any_factory, run_id, "w", 1, limits=SMALL, data_first=True)]
    assert [s.key for s in order] == ["b1", "p1", "s1", "p2"]
    assert [holds_transfer_slot(s, SMALL) for s in order] == [True, False, False, False]
