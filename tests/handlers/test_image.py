"""Images through plan -> execute against the simulator (openstacksdk over HTTP, a real SQLite
state database): sizes 0 and 1 MiB + 1, properties translated by the default rules, a private
image with a member becoming shared with the member mapped and accepted, a corrupted download
and a dropped upload retried (and audited)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from migrator.operations.execute import ExecuteOptions, execute_plan
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
         kinds: list[str] | None = None, **replace: str) -> tuple[str, Plan]:
    url = world.url(tmp_path)
    config = world.config(tmp_path, **replace)
    planned = make_plan(url, config=config, tenants=tenants, clouds_yaml=world.sim.clouds_yaml,
                        output=tmp_path / "plan.yaml", kinds=kinds)
    done = execute_plan(url, planned.path,
        ExecuteOptions(clouds_yaml=world.sim.clouds_yaml, handle_sigint=False, backoff_base=0.05))
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
    # Images only (the volumes' temporary images are uploads too).
    forget_target_images(world.sim, keep=("physics-empty",))
    faults["target"].add_fault(match=FILE_PUT, drop_after_bytes=100, times=1)
    url, _plan = _run(world, tmp_path, ["physics"], ["image"], **{
        "members_outside: refuse": "members_outside: skip"})
    failures = [(key, d["error"]) for key, d in step_events(url, "fail")]
    assert len(failures) == 1 and failures[0][0].startswith("image:"), failures
    retried = [k for k, _ in step_events(url, "retry")]
    assert retried == [failures[0][0]]
    # The step whose upload broke sent the retry into a new image (real Glance may keep a
    # broken upload's bytes): the images it began sending into, from its checkpoints.
    key = failures[0][0]
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


def test_mislabelled_images_are_relabelled_or_refused_with_their_cause(
        world: DataWorld, tmp_path: Path) -> None:
    # The generated inventory's last two images are mislabelled: chemistry-x86-1 is labelled
    # qcow2 on raw bytes (modern Glance refuses it), chemistry-arm64-0 raw on qcow2 bytes
    # (Glance lets a raw label through, but the guest would see a qcow2 file as its disk).
    legacy = {i.name: i for i in world.legacy.image.images()}
    wrong_qcow2, wrong_raw = legacy["chemistry-x86-1"], legacy["chemistry-arm64-0"]
    assert (wrong_qcow2.disk_format, wrong_raw.disk_format) == ("qcow2", "raw")

    def run(name: str, policy: str) -> tuple[str, Plan, str | None]:
        forget_target_images(world.sim)
        out = tmp_path / name
        out.mkdir()
        url = world.url(out)
        planned = make_plan(url, config=world.config(out, **{
            "members_outside: refuse": "members_outside: skip",
            "image_formats: detect": f"image_formats: {policy}"}), tenants=["chemistry"],
            kinds=["image"], clouds_yaml=world.sim.clouds_yaml, output=out / "plan.yaml")
        done = execute_plan(url, planned.path, ExecuteOptions(
            clouds_yaml=world.sim.clouds_yaml, handle_sigint=False, backoff_base=0.05))
        assert done.run is not None
        return url, planned.plan, done.run.status

    url, plan, status = run("detect", "detect")
    assert status == "finished"
    assert (f"image chemistry-x86-1 ({wrong_qcow2.id}) of tenant chemistry is labelled qcow2 "
            "but its bytes are raw: disk_format raw on the target (image_formats: detect)"
            ) in plan.warnings
    assert any(w.startswith(f"image chemistry-arm64-0 ({wrong_raw.id}) of tenant chemistry is "
                            "labelled raw but its bytes are qcow2: disk_format qcow2")
               for w in plan.warnings)
    step = next(s for s in plan.steps if s.key == f"image:{wrong_qcow2.id}")
    assert step.spec["attrs"]["disk_format"] == "raw"
    assert step.spec["lookup"]["content_format"] == "raw"
    moved = migrated_images(world.sim)
    assert moved[wrong_qcow2.id]["disk_format"] == "raw"
    assert moved[wrong_raw.id]["disk_format"] == "qcow2"
    assert moved[wrong_qcow2.id]["checksum"] == wrong_qcow2.checksum
    # Trusting the labels: the target refuses the raw bytes labelled qcow2 at the first
    # attempt with the cause (not Glance's page), and no image holding them stays behind.
    url, plan, status = run("trust", "trust_legacy")
    assert any("label kept (image_formats: trust_legacy)" in w for w in plan.warnings)
    assert status == "failed"
    [(key, detail)] = step_events(url, "fail")
    assert key == f"image:{wrong_qcow2.id}" and detail["final"] and detail["attempt"] == 1
    assert detail["error"] == (
        "the target refused the bytes of image 'chemistry-x86-1' (HTTP 415: Glance checks "
        "that they match disk_format, [image_format] require_image_format_match): its bytes "
        "are raw (read at discovery) but the plan labels them qcow2: plan again with "
        "image_formats: detect to correct the label")
    left = [i for i in world.sim.cloud("target").state.values("images")
            if f"migrator-src-{wrong_qcow2.id}" in (i.get("tags") or [])]
    assert left == []
    assert migrated_images(world.sim)[wrong_raw.id]["disk_format"] == "raw"
