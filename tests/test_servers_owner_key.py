"""The owner's key imported for migrator's user (``password_policy: external``) while another
worker process is in the middle of the same import: a process of its own holds the lock of
the key name in the state database and has its own key (another owner's, same name) under
that name for migrator's user. The run's boots wait for it, touch neither its key nor boot
anything meanwhile, then boot every server with the owner's own public key (the key the
simulated Nova copies into the server) and leave no copy behind."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result

from migrator.sim.nova_keypairs import generate_ssh_key
from tests.servers_world import ServersWorld, raw_servers, servers_world
from tests.timing import scaled

# Another worker process: holds the key name's lock with its own key imported, until told.
OTHER_WORKER = """
import sys, openstack
from migrator.engine.named_locks import NamedLock
from migrator.store.db import make_engine, session_factory
lock = NamedLock(session_factory(make_engine(sys.argv[1])), "keypair:physics-key", 600)
assert lock.try_acquire()
conn = openstack.connect(cloud="target")
made = conn.compute.post("/os-keypairs", json={"keypair": {
    "name": "physics-key", "public_key": sys.argv[2]}})
assert made.status_code in (200, 201), made.text
print("held", flush=True)
sys.stdin.readline()
conn.compute.delete("/os-keypairs/physics-key")
lock.release()
print("released", flush=True)
"""


class _Seen(logging.Handler):
    def __init__(self, text: str) -> None:
        super().__init__(logging.INFO)
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[ServersWorld]:
    with servers_world(tmp_path) as w:
        yield w


def test_boots_wait_for_the_key_another_worker_process_holds(world: ServersWorld,
                                                              tmp_path: Path) -> None:
    url = world.url(tmp_path / "run")
    config = world.config(tmp_path / "run")
    config.write_text(config.read_text().replace("  password_policy: random ",
                                                 "  password_policy: external "))
    plan = tmp_path / "plan.yaml"
    planned = world.cli(url, "plan", "--config", str(config), "-o", str(plan))
    assert planned.exit_code == 0, planned.output
    other_key, _private = generate_ssh_key()
    other = subprocess.Popen([sys.executable, "-c", OTHER_WORKER, url, other_key], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert other.stdin is not None and other.stdout is not None
    logger = logging.getLogger("migrator.engine.named_locks")
    seen = _Seen("waiting for lock keypair:physics-key")
    level = logger.level
    logger.addHandler(seen)
    logger.setLevel(logging.INFO)
    results: list[Result] = []
    run = threading.Thread(target=lambda: results.append(world.cli(url, "execute",
                                                                   str(plan))))
    try:
        assert other.stdout.readline() == "held\n"
        run.start()
        assert seen.event.wait(scaled(120)), "no boot waited for the lock"
        # While the other process holds it: its copy untouched, no server booted.
        theirs = world.target.compute.get("/os-keypairs/physics-key").json()["keypair"]
        assert theirs["public_key"] == other_key
        assert not raw_servers(world.target)
        other.stdin.write("go\n")
        other.stdin.flush()
        assert other.stdout.readline() == "released\n"
        run.join(scaled(300))
        assert not run.is_alive()
    finally:
        logger.removeHandler(seen)
        logger.setLevel(level)
        if other.poll() is None:
            other.kill()
        other.wait()
    assert results and results[0].exit_code == 0, results[0].output if results else None
    legacy = world.sim.cloud("legacy").state
    owner_key = next(k["public_key"] for k in legacy.values("keypairs")
                     if k["name"] == "physics-key")
    target = world.sim.cloud("target").state
    booted = {s["name"]: s.get("_public_key") for s in target.values("servers")}
    assert booted == {f"physics-vm{i}": owner_key for i in range(3)}
    assert owner_key != other_key
    me = world.target.current_user_id
    assert all(s["user_id"] == me for s in raw_servers(world.target).values())
    mine = world.target.compute.get("/os-keypairs").json()["keypairs"]
    assert not [k for k in mine if k["keypair"]["name"] == "physics-key"]


def test_two_worker_processes_boot_one_owners_servers_with_the_owners_key(
        world: ServersWorld, tmp_path: Path) -> None:
    """The run executed by two worker processes (``--processes 2``; which boots land in
    which process is up to their claims): every server arrives once, with the owner's
    public key, and no copy is left. The wait itself is shown by the test above."""
    url = world.url(tmp_path / "run")
    config = world.config(tmp_path / "run")
    config.write_text(config.read_text().replace("  password_policy: random ",
                                                 "  password_policy: external "))
    plan = tmp_path / "plan.yaml"
    assert world.cli(url, "plan", "--config", str(config), "-o", str(plan)).exit_code == 0
    result = world.cli(url, "execute", str(plan), "--processes", "2", "--workers", "2")
    assert result.exit_code == 0, result.output
    legacy = world.sim.cloud("legacy").state
    owner_key = next(k["public_key"] for k in legacy.values("keypairs")
                     if k["name"] == "physics-key")
    booted = [(s["name"], s.get("_public_key"))
              for s in world.sim.cloud("target").state.values("servers")]
    assert sorted(booted) == [(f"physics-vm{i}", owner_key) for i in range(3)]
    mine = world.target.compute.get("/os-keypairs").json()["keypairs"]
    assert not [k for k in mine if k["keypair"]["name"] == "physics-key"]
