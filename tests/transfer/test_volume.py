"""The volume data path (transfer/volume.py) through openstacksdk connections against the
simulator, Liberty -> modern: a volume made from an image and a blank one end to end, resume
after every phase (checkpoint kept, and lost as after a SIGKILL), rewinds, force uploads,
error answers."""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any

import openstack
import pytest

from migrator.sim.profiles import Delays
from migrator.sim.server import SimServer
from migrator.sim.state import new_id, now_iso_micro
from migrator.transfer.errors import TransferError
from migrator.transfer.volume import (
    PHASE_NAMES,
    PhaseRewind,
    VolumeCopy,
    VolumeOptions,
    run_phase,
    run_volume_copy,
    temp_image_name,
)
from migrator.transfer.volume_copy import SOURCE_KEY, TEMP_TAG
from tests.sim.conftest import Admin
from tests.timing import scaled

Conn = openstack.connection.Connection
FAST = VolumeOptions(poll_interval=0.02, image_timeout=scaled(30), volume_timeout=scaled(30),
                     request_timeout=scaled(30))
ACTION = "POST /volume/v2/*/volumes/*/action"
TARGET_PUT = "PUT /image/v2/images/*/file"
_serial = itertools.count()


# -- helpers ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ssd(legacy: Conn, target: Conn) -> str:
    """A mapped volume type on the target (and room for this module's volumes)."""
    for conn in (legacy, target):
        resp = conn.block_storage.put(
            f"/os-quota-sets/{conn.current_project_id}",
            json={"quota_set": {"volumes": -1, "gigabytes": -1}})
        assert resp.status_code == 200, resp.text
    return str(target.block_storage.create_type(name="ssd-mapped").name)


def wait_status(conn: Conn, vid: str, status: str) -> Any:
    vol = conn.block_storage.get_volume(vid)
    return conn.block_storage.wait_for_status(vol, status, failures=["error"], interval=0.02,
                                              wait=scaled(30))


def raw_volume(conn: Conn, vid: str) -> dict[str, Any]:
    return dict(conn.block_storage.get(f"/volumes/{vid}").json()["volume"])


def volume_from_image(legacy: Conn, *, size: int = 5000) -> dict[str, Any]:
    """An AArch64 image with the legacy UEFI hack (a few KiB) and a volume made from it."""
    n = next(_serial)
    image = legacy.image.create_image(
        f"arm-{n}", data=os.urandom(size), disk_format="raw", container_format="bare",
        allow_duplicates=True, architecture="aarch64", hw_boot_mode="uefi",
        hw_loader_path="/usr/share/AAVMF/AAVMF_CODE.fd", os_distro="ubuntu")
    legacy.image.wait_for_status(legacy.image.get_image(image.id), "active", interval=0.02,
                                 wait=scaled(30))
    vol = legacy.block_storage.create_volume(size=1, name=f"boot-{n}", description="boot disk",
                                             image_id=image.id,
                                             metadata={"purpose": "boot", "n": str(n)})
    wait_status(legacy, vol.id, "available")
    return raw_volume(legacy, vol.id)


def blank_volume(sim: SimServer, legacy: Conn, *, data_size: int = 4096) -> dict[str, Any]:
    """A blank, non-bootable volume whose upload yields ``data_size`` bytes (put into the
    simulator's state: a blank volume made through the API uploads its whole GiB)."""
    vid = new_id()
    project = legacy.current_project_id
    stamp = now_iso_micro()
    n = next(_serial)
    record: dict[str, Any] = {"id": vid, "name": f"data-{n}", "description": None, "size": 2,
              "status": "available", "volume_type": None, "bootable": False,
              "metadata": {"role": "data"}, "volume_image_metadata": {},
              "project_id": project, "user_id": None, "availability_zone": "nova",
              "attachments": [], "source_volid": None, "snapshot_id": None,
              "encrypted": False, "multiattach": False, "created_at": stamp,
              "updated_at": stamp,
              "_content": {"kind": "generated", "seed": 1000 + n, "size": data_size}}
    sim.call(lambda: sim.cloud("legacy").state.put("volumes", record))
    return raw_volume(legacy, vid)


