"""Crashes against real services: ``migrator execute`` killed (SIGKILL) in the middle of an image
upload into real Glance and in the middle of a volume's copy, then ``--resume``; and a state
database lost after a finished run, then the same plan executed with a new one. Each time,
everything read back from the real services (tests/real/checks.py): one image or volume per
source id, its bytes right, no temporary image left, nothing created twice.

The kills land where they are meant to: the Liberty simulator serves image bytes slowly (a
bandwidth fault on its ``GET .../file``), and the process is killed once real Glance shows the
target image ``saving`` (the upload has begun).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrator.clouds.target import source_tag
from migrator.sim.seed_gen import SeedShape
from tests.e2e_support import id_map_rows, run_steps
from tests.real.checks import assert_images_migrated, assert_volumes_migrated
from tests.real.services import RealServices
from tests.real.world import RealWorld, kill, start_world, tenant_seed
from tests.sim.conftest import Admin

pytestmark = [pytest.mark.real, pytest.mark.timeout(900)]

MiB = 1 << 20
BIG = 16 * MiB  # at 2 MiB/s: eight seconds of upload to kill in
SLOW_READS = {"match": "GET /image/v2/images/*/file", "bandwidth": 2 * MiB}


def one_tenant(*, image_size: int, volume_data_size: int, volumes: bool) -> dict[str, Any]:
    seed = tenant_seed(SeedShape(tenants=1, images_per_tenant=1,
                                 volumes_per_tenant=2 if volumes else 0, users_per_tenant=1,
                                 image_size=image_size, volume_data_size=volume_data_size,
                                 own_credentials=0))
    for tenant in seed["clouds"]["legacy"]["tenants"]:
        # The data volume only: the copy to kill is the volume's own, not its image's.
        tenant["volumes"] = [v for v in tenant.get("volumes") or [] if "-data-" in v["name"]]
    return seed


@pytest.fixture
def image_world(tmp_path: Path, real_services: RealServices) -> Iterator[RealWorld]:
    w = start_world(tmp_path / "world", real_services,
                    one_tenant(image_size=BIG + 5, volume_data_size=0, volumes=False))
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture
def volume_world(tmp_path: Path, real_services: RealServices) -> Iterator[RealWorld]:
    w = start_world(tmp_path / "world", real_services,
                    one_tenant(image_size=MiB, volume_data_size=BIG + 3, volumes=True))
    try:
        yield w
    finally:
        w.stop()


def target_images(world: RealWorld, **params: Any) -> list[dict[str, Any]]:
    response = world.target.image.get("/images", params={"visibility": "all", **params})
    assert response.status_code == 200, response.text
    images: list[dict[str, Any]] = response.json()["images"]
    return images


def kill_when(world: RealWorld, plan: Path, saving: Any, what: str) -> list[dict[str, Any]]:
    """Executes the plan in a process and SIGKILLs it once ``saving()`` lists a target image
    in ``saving``; returns those images (as they were just before the kill)."""
    proc = world.execute_process(plan)
    deadline = time.monotonic() + 180
    try:
        while True:
            found = [i for i in saving() if i["status"] == "saving"]
            if found:
                return found
            assert proc.poll() is None, ("finished before the kill", proc.communicate())
            assert time.monotonic() < deadline, f"no {what} upload began"
            time.sleep(0.1)
    finally:
        kill(proc)


def resume(world: RealWorld, plan: Path, run: str) -> None:
    Admin(world.sim, world.legacy_cloud).clear_faults()
    result = world.cli("execute", str(plan), "--resume")
    assert result.exit_code == 0, result.output
    assert f"Run {run}: finished" in result.stdout


def test_sigkill_in_an_image_upload_then_resume(image_world: RealWorld) -> None:
    world = image_world
    plan = world.discover_and_plan("killed-image")
    Admin(world.sim, world.legacy_cloud).add_fault(**SLOW_READS)
    [legacy_image] = world.legacy.image.get("/images").json()["images"]
    killed = kill_when(world, plan, lambda: target_images(
        world, tag=source_tag(legacy_image["id"])), "image")
    time.sleep(2)  # what real Glance does with the cut upload, once it noticed
    after = {i["id"]: i["status"] for i in target_images(
        world, tag=source_tag(legacy_image["id"]))}
    resume(world, plan, "killed-image")
    assert_images_migrated(world.legacy, world.target, world.projects())
    print(f"killed in upload: {[(i['id'], i['status'], i.get('size')) for i in killed]}; "
          f"after the kill: {after}")


def test_sigkill_in_a_volume_copy_then_resume(volume_world: RealWorld) -> None:
    world = volume_world
    plan = world.discover_and_plan("killed-volume")
    Admin(world.sim, world.legacy_cloud).add_fault(**SLOW_READS)
    # The temporary image of the volume (the tenant's own image is 1 MiB: it goes first).
    killed = kill_when(world, plan, lambda: [
        i for i in target_images(world) if str(i["name"]).startswith("migrator-tmp")],
        "temporary image")
    _, steps = run_steps(world.db_url, "killed-volume")
    [volume] = [s for s in steps.values() if s.kind == "volume"]
    resume(world, plan, "killed-volume")
    projects = world.projects()
    assert assert_volumes_migrated(world.legacy, world.target, projects,
                                   world.services.volumes_dir, through_api=0) == 1
    assert world.temporary_images() == {"legacy": [], "target": []}
    print(f"killed in phase after {volume.phase!r}, temporary image "
          f"{[(i['name'], i['status']) for i in killed]}")


def test_lost_state_database_then_the_same_plan_adopts_everything(
        tmp_path: Path, real_services: RealServices) -> None:
    seed = tenant_seed(SeedShape(tenants=2, images_per_tenant=1, volumes_per_tenant=2,
                                 users_per_tenant=1, image_size=MiB + 1,
                                 volume_data_size=MiB + 3, own_credentials=0))
    world = start_world(tmp_path / "world", real_services, seed)
    try:
        plan = world.discover_and_plan("lost")
        result = world.cli("execute", str(plan))
        assert result.exit_code == 0, result.output
        first_run, first_steps = run_steps(world.db_url, "lost")
        first = id_map_rows(world.db_url, first_run)
        # The state database is gone: a new one, the same source read again, the same plan.
        world.db_url = f"sqlite:///{world.root / 'new-state.db'}"
        assert world.cli("init", "--config", str(world.config)).exit_code == 0
        result = world.cli("discover", "--config", str(world.config))
        assert result.exit_code == 0, result.output
        result = world.cli("execute", str(plan))
        assert result.exit_code == 0, result.output
        assert "Run lost: finished" in result.stdout
        second_run, second_steps = run_steps(world.db_url, "lost")
        # Every resource found on the target by its source id: the same target ids.
        assert id_map_rows(world.db_url, second_run) == first
        assert set(second_steps) == set(first_steps)
        projects = world.projects()
        assert len(projects) == 2
        assert len(assert_images_migrated(world.legacy, world.target, projects)) == 2
        assert assert_volumes_migrated(world.legacy, world.target, projects,
                                       world.services.volumes_dir, through_api=0) == 4
        assert world.temporary_images() == {"legacy": [], "target": []}
    finally:
        world.stop()
