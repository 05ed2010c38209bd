"""The phases of a volume copy, each ``phase(ctx, checkpoint) -> dict`` (what to merge into
the checkpoint). Order, resume rules and the runner: volume.py.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from migrator.transfer.errors import TransferError, TransferInterrupted
from migrator.transfer.glance_io import fresh_for_upload
from migrator.transfer.properties import CINDER_MANAGED, volume_image_metadata
from migrator.transfer.stream import copy_image_data
from migrator.transfer.volume_copy import (
    SOURCE_TAG_PREFIX,
    TEMP_TAG,
    TRANSIENT,
    USABLE,
    Checkpoint,
    PhaseRewind,
    VolumeCopy,
    flag,
    need,
    target_volumes,
    wait_for,
)

log = logging.getLogger(__name__)


# -- 1. upload_to_image ----------------------------------------------------------------------------
def upload_to_image(ctx: VolumeCopy, cp: Checkpoint) -> Checkpoint:
    """The legacy volume into a temporary image (``os-volume_upload_image``, raw POST);
    adopts the image of an interrupted run, and skips everything when a killed run already
    made the target volume."""
    if cp.get("target_volume_id"):
        return {}
    # A killed run may have made the target volume already (its checkpoint lost).
    for vol in target_volumes(ctx):
        if vol.get("status") in USABLE:
            log.info("%s: target volume %s exists already, adopted", ctx.what(), vol["id"])
            return {"target_volume_id": vol["id"]}
    source_vol = ctx.src.volume(ctx.volume_id)
    if source_vol is None:
        raise TransferError(f"{ctx.what()} does not exist any more", retryable=False)
    status = str(source_vol.get("status"))
    adopted = _adopt_source_temp(ctx, cp.get("source_temp_image_id"), status)
    if adopted:
        return {"source_temp_image_id": adopted}
    force = False
    if status == "in-use":
        if not ctx.options.allow_force_upload:
            raise TransferError(f"{ctx.what()} is in-use (attached): uploading it needs "
                                "force, which the configuration does not allow "
                                "(transfer.allow_force_upload); detach it or allow force",
                                retryable=False)
        force = True
    elif status in TRANSIENT:
        raise TransferError(f"{ctx.what()} is {status}: try again when it is available",
                            retryable=True)
    elif status != "available":
        raise TransferError(f"{ctx.what()} is {status}, it cannot be uploaded",
                            retryable=False)
    answer = ctx.src.volume_action(ctx.volume_id, "os-volume_upload_image", {
        "image_name": ctx.temp_name, "force": force,
        "disk_format": ctx.options.disk_format,
        "container_format": ctx.options.container_format}, ok=(202, 200))
    body = (answer or {}).get("os-volume_upload_image") if isinstance(answer, dict) else None
    image_id = body.get("image_id") if isinstance(body, dict) else None
    if not image_id:
        raise TransferError(f"upload of {ctx.what()} to an image: no image id in the answer",
                            retryable=True)
    log.info("%s: uploading to temporary image %s", ctx.what(), image_id)
    return {"source_temp_image_id": str(image_id)}


def _adopt_source_temp(ctx: VolumeCopy, known: str | None, volume_status: str) -> str | None:
    """A temporary legacy image worth keeping (active, saving, or queued while the volume
    is uploading into it); every other one of that name is deleted."""
    records = ctx.src.images_named(ctx.temp_name)
    if known and all(r.get("id") != known for r in records):
        rec = ctx.src.image(known)
        if rec is not None:
            records.append(rec)
    rank = {"active": 0, "saving": 1, "queued": 2}
    keep: dict[str, Any] | None = None
    for rec in sorted(records, key=lambda r: (rank.get(str(r.get("status")), 9),
                                              str(r.get("created_at")), str(r.get("id")))):
        status = str(rec.get("status"))
        alive = status in ("active", "saving") or (status == "queued"
                                                   and volume_status == "uploading")
        if keep is None and alive:
            keep = rec
        else:
            log.info("%s: deleting stale temporary image %s (%s)", ctx.what(), rec["id"],
                     status)
            ctx.src.delete_image(str(rec["id"]))
    return str(keep["id"]) if keep is not None else None


# -- 2. wait_temp_image_active ---------------------------------------------------------------------
def wait_temp_image_active(ctx: VolumeCopy, cp: Checkpoint) -> Checkpoint:
    if cp.get("target_volume_id"):
        return {}
    image_id = need(cp, "source_temp_image_id", "upload_to_image")
    what = f"temporary image {image_id} of {ctx.what()}"

    def probe() -> dict[str, Any] | None:
        rec = ctx.src.image(image_id)
        status = rec.get("status") if rec else "deleted"
        if rec is None or status in ("killed", "deleted", "pending_delete"):
            if rec is not None:
                ctx.src.delete_image(image_id)
            raise PhaseRewind(f"{what} is {status}: the upload failed, it is made again",
                              rewind_to="upload_to_image")
        return rec if status == "active" else None

    rec = wait_for(ctx, what, ctx.options.image_timeout, probe)
    return {"source_temp_image": {"size": rec.get("size"), "checksum": rec.get("checksum")}}


# -- 3. copy_temp_image ----------------------------------------------------------------------------
def copy_temp_image(ctx: VolumeCopy, cp: Checkpoint) -> Checkpoint:
    """The legacy temporary image's bytes into a target temporary image. A target image of
    an interrupted run is used again: active with the right size and checksum, adopted
    without a byte sent; queued, uploaded into; anything else deleted."""
    if cp.get("target_volume_id"):
        return {}
    source_id = need(cp, "source_temp_image_id", "upload_to_image")
    expected = cp.get("source_temp_image") or {}
    if not expected.get("checksum"):
        rec = ctx.src.image(source_id)
        if rec is None or rec.get("status") != "active":
            raise PhaseRewind(f"temporary image {source_id} of {ctx.what()} is gone",
                              rewind_to="upload_to_image")
        expected = {"size": rec.get("size"), "checksum": rec.get("checksum")}
    adopted, queued = _reusable_target_temp(ctx, cp.get("target_temp_image_id"), expected)
    if adopted is not None:
        log.info("%s: target temporary image %s is complete, not sent again", ctx.what(),
                 adopted["id"])
        return {"target_temp_image_id": adopted["id"],
                "copied": {"bytes": adopted.get("size"), "md5": adopted.get("checksum"),
                           "sha512": adopted.get("os_hash_value"), "seconds": 0.0}}
    if queued is None:
        queued = ctx.dst.create_image({
            "name": ctx.temp_name, "disk_format": ctx.options.disk_format,
            "container_format": ctx.options.container_format, "visibility": "private",
            "tags": [TEMP_TAG, f"{SOURCE_TAG_PREFIX}{ctx.volume_id}"]})
    target_id = str(queued["id"])
    try:
        result = copy_image_data(ctx.src.conn, source_id, ctx.dst.conn, target_id,
                                 expected_md5=expected.get("checksum"),
                                 expected_size=expected.get("size"),
                                 chunk_size=ctx.options.chunk_size, limiter=ctx.limiter,
                                 progress=ctx.progress, stop=ctx.stop,
                                 timeout=ctx.options.request_timeout)
    except TransferInterrupted:
        raise
    except TransferError:
        # An upload that did not complete may have left its bytes in the target's store
        # (real Glance then answers 500 to every later upload into that image): the retry
        # sends into a new temporary image.
        with suppress(TransferError):
            ctx.dst.delete_image(target_id)
        raise
    return {"target_temp_image_id": target_id,
            "copied": {"bytes": result.bytes, "md5": result.md5, "sha512": result.sha512,
                       "seconds": round(result.seconds, 3)}}


def _reusable_target_temp(ctx: VolumeCopy, known: str | None, expected: Mapping[str, Any]
                          ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(an active image holding the bytes, a queued image) among the target temporary images;
    the others are deleted."""
    records = ctx.dst.images_named(ctx.temp_name)
    if known and all(r.get("id") != known for r in records):
        rec = ctx.dst.image(known)
        if rec is not None:
            records.append(rec)
    complete: dict[str, Any] | None = None
    queued: dict[str, Any] | None = None
    for rec in sorted(records, key=lambda r: (str(r.get("created_at")), str(r.get("id")))):
        status = rec.get("status")
        if (complete is None and status == "active" and rec.get("size") == expected.get("size")
                and rec.get("checksum") == expected.get("checksum")):
            complete = rec
        elif queued is None and fresh_for_upload(rec):
            queued = rec
        else:
            log.info("%s: deleting target temporary image %s (%s)", ctx.what(), rec["id"],
                     status)
            ctx.dst.delete_image(str(rec["id"]))
    if complete is not None and queued is not None:
        ctx.dst.delete_image(str(queued["id"]))
        queued = None
    return complete, queued