def copier(legacy: Any, target: Any, volume: dict[str, Any], vtype: str | None,
           **kwargs: Any) -> VolumeCopy:
    kwargs.setdefault("options", FAST)
    return VolumeCopy(legacy, target, volume, volume_type=vtype, **kwargs)


def temp_images(sim: SimServer, cloud: str, volume_id: str) -> list[dict[str, Any]]:
    name = temp_image_name(volume_id)
    return [i for i in sim.cloud(cloud).state.values("images") if i.get("name") == name]


def target_volumes(sim: SimServer, volume_id: str) -> list[dict[str, Any]]:
    return [v for v in sim.cloud("target").state.values("volumes")
            if (v.get("metadata") or {}).get(SOURCE_KEY) == volume_id]


def assert_migrated(sim: SimServer, target: Conn, source: dict[str, Any],
                    vtype: str) -> dict[str, Any]:
    """Exactly one target volume, right attributes, no temporary image on either side."""
    made = target_volumes(sim, source["id"])
    assert len(made) == 1, [(v["id"], v["status"]) for v in made]
    vol = raw_volume(target, made[0]["id"])
    assert vol["status"] == "available"
    assert vol["size"] == source["size"] and vol["volume_type"] == vtype
    assert vol["name"] == source["name"] and vol["description"] == source["description"]
    assert vol["bootable"] == source["bootable"]
    assert vol["metadata"] == {**source["metadata"], SOURCE_KEY: source["id"]}
    assert temp_images(sim, "legacy", source["id"]) == []
    assert temp_images(sim, "target", source["id"]) == []
    # The target volume holds the source's bytes.
    stored = sim.cloud("target").state.get("volumes", vol["id"])
    legacy_stored = sim.cloud("legacy").state.get("volumes", source["id"])
    assert stored is not None and legacy_stored is not None
    assert _digest(sim, "target", stored["_content"]) == _digest(sim, "legacy",
                                                                  legacy_stored["_content"])
    return vol


def _digest(sim: SimServer, cloud: str, spec: dict[str, Any]) -> str:
    return str(sim.cloud(cloud).digest(spec).md5)


# -- end to end ---------------------------------------------------------------------------------
def test_volume_from_an_image(sim: SimServer, legacy: Conn, target: Conn, ssd: str) -> None:
    source = volume_from_image(legacy)
    assert source["bootable"] == "true" and source["volume_image_metadata"]["hw_boot_mode"]
    saved: list[dict[str, Any]] = []
    seen: list[int] = []
    ctx = copier(legacy, target, source, ssd, progress=seen.append,
                 image_ids={source["volume_image_metadata"]["image_id"]: "target-image-id"})
    cp = run_volume_copy(ctx, {}, save=lambda c: saved.append(dict(c)))
    assert [c["phase"] for c in saved] == list(PHASE_NAMES)
    assert cp["verified"] is True and cp["copied"]["bytes"] == 5000 and seen[-1] == 5000
    vol = assert_migrated(sim, target, source, ssd)
    meta = vol["volume_image_metadata"]
    legacy_meta = source["volume_image_metadata"]
    # The source's image metadata, translated: UEFI for AArch64, hack keys gone, the image id
    # mapped, the temporary image's traces gone.
    assert meta["image_id"] == "target-image-id"
    assert meta["image_name"] == legacy_meta["image_name"]
    assert meta["checksum"] == legacy_meta["checksum"] and meta["size"] == "5000"
    assert meta["hw_firmware_type"] == "uefi" and meta["hw_machine_type"] == "virt"
    assert meta["architecture"] == "aarch64" and meta["os_distro"] == "ubuntu"
    assert "hw_boot_mode" not in meta and "hw_loader_path" not in meta
    assert not any(k.startswith("owner_specified") for k in meta)
    # Running again is a no-op.
    assert run_volume_copy(ctx, cp) == cp


class Handle:
    """A wrapper holding a connection, as clouds.connection.CloudHandle does."""

    def __init__(self, conn: Conn) -> None:
        self.connection = conn


