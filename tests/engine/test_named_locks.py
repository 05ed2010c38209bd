"""Named locks between processes (engine/named_locks.py), on a SQLite file and on PostgreSQL:
a lock another live process holds is refused until it is released; a holder that died on
this host frees it at once; one on another host only once it expired; a holder whose lock
was taken over learns it when it renews."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from migrator.engine.named_locks import LockLost, NamedLock
from migrator.engine.steps import utcnow
from migrator.operations.db import init_state
from migrator.store.db import make_engine, session_factory

# A holder in a process of its own: takes the lock, says so, and releases it when told (or
# dies holding it: "die").
HOLDER = """
import os, sys
from migrator.engine.named_locks import NamedLock
from migrator.store.db import make_engine, session_factory
lock = NamedLock(session_factory(make_engine(sys.argv[1])), sys.argv[2], 600)
assert lock.try_acquire()
print("held", flush=True)
if sys.stdin.readline().strip() == "die":
    os._exit(9)
lock.release()
print("released", flush=True)
"""


def _holder(url: str, name: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", HOLDER, url, name], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    return child


def _check_between_processes(url: str) -> None:
    factory = session_factory(make_engine(url))
    child = _holder(url, "keypair:k")
    try:
        mine = NamedLock(factory, "keypair:k", 600)
        assert not mine.try_acquire()
        assert mine.holder is not None and mine.holder[1] == child.pid
        assert NamedLock(factory, "keypair:other", 600).try_acquire()  # one lock per name
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("release\n")
        child.stdin.flush()
        assert child.stdout.readline() == "released\n"
        assert child.wait(timeout=60) == 0
        assert mine.try_acquire()
        mine.release()
        # A holder killed while it held the lock: free at once for this host.
        dead = _holder(url, "keypair:k")
        assert dead.stdin is not None
        dead.stdin.write("die\n")
        dead.stdin.flush()
        assert dead.wait(timeout=60) == 9
        again = NamedLock(factory, "keypair:k", 600)
        assert again.try_acquire()
        again.release()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_lock_between_processes_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    init_state(url)
    _check_between_processes(url)


@pytest.mark.postgres
def test_a_lock_between_processes_on_postgresql(pg_url: str) -> None:
    _check_between_processes(pg_url)


def test_another_hosts_lock_is_taken_over_only_once_expired(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    init_state(url)
    factory = session_factory(make_engine(url))
    now = [utcnow()]
    theirs = NamedLock(factory, "keypair:k", 60, clock=lambda: now[0])
    theirs.host = "elsewhere"  # a worker on another host: its pid says nothing here
    assert theirs.try_acquire()
    mine = NamedLock(factory, "keypair:k", 60, clock=lambda: now[0])
    assert not mine.try_acquire() and mine.holder == ("elsewhere", theirs.pid)
    now[0] += timedelta(seconds=59)
    assert not mine.try_acquire()
    theirs.renew()  # renewed: another 60 s from now
    now[0] += timedelta(seconds=59)
    assert not mine.try_acquire()
    now[0] += timedelta(seconds=2)
    assert mine.try_acquire()
    with pytest.raises(LockLost):
        theirs.renew()
    theirs.release()  # not its lock any more: nothing happens to mine
    assert not NamedLock(factory, "keypair:k", 60, clock=lambda: now[0]).try_acquire()
    mine.release()
    assert NamedLock(factory, "keypair:k", 60, clock=lambda: now[0]).try_acquire()


def test_acquire_waits_until_released_or_stopped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    init_state(url)
    factory = session_factory(make_engine(url))
    first = NamedLock(factory, "keypair:k", 600)
    first.host = "elsewhere"
    assert first.try_acquire()
    stop = threading.Event()
    stop.set()
    assert not NamedLock(factory, "keypair:k", 600).acquire(stop, 0.01)
    second = NamedLock(factory, "keypair:k", 600)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(second.acquire(threading.Event(),
                                                                       0.01)))
    waiter.start()
    first.release()
    waiter.join(timeout=60)
    assert got == [True]
