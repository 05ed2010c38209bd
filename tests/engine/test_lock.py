"""The run lock: one executor per run; broken only for a dead holder or on force."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session, sessionmaker

from migrator.engine.handlers import Handler, HandlerRegistry, StepContext
from migrator.engine.runs import StepSpec, create_run
from migrator.engine.steps import StepSnapshot
from migrator.errors import RunLockedError
from migrator.operations.execute import execute_run
from migrator.store.db import make_engine
from migrator.store.models import Event, RunLock
from tests.engine.helpers import locks, run_status, states
from tests.timing import scaled

Factory = sessionmaker[Session]
SINCE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class Noop(Handler):
    def run_phase(self, ctx: StepContext, step: StepSnapshot, phase: str) -> None:
        return None


@pytest.fixture
def registry() -> HandlerRegistry:
    reg = HandlerRegistry()
    reg.register("noop", Noop())
    return reg


@pytest.fixture
def run_id(factory: Factory) -> int:
    return create_run(factory, "wave-1", [StepSpec(f"s{i}", "noop") for i in range(5)], [])


def hold(engine: Engine, run_id: int, host: str, pid: int) -> None:
    with engine.begin() as conn:
        conn.execute(insert(RunLock).values(run_id=run_id, host=host, pid=pid, started_at=SINCE))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid no longer exists
    return proc.pid


def test_a_live_holder_makes_a_second_executor_refuse_naming_it(
    db_url: str, run_id: int, registry: HandlerRegistry
) -> None:
    engine = make_engine(db_url)
    host = socket.gethostname()
    hold(engine, run_id, host, os.getpid())
    with pytest.raises(RunLockedError) as err:
        execute_run(db_url, "wave-1", registry=registry)
    assert str(err.value) == (
        f"run 'wave-1' is being executed by pid {os.getpid()} on host {host} since "
        "2026-01-02 03:04:05 UTC; wait for it, or if that process is gone for good, "
        "use --force-unlock"
    )
    assert set(states(engine, run_id).values()) == {"pending"}
    assert run_status(engine, run_id) == "created"
    assert len(locks(engine)) == 1


def test_a_concurrent_executor_is_refused(
    db_url: str, run_id: int, registry: HandlerRegistry
) -> None:
    entered, release = threading.Event(), threading.Event()

    class Blocking(Handler):
        def run_phase(self, ctx: StepContext, step: StepSnapshot, phase: str) -> None:
            entered.set()
            release.wait(scaled(10))

    registry.register("noop", Blocking(), replace=True)
    results: list[str] = []
    first = threading.Thread(
        target=lambda: results.append(execute_run(db_url, "wave-1", registry=registry).status)
    )
    first.start()
    try:
        assert entered.wait(scaled(10))
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on host"):
            execute_run(db_url, "wave-1", registry=registry, resume=True)
    finally:
        release.set()
        first.join(scaled(10))
    assert results == ["finished"]
    assert locks(make_engine(db_url)) == []  # released at the end


def test_the_lock_of_a_dead_process_is_broken(
    db_url: str, run_id: int, registry: HandlerRegistry
) -> None:
    engine = make_engine(db_url)
    pid = dead_pid()
    hold(engine, run_id, socket.gethostname(), pid)
    assert execute_run(db_url, "wave-1", registry=registry).status == "finished"
    with engine.connect() as conn:
        broken = conn.execute(select(Event).where(Event.trigger == "lock-broken")).one()
    assert broken.detail == {
        "host": socket.gethostname(),
        "pid": pid,
        "reason": "holder process is gone",
    }
    assert locks(engine) == []


def test_a_holder_on_another_host_needs_force_unlock(
    db_url: str, run_id: int, registry: HandlerRegistry
) -> None:
    engine = make_engine(db_url)
    hold(engine, run_id, "legacy-bastion", dead_pid())  # cannot be checked from here
    with pytest.raises(RunLockedError, match="on host legacy-bastion"):
        execute_run(db_url, "wave-1", registry=registry)
    result = execute_run(db_url, "wave-1", registry=registry, force_unlock=True)
    assert result.status == "finished"
    assert locks(engine) == []