def test_blank_volume(sim: SimServer, legacy: Conn, target: Conn, ssd: str) -> None:
    source = blank_volume(sim, legacy)
    cp = run_volume_copy(copier(Handle(legacy), Handle(target), source, ssd), {})
    assert cp["copied"]["bytes"] == 4096
    vol = assert_migrated(sim, target, source, ssd)
    # Made from the temporary image, the volume was bootable with that image's metadata.
    assert vol["bootable"] == "false" and not vol.get("volume_image_metadata")


# -- resume -------------------------------------------------------------------------------------
@pytest.mark.parametrize("keep_checkpoint", [True, False], ids=["checkpoint", "lost"])
@pytest.mark.parametrize("k", range(1, len(PHASE_NAMES)))
def test_resume_after_each_phase(sim: SimServer, legacy: Conn, target: Conn, ssd: str,
                                 admin_api: dict[str, Admin], k: int,
                                 keep_checkpoint: bool) -> None:
    source = volume_from_image(legacy, size=3000 + k)
    ctx = copier(legacy, target, source, ssd)
    cp: dict[str, Any] = {}
    for name in PHASE_NAMES[:k]:
        cp = run_phase(ctx, cp, name)
    admin_api["target"].reset_calls()
    admin_api["legacy"].reset_calls()
    final = run_volume_copy(copier(legacy, target, source, ssd), cp if keep_checkpoint else {})
    assert final["verified"] is True
    assert_migrated(sim, target, source, ssd)
    uploads = admin_api["legacy"].calls().get(
        "POST /volume/v2/{project_id}/volumes/{volume_id}/action", 0)
    sent = admin_api["target"].calls().get("PUT /image/v2/images/{image_id}/file", 0)
    # Once the legacy upload was asked for, it is not asked again; once the target temporary
    # image holds the bytes, they are not sent again.
    assert uploads == 0
    assert sent == (1 if k < 3 else 0)


def test_killed_legacy_image_rewinds_to_the_upload(sim: SimServer, legacy: Conn, target: Conn,
                                                   ssd: str) -> None:
    source = volume_from_image(legacy)
    ctx = copier(legacy, target, source, ssd)
    cp = run_phase(ctx, {}, "upload_to_image")
    # Liberty fails an upload asynchronously by deleting the image, and frees the volume.
    legacy.image.delete_image(cp["source_temp_image_id"])
    with pytest.raises(PhaseRewind) as info:
        run_phase(ctx, cp, "wait_temp_image_active")
    assert info.value.checkpoint == {}
    # The simulator frees the volume when its (asynchronous) writer ends: until then it is
    # "uploading", which upload_to_image refuses as a retryable error (the step's retry, or
    # the handler's, comes back later). Once it is free, the copy starts over from there.
    wait_status(legacy, source["id"], "available")
    saved: list[dict[str, Any]] = []
    final = run_volume_copy(ctx, cp, save=saved.append)
    assert saved[0] == {} and final["source_temp_image_id"] != cp["source_temp_image_id"]
    assert_migrated(sim, target, source, ssd)


def test_target_volume_in_error_is_made_again(sim: SimServer, legacy: Conn, target: Conn,
                                              ssd: str) -> None:
    source = volume_from_image(legacy)
    ctx = copier(legacy, target, source, ssd)
    cp: dict[str, Any] = {}
    for name in PHASE_NAMES[:4]:
        cp = run_phase(ctx, cp, name)
    first = cp["target_volume_id"]
    wait_status(target, first, "available")
    target.block_storage.post(f"/volumes/{first}/action",
                              json={"os-reset_status": {"status": "error"}})
    final = run_volume_copy(ctx, cp)
    assert final["target_volume_id"] != first
    assert_migrated(sim, target, source, ssd)