# -- 4. create_target_volume -----------------------------------------------------------------------
def create_target_volume(ctx: VolumeCopy, cp: Checkpoint) -> Checkpoint:
    """The target volume from the target temporary image: mapped type, same size, name,
    description, metadata plus ``migrator_source_id``. A volume made by an interrupted run
    (found by that metadata key) is adopted; ones in error are deleted."""
    kept = _one_target_volume(ctx, cp.get("target_volume_id"))
    if kept is not None:
        return {"target_volume_id": kept["id"]}
    image_id = need(cp, "target_temp_image_id", "copy_temp_image")
    image = ctx.dst.image(image_id)
    if image is None or image.get("status") != "active":
        raise PhaseRewind(f"target temporary image {image_id} of {ctx.what()} is "
                          f"{image.get('status') if image else 'gone'}: it is copied again",
                          rewind_to="copy_temp_image")
    body: dict[str, Any] = {"size": ctx.size, "name": ctx.name,
                            "description": ctx.description, "imageRef": image_id,
                            "metadata": ctx.metadata}
    if ctx.volume_type:
        body["volume_type"] = ctx.volume_type
    created = ctx.dst.create_volume(body)
    log.info("%s: target volume %s created on cloud %s", ctx.what(), created["id"],
             ctx.dst.name)
    return {"target_volume_id": str(created["id"])}


