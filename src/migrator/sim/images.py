"""Image records as the services share them (Glance serves them, Cinder makes and reads them).

An image record is stored in the ``images`` collection in one internal form:

    id, name, status (queued|saving|active|killed|deleted|pending_delete), visibility,
    protected, owner (project id), disk_format, container_format, min_disk, min_ram,
    size, virtual_size, checksum, os_hash_algo, os_hash_value, created_at, updated_at,
    tags (list), properties (dict of str -> str: every extra property, flat on the wire),
    _content (where the bytes are: {"kind": "generated", "seed", "size"[, "format"]} or
              {"kind": "file", "path"}; None until uploaded)
    _stored (modern Glance: the path of a refused upload's file, still in the store)

Members live in ``image_members`` keyed ``"<image_id>:<member_id>"``.
"""

from __future__ import annotations

from typing import Any

from migrator.sim.cloud import SimCloud
from migrator.sim.content import Digest
from migrator.sim.glance_access import members_of
from migrator.sim.state import Record, new_id, now_iso


def new_image(cloud: SimCloud, *, name: str | None, owner: str | None, **fields: Any) -> Record:
    """A queued image with no bytes yet, stored in the cloud's state."""
    stamp = now_iso()
    record: Record = {
        "id": fields.pop("id", None) or new_id(),
        "name": name,
        "status": "queued",
        "visibility": "private" if cloud.profile.name == "liberty" else "shared",
        "protected": False,
        "owner": owner,
        "disk_format": None,
        "container_format": None,
        "min_disk": 0,
        "min_ram": 0,
        "size": None,
        "virtual_size": None,
        "checksum": None,
        "os_hash_algo": None,
        "os_hash_value": None,
        "created_at": stamp,
        "updated_at": stamp,
        "tags": [],
        "properties": {},
        "_content": None,
    }
    props = fields.pop("properties", None) or {}
    record.update(fields)
    record["properties"] = {str(k): str(v) for k, v in props.items()}
    cloud.state.put("images", record)
    return record


def set_content(cloud: SimCloud, image: Record, spec: dict[str, Any], digest: Digest) -> None:
    """Attach bytes to an image and make it active, with the hashes the profile knows."""
    image["_content"] = spec
    image["size"] = digest.size
    image["checksum"] = digest.md5
    if cloud.profile.glance_multihash:
        image["os_hash_algo"] = "sha512"
        image["os_hash_value"] = digest.sha512
    image["status"] = "active"
    image["updated_at"] = now_iso()
    cloud.state.touch("images", image)


def delete_image(cloud: SimCloud, image: Record) -> None:
    # The image's own blob (uploaded, or left by a refused upload); seeded files elsewhere
    # are never touched.
    cloud.blob_path(image["id"]).unlink(missing_ok=True)
    cloud.state.delete("images", image["id"])
    for member in members_of(cloud, image["id"]):
        cloud.state.delete("image_members", member["id"])