def test_broken_copy_sends_into_a_new_target_image(sim: SimServer, legacy: Conn,
                                                   target: Conn, ssd: str,
                                                   admin_api: dict[str, Admin]) -> None:
    # Real Glance may keep the bytes of an upload that did not complete in its store (then
    # every later upload into that image answers 500): the broken image is deleted and the
    # retry sends into a new one.
    source = volume_from_image(legacy, size=300_000)
    ctx = copier(legacy, target, source, ssd, options=VolumeOptions(
        poll_interval=0.02, image_timeout=scaled(30), volume_timeout=scaled(30),
        request_timeout=scaled(30),
        chunk_size=64 << 10))
    cp: dict[str, Any] = {}
    for name in PHASE_NAMES[:2]:
        cp = run_phase(ctx, cp, name)
    admin_api["target"].add_fault(match=TARGET_PUT, drop_after_bytes=100_000, times=1)
    with pytest.raises(TransferError) as info:
        run_phase(ctx, cp, "copy_temp_image")
    assert info.value.retryable
    assert temp_images(sim, "target", source["id"]) == []
    cp = run_phase(ctx, cp, "copy_temp_image")
    assert cp["copied"]["bytes"] == 300_000
    run_volume_copy(ctx, cp)
    assert_migrated(sim, target, source, ssd)


def test_queued_target_image_is_used_only_when_it_holds_nothing(
        sim: SimServer, legacy: Conn, target: Conn, ssd: str) -> None:
    # What a killed run leaves: one fresh queued temporary image (used again) and one that
    # kept a refused upload's bytes (deleted: every upload into it would answer 500).
    source = volume_from_image(legacy, size=200_000)
    ctx = copier(legacy, target, source, ssd)
    cp: dict[str, Any] = {}
    for name in PHASE_NAMES[:2]:
        cp = run_phase(ctx, cp, name)
    tags = [TEMP_TAG, f"migrator-src-{source['id']}"]
    poisoned = target.image.create_image(temp_image_name(source["id"]), disk_format="qcow2",
                                         container_format="bare", tags=tags)
    refused = target.session.request(
        f"{sim.cloud('target').base_url}/image/v2/images/{poisoned.id}/file", "PUT",
        data=b"raw bytes, not qcow2", raise_exc=False,
        headers={"Content-Type": "application/octet-stream"})
    assert refused.status_code == 415
    fresh = target.image.create_image(temp_image_name(source["id"]), disk_format="raw",
                                      container_format="bare", tags=tags,
                                      allow_duplicates=True)
    cp = run_phase(ctx, cp, "copy_temp_image")
    assert cp["target_temp_image_id"] == fresh.id
    assert [i["id"] for i in temp_images(sim, "target", source["id"])] == [fresh.id]
    run_volume_copy(ctx, cp)
    assert_migrated(sim, target, source, ssd)


# -- refusals and errors ------------------------------------------------------------------------
def test_in_use_volume_needs_force(sim: SimServer, legacy: Conn, target: Conn,
                                   ssd: str) -> None:
    source = volume_from_image(legacy)
    legacy.block_storage.attach_volume(legacy.block_storage.get_volume(source["id"]),
                                       "/dev/vdb", host_name="host-1")
    ctx = copier(legacy, target, source, ssd)
    with pytest.raises(TransferError, match=r"is in-use .*allow_force_upload") as info:
        run_volume_copy(ctx, {})
    assert not info.value.retryable and source["id"] in str(info.value)
    assert temp_images(sim, "legacy", source["id"]) == []
    forced = copier(legacy, target, source, ssd, options=VolumeOptions(
        allow_force_upload=True, poll_interval=0.02, image_timeout=scaled(30),
        volume_timeout=scaled(30)))
    run_volume_copy(forced, {})
    assert_migrated(sim, target, source, ssd)
    assert raw_volume(legacy, source["id"])["status"] == "in-use"


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (500, True)])
def test_liberty_upload_error_answer_raises(sim: SimServer, legacy: Conn, target: Conn,
                                            ssd: str, admin_api: dict[str, Admin],
                                            status: int, retryable: bool) -> None:
    source = blank_volume(sim, legacy)
    admin_api["legacy"].add_fault(match=ACTION, status=status, times=1)
    ctx = copier(legacy, target, source, ssd)
    with pytest.raises(TransferError, match=rf"os-volume_upload_image of volume "
                                            rf"{source['id']} on cloud legacy: HTTP {status}"
                       ) as info:
        run_phase(ctx, {}, "upload_to_image")
    assert info.value.retryable is retryable and info.value.status_code == status
    assert temp_images(sim, "legacy", source["id"]) == []
    run_volume_copy(ctx, {})
    assert_migrated(sim, target, source, ssd)


