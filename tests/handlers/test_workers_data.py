"""Images and volumes executed by three worker processes (``migrator execute --processes 3``),
two of them SIGKILLed while they hold a data step in the middle of its copy: the others take
the steps over (the dead workers' leases expire at once: same host, pid gone), reconcile them
and finish the run. Exactly one target image per legacy image and one target volume per legacy
volume, no temporary image left on either cloud, no lease, no active worker.

The copies are slowed by a bandwidth fault on the legacy image downloads, so that a kill lands
inside a transfer (the victim is chosen among the workers that hold a running image or volume
step, and killed half a second later).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import openstack
import pytest
from sqlalchemy import func, select

from migrator.operations.db import init_state
from migrator.operations.discover import discover
from migrator.operations.plan import make_plan
from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.server import CloudSpec, SimServer
from migrator.store.db import make_engine
from migrator.store.models import Event, Step, Worker
from tests.handlers.data_world import VOLUME_TYPES, migrated_images
from tests.plan.conftest import write_config
from tests.sim.conftest import Admin
from tests.timing import scaled

MiB = 1 << 20


def _held_transfers(url: str) -> dict[int, list[str]]:
    """Worker pid -> the image/volume steps it holds running right now."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Worker.pid, Step.key).join(Step, Step.lease_owner == Worker.name)
                .where(Worker.status == "active", Step.state == "running",
                       Step.kind.in_(["image", "volume"]))).all()
    finally:
        engine.dispose()
    held: dict[int, list[str]] = {}
    for pid, key in rows:
        held.setdefault(int(pid), []).append(str(key))
    return held


def _count(url: str, trigger: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Event)
                                    .where(Event.trigger == trigger)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.slow
def test_workers_killed_inside_transfers_leave_one_copy_of_everything(tmp_path: Path) -> None:
    seed = generate(SeedShape(tenants=2, images_per_tenant=2, volumes_per_tenant=2,
                              image_size=2 * MiB, volume_data_size=2 * MiB))
    (tmp_path / "seed.json").write_text(json.dumps(seed))
    sim = SimServer([CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")],
                    tmp_path / "sim", seed=tmp_path / "seed.json").start()
    try:
        config = openstack.config.loader.OpenStackConfig(
            config_files=[str(sim.clouds_yaml)], secure_files=[], load_envvars=False)
        target = openstack.connection.Connection(config=config.get_one(cloud="target"))
        net = target.network.create_network(name="public", is_router_external=True)
        target.network.create_subnet(network_id=net.id, ip_version=6,
                                     cidr="2001:db8:ffff::/64")
        url = f"sqlite:///{tmp_path / 'state.db'}"
        init_state(url)
        discover(url, "legacy", clouds_yaml=sim.clouds_yaml)
        plan = make_plan(url, config=write_config(tmp_path, **{
            "volume_types: {}": VOLUME_TYPES, "poll_interval: 2 ": "poll_interval: 0.05"}),
            clouds_yaml=sim.clouds_yaml, output=tmp_path / "plan.yaml")
        # Every image download (the volumes' too) at 1 MiB/s: a 2 MiB copy takes 2 s.
        Admin(sim, "legacy").add_fault(match="GET /image/v2/images/*/file",
                                       bandwidth=MiB)
        env = {**os.environ, "MIGRATOR_DB": url, "PYTHONUNBUFFERED": "1"}
        parent = subprocess.Popen(
            [sys.executable, "-m", "migrator", "execute", str(plan.path), "--processes", "3",
             "--workers", "2", "--parallel-transfers", "3", "--clouds-yaml",
             str(sim.clouds_yaml)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        killed: list[tuple[int, list[str]]] = []
        deadline = time.monotonic() + scaled(120)
        while len(killed) < 2:
            assert time.monotonic() < deadline, "no worker held a transfer to be killed in"
            assert parent.poll() is None, parent.communicate()
            held = _held_transfers(url)
            victims = [pid for pid in held if pid not in {p for p, _ in killed}]
            if victims:
                time.sleep(0.5)  # inside the copy, past its first checkpoint or not
                os.kill(victims[0], signal.SIGKILL)
                killed.append((victims[0], held[victims[0]]))
                time.sleep(1)
            time.sleep(0.05)
        out, err = parent.communicate(timeout=scaled(300))
        assert parent.returncode == 0, (out, err)
        assert "Run plan: finished" in out, out
        print(f"killed {killed}; takeovers: {_count(url, 'reclaim')}")
        assert _count(url, "reclaim") >= 2  # the killed workers' transfers were taken over

        legacy_images = {i["id"] for i in sim.cloud("legacy").state.values("images")
                         if not str(i.get("name", "")).startswith("migrator-tmp-")}
        per_source = Counter(
            tag for image in sim.cloud("target").state.values("images")
            for tag in image.get("tags") or [] if tag.startswith("migrator-src-"))
        assert max(per_source.values()) == 1, per_source
        assert set(migrated_images(sim)) == legacy_images
        for cloud in ("legacy", "target"):
            leftovers = [i["name"] for i in sim.cloud(cloud).state.values("images")
                         if str(i.get("name", "")).startswith("migrator-tmp-")]
            assert leftovers == [], (cloud, leftovers)
        legacy_volumes = {v["id"] for v in sim.cloud("legacy").state.values("volumes")}
        target_volumes = Counter(
            (v.get("metadata") or {}).get("migrator_source_id")
            for v in sim.cloud("target").state.values("volumes"))
        assert set(target_volumes) == legacy_volumes, target_volumes
        assert max(target_volumes.values()) == 1, target_volumes
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(Step)
                                    .where(Step.lease_owner.is_not(None))).scalar_one() == 0
                assert set(conn.execute(select(Step.state)).scalars()) == {"done"}
                assert conn.execute(select(func.count()).select_from(Worker)
                                    .where(Worker.status == "active")).scalar_one() == 0
        finally:
            engine.dispose()
    finally:
        sim.stop()
