"""SIGKILL at random moments while the tenant handlers run against the simulator, then
resume: every step done, the id map complete, nothing duplicated on the target."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openstack
import pytest
from sqlalchemy import func, select

from migrator.clouds.target import source_tag
from migrator.engine.runs import find_run
from migrator.handlers.idmap import id_map
from migrator.sim.server import SimServer
from migrator.store.models import Event
from tests.handlers.helpers import Runner, hexid, tenant_steps
from tests.sim.conftest import Admin
from tests.timing import replay_seed, scaled

REPO = Path(__file__).resolve().parents[2]


def start(db_url: str, run: str, clouds_yaml: Path, *, resume: bool) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tests.handlers.kill_runner", db_url, run, str(clouds_yaml)]
    cmd += ["--resume"] if resume else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def events(runner: Runner) -> int:
    with runner.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Event)).scalar_one())


@pytest.mark.slow
def test_sigkill_then_resume_duplicates_nothing(
        runner: Runner, sim: SimServer, conn: openstack.connection.Connection,
        public_net: dict[str, Any], admin_api: dict[str, Admin], tmp_path: Path) -> None:
    rng = random.Random(replay_seed("MIGRATOR_CRASH_SEED", 4_231))
    tenants = [tenant_steps(f"k{i}-{hexid()[:6]}", external=public_net,
                            password_file=str(tmp_path / "pw.yaml")) for i in range(4)]
    steps = [s for t in tenants for s in t.steps]
    run = runner.create(steps, [d for t in tenants for d in t.deps])
    run_id = find_run(runner.factory, run).id
    # Slow the target down so that kills land mid-run (and mid-step).
    admin_api["target"].add_fault(match="* /*", latency_ms=15)
    kills = 0
    while kills < 5:
        proc = start(runner.db_url, run, sim.clouds_yaml, resume=kills > 0)
        before = events(runner)
        deadline = time.monotonic() + scaled(30)
        while events(runner) <= before + 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is not None:
            break  # finished before this kill
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    admin_api["target"].clear_faults()
    proc = start(runner.db_url, run, sim.clouds_yaml, resume=True)
    out, err = proc.communicate(timeout=scaled(120))
    failed = {k: (s.state, s.last_error) for k, s in runner.steps(run_id).items()
              if s.state != "done"}
    assert proc.returncode == 0, f"{out} {err[-2000:]} {failed}"
    assert json.loads(out.strip().splitlines()[-1])["status"] == "finished"
    assert kills >= 3

    got = runner.steps(run_id)
    assert {s.state for s in got.values()} == {"done"}
    mapping = id_map(runner.factory, run_id)
    assert len(mapping) == len(steps)  # the id map is complete
    in_doubt = [k for k, s in got.items() if s.checkpoint.get("adopted") == "in-doubt"]
    print(f"kills {kills}; in-doubt steps adopted: {len(in_doubt)}")
    for t in tenants:
        assert len(list(conn.identity.projects(tags=source_tag(t.ids["project"])))) == 1
        users = conn.identity.get("/users", params={"name": f"{t.name}-user0"}).json()["users"]
        assert len(users) == 1
        for label, collection in (("network", "networks"), ("subnet", "subnets"),
                                  ("router", "routers"), ("web", "security-groups"),
                                  ("db", "security-groups")):
            body = conn.network.get(f"/{collection}",
                                    params={"tags": source_tag(t.ids[label])}).json()
            assert len(body[collection.replace("-", "_")]) == 1, (t.name, label)
        router_id = mapping[("router", t.ids["router"])]
        assert len(list(conn.network.ports(device_id=router_id,
                                           device_owner="network:router_interface"))) == 1
        for label in ("r1", "r2"):
            rules = conn.network.get("/security-group-rules", params={
                "description": f"migrator-src:{t.ids[label]}"}).json()["security_group_rules"]
            assert len(rules) == 1
