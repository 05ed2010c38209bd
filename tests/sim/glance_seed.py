"""Put images straight into a simulated cloud's state (no upload), for the Glance tests."""

from __future__ import annotations

import hashlib
from typing import Any

from migrator.sim import images
from migrator.sim.content import content_chunks
from migrator.sim.server import SimServer
from migrator.sim.state import Record


def admin_project_id(sim: SimServer, cloud: str) -> str:
    project = sim.cloud(cloud).state.find_one("projects", name="admin")
    assert project is not None
    return str(project["id"])


def project_id(sim: SimServer, cloud: str, name: str) -> str:
    project = sim.cloud(cloud).state.find_one("projects", name=name)
    assert project is not None, name
    return str(project["id"])


def seed_image(sim: SimServer, cloud: str, *, name: str, size: int | None = None,
               seed: int = 7, owner: str | None = None, **fields: Any) -> Record:
    """A record made with ``images.new_image``; with ``size``, generated content made active
    with ``images.set_content`` (hashes computed by the cloud). Runs on the server loop."""
    sim_cloud = sim.cloud(cloud)
    owner_id = owner if owner is not None else admin_project_id(sim, cloud)

    def make() -> Record:
        record = images.new_image(sim_cloud, name=name, owner=owner_id, **fields)
        if size is not None:
            spec = {"kind": "generated", "seed": seed, "size": size}
            images.set_content(sim_cloud, record, spec, sim_cloud.digest(spec))
        return record

    return sim.call(make)  # type: ignore[no-any-return]


def generated_bytes(seed: int, size: int) -> bytes:
    return b"".join(content_chunks({"kind": "generated", "seed": seed, "size": size}))


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