DELETABLE = ("available", "error", "error_restoring", "error_extending", "error_managing")


def _one_target_volume(ctx: VolumeCopy, known: str | None) -> dict[str, Any] | None:
    """The target volume of this source to keep (available first, then the oldest usable);
    volumes in error, and duplicates a re-sent create may have made, are deleted."""
    found = target_volumes(ctx)
    if known and all(v.get("id") != known for v in found):
        rec = ctx.dst.volume(known)
        if rec is not None:
            found.append(rec)
    usable = sorted((v for v in found if v.get("status") in USABLE),
                    key=lambda v: (v.get("status") != "available", str(v.get("created_at")),
                                   str(v.get("id"))))
    keep = usable[0] if usable else None
    for vol in found:
        if vol is keep or vol.get("status") == "deleting":
            continue
        if vol.get("status") in DELETABLE:
            log.info("%s: deleting target volume %s (%s)", ctx.what(), vol["id"],
                     vol.get("status"))
            ctx.dst.delete_volume(str(vol["id"]))
        else:
            log.warning("%s: target volume %s is a duplicate but %s: left for now",
                        ctx.what(), vol["id"], vol.get("status"))
    return keep


# -- 5. wait_target_volume_available ---------------------------------------------------------------
def wait_target_volume_available(ctx: VolumeCopy, cp: Checkpoint) -> Checkpoint:
    volume_id = need(cp, "target_volume_id", "create_target_volume")
    what = f"target volume {volume_id} on cloud {ctx.dst.name} (from {ctx.what()})"

    def probe() -> dict[str, Any] | None:
        vol = ctx.dst.volume(volume_id)
        status = str(vol.get("status")) if vol else "gone"
        if vol is None or status.startswith("error") or status == "deleting":
            if vol is not None and status in DELETABLE:
                ctx.dst.delete_volume(volume_id)
            raise PhaseRewind(f"{what} is {status}: it is made again",
                              rewind_to="create_target_volume")
        return vol if status == "available" else None

    wait_for(ctx, what, ctx.options.volume_timeout, probe)
    return {}


# -- 6. set_volume_attributes ----------------------------------------------------------------------
def set_volume_attributes(ctx: VolumeCopy, cp: Checkpoint) -> Checkpoint:
    """Bootable flag, metadata and image metadata as on the source. A volume made from an
    image is bootable and carries the temporary image's metadata (image_id, image_name,
    checksum, formats, sizes: Cinder copies them, see docs/image-properties.md): they are
    set to the source's, with the properties translated, and the temporary image's extra
    keys are removed."""
    volume_id = need(cp, "target_volume_id", "create_target_volume")
    vol = ctx.dst.volume(volume_id)
    if vol is None:
        raise PhaseRewind(f"target volume {volume_id} of {ctx.what()} is gone",
                          rewind_to="create_target_volume")
    want_boot = flag(ctx.volume.get("bootable"))
    if flag(vol.get("bootable")) != want_boot:
        ctx.dst.volume_action(volume_id, "os-set_bootable", {"bootable": want_boot},
                              idempotent=True)
    meta = vol.get("metadata") or {}
    missing = {k: v for k, v in ctx.metadata.items() if meta.get(k) != v}
    if missing:
        ctx.dst.request("block_storage", "POST", f"volumes/{volume_id}/metadata",
                        f"setting metadata of volume {volume_id}", body={"metadata": missing},
                        idempotent=True)  # merges the keys: the same call twice is one
    desired = wanted_image_metadata(ctx)
    current = vol.get("volume_image_metadata") or {}
    changed = {k: v for k, v in desired.items() if current.get(k) != v}
    if changed:
        ctx.dst.volume_action(volume_id, "os-set_image_metadata", {"metadata": changed},
                              idempotent=True)
    for key in sorted(set(current) - set(desired) - _managed(desired)):
        ctx.dst.volume_action(volume_id, "os-unset_image_metadata", {"key": key},
                              missing_ok=True, idempotent=True)
    return {}


