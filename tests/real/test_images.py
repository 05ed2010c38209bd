"""Images into real Glance 33: two Liberty tenants' images (simulated: an AArch64 one with the
legacy UEFI hack keys, an x86 one shared with the other tenant through a member) discovered,
planned and executed through the CLI, then read back from real Glance with openstacksdk:
bytes (downloaded and hashed), size, md5 ``checksum``, sha512 ``os_hash_value``, fields,
translated properties, owner, visibility and accepted members (tests/real/checks.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator.sim.seed_gen import SeedShape
from tests.real.checks import assert_images_migrated
from tests.real.services import RealServices
from tests.real.world import RealWorld, start_world, tenant_seed

pytestmark = [pytest.mark.real, pytest.mark.timeout(900)]

MiB = 1 << 20
SHAPE = SeedShape(tenants=2, images_per_tenant=2, volumes_per_tenant=0, users_per_tenant=1,
                  image_size=MiB + 7, own_credentials=0)


@pytest.fixture
def world(tmp_path: Path, real_services: RealServices) -> Iterator[RealWorld]:
    w = start_world(tmp_path / "world", real_services, tenant_seed(SHAPE))
    try:
        yield w
    finally:
        w.stop()


def test_images_arrive_in_real_glance(world: RealWorld) -> None:
    plan = world.discover_and_plan("images")
    began = time.monotonic()
    result = world.cli("execute", str(plan))
    elapsed = time.monotonic() - began
    assert result.exit_code == 0, result.output
    assert "Run images: finished" in result.stdout
    digests = assert_images_migrated(world.legacy, world.target, world.projects())
    assert len(digests) == 4
    print(f"4 images executed in {elapsed:.1f} s, read back from real Glance")


@pytest.fixture
def qcow2_world(tmp_path: Path, real_services: RealServices) -> Iterator[RealWorld]:
    w = start_world(tmp_path / "world", real_services, tenant_seed(SHAPE, disk_format=None))
    try:
        yield w
    finally:
        w.stop()


def test_qcow2_labelled_images_arrive_in_real_glance(qcow2_world: RealWorld) -> None:
    plan = qcow2_world.discover_and_plan("qcow2")
    result = qcow2_world.cli("execute", str(plan))
    assert result.exit_code == 0, result.output
    digests = assert_images_migrated(qcow2_world.legacy, qcow2_world.target,
                                     qcow2_world.projects())
    assert len(digests) == 4
