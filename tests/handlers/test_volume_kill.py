"""A volume killed (SIGKILL) inside each phase of its copy, then resumed: exactly one target
volume carries the source id, with the source's size, type and bootable flag; no temporary
``migrator-tmp-*`` image on either cloud; the id map has the volume.

For each phase P, ``migrator execute PLAN`` runs in a subprocess on a plan holding one tenant
with one volume (a volume made from an image for some phases, a blank one for the others). P is
stretched on the simulator (status delays, latency or bandwidth on a call only P makes) and the
process is killed once the state database shows the previous phase done (the step row's
``phase`` column: the last phase done) AND the simulator has counted P's stretched call: the
kill lands inside P, and the test records and asserts it. The run is then resumed in-process
with ``--resume`` semantics (execute_plan(resume=True)).

Where P is stretched by latency (upload_to_image, create_target_volume, set_volume_attributes,
cleanup_temp_images, verify), the kill cuts P's request off before the simulator carries it
out (it cancels a handler whose client is gone, sim/server.py ``handler_cancellation``): the
resumed run meets everything the earlier phases made and must not make it again (asserted:
no second os-volume_upload_image, no second volume create). Where P is a wait
(wait_temp_image_active, wait_target_volume_available) or a byte copy (copy_temp_image, a
half-uploaded target image left ``queued``), the kill lands in the middle of P's own work.
Not covered here: a kill after P's request was carried out but before its checkpoint was
written (a window of one SQLite commit); tests/transfer/test_volume.py simulates that lost
checkpoint after each phase. The test waits ``in_flight`` seconds after the kill so that
nothing the killed process started is still moving when the resumed run looks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import openstack
import pytest
from sqlalchemy import select

from migrator.operations.db import init_state
from migrator.operations.discover import discover
from migrator.operations.execute import ExecuteOptions, execute_plan
from migrator.operations.plan import make_plan
from migrator.sim.seed_gen import NAMES, SeedShape, generate
from migrator.sim.server import CloudSpec, SimServer
from migrator.store.db import make_engine
from migrator.store.models import IdMap, Step
from migrator.transfer.volume import PHASE_NAMES
from migrator.transfer.volume_copy import SOURCE_KEY
from tests.handlers.data_world import DataWorld
from tests.sim.conftest import Admin
from tests.timing import scaled

REPO = Path(__file__).resolve().parents[2]
DATA = 64 * 1024  # bytes of every image and volume: a copy of it at 16 KiB/s takes 4 s
LATENCY_MS = 1500


@dataclass(frozen=True)
class Stretch:
    """How phase ``phase`` is made long enough to be killed in, and the call that shows the
    process is inside it: ``marker`` (cloud, method, the end of the route template) is counted
    from the moment the database shows ``armed_after`` done (None: from the start), when no
    earlier phase nor other step makes that call any more."""

    phase: str
    kind: str  # "boot" (made from an image) or "data" (blank)
    marker: tuple[str, str, str]
    faults: tuple[tuple[str, dict[str, Any]], ...] = ()
    delays: tuple[tuple[str, str, float], ...] = ()
    armed_after: str | None = None
    in_flight: float = LATENCY_MS / 1000  # how long a killed request goes on in the simulator


def slow(cloud: str, match: str, **effect: Any) -> tuple[str, dict[str, Any]]:
    return cloud, {"match": match, **(effect or {"latency_ms": LATENCY_MS})}


STRETCHES = [
    # The legacy os-volume_upload_image answers late: killed while it waits.
    Stretch("upload_to_image", "boot",
            ("legacy", "POST", "/volumes/{volume_id}/action"),
            faults=(slow("legacy", "POST /volume/*/volumes/*/action"),)),
    # The legacy volume stays "uploading" (its temporary image "saving") for 3 s.
    Stretch("wait_temp_image_active", "data",
            ("legacy", "GET", "/images/{image_id}"),
            delays=(("legacy", "volume_upload", 3.0),), in_flight=3.0,
            armed_after="upload_to_image"),  # the tenant's image step reads images too
    # The target temporary image's bytes go up at 16 KiB/s: killed mid-upload.
    Stretch("copy_temp_image", "boot",
            ("target", "PUT", "/images/{image_id}/file"),
            faults=(slow("target", "PUT /image/v2/images/*/file", bandwidth=DATA // 4),),
            # The boot image's own copy (an earlier step) PUTs too: counted from the
            # volume's wait for its temporary image on.
            delays=(("legacy", "volume_upload", 0.5),), in_flight=0.5,
            armed_after="upload_to_image"),
    # The target's volume create answers late: killed while it waits.
    Stretch("create_target_volume", "data",
            ("target", "POST", "/volumes"),
            faults=(slow("target", "POST /volume/v3/*/volumes"),)),
    # The target volume stays "creating" for 3 s.
    Stretch("wait_target_volume_available", "boot",
            ("target", "GET", "/volumes/{volume_id}"),
            delays=(("target", "volume_create", 3.0),), in_flight=3.0,
            armed_after="create_target_volume"),
    # Bootable flag / image metadata actions answer late.
    Stretch("set_volume_attributes", "boot",
            ("target", "POST", "/volumes/{volume_id}/action"),
            faults=(slow("target", "POST /volume/v3/*/volumes/*/action"),)),
    # The deletion of the legacy temporary image answers late.
    Stretch("cleanup_temp_images", "data",
            ("legacy", "DELETE", "/images/{image_id}"),
            faults=(slow("legacy", "DELETE /image/v2/images/*"),)),
    # Listing the target volumes by source id is slow; upload_to_image and
    # create_target_volume list them too, verify is the only later phase that does.
    Stretch("verify", "data",
            ("target", "GET", "/volumes/detail"),
            faults=(slow("target", "GET /volume/v3/*/volumes/detail"),),
            delays=(("target", "volume_create", 1.0),),
            armed_after="create_target_volume"),
]
assert [s.phase for s in STRETCHES] == list(PHASE_NAMES)


# -- the world: one tenant per phase, each with one volume --------------------------------------

@dataclass
class KillWorld(DataWorld):
    tenants: dict[str, str] = field(default_factory=dict)  # phase -> tenant


def seed(phases: list[Stretch]) -> dict[str, Any]:
    data = generate(SeedShape(tenants=len(phases), images_per_tenant=1, volumes_per_tenant=2,
                              users_per_tenant=1, image_size=DATA, volume_data_size=DATA))
    tenants = [t for t in data["clouds"]["legacy"]["tenants"] if t["name"] in NAMES]
    assert len(tenants) == len(phases)
    for tenant, stretch in zip(tenants, phases, strict=True):
        tenant["volumes"] = [v for v in tenant["volumes"] if f"-{stretch.kind}-" in v["name"]]
        for group in tenant.get("security_groups") or []:
            # Each tenant's plan stands alone: no rule referring to another tenant's group.
            group["rules"] = [r for r in group["rules"] if "/" not in r.get("remote_group", "")]
    return data


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KillWorld]:
    tmp = tmp_path_factory.mktemp("kill-world")
    (tmp / "seed.json").write_text(json.dumps(seed(STRETCHES)))
    previous = os.environ.get("OS_CLIENT_CONFIG_FILE")
    sim = SimServer([CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")],
                    tmp / "sim", seed=tmp / "seed.json").start()
    try:
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(sim.clouds_yaml)
        target = openstack.connect(cloud="target")
        net = target.network.create_network(name="public", is_router_external=True)
        target.network.create_subnet(network_id=net.id, ip_version=6, cidr="2001:db8:ffff::/64")
        db = tmp / "state.db"
        init_state(f"sqlite:///{db}")
        discover(f"sqlite:///{db}", "legacy", clouds_yaml=sim.clouds_yaml)
        names = [t["name"] for t in seed(STRETCHES)["clouds"]["legacy"]["tenants"]
                 if t["name"] in NAMES]
        yield KillWorld(sim, db, openstack.connect(cloud="legacy"), target,
                        {s.phase: n for s, n in zip(STRETCHES, names, strict=True)})
    finally:
        sim.stop()
        if previous is None:
            os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
        else:
            os.environ["OS_CLIENT_CONFIG_FILE"] = previous


# -- helpers -------------------------------------------------------------------------------------

def set_delays(sim: SimServer, cloud: str, **delays: float) -> None:
    sim_cloud = sim.cloud(cloud)

    def apply() -> None:
        profile = sim_cloud.profile
        sim_cloud.profile = replace(profile, delays=replace(profile.delays, **delays))

    sim.call(apply)


def execute_process(url: str, plan: Path, clouds_yaml: Path) -> subprocess.Popen[str]:
    """``migrator execute PLAN`` in its own process (the console script's main)."""
    cmd = [sys.executable, "-c", "from migrator.cli.main import main; main()",
           "--db", url, "execute", str(plan), "--clouds-yaml", str(clouds_yaml),
           "--workers", "4"]
    return subprocess.Popen(cmd, cwd=plan.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def volume_row(url: str) -> tuple[str, str | None, dict[str, Any]] | None:
    """(state, phase, checkpoint) of the run's volume step, None before the run exists."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(Step.state, Step.phase, Step.checkpoint)
                               .where(Step.kind == "volume")).first()
    finally:
        engine.dispose()
    return None if row is None else (str(row[0]), row[1], dict(row[2] or {}))


def marker_calls(admin: Admin, method: str, route: str) -> int:
    return sum(n for key, n in admin.calls().items()
               if key.startswith(f"{method} ") and key.endswith(route))


def temp_images(sim: SimServer, cloud: str) -> list[str]:
    """Status of each ``migrator-tmp-*`` image on ``cloud``."""
    return [str(i.get("status")) for i in sim.cloud(cloud).state.values("images")
            if str(i.get("name") or "").startswith("migrator-tmp-")]


def target_volumes(sim: SimServer, source_id: str) -> list[dict[str, Any]]:
    return [v for v in sim.cloud("target").state.values("volumes")
            if (v.get("metadata") or {}).get(SOURCE_KEY) == source_id
            and v.get("status") != "deleting"]


def made_calls(admins: dict[str, Admin]) -> dict[str, int]:
    """os-volume_upload_image calls on the legacy cloud (the only legacy volume action
    migrator sends), volume creates on the target, since the test began."""
    return {"uploads": marker_calls(admins["legacy"], "POST", "/volumes/{volume_id}/action"),
            "creates": marker_calls(admins["target"], "POST", "/volumes")}


@dataclass
class Kill:
    phase_at_kill: str | None  # the step's phase column (the last phase done) after the kill
    state_at_kill: str
    marker_calls: int  # P's stretched call, counted since the marker was armed
    seconds: float


def kill_inside(stretch: Stretch, proc: subprocess.Popen[str], url: str,
                admins: dict[str, Admin], deadline: float) -> Kill:
    """Wait until the process is inside ``stretch.phase``; SIGKILL it there."""
    index = PHASE_NAMES.index(stretch.phase)
    previous = PHASE_NAMES[index - 1] if index else None
    cloud, method, route = stretch.marker
    # The marker calls counted before arming (the calls were reset at the start).
    baseline: int | None = 0 if stretch.armed_after is None else None
    began = time.monotonic()
    while True:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended before the kill inside {stretch.phase}: "
                        f"{out[-2000:]} {err[-3000:]}")
        assert time.monotonic() < deadline, f"never inside {stretch.phase}"
        row = volume_row(url)
        if row is not None and row[0] == "running":
            done = row[1]
            if baseline is None and done is not None and (
                    PHASE_NAMES.index(done) >= PHASE_NAMES.index(str(stretch.armed_after))):
                baseline = marker_calls(admins[cloud], method, route)
            if (baseline is not None and done == previous
                    and marker_calls(admins[cloud], method, route) > baseline):
                break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    seconds = time.monotonic() - began
    after = volume_row(url)
    assert after is not None and baseline is not None
    return Kill(after[1], after[0], marker_calls(admins[cloud], method, route) - baseline,
                seconds)


# -- the test ------------------------------------------------------------------------------------

@pytest.mark.parametrize("stretch", STRETCHES, ids=[s.phase for s in STRETCHES])
def test_volume_killed_inside_a_phase_then_resumed(world: KillWorld, tmp_path: Path,
                                                   stretch: Stretch) -> None:
    tenant = world.tenants[stretch.phase]
    url = world.url(tmp_path)
    config = world.config(tmp_path)
    plan = make_plan(url, config=config, tenants=[tenant], clouds_yaml=world.sim.clouds_yaml,
                     output=tmp_path / "plan.yaml")
    volumes = [s for s in plan.plan.steps if s.kind == "volume"]
    assert len(volumes) == 1 and f"-{stretch.kind}-" in str(volumes[0].name)
    step = volumes[0]
    admins = {name: Admin(world.sim, name) for name in world.sim.clouds}
    for admin in admins.values():
        admin.clear_faults()
        admin.reset_calls()
    for cloud, rule in stretch.faults:
        admins[cloud].add_fault(**rule)
    for cloud, key, seconds in stretch.delays:
        set_delays(world.sim, cloud, **{key: seconds})
    try:
        proc = execute_process(url, plan.path, world.sim.clouds_yaml)
        try:
            kill = kill_inside(stretch, proc, url, admins, time.monotonic() + scaled(40))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # Whatever the killed process started settles meanwhile.
        time.sleep(scaled(stretch.in_flight + 0.2))
    finally:
        for admin in admins.values():
            admin.clear_faults()
        for cloud, key, _ in stretch.delays:
            set_delays(world.sim, cloud, **{key: 0.0})
    index = PHASE_NAMES.index(stretch.phase)
    previous = PHASE_NAMES[index - 1] if index else None
    print(f"{stretch.phase}: killed after {kill.seconds:.2f} s with the step {kill.state_at_kill},"
          f" phase done {kill.phase_at_kill!r}, {kill.marker_calls} marker call(s)")
    # The kill landed inside the phase: the one before it done, its own call under way.
    assert kill.state_at_kill == "running"
    assert kill.phase_at_kill == previous
    assert kill.marker_calls >= 1

    # What the killed run asked for: P's stretched request was cut off with the connection
    # (the simulator cancels a handler whose client is gone), so it was not carried out.
    left = {"legacy_temp": temp_images(world.sim, "legacy"),
            "target_temp": temp_images(world.sim, "target"),
            "target_volumes": len(target_volumes(world.sim, str(step.source_id)))}
    print(f"{stretch.phase}: the killed run left {left}")
    before = made_calls(admins)
    resumed = execute_plan(url, plan.path,
        ExecuteOptions(resume=True, clouds_yaml=world.sim.clouds_yaml, handle_sigint=False,
                       backoff_base=0.01))
    assert resumed.run is not None and resumed.run.status == "finished", resumed.run
    row = volume_row(url)
    assert row is not None and row[0] == "done" and row[1] == "verify", row
    copy = row[2]["copy"]
    assert copy["verified"] is True and copy["temp_images_deleted"] is True

    legacy = world.sim.cloud("legacy").state
    made = target_volumes(world.sim, str(step.source_id))
    assert len(made) == 1, made
    source = legacy.get("volumes", step.source_id)
    assert source is not None
    vol = made[0]
    assert vol["status"] == "available" and vol["size"] == source["size"]
    assert vol["volume_type"] == "__DEFAULT__"  # standard and ssd both map to it
    assert str(vol["bootable"]).lower() == str(source["bootable"]).lower()
    assert str(source["bootable"]).lower() == ("true" if stretch.kind == "boot" else "false")
    assert (world.sim.cloud("target").digest(vol["_content"]).md5
            == world.sim.cloud("legacy").digest(source["_content"]).md5)
    assert temp_images(world.sim, "legacy") == temp_images(world.sim, "target") == []
    # Nothing made again: the resumed run uploads the legacy volume to an image only when
    # killed before that upload was done, and creates the target volume only when killed
    # before that create was done.
    after = made_calls(admins)
    resumed_calls = {k: after[k] - before[k] for k in after}
    assert resumed_calls == {
        "uploads": int(index <= PHASE_NAMES.index("upload_to_image")),
        "creates": int(index <= PHASE_NAMES.index("create_target_volume"))}, resumed_calls
    assert before["uploads"] <= 1 and before["creates"] <= 1, before
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            mapped = conn.execute(select(IdMap.target_id).where(
                IdMap.kind == "volume", IdMap.source_id == step.source_id)).scalars().all()
    finally:
        engine.dispose()
    assert mapped == [vol["id"]]