def _managed(desired: Mapping[str, str]) -> set[str]:
    """Keys Cinder sets itself (signature_verified) stay on a volume with image metadata; a
    volume whose source had none (a blank one) ends with none at all."""
    return set(CINDER_MANAGED) if desired else set()


def wanted_image_metadata(ctx: VolumeCopy) -> dict[str, str]:
    return volume_image_metadata(ctx.volume.get("volume_image_metadata") or {}, ctx.rules,
                                 ctx.image_ids)


# -- 7. cleanup_temp_images ------------------------------------------------------------------------
def cleanup_temp_images(ctx: VolumeCopy, cp: Checkpoint) -> Checkpoint:
    """Both temporary images deleted: the checkpoint's and any of that name (a killed run's).
    Idempotent; an image already gone is fine."""
    for api, known in ((ctx.src, cp.get("source_temp_image_id")),
                       (ctx.dst, cp.get("target_temp_image_id"))):
        ids = {str(r["id"]) for r in api.images_named(ctx.temp_name)}
        if known:
            ids.add(str(known))
        for image_id in sorted(ids):
            api.delete_image(image_id)
    return {"temp_images_deleted": True}


# -- 8. verify -------------------------------------------------------------------------------------
def verify(ctx: VolumeCopy, cp: Checkpoint) -> Checkpoint:
    """The target volume against the source: status, size, type, bootable, metadata, image
    metadata; exactly one target volume for the source, no temporary image left. Fixable
    differences rewind (attributes set again, images deleted again); the rest fails."""
    volume_id = need(cp, "target_volume_id", "create_target_volume")
    what = f"target volume {volume_id} on cloud {ctx.dst.name} (from {ctx.what()})"
    vol = ctx.dst.volume(volume_id)
    if vol is None:
        raise PhaseRewind(f"{what} is gone", rewind_to="create_target_volume")
    hard: list[str] = []
    if vol.get("status") != "available":
        hard.append(f"status {vol.get('status')}")
    if int(vol.get("size") or 0) != ctx.size:
        hard.append(f"size {vol.get('size')} GiB, the source has {ctx.size}")
    if ctx.volume_type and not _same_type(ctx, vol.get("volume_type")):
        hard.append(f"type {vol.get('volume_type')!r}, mapped type {ctx.volume_type!r}")
    others = [v["id"] for v in target_volumes(ctx)
              if v.get("id") != volume_id and v.get("status") != "deleting"]
    if others:
        hard.append(f"other target volumes carry the same source id: {', '.join(others)}")
    if hard:
        raise TransferError(f"verification of {what} failed: {'; '.join(hard)}",
                            retryable=False)
    soft = _attribute_differences(ctx, vol)
    if soft:
        raise PhaseRewind(f"verification of {what}: {'; '.join(soft)}",
                          rewind_to="set_volume_attributes")
    left = [f"{api.name}:{r['id']}" for api in (ctx.src, ctx.dst)
            for r in api.images_named(ctx.temp_name)]
    if left:
        raise PhaseRewind(f"verification of {what}: temporary images left ({', '.join(left)})",
                          rewind_to="cleanup_temp_images")
    return {"verified": True}


def _attribute_differences(ctx: VolumeCopy, vol: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    if flag(vol.get("bootable")) != flag(ctx.volume.get("bootable")):
        out.append(f"bootable {vol.get('bootable')}, the source {ctx.volume.get('bootable')}")
    meta = vol.get("metadata") or {}
    wrong = sorted(k for k, v in ctx.metadata.items() if meta.get(k) != v)
    if wrong:
        out.append(f"metadata differs in {', '.join(wrong)}")
    desired = wanted_image_metadata(ctx)
    current = {k: v for k, v in (vol.get("volume_image_metadata") or {}).items()
               if k not in _managed(desired)}
    if current != desired:
        keys = sorted(k for k in set(current) | set(desired) if current.get(k) != desired.get(k))
        out.append(f"image metadata differs in {', '.join(keys)}")
    return out


def _same_type(ctx: VolumeCopy, actual: Any) -> bool:
    if actual == ctx.volume_type:
        return True
    vtype = ctx.dst.volume_type(str(ctx.volume_type))  # the mapping may name the type by id
    return vtype is not None and actual in (vtype.get("name"), vtype.get("id"))
