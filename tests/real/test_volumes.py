"""Volumes into real Cinder 29: a Liberty tenant's volumes (simulated: one made from an image,
one holding data) moved the migrator way (``os-volume_upload_image`` on the source, the
temporary image copied into real Glance, a volume made from it by real Cinder, the temporary
images deleted), then read back from real Cinder with openstacksdk: size, type, bootable flag,
metadata, translated image metadata, and the bytes: the legacy data followed by zeros, read
from the volume driver's files and, for one volume, through real Cinder's own
``os-volume_upload_image`` and real Glance (tests/real/checks.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator.sim.seed_gen import SeedShape
from tests.real.checks import assert_images_migrated, assert_volumes_migrated
from tests.real.services import RealServices
from tests.real.world import RealWorld, start_world, tenant_seed

pytestmark = [pytest.mark.real, pytest.mark.timeout(900)]

MiB = 1 << 20
SHAPE = SeedShape(tenants=1, images_per_tenant=1, volumes_per_tenant=2, users_per_tenant=1,
                  image_size=MiB + 7, volume_data_size=2 * MiB + 3, own_credentials=0)


@pytest.fixture
def world(tmp_path: Path, real_services: RealServices) -> Iterator[RealWorld]:
    w = start_world(tmp_path / "world", real_services, tenant_seed(SHAPE))
    try:
        yield w
    finally:
        w.stop()


def test_volumes_arrive_in_real_cinder(world: RealWorld) -> None:
    plan = world.discover_and_plan("volumes")
    began = time.monotonic()
    result = world.cli("execute", str(plan))
    elapsed = time.monotonic() - began
    assert result.exit_code == 0, result.output
    assert "Run volumes: finished" in result.stdout
    projects = world.projects()
    assert len(assert_images_migrated(world.legacy, world.target, projects)) == 1
    assert assert_volumes_migrated(world.legacy, world.target, projects,
                                   world.services.volumes_dir) == 2
    assert world.temporary_images() == {"legacy": [], "target": []}
    print(f"1 image and 2 volumes executed in {elapsed:.1f} s, read back from real Cinder")
