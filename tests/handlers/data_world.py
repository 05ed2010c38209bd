"""A seeded Liberty cloud with images and volumes, an empty modern target, discovered once per
module into a state database that each test copies: the world of the image and volume tests
(tests/handlers/test_image.py, test_volume.py, tests/plan/test_images_volumes.py).

Two tenants from ``seed_gen`` (physics, chemistry: an AArch64 image with the legacy UEFI hack,
an x86 one shared with the other tenant, a volume made from an image and a blank one each),
plus two physics images seeded without upload: ``physics-empty`` (0 bytes) and
``physics-odd`` (1 MiB + 1 bytes, not a multiple of the chunk size).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openstack
import pytest
from sqlalchemy import select

from migrator.operations.db import init_state
from migrator.operations.discover import discover
from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.server import CloudSpec, SimServer
from migrator.store.db import make_engine
from migrator.store.models import Event, Step
from tests.plan.conftest import write_config
from tests.sim.conftest import Admin
from tests.sim.glance_seed import project_id, seed_image

MiB = 1 << 20
VOLUME_TYPES = "volume_types: {standard: __DEFAULT__, ssd: __DEFAULT__}"
FAST = "poll_interval: 2 "


@dataclass
class DataWorld:
    sim: SimServer
    db: Path
    legacy: openstack.connection.Connection
    target: openstack.connection.Connection

    def url(self, tmp_path: Path) -> str:
        copy = tmp_path / "state.db"
        shutil.copy(self.db, copy)
        return f"sqlite:///{copy}"

    def config(self, tmp_path: Path, **replace: str) -> Path:
        changes = {"volume_types: {}": VOLUME_TYPES, FAST: "poll_interval: 0.05",
                   **replace}
        return write_config(tmp_path, **changes)


def start_world(tmp: Path) -> DataWorld:
    seed = generate(SeedShape(tenants=2, image_size=4096, volume_data_size=2048))
    (tmp / "seed.json").write_text(json.dumps(seed))
    sim = SimServer([CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")],
                    tmp / "sim", seed=tmp / "seed.json").start()
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(sim.clouds_yaml)
    physics = project_id(sim, "legacy", "physics")
    seed_image(sim, "legacy", name="physics-empty", size=0, seed=11, owner=physics,
               disk_format="raw", container_format="bare")
    seed_image(sim, "legacy", name="physics-odd", size=MiB + 1, seed=12, owner=physics,
               disk_format="raw", container_format="bare")
    target = openstack.connect(cloud="target")
    net = target.network.create_network(name="public", is_router_external=True)
    target.network.create_subnet(network_id=net.id, ip_version=6, cidr="2001:db8:ffff::/64")
    db = tmp / "state.db"
    init_state(f"sqlite:///{db}")
    discover(f"sqlite:///{db}", "legacy", clouds_yaml=sim.clouds_yaml)
    return DataWorld(sim, db, openstack.connect(cloud="legacy"), target)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataWorld]:
    previous = os.environ.get("OS_CLIENT_CONFIG_FILE")
    w = start_world(tmp_path_factory.mktemp("data-world"))
    try:
        yield w
    finally:
        w.sim.stop()
        if previous is None:
            os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
        else:
            os.environ["OS_CLIENT_CONFIG_FILE"] = previous


@pytest.fixture
def faults(world: DataWorld) -> Iterator[dict[str, Admin]]:
    """The world's simulator admin endpoints; faults cleared after the test."""
    admins = {name: Admin(world.sim, name) for name in world.sim.clouds}
    yield admins
    for admin in admins.values():
        admin.clear_faults()


def raw_image(conn: openstack.connection.Connection, image_id: str) -> dict[str, Any]:
    return dict(conn.image.get(f"/images/{image_id}").json())


def migrated_images(sim: SimServer) -> dict[str, dict[str, Any]]:
    """Target images by the source id in their tag."""
    out = {}
    for image in sim.cloud("target").state.values("images"):
        for tag in image.get("tags") or []:
            if tag.startswith("migrator-src-"):
                out[tag[len("migrator-src-"):]] = image
    return out


def forget_target_images(sim: SimServer, keep: tuple[str, ...] = ()) -> None:
    """Delete the images on the target (the next run copies the bytes again), except those
    named in ``keep``."""
    state = sim.cloud("target").state

    def drop() -> None:
        for image in list(state.values("images")):
            if image.get("name") not in keep:
                state.delete("images", image["id"])

    sim.call(drop)


def step_events(url: str, trigger: str) -> list[tuple[str, dict[str, Any]]]:
    """(step key, detail) of the audit events with ``trigger``."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Step.key, Event.detail).join(
                Event, Event.step_id == Step.id).where(Event.trigger == trigger)
                .order_by(Event.id)).all()
    finally:
        engine.dispose()
    return [(str(key), dict(detail or {})) for key, detail in rows]
