"""Glance and Cinder kinds: image, image_member, volume.

- image: after its owner's project, and nothing else (Glance's quotas are not migrated: the
  compute, volume and network quotas do not bound it). ``spec.attrs`` is the Glance v2
  create body: ``target_image_fields`` (name, formats, min disk/ram, protected, visibility:
  private with members -> shared, tags) plus the properties translated by
  ``image_properties`` (config); ``refs.owner`` is the owner's project. ``spec.properties``
  shows the properties before and the changes made (readable in the plan file);
  ``spec.lookup`` holds the legacy size and md5 the bytes are checked against, the format
  discovery read from the bytes (``content_format``) and the legacy label. A label that
  contradicts the bytes is a warning naming the image; ``image_formats: detect`` gives the
  target image the format of its bytes, ``trust_legacy`` keeps the label. Images that
  are not ``active`` and migrator's own temporary images are not planned.
- image_member (source id ``<image id>:<member project id>``): after the image and the
  member's project, in the later of their waves; the member is added and accepted on the
  target. A member tenant that is not selected: pulled in with --include-dependencies,
  skipped with ``selection.members_outside: skip`` (a warning), refused otherwise.
- volume: after its project, the project's volume quota and, for a volume made from an image
  migrated in the same plan, that image's step (``refs["image_ids.<legacy id>"]``: the
  target volume's image metadata names the migrated image). The legacy volume type is
  mapped (``mappings.volume_types``, else a target type of the same name); no mapping is a
  plan error naming the volume and the type. The image metadata's properties are
  translated with the image rules.
"""

from __future__ import annotations

from typing import Any

from migrator.clouds.image_formats import FIXED_VHD, FORMAT_KEY, NOTE_KEY
from migrator.disk_formats import INSPECTABLE, label_mismatch
from migrator.plan.context import PlanState
from migrator.plan.image_fields import target_image_fields
from migrator.spec import Lookup
from migrator.store.inventory import Item
from migrator.transfer.properties import (
    CINDER_IMAGE_CORE,
    describe_change,
    image_properties,
    translate,
    volume_image_metadata,
)

TEMP_PREFIX = "migrator-tmp-"
DISCOVERED = frozenset({"members", FORMAT_KEY, NOTE_KEY})


def plan(state: PlanState) -> None:
    images = _images(state) if state.kinds.wants("image") else set()
    if state.kinds.wants("volume"):
        _volumes(state, images)


def _quotas(state: PlanState, tenant: str, services: tuple[str, ...]) -> list[str]:
    return [k for k in (state.key_if("quota", f"{s}:{tenant}") for s in services) if k]


def _images(state: PlanState) -> set[str]:
    planned: set[str] = set()
    for iid, item, tenant, project_key in state.owned("image"):
        attrs = item.attributes
        name = item.name or iid
        if name.startswith(TEMP_PREFIX):
            continue
        if attrs.get("status") != "active":
            state.warnings.append(f"image {name} ({iid}) of tenant "
                                  f"{state.inventory.tenant_name(tenant)} is "
                                  f"{attrs.get('status')}, not active: not migrated")
            continue
        members = _members(state, item) if state.kinds.wants("image_member") else []
        fields = target_image_fields(attrs, None, len(members))
        fields["disk_format"] = _disk_format(state, item)
        # discovery's additions to the raw record, not properties
        before = image_properties({k: v for k, v in attrs.items() if k not in DISCOVERED})
        after, changes = translate(before, state.config.image_rules)
        body = {**after, **fields}
        lookup: Lookup = {
            "size": item.size_bytes if item.size_bytes is not None else attrs.get("size"),
            "checksum": attrs.get("checksum"), "content_format": attrs.get(FORMAT_KEY),
            "legacy_disk_format": attrs.get("disk_format")}
        key = state.add("image", iid, tenant_id=tenant, name=name, attrs=body,
                        refs={"owner": project_key}, lookup=lookup)
        state.steps[key].spec["properties"] = {
            "before": before, "changes": [describe_change(c) for c in changes]}
        planned.add(iid)
        for member in members:
            _member_step(state, item, key, member)
    return planned


def _disk_format(state: PlanState, item: Item) -> Any:
    """The target image's ``disk_format``: the legacy label, or the format of its bytes when
    they contradict it and ``image_formats`` is ``detect``. Every contradiction, and every
    image whose bytes discovery could not read, is a warning naming the image."""
    attrs = item.attributes
    label = attrs.get("disk_format")
    container = attrs.get("container_format")
    what = (f"image {item.name or item.source_id} ({item.source_id}) of tenant "
            f"{state.inventory.tenant_name(item.tenant)}")
    checked = container in (None, "", "bare") and label in INSPECTABLE
    if FORMAT_KEY not in attrs:
        if checked:
            state.warnings.append(f"{what}: its bytes were not read at discovery (an older "
                                  f"snapshot): label {label} kept; discover again to check it")
        return label
    content, note = attrs.get(FORMAT_KEY), attrs.get(NOTE_KEY)
    if content is None:
        state.warnings.append(f"{what}: {note or 'its bytes could not be read'}: label "
                              f"{label} kept unchecked")
        return label
    if not label_mismatch(label, container, content):
        if note == FIXED_VHD and label == "vhd":
            state.warnings.append(f"{what} is {note}; a target checking formats refuses it "
                                  "as vhd")
        return label
    if state.config.image_formats == "detect":
        state.warnings.append(f"{what} is labelled {label} but its bytes are {content}: "
                              f"disk_format {content} on the target (image_formats: detect)")
        return content
    state.warnings.append(f"{what} is labelled {label} but its bytes are {content}: label "
                          "kept (image_formats: trust_legacy); a target that checks formats "
                          "(Glance's require_image_format_match) refuses it")
    return label


