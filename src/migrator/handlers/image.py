"""Handlers for Glance kinds: image and image_member.

- image: attrs = the Glance v2 create body (fields + translated properties, planned);
  refs {owner}; lookup {size, checksum} (the legacy bytes). Phases:

  * ``create``: the target image carrying the tag ``migrator-src-<source id>``: one found by
    that tag is adopted (an active one holding the right bytes, or a fresh queued one; any
    other is deleted), else a queued image is created with the planned fields. The id map is
    recorded.
  * ``upload``: the bytes streamed from the legacy cloud (``copy_image_data``: md5/sha512
    while streaming, the run's bandwidth cap, one of the run's transfer slots). An image
    already active with the legacy size and checksum is adopted, not sent again. Bytes are
    only ever sent into a fresh image: real Glance keeps the file of a refused upload in its
    store (the image stays ``queued`` but every later upload into it answers 500), so an
    image that is not ``queued``, holds data (a size or a checksum), or received an upload
    that did not complete (``upload_into`` in the checkpoint, written before the bytes go) is
    deleted and a new one created; the id map follows. A retryable TransferError fails the
    phase: the executor retries the step. A refusal of the bytes (HTTP 415, Glance's
    ``require_image_format_match``) is reported with its cause: the label sent and the
    format discovery read from the bytes.
  * verify: status active, size and md5 as on the legacy cloud, sha512 as sent (when the
    target has multihash), every planned field and property, the source tag.

- image_member: source id ``<image>:<member project>``; refs {image_id, member_id}. Phases
  ``add`` (the member, 409 = already there) and ``accept`` (status accepted, as the admin;
  a target that refuses leaves it pending, recorded). The target id is
  ``<target image>:<target project>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from migrator.engine.handlers import Handler, StepContext, StepInterrupted
from migrator.engine.steps import StepSnapshot
from migrator.errors import StepFailedError, TargetGoneError
from migrator.handlers import idmap
from migrator.handlers.base import resolve_attrs, same_value, source_id_of, spec_part, target_cloud
from migrator.handlers.data import data_services, run_again_on_transient, source_cloud
from migrator.transfer.errors import TransferError, TransferInterrupted
from migrator.transfer.glance_io import fresh_for_upload
from migrator.transfer.stream import copy_image_data
from migrator.transfer.volume_api import Api, as_connection

SOURCE_TAG_PREFIX = "migrator-src-"
# Fields of the create body the target echoes as they were sent.
FIELDS = ("name", "disk_format", "container_format", "min_disk", "min_ram", "protected",
          "visibility", "owner")


def source_tag(source_id: str) -> str:
    return f"{SOURCE_TAG_PREFIX}{source_id}"


def _expected(step: StepSnapshot) -> tuple[int | None, str | None]:
    lookup = spec_part(step, "lookup")
    size = lookup.get("size")
    checksum = lookup.get("checksum")
    return (int(size) if size is not None else None,
            str(checksum).lower() if checksum else None)


def holds_bytes(record: Mapping[str, Any], size: int | None, md5: str | None) -> bool:
    """An active image with the legacy size and md5 (nothing to send)."""
    return (record.get("status") == "active" and size is not None
            and record.get("size") == size and md5 is not None
            and str(record.get("checksum") or "").lower() == md5)


class ImageHandler(Handler):
    kind = "image"
    phases = ("create", "upload")

    def run_phase(self, ctx: StepContext, step: StepSnapshot, phase: str
                  ) -> Mapping[str, Any] | None:
        tc = target_cloud(ctx)
        api = Api(tc.handle)
        attrs = resolve_attrs(ctx, step)
        source_id = source_id_of(step)
        if phase == "create":
            # Looks the image up by its source tag first: safe to run again when the create
            # failed on the way. The upload is retried by the step (a fresh stream each time).
            record, adopted = run_again_on_transient(
                ctx, phase, lambda: self._find_or_create(ctx, api, step, source_id, attrs),
                tc.retry)
            out: dict[str, Any] = {"target_id": record["id"], "status": record.get("status")}
            if adopted:
                out["adopted"] = adopted
            return out
        return self._upload(ctx, api, step, source_id, attrs)

    # -- create ------------------------------------------------------------------------------
    def _find_or_create(self, ctx: StepContext, api: Api, step: StepSnapshot, source_id: str,
                        attrs: dict[str, Any]) -> tuple[dict[str, Any], str]:
        size, md5 = _expected(step)
        found = list(api.pages("image", "images", "images",
                               f"listing images tagged {source_tag(source_id)}",
                               {"tag": source_tag(source_id), "visibility": "all"}))
        # An image that received an upload that did not complete may hold its bytes in the
        # store although its record does not show them: never sent into again.
        tainted = str(step.checkpoint.get("upload_into") or "")
        keep: dict[str, Any] | None = None
        adopted = ""
        for rec in sorted(found, key=lambda r: (not holds_bytes(r, size, md5),
                                                r.get("status") != "queued",
                                                str(r.get("created_at")), str(r.get("id")))):
            usable = holds_bytes(rec, size, md5) or (fresh_for_upload(rec)
                                                     and rec.get("id") != tainted)
            if keep is None and usable:
                keep, adopted = rec, "complete" if rec.get("status") == "active" else "queued"
            else:
                ctx.log.info("step %s: deleting target image %s (%s)", step.key, rec["id"],
                             rec.get("status"))
                api.delete_image(str(rec["id"]))
        if keep is None:
            body = dict(attrs)
            body["tags"] = sorted({*(attrs.get("tags") or []), source_tag(source_id)})
            keep = api.create_image(body)
        else:
            keep = update_image(api, keep, attrs)
        # The record as the target answered (created, found or patched): the upload phase of
        # this execution starts from it instead of reading the image again.
        ctx.answers["image"] = keep
        idmap.record_target(ctx, source_id, str(keep["id"]))
        return keep, adopted

    # -- upload ------------------------------------------------------------------------------
    def _upload(self, ctx: StepContext, api: Api, step: StepSnapshot, source_id: str,
                attrs: dict[str, Any]) -> Mapping[str, Any]:
        size, md5 = _expected(step)
        record = None
        known = step.checkpoint.get("target_id")
        answered = ctx.answers.get("image")
        if known and answered is not None and str(answered.get("id")) == str(known):
            record = answered  # created or found by this execution's create phase
        elif known:
            record = api.image(str(known))
        tainted = step.checkpoint.get("upload_into")
        if record is not None and not holds_bytes(record, size, md5) and (
                not fresh_for_upload(record) or record.get("id") == tainted):
            ctx.log.info("step %s: target image %s is %s%s: deleted, the bytes go into a new "
                         "one", step.key, record["id"], record.get("status"),
                         " after an upload that did not complete"
                         if record.get("id") == tainted else " holding data")
            api.delete_image(str(record["id"]))
            record = None
        if record is None:
            record, _adopted = self._find_or_create(ctx, api, step, source_id, attrs)
        target_id = str(record["id"])
        if holds_bytes(record, size, md5):
            ctx.answers["image"] = record
            return {"target_id": target_id, "bytes": record.get("size"),
                    "sha512": record.get("os_hash_value"), "sent": False}
        # Written before the first byte goes: a crash or a refusal leaves the mark, and the
        # next attempt sends into a new image.
        ctx.checkpoint(step.phase or "create", {"target_id": target_id,
                                                "upload_into": target_id})
        services = data_services(ctx)
        stop = ctx.stop_event
        # A small image takes no slot: the source cannot send more than the planned bytes
        # (copy_image_data refuses a size that changed since the inventory).
        slot = services.needs_slot(step.planned_bytes)
        if slot and not services.slots.acquire(stop):
            raise StepInterrupted(step.key)
        ok = False
        progress = services.track(step.key, f"image {step.name or source_id}"
                                  + (f" ({step.tenant})" if step.tenant else ""), size)
        try:
            result = copy_image_data(
                as_connection(source_cloud(ctx)), source_id, as_connection(api.conn),
                target_id, expected_md5=md5, expected_size=size, limiter=services.limiter,
                progress=progress, stop=stop, timeout=services.options.request_timeout,
                chunk_size=services.options.chunk_size, record=record)
            ok = True
        except TransferInterrupted:
            raise StepInterrupted(step.key) from None
        except TransferError as exc:
            if exc.needs_new_image or exc.status_code in REFUSED_BYTES:
                ctx.log.info("step %s: target image %s is %s: deleted, the retry makes a new "
                             "one", step.key, target_id, exc.target_status)
                api.delete_image(target_id)
            if exc.status_code == 415:
                raise refused_bytes(step, attrs, exc) from exc
            raise
        finally:
            if slot:
                services.slots.release()
            services.done(step.key, ok)
        if result.record is not None:
            ctx.answers["image"] = result.record  # read after the upload: what verify checks
        return {"target_id": target_id, "upload_into": None, "bytes": result.bytes,
                "md5": result.md5, "sha512": result.sha512,
                "seconds": round(result.seconds, 3), "sent": True}

    # -- verify ------------------------------------------------------------------------------
    def verify(self, ctx: StepContext, step: StepSnapshot) -> None:
        target_id = step.checkpoint.get("target_id")
        if not target_id:
            raise StepFailedError(f"step {step.key!r} has no target image to verify")
        api = Api(target_cloud(ctx).handle)
        record = ctx.answers.get("image")
        if record is None or str(record.get("id")) != str(target_id) \
                or record.get("status") != "active":
            # Not read after this execution's upload (a resumed or reclaimed step): read it.
            record = api.image(str(target_id))
        if record is None:
            raise TargetGoneError(f"step {step.key!r}: target image {target_id} is gone")
        problems = image_differences(record, resolve_attrs(ctx, step), _expected(step),
                                     step.checkpoint.get("sha512"), source_id_of(step))
        if problems:
            raise StepFailedError(f"step {step.key!r}: target image {target_id} differs: "
                                  + "; ".join(problems))


PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
# Answers after which the target image keeps what it stored: a format refusal (415) and the
# 500 of an image that already holds a refused upload's file.
REFUSED_BYTES = frozenset({415, 500})


def refused_bytes(step: StepSnapshot, attrs: Mapping[str, Any], exc: TransferError
                  ) -> TransferError:
    """A 415 on the upload, with the cause migrator can know (Glance's page names none): the
    ``disk_format`` sent and the format discovery read from the bytes. Final: the same bytes
    under the same label are refused again."""
    lookup = spec_part(step, "lookup")
    label = attrs.get("disk_format")
    content = lookup.get("content_format")
    name = step.name or source_id_of(step)
    if content and content != label:
        cause = (f"its bytes are {content} (read at discovery) but the plan labels them "
                 f"{label}: plan again with image_formats: detect to correct the label")
    elif content:
        cause = (f"the bytes are {content} as labelled (read at discovery): the target's format "
                 "inspector does not recognise them (a fixed VHD reads as raw, a VHDX needs "
                 "its full 256 KiB header)")
    else:
        cause = (f"the plan labels the bytes {label} and their format was not read at "
                 "discovery: discover again (it reads each image's first bytes), then plan")
    error = TransferError(f"the target refused the bytes of image {name!r} (HTTP 415: Glance "
                          f"checks that they match disk_format, [image_format] "
                          f"require_image_format_match): {cause}", retryable=False,
                          status_code=415, target_status=exc.target_status)
    return error


def update_image(api: Api, record: dict[str, Any], attrs: Mapping[str, Any]
                 ) -> dict[str, Any]:
    """An adopted image's fields and properties brought to the plan's (one PATCH; extra
    properties it has are left)."""
    ops = []
    for key, want in sorted(attrs.items()):
        if key == "tags":
            continue
        have = record.get(key)
        same = same_value(want, have) if key in FIELDS else str(have) == str(want)
        if key not in record or not same:
            ops.append({"op": "replace" if key in record else "add", "path": f"/{key}",
                        "value": want})
    if not ops:
        return record
    updated = api.request("image", "PATCH", f"images/{record['id']}",
                          f"updating image {record['id']}", data=json.dumps(ops),
                          headers={"Content-Type": PATCH_TYPE}, ok=(200,))
    return updated if isinstance(updated, dict) else record


def image_differences(record: Mapping[str, Any], attrs: Mapping[str, Any],
                      expected: tuple[int | None, str | None], sha512: Any,
                      source_id: str) -> list[str]:
    size, md5 = expected
    out: list[str] = []
    if record.get("status") != "active":
        out.append(f"status {record.get('status')}, not active")
    if size is not None and record.get("size") != size:
        out.append(f"size {record.get('size')}, the legacy image has {size}")
    if md5 and str(record.get("checksum") or "").lower() != md5:
        out.append(f"md5 {record.get('checksum')}, the legacy checksum is {md5}")
    if sha512 and record.get("os_hash_algo") == "sha512" and record.get("os_hash_value") \
            and str(record["os_hash_value"]).lower() != str(sha512).lower():
        out.append("sha512 differs from the bytes sent")
    for key, want in attrs.items():
        if key == "tags":
            continue
        have = record.get(key)
        if key in FIELDS:
            if not same_value(want, have):
                out.append(f"{key}: wanted {want!r}, target has {have!r}")
        elif str(have) != str(want):
            out.append(f"property {key}: wanted {want!r}, target has {have!r}")
    if source_tag(source_id) not in (record.get("tags") or []):
        out.append(f"tag {source_tag(source_id)} missing")
    return out


class ImageMemberHandler(Handler):
    kind = "image_member"
    phases = ("add", "accept")

    def run_phase(self, ctx: StepContext, step: StepSnapshot, phase: str
                  ) -> Mapping[str, Any] | None:
        api = Api(target_cloud(ctx).handle)
        attrs = resolve_attrs(ctx, step)
        image_id, member_id = str(attrs["image_id"]), str(attrs["member_id"])
        path = f"images/{image_id}/members"
        if phase == "add":
            try:
                # 409 says "already a member": sending it twice is safe.
                api.request("image", "POST", path, f"adding member {member_id} to image "
                            f"{image_id}", body={"member": member_id}, ok=(200, 201),
                            idempotent=True)
            except TransferError as exc:
                if exc.status_code != 409:  # 409: already a member
                    raise
            target_id = f"{image_id}:{member_id}"
            idmap.record_target(ctx, source_id_of(step), target_id)
            return {"target_id": target_id}
        status = str(attrs.get("status") or "accepted")
        try:
            answer = api.request("image", "PUT", f"{path}/{member_id}", f"setting member "
                                 f"{member_id} of image {image_id} {status}",
                                 body={"status": status}, ok=(200,))
        except TransferError as exc:
            if exc.status_code not in (403, 404):
                raise
            ctx.log.warning("step %s: %s; the member stays pending until project %s accepts",
                            step.key, exc, member_id)
            return {"member_status": "pending", "accept_refused": str(exc)}
        if isinstance(answer, dict):
            ctx.answers["member"] = answer  # the member as Glance stored it
        return {"member_status": status}

    def verify(self, ctx: StepContext, step: StepSnapshot) -> None:
        api = Api(target_cloud(ctx).handle)
        attrs = resolve_attrs(ctx, step)
        image_id, member_id = str(attrs["image_id"]), str(attrs["member_id"])
        found = ctx.answers.get("member")
        if not isinstance(found, dict) or found.get("member_id") != member_id \
                or found.get("image_id") != image_id:
            found = api.request("image", "GET", f"images/{image_id}/members/{member_id}",
                                f"reading member {member_id} of image {image_id}",
                                missing_ok=True)
        if not isinstance(found, dict):
            raise TargetGoneError(f"step {step.key!r}: project {member_id} is not a member "
                                  f"of target image {image_id}")
        want = step.checkpoint.get("member_status") or "accepted"
        if found.get("status") != want:
            raise StepFailedError(f"step {step.key!r}: member {member_id} of image {image_id} "
                                  f"is {found.get('status')}, wanted {want}")