def test_missing_source_volume(legacy: Conn, target: Conn, ssd: str) -> None:
    ghost = {"id": new_id(), "size": 1, "name": "ghost", "metadata": {}, "bootable": "false"}
    with pytest.raises(TransferError, match="does not exist") as info:
        run_volume_copy(copier(legacy, target, ghost, ssd), {})
    assert not info.value.retryable


@pytest.fixture
def slow_clouds(sim: SimServer) -> Any:
    """Uploads and volume creations that take a while (statuses seen in transition)."""
    saved = {name: sim.cloud(name).profile for name in ("legacy", "target")}
    slow = Delays(volume_create=0.4, volume_upload=0.4)
    for name, profile in saved.items():
        sim.cloud(name).profile = dataclasses.replace(profile, delays=slow)
    yield
    for name, profile in saved.items():
        sim.cloud(name).profile = profile


@pytest.mark.usefixtures("slow_clouds")
def test_lost_checkpoint_while_work_is_in_progress(sim: SimServer, legacy: Conn,
                                                   target: Conn, ssd: str,
                                                   admin_api: dict[str, Admin]) -> None:
    source = volume_from_image(legacy)
    ctx = copier(legacy, target, source, ssd)
    cp = run_phase(ctx, {}, "upload_to_image")
    [image] = temp_images(sim, "legacy", source["id"])
    assert image["status"] == "queued"  # Cinder has not started writing it yet
    assert raw_volume(legacy, source["id"])["status"] == "uploading"
    admin_api["legacy"].reset_calls()
    cp = run_phase(ctx, {}, "upload_to_image")  # the checkpoint was lost: adopted, not redone
    assert cp["source_temp_image_id"] == image["id"]
    assert not admin_api["legacy"].calls().get(
        "POST /volume/v2/{project_id}/volumes/{volume_id}/action")
    for name in PHASE_NAMES[1:4]:
        cp = run_phase(ctx, cp, name)
    assert raw_volume(target, cp["target_volume_id"])["status"] in ("creating", "downloading")
    final = run_volume_copy(ctx, {})  # lost again, with the target volume still in progress
    assert final["target_volume_id"] == cp["target_volume_id"]
    assert_migrated(sim, target, source, ssd)


def test_stale_temporary_images_are_not_adopted(sim: SimServer, legacy: Conn, target: Conn,
                                                ssd: str) -> None:
    source = volume_from_image(legacy)
    name = temp_image_name(source["id"])
    # A queued legacy image while the volume is not uploading (a failed, half-cleaned
    # upload) and an active target image with other bytes.
    stale = legacy.image.create_image(name, disk_format="raw", container_format="bare",
                                      allow_duplicates=True)
    wrong = target.image.create_image(name, data=b"not these bytes", disk_format="raw",
                                      container_format="bare", allow_duplicates=True)
    cp = run_volume_copy(copier(legacy, target, source, ssd), {})
    assert cp["source_temp_image_id"] != stale.id and cp["target_temp_image_id"] != wrong.id
    assert cp["copied"]["bytes"] == 5000
    assert_migrated(sim, target, source, ssd)


def test_calls_per_volume(sim: SimServer, legacy: Conn, target: Conn, ssd: str,
                          admin_api: dict[str, Admin]) -> None:
    """A bounded number of API calls per volume (waits excluded: zero delays here)."""
    source = volume_from_image(legacy)
    for admin in admin_api.values():
        admin.reset_calls()
    run_volume_copy(copier(legacy, target, source, ssd), {})
    legacy_calls = sum(admin_api["legacy"].calls().values())
    target_calls = sum(admin_api["target"].calls().values())
    # measured: legacy 8, target 18 (tokens already issued)
    assert legacy_calls <= 10 and target_calls <= 22