def _members(state: PlanState, image: Item) -> list[str]:
    """The member project ids to migrate (others recorded as errors or warnings)."""
    out: list[str] = []
    for member in image.attributes.get("members") or []:
        pid = str(member.get("member_id") or "")
        if not pid or pid == image.tenant:
            continue
        if pid in state.tenants:
            out.append(pid)
            continue
        project = state.inventory.get("project", pid)
        what = f"image {image.name or image.source_id} ({image.source_id})"
        if project is None:
            state.warnings.append(f"{what} of tenant {state.inventory.tenant_name(image.tenant)}"
                                  f" has member {pid}, which is not in the inventory: the "
                                  "member is not added on the target")
        elif state.config.selection.members_outside == "skip" and not \
                state.include_dependencies:
            state.warnings.append(f"{what} of tenant {state.inventory.tenant_name(image.tenant)}"
                                  f" is shared with tenant {project.name or pid}, which is not "
                                  "selected: that member is skipped (selection.members_outside)")
        else:
            state.not_selected(what, image.tenant, "project", project)
    return out


def _member_step(state: PlanState, image: Item, image_key: str, member: str) -> None:
    member_key = state.key_if("project", member)
    if member_key is None:
        return
    key = state.add("image_member", f"{image.source_id}:{member}", tenant_id=image.tenant,
                    name=f"{image.name or image.source_id} -> "
                         f"{state.inventory.tenant_name(member)}",
                    attrs={"status": "accepted"},
                    refs={"image_id": image_key, "member_id": member_key})
    step = state.steps[key]
    step.wave = max(step.wave, state.tenants.get(member, step.wave))


def _volume_type(state: PlanState, item: Item) -> tuple[str | None, bool]:
    """(the target volume type, ok); None: the target's default type."""
    legacy = item.attributes.get("volume_type")
    if not legacy or legacy == "None":
        return None, True
    legacy = str(legacy)
    maps = state.config.mappings.volume_types
    resolved = state.resolved["volume_types"]
    if legacy in maps:
        target = maps[legacy]
        if state.names.checked:
            types = _target_types(state)
            if target not in types and target not in types.values():
                state.error(f"mappings.volume_types: legacy volume type {legacy} maps to "
                            f"{target!r}, which does not exist on the target")
                return None, False
        resolved[legacy] = {"target": target}
        return target, True
    if state.names.checked and legacy in _target_types(state):
        resolved[legacy] = {"target": legacy, "id": _target_types(state)[legacy]}
        return legacy, True
    where = ("and the target has no type of that name" if state.names.checked
             else "(the target was not read: --offline)")
    state.error(f"volume {item.name or item.source_id} ({item.source_id}) of tenant "
                f"{state.inventory.tenant_name(item.tenant)} has volume type {legacy!r}, "
                f"which has no mapping in mappings.volume_types {where}")
    return None, False


def _target_types(state: PlanState) -> dict[str, str]:
    cache: dict[str, str] | None = state.__dict__.get("_target_volume_types")
    if cache is None:
        names: Any = state.names
        cache = dict(names.volume_types()) if hasattr(names, "volume_types") else {}
        state.__dict__["_target_volume_types"] = cache
    return cache


def _volumes(state: PlanState, images: set[str]) -> None:
    for vid, item, tenant, project_key in state.owned("volume"):
        attrs = item.attributes
        vtype, ok = _volume_type(state, item)
        if not ok:
            continue
        source_vim = dict(attrs.get("volume_image_metadata") or {})
        target: dict[str, Any] = {
            "name": attrs.get("name", attrs.get("display_name")),
            "description": attrs.get("description", attrs.get("display_description")),
            "size": attrs.get("size"),
            "bootable": str(attrs.get("bootable")).lower() == "true",
            "metadata": dict(attrs.get("metadata") or {}),
            "volume_type": vtype,
            "volume_image_metadata": volume_image_metadata(source_vim,
                                                           state.config.image_rules),
        }
        refs: dict[str, Any] = {"project_id": project_key}
        image_id = source_vim.get("image_id")
        if image_id and str(image_id) in images:
            refs[f"image_ids.{image_id}"] = f"image:{image_id}"
        after = _quotas(state, tenant, ("volume",))
        lookup: Lookup = {"source_volume_type": attrs.get("volume_type"),
                          "source_status": attrs.get("status")}
        key = state.add("volume", vid, tenant_id=tenant, name=item.name or vid, attrs=target,
                        refs=refs, lookup=lookup, after=after)
        if source_vim:
            custom = {k: v for k, v in image_properties(source_vim).items()
                      if k not in CINDER_IMAGE_CORE}
            _after, changes = translate(custom, state.config.image_rules)
            state.steps[key].spec["properties"] = {
                "before": {str(k): str(v) for k, v in sorted(source_vim.items())},
                "changes": [describe_change(c) for c in changes]}
