"""The Glance fields of a target image (its create body apart from the properties, which
transfer/properties.py translates): what the planner writes into an image step's attrs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _bool(value: Any) -> bool:
    if isinstance(value, str):  # Glance v1 headers: "True"/"False"
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def target_image_fields(source_image_raw: Mapping[str, Any], owner_target_project_id: str | None,
                        member_count: int) -> dict[str, Any]:
    """The Glance v2 create fields of the target image (no properties: see translate):
    name, formats, min disk/ram, protected, tags, owner and visibility. A private legacy image
    with members becomes ``shared`` (Liberty had no such visibility), public stays public,
    private stays private. Takes a v2 record or a v1 one (``is_public``)."""
    raw = source_image_raw
    visibility = raw.get("visibility")
    if visibility is None:
        visibility = "public" if _bool(raw.get("is_public")) else "private"
    visibility = str(visibility)
    if visibility == "private" and member_count > 0:
        visibility = "shared"
    fields: dict[str, Any] = {
        "name": raw.get("name"),
        "disk_format": raw.get("disk_format"),
        "container_format": raw.get("container_format"),
        "min_disk": _int(raw.get("min_disk")),
        "min_ram": _int(raw.get("min_ram")),
        "protected": _bool(raw.get("protected", False)),
        "visibility": visibility,
        "tags": sorted({str(t) for t in raw.get("tags") or []}),
    }
    if owner_target_project_id is not None:
        fields["owner"] = owner_target_project_id
    return fields
