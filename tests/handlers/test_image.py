"""Images through plan -> execute against the simulator (openstacksdk over HTTP, a real SQLite
state database): sizes 0 and 1 MiB + 1, properties translated by the default rules, a private
image with a member becoming shared with the member mapped and accepted, a corrupted download
and a dropped upload retried (and audited)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from migrator.operations.execute import execute_plan
from migrator.operations.plan import make_plan
from migrator.plan.model import Plan
from migrator.store.db import make_engine
from migrator.store.models import IdMap
from tests.handlers.data_world import (
    DataWorld,
    MiB,
    faults,
    forget_target_images,
    migrated_images,
    raw_image,
    step_events,
    world,
)
from tests.sim.conftest import Admin

__all__ = ["faults", "world"]
FILE_GET = "GET /image/v2/images/*/file"
FILE_PUT = "PUT /image/v2/images/*/file"
IMAGE_DELETE = "DELETE /image/v2/images/{image_id}"


def _run(world: DataWorld, tmp_path: Path, tenants: list[str] | None = None,
         **replace: str) -> tuple[str, Plan]:
    url = world.url(tmp_path)
    config = world.config(tmp_path, **replace)
    planned = make_plan(url, config=config, tenants=tenants, clouds_yaml=world.sim.clouds_yaml,
                        output=tmp_path / "plan.yaml")
    done = execute_plan(url, planned.path, clouds_yaml=world.sim.clouds_yaml,
                        handle_sigint=False, backoff_base=0.05)
    assert done.run is not None and done.run.status == "finished", done.run
    return url, planned.plan


def test_images_move_with_translated_properties_and_members(world: DataWorld,
                                                            tmp_path: Path) -> None:
    _url, plan = _run(world, tmp_path)
    legacy = {i.name: i for i in world.legacy.image.images()}
    moved = migrated_images(world.sim)
    physics = world.target.identity.find_project("physics")
    chemistry = world.target.identity.find_project("chemistry")
    names = {"physics-empty": 0, "physics-odd": MiB + 1}
    for name, size in names.items():
        source = legacy[name]
        got = raw_image(world.target, moved[source.id]["id"])
        assert (got["status"], got["size"], got["checksum"]) == ("active", size,
                                                                  source.checksum)
        assert got["owner"] == physics.id
    arm = raw_image(world.legacy, legacy["physics-arm64-0"].id)
    assert arm["hw_boot_mode"] == "uefi" and "hw_firmware_type" not in arm
    got = raw_image(world.target, moved[arm["id"]]["id"])
    assert (got["architecture"], got["hw_firmware_type"], got["hw_machine_type"]) == (
        "aarch64", "uefi", "virt")
    assert "hw_boot_mode" not in got and "hw_loader_path" not in got
    assert got["checksum"] == arm["checksum"] and got["size"] == arm["size"]
    assert got["os_hash_algo"] == "sha512" and got["os_distro"] == "ubuntu"
    # The plan shows the properties before and the changes.
    step = next(s for s in plan.steps if s.key == f"image:{arm['id']}")
    assert step.spec["properties"]["before"]["hw_boot_mode"] == "uefi"
    assert any(c.startswith("hw_boot_mode: 'uefi' -> (dropped)")
               for c in step.spec["properties"]["changes"])
    # physics-x86-1 is private on Liberty with member chemistry: shared, member accepted.
    shared = raw_image(world.target, moved[legacy["physics-x86-1"].id]["id"])
    assert shared["visibility"] == "shared" and shared["owner"] == physics.id
    members = world.target.image.get(f"/images/{shared['id']}/members").json()["members"]
    assert [(m["member_id"], m["status"]) for m in members] == [(chemistry.id, "accepted")]
    # x86: nothing forced.
    x86 = raw_image(world.target, moved[legacy["chemistry-x86-1"].id]["id"])
    assert x86["architecture"] == "x86_64" and "hw_firmware_type" not in x86


def test_corrupted_download_is_sent_again(world: DataWorld, tmp_path: Path,
                                          faults: dict[str, Admin]) -> None:
    forget_target_images(world.sim)
    odd = next(i for i in world.legacy.image.images() if i.name == "physics-odd")
    faults["legacy"].add_fault(match=FILE_GET.replace("*", odd.id), corrupt_offset=MiB - 7,
                               times=1)
    url, _plan = _run(world, tmp_path, ["physics"], **{
        "members_outside: refuse": "members_outside: skip"})
    failures = [(key, d["error"]) for key, d in step_events(url, "fail")]
    assert len(failures) == 1, failures
    key, error = failures[0]
    assert "md5 mismatch" in error and key == f"image:{odd.id}", failures
    got = raw_image(world.target, migrated_images(world.sim)[odd.id]["id"])
    assert (got["size"], got["checksum"]) == (MiB + 1, odd.checksum)
    assert [k for k, _ in step_events(url, "complete")].count(key) == 1


def test_dropped_upload_is_retried(world: DataWorld, tmp_path: Path,
                                   faults: dict[str, Admin]) -> None:
    # The empty image stays: every other upload has bytes, and the first one is cut.
    forget_target_images(world.sim, keep=("physics-empty",))
    faults["target"].add_fault(match=FILE_PUT, drop_after_bytes=100, times=1)
    url, _plan = _run(world, tmp_path, ["physics"], **{
        "members_outside: refuse": "members_outside: skip"})
    failures = [(key, d["error"]) for key, d in step_events(url, "fail")]
    assert len(failures) == 1 and failures[0][0].startswith(("image:", "volume:")), failures
    retried = [k for k, _ in step_events(url, "retry")]
    assert retried == [failures[0][0]]
    # An image step whose upload broke sent the retry into a new image (real Glance may
    # keep a broken upload's bytes): the images it began sending into, from its checkpoints.
    key = failures[0][0]
    if key.startswith("image:"):
        into = [d["data"]["upload_into"] for k, d in step_events(url, "checkpoint")
                if k == key and d["data"].get("upload_into")]
        assert len(into) == 2 and into[0] != into[1], into
        assert world.sim.cloud("target").state.get("images", into[0]) is None
    for source_id, image in migrated_images(world.sim).items():
        legacy = raw_image(world.legacy, source_id)
        assert (image["status"], image["size"], image["checksum"]) == (
            "active", legacy["size"], legacy["checksum"])


def test_target_image_holding_a_refused_upload_is_replaced(world: DataWorld, tmp_path: Path
                                                           ) -> None:
    # A queued target image carrying the step's source tag but holding the bytes of a refused
    # upload (real Glance answers 500 to every later upload into it): not adopted, deleted,
    # and the bytes go into a new image, which the id map records.
    forget_target_images(world.sim)
    odd = next(i for i in world.legacy.image.images() if i.name == "physics-odd")
    poisoned = world.target.image.create_image("physics-odd", disk_format="qcow2",
                                               container_format="bare",
                                               tags=[f"migrator-src-{odd.id}"])
    refused = world.target.session.request(
        f"{world.sim.cloud('target').base_url}/image/v2/images/{poisoned.id}/file", "PUT",
        data=b"not qcow2", headers={"Content-Type": "application/octet-stream"},
        raise_exc=False)
    assert refused.status_code == 415
    assert raw_image(world.target, poisoned.id)["size"] == len(b"not qcow2")
    url, _plan = _run(world, tmp_path, ["physics"], **{
        "members_outside: refuse": "members_outside: skip"})
    got = migrated_images(world.sim)[odd.id]
    assert got["id"] != poisoned.id and got["status"] == "active"
    assert (got["size"], got["checksum"]) == (odd.size, odd.checksum)
    assert world.sim.cloud("target").state.get("images", poisoned.id) is None
    assert step_events(url, "fail") == []
    with make_engine(url).connect() as conn:
        mapped = conn.execute(select(IdMap.target_id).where(
            IdMap.kind == "image", IdMap.source_id == odd.id)).scalar_one()
    assert mapped == got["id"]
