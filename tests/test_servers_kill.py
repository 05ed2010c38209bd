"""Servers SIGKILLed inside their cutover phases, then resumed, through the CLI: ``migrator
execute PLAN`` runs in a subprocess and is killed (SIGKILL) at random moments while server
steps are running (a fixed, printed seed picks the delays; ``MIGRATOR_SERVER_KILL_SEED``
replays another), at least five times, each time started again with ``--resume``; then it
runs to the end. Every compute, image and port call of both clouds is slowed so that the
phases last long enough to be killed in; the phase each kill landed in is recorded and
shown on failure.

Afterwards: exactly one target server per source server, in the source's power state; no
snapshot or temporary image on either cloud; every port migrator made belongs to a server
(no orphan); the source servers SHUTOFF; each server's downtime recorded once.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from migrator.handlers.servers import ServerHandler
from tests.servers_world import raw_servers, servers_world, target_by_source
from tests.sim.conftest import Admin
from tests.timing import replay_seed, scaled

KILLS = 5
LATENCY_MS = 150
REPO = Path(__file__).resolve().parents[1]


PHASES = ServerHandler.phases


def reached(phases: list[str], target: int) -> bool:
    """Whether a running server step is inside phase ``target`` (an index of PHASES) or a
    later one (the step row's ``phase`` is the last phase done, '-' before the first)."""
    return any((PHASES.index(p) + 1 if p != "-" else 0) >= target for p in phases)


def running_server_phases(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute("SELECT coalesce(phase, '-') FROM steps WHERE kind = 'server' AND "
                            "state = 'running'").fetchall()
    finally:
        conn.close()
    return [str(r[0]) for r in rows]


def server_states(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return [str(r[0]) for r in conn.execute(
            "SELECT state FROM steps WHERE kind = 'server'").fetchall()]
    finally:
        conn.close()


def test_sigkill_inside_server_phases_then_resume(tmp_path: Path) -> None:
    seed = replay_seed("MIGRATOR_SERVER_KILL_SEED", 1414)
    rng = random.Random(seed)
    with servers_world(tmp_path) as world:
        url = world.url(tmp_path / "run")
        db = tmp_path / "run" / "state.db"
        config = world.config(tmp_path / "run")
        plan = tmp_path / "servers.yaml"
        planned = world.cli(url, "plan", "--config", str(config), "-o", str(plan))
        assert planned.exit_code == 0, planned.output
        for cloud in ("legacy", "target"):
            admin = Admin(world.sim, cloud)
            for match in ("* /compute/*", "* /image/*", "* /network/*/ports*"):
                admin.add_fault(match=match, latency_ms=LATENCY_MS)
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(world.sim.clouds_yaml)}
        base = [sys.executable, "-m", "migrator", "--db", url, "execute", str(plan),
                "--clouds-yaml", str(world.sim.clouds_yaml)]
        landed: list[list[str]] = []
        # Where each kill aims: a phase (index in PHASES), in order, chosen by the seed; the
        # kill lands once a running server step is inside it (or past it), after a random
        # fraction of a second.
        targets = sorted(rng.sample(range(len(PHASES)), KILLS))
        print(f"kills aimed inside phases: {[PHASES[i] for i in targets]}")
        attempt = 0
        while len(landed) < KILLS:
            attempt += 1
            assert attempt <= 4 * KILLS, f"kills landed in server phases: {landed}"
            proc = subprocess.Popen([*base, *(["--resume"] if attempt > 1 else [])],
                                    cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            deadline = time.monotonic() + scaled(120)
            target = targets[len(landed)]
            while not reached(running_server_phases(db), target) and proc.poll() is None:
                assert time.monotonic() < deadline, f"no server step reached {PHASES[target]}"
                time.sleep(0.02)
            if proc.poll() is not None:  # the run ended before the kill could land
                break
            time.sleep(rng.uniform(0.0, 0.3))
            phases = running_server_phases(db)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=scaled(30))
            assert proc.stderr is not None
            proc.stderr.close()
            if phases:
                landed.append(phases)
            # Requests the killed process had sent are cancelled by the simulator; give
            # those already being carried out the time to finish.
            time.sleep(LATENCY_MS / 1000 * 2)
        print(f"kills landed in server phases: {landed}")
        assert len(landed) >= KILLS, landed
        for cloud in ("legacy", "target"):
            Admin(world.sim, cloud).clear_faults()
        final = subprocess.run([*base, "--resume"], cwd=REPO, env=env, capture_output=True,
                               text=True, timeout=scaled(600))
        assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
        assert set(server_states(db)) == {"done"}

        legacy = raw_servers(world.legacy)
        by_source = target_by_source(world.target)
        for name, source in legacy.items():
            found = by_source.get(source["id"]) or []
            assert len(found) == 1, (name, [s["id"] for s in found], landed)
            want = "SHUTOFF" if name == "physics-vm2" else "ACTIVE"
            assert found[0]["status"] == want
            assert source["status"] == "SHUTOFF"
        assert len(by_source) == len(legacy)
        for conn in (world.legacy, world.target):
            names = [i["name"] for i in conn.image.get("/images").json()["images"]]
            assert not [n for n in names if n.startswith(("migrator-snap-", "migrator-tmp-"))]
            boot_images = [n for n in names if n.endswith("-boot")]
            assert len(boot_images) == len(set(boot_images))
        ports = world.target.network.get("/ports").json()["ports"]
        ours = [p for p in ports if any(t.startswith("migrator-src-") for t in p.get("tags")
                                        or [])]
        servers = {s["id"] for s in raw_servers(world.target).values()}
        assert ours and all(p["device_id"] in servers for p in ours), ours
        sources = [t for p in ours for t in p["tags"] if t.startswith("migrator-src-")]
        assert len(sources) == len(set(sources))  # one target port per source port
        conn = sqlite3.connect(db)
        try:
            recorded = conn.execute("SELECT count(*), count(DISTINCT source_id) FROM "
                                    "server_downtimes").fetchone()
        finally:
            conn.close()
        assert tuple(recorded) == (3, 3)


