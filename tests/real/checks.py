"""What arrived in real Glance and Cinder, read back with openstacksdk and compared with the
Liberty simulator as its admin reads it; the translation rules restated here (not imported
from the planner): AArch64 images gain ``hw_firmware_type=uefi`` (``hw_machine_type=virt``),
the legacy UEFI hack keys go, everything else is kept; a private image with members becomes
``shared``; every image and volume carries its source id (tag ``migrator-src-<id>``, volume
metadata ``migrator_source_id``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openstack

from migrator.clouds.target import source_tag

LEGACY_UEFI_KEYS = ("hw_boot_mode", "hw_loader_path")
CORE = ("name", "disk_format", "container_format", "min_disk", "min_ram", "protected")
# Glance's own fields and what the SDK or Glance add: not properties of the image.
NOT_PROPERTIES = {"id", "name", "status", "visibility", "protected", "owner", "disk_format",
                  "container_format", "min_disk", "min_ram", "tags", "os_hidden", "size",
                  "virtual_size", "checksum", "os_hash_algo", "os_hash_value", "direct_url",
                  "locations", "stores", "created_at", "updated_at", "self", "file", "schema",
                  "deleted", "deleted_at"}
CHUNK = 1 << 20


@dataclass(frozen=True)
class Digest:
    size: int
    md5: str
    sha512: str
    content_format: str = "raw"  # what the bytes are (content_format), whatever the label


HEAD = 64 * 1024  # ISO 9660's signature is at 32769


def content_format(head: bytes, tail: bytes) -> str:
    """The disk format the bytes really have, restated from their published signatures (the
    format Glance 33 checks an upload against): raw when none is found."""
    if head.startswith(b"QFI\xfb"):
        return "qcow2"
    if head.startswith(b"KDMV"):
        return "vmdk"
    if head.startswith(b"vhdxfile"):
        return "vhdx"
    if head[32769:32774] == b"CD001":
        return "iso"
    if tail[-512:].startswith(b"conectix"):
        return "vhd"
    return "raw"


def digest(chunks: Iterator[bytes]) -> Digest:
    md5 = hashlib.md5(usedforsecurity=False)
    sha512 = hashlib.sha512()
    size = 0
    head = b""
    tail = b""
    for chunk in chunks:
        md5.update(chunk)
        sha512.update(chunk)
        size += len(chunk)
        if len(head) < HEAD:
            head += chunk[:HEAD - len(head)]
        tail = (tail + chunk)[-512:]
    return Digest(size, md5.hexdigest(), sha512.hexdigest(), content_format(head, tail))


def image_chunks(conn: openstack.connection.Connection, image_id: str) -> Iterator[bytes]:
    """The image's bytes, streamed through the SDK's session (``GET /v2/images/<id>/file``)."""
    response = conn.image.get(f"/images/{image_id}/file", stream=True)
    assert response.status_code == 200, (image_id, response.status_code, response.text[:300])
    yield from response.iter_content(CHUNK)


def raw_image(conn: openstack.connection.Connection, image_id: str) -> dict[str, Any]:
    response = conn.image.get(f"/images/{image_id}")
    assert response.status_code == 200, (image_id, response.status_code)
    return dict(response.json())


def properties(raw: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in raw.items() if k not in NOT_PROPERTIES
            and not k.startswith(("owner_specified.", "os_glance"))}


def translated(props: dict[str, str]) -> dict[str, str]:
    """The default property rules, restated."""
    out = {k: v for k, v in props.items() if k not in LEGACY_UEFI_KEYS}
    if out.get("architecture") == "aarch64":
        out |= {"hw_firmware_type": "uefi", "hw_machine_type": "virt"}
    return out


def legacy_images(conn: openstack.connection.Connection, owners: set[str]
                  ) -> list[dict[str, Any]]:
    response = conn.image.get("/images", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return [i for i in response.json()["images"] if i.get("owner") in owners]


def target_image(conn: openstack.connection.Connection, source_id: str) -> dict[str, Any]:
    response = conn.image.get("/images", params={"tag": source_tag(source_id),
                                                  "visibility": "all"})
    assert response.status_code == 200, response.text
    found = response.json()["images"]
    assert len(found) == 1, f"image {source_id}: {len(found)} on the target"
    return dict(found[0])


def members(conn: openstack.connection.Connection, image_id: str) -> dict[str, str]:
    response = conn.image.get(f"/images/{image_id}/members")
    assert response.status_code == 200, response.text
    return {m["member_id"]: m["status"] for m in response.json()["members"]}


def assert_images_migrated(legacy: openstack.connection.Connection,
                           target: openstack.connection.Connection,
                           projects: dict[str, str]) -> dict[str, Digest]:
    """Every image of the legacy projects in ``projects`` (legacy id -> target id) on the
    target: once, active, its bytes (size, md5, sha512, and the download itself) those of the
    legacy image, its fields (``disk_format`` the format its bytes really have) and
    translated properties, owner and members mapped. Returns
    the digests by legacy image id."""
    seen: dict[str, Digest] = {}
    for li in legacy_images(legacy, set(projects)):
        source = digest(image_chunks(legacy, li["id"]))
        assert (source.size, source.md5) == (li["size"], li["checksum"]), li["name"]
        ti = target_image(target, li["id"])
        assert ti["status"] == "active", ti
        assert (ti["size"], ti["checksum"], ti["os_hash_algo"], ti["os_hash_value"]) == (
            source.size, source.md5, "sha512", source.sha512), ti["name"]
        assert digest(image_chunks(target, ti["id"])) == source, ti["name"]
        # The label follows the bytes (image_formats: detect, the default): a legacy image
        # labelled otherwise than its content arrives with its content's format.
        want_core = {k: li.get(k) for k in CORE} | {"disk_format": source.content_format}
        assert {k: ti.get(k) for k in CORE} == want_core, (ti["name"], li["disk_format"])
        assert ti["owner"] == projects[li["owner"]]
        # (Glance answers 403 to a member listing of a public image.)
        l_members = members(legacy, li["id"]) if li["visibility"] == "private" else {}
        visibility = "shared" if li["visibility"] == "private" and l_members else (
            li["visibility"])
        assert ti["visibility"] == visibility, (ti["name"], ti["visibility"], visibility)
        want = translated(properties(li))
        have = properties(raw_image(target, ti["id"]))
        assert have == want, (ti["name"], have, want)
        if visibility == "shared":
            # (Glance 33 answers 403 to a member listing of an image that is not shared.)
            assert members(target, ti["id"]) == {projects[m]: "accepted" for m in l_members}
        seen[li["id"]] = source
    return seen


# -- volumes ---------------------------------------------------------------------------------

def volumes_of(conn: openstack.connection.Connection, project_ids: set[str]
               ) -> list[dict[str, Any]]:
    response = conn.block_storage.get("/volumes/detail", params={"all_tenants": 1})
    assert response.status_code == 200, response.text
    return [v for v in response.json()["volumes"]
            if v.get("os-vol-tenant-attr:tenant_id") in project_ids]


def target_volume(conn: openstack.connection.Connection, source_id: str) -> dict[str, Any]:
    found = [v for v in volumes_of(conn, _all_projects(conn))
             if (v.get("metadata") or {}).get("migrator_source_id") == source_id]
    assert len(found) == 1, f"volume {source_id}: {len(found)} on the target"
    return found[0]


def _all_projects(conn: openstack.connection.Connection) -> set[str]:
    return {p["id"] for p in conn.identity.get("/projects").json()["projects"]}


def wait_for_image(conn: openstack.connection.Connection, image_id: str,
                   timeout: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        raw = raw_image(conn, image_id)
        if raw["status"] == "active":
            return raw
        assert raw["status"] in ("queued", "saving", "importing"), raw
        assert time.monotonic() < deadline, f"image {image_id} still {raw['status']}"
        time.sleep(0.5)


@contextmanager
def volume_image(conn: openstack.connection.Connection, volume: dict[str, Any],
                 name: str) -> Iterator[str]:
    """A volume's bytes as a raw image, made by the cloud itself (``os-volume_upload_image``);
    the image is deleted afterwards."""
    response = conn.block_storage.post(
        f"/volumes/{volume['id']}/action",
        json={"os-volume_upload_image": {"image_name": name, "force": True,
                                         "disk_format": "raw", "container_format": "bare"}})
    assert response.status_code == 202, response.text
    image_id = response.json()["os-volume_upload_image"]["image_id"]
    try:
        wait_for_image(conn, image_id)
        yield image_id
    finally:
        conn.image.delete(f"/images/{image_id}")


def assert_volume_bytes(chunks: Iterator[bytes], data: bytes, size: int, what: str) -> None:
    """``chunks`` are ``data`` followed by zeros up to ``size`` bytes: what a volume of that
    size made from ``data`` holds (compared as it streams: a volume is GiBs, mostly zeros)."""
    seen = 0
    for chunk in chunks:
        end = seen + len(chunk)
        head = data[seen:end]
        assert chunk[:len(head)] == head, f"{what}: bytes differ within [{seen}, {end})"
        assert not chunk[len(head):].strip(b"\0"), f"{what}: not zero within [{seen}, {end})"
        seen = end
    assert seen == size, f"{what}: {seen} bytes, the volume has {size}"


def padded(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """``chunks`` followed by zeros up to ``size`` bytes."""
    count = 0
    for chunk in chunks:
        count += len(chunk)
        yield chunk
    zeros = bytes(CHUNK)
    while count < size:
        piece = zeros[:min(CHUNK, size - count)]
        count += len(piece)
        yield piece


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


CINDER_IMAGE_CORE = ("image_id", "image_name", "checksum", "container_format", "disk_format",
                     "min_disk", "min_ram", "size")


def assert_volumes_migrated(legacy: openstack.connection.Connection,
                            target: openstack.connection.Connection,
                            projects: dict[str, str], volumes_dir: Path,
                            through_api: int = 1) -> int:
    """Every volume of the legacy projects on the target: once, available, in the mapped
    project, size, name, description, bootable flag, the target's default type, metadata
    (plus the source id), translated image metadata; and its bytes: the legacy volume's data
    (read through the simulator's os-volume_upload_image) followed by zeros up to the volume's
    size, read from the volume driver's file for every volume and, for the first
    ``through_api`` of them, through real Cinder's own os-volume_upload_image into real Glance
    (its size, md5 and sha512 as Glance computed them: a GiB moved, the slow part). Returns
    how many volumes were checked."""
    checked = 0
    for lv in sorted(volumes_of(legacy, set(projects)), key=lambda v: str(v["name"])):
        tv = target_volume(target, lv["id"])
        assert tv["status"] == "available", tv
        assert (tv["size"], tv["name"], tv["description"], tv["bootable"],
                tv["volume_type"], tv["os-vol-tenant-attr:tenant_id"]) == (
            lv["size"], lv["name"], lv["description"], lv["bootable"], "__DEFAULT__",
            projects[lv["os-vol-tenant-attr:tenant_id"]]), tv
        assert tv["metadata"] == {**lv["metadata"], "migrator_source_id": lv["id"]}
        l_image = lv.get("volume_image_metadata") or {}
        t_image = tv.get("volume_image_metadata") or {}
        assert translated({k: v for k, v in l_image.items() if k not in CINDER_IMAGE_CORE}
                          ) == {k: v for k, v in t_image.items() if k not in CINDER_IMAGE_CORE}
        assert {k: t_image.get(k) for k in ("image_name", "checksum")} == {
            k: l_image.get(k) for k in ("image_name", "checksum")}
        with volume_image(legacy, lv, f"check-{lv['id']}") as legacy_image:
            data = b"".join(image_chunks(legacy, legacy_image))
        size = lv["size"] << 30
        assert_volume_bytes(file_chunks(volumes_dir / f"volume-{tv['id']}"), data, size,
                            f"{lv['name']} (driver file)")
        if checked < through_api:
            # Real Cinder sends the volume to real Glance, which hashes what it received: no
            # need to download the GiB again.
            want = digest(padded(iter([data]), size))
            with volume_image(target, tv, f"check-{tv['id']}") as target_image:
                raw = raw_image(target, target_image)
                assert (raw["size"], raw["checksum"], raw["os_hash_algo"],
                        raw["os_hash_value"]) == (want.size, want.md5, "sha512",
                                                  want.sha512), f"{lv['name']} through Cinder"
        checked += 1
    return checked
