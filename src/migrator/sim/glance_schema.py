"""Glance v2 image validation, as Glance's image JSON schema and request deserializer apply
it (glance/api/v2/images.py, liberty 11.0.2 and master): which attributes are core,
read-only or reserved, the type checks of create and update (400), the JSON-patch
documents PATCH accepts, and the schema documents served under /v2/schemas.
"""

from __future__ import annotations

import json
import re
from typing import Any

from migrator.sim.glance_access import GlanceRules
from migrator.sim.http import SimHTTPError

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# Attributes every v2 image carries besides its extra properties.
CORE = ("id", "name", "status", "visibility", "protected", "owner", "disk_format",
        "container_format", "min_disk", "min_ram", "size", "virtual_size", "checksum",
        "created_at", "updated_at", "tags")
MODERN_CORE = ("os_hidden", "os_hash_algo", "os_hash_value")
DISALLOWED = ("direct_url", "self", "file", "schema")
READONLY = ("created_at", "updated_at", "status", "checksum", "size", "virtual_size",
            "direct_url", "self", "file", "schema", "id")
MODERN_READONLY = ("os_hash_algo", "os_hash_value")
RESERVED = ("location", "deleted", "deleted_at")
# Liberty's create checks only its ImageFactory's list ('owner' was no base property there,
# and 'location' passes as an ordinary extra property).
LIBERTY_RESERVED_EXTRA = ("owner", "locations", "deleted", "deleted_at", "direct_url", "self",
                          "file", "schema")
PATCH_TYPES = {"application/openstack-images-v2.0-json-patch": 4,
               "application/openstack-images-v2.1-json-patch": 10}


def check_core(rules: GlanceRules, key: str, value: Any) -> None:
    """The checks of Glance's image JSON schema for one core attribute (400 otherwise)."""
    ok = True
    if key in ("name", "owner"):
        ok = value is None or (isinstance(value, str) and len(value) <= 255)
    elif key == "visibility":
        ok = value in rules.visibilities
    elif key in ("protected", "os_hidden"):
        ok = isinstance(value, bool)
    elif key in ("min_ram", "min_disk"):
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
    elif key == "disk_format":
        ok = value is None or value in rules.disk_formats
    elif key == "container_format":
        ok = value is None or value in rules.container_formats
    elif key == "tags":
        ok = isinstance(value, list) and all(
            isinstance(t, str) and len(t) <= 255 for t in value)
    elif key == "id":
        ok = isinstance(value, str) and UUID_RE.match(value) is not None
    if not ok:
        raise SimHTTPError(400, f"Provided object does not match schema 'image': "
                                f"{json.dumps(value)} is not valid under the schema of "
                                f"'{key}'")

def check_extra(rules: GlanceRules, key: str, value: Any) -> None:
    if not isinstance(value, str):
        raise SimHTTPError(400, f"Provided object does not match schema 'image': "
                                f"{json.dumps(value)} is not of type 'string' "
                                f"(property '{key}')")
    if rules.modern and key.startswith("os_glance"):
        raise SimHTTPError(403, f"Attribute '{key}' is reserved.")


def image_schema(rules: GlanceRules) -> dict[str, Any]:
    nullable_str = {"type": ["null", "string"]}
    props: dict[str, Any] = {
        "id": {"type": "string", "pattern": UUID_RE.pattern},
        "name": {"type": ["null", "string"], "maxLength": 255},
        "status": {"type": "string", "readOnly": True,
                   "enum": ["queued", "saving", "active", "killed", "deleted",
                            "pending_delete", "deactivated"]},
        "visibility": {"type": "string", "enum": list(rules.visibilities)},
        "protected": {"type": "boolean"},
        "checksum": {**nullable_str, "readOnly": True, "maxLength": 32},
        "owner": {**nullable_str, "maxLength": 255},
        "size": {"type": ["null", "integer"], "readOnly": True},
        "virtual_size": {"type": ["null", "integer"], "readOnly": True},
        "container_format": {**nullable_str,
                             "enum": [None, *rules.container_formats]},
        "disk_format": {**nullable_str, "enum": [None, *rules.disk_formats]},
        "created_at": {"type": "string", "readOnly": True},
        "updated_at": {"type": "string", "readOnly": True},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 255}},
        "min_ram": {"type": "integer"},
        "min_disk": {"type": "integer"},
        "self": {"type": "string", "readOnly": True},
        "file": {"type": "string", "readOnly": True},
        "schema": {"type": "string", "readOnly": True},
    }
    if rules.modern:
        props["os_hidden"] = {"type": "boolean"}
        props["os_hash_algo"] = {**nullable_str, "readOnly": True, "maxLength": 64}
        props["os_hash_value"] = {**nullable_str, "readOnly": True, "maxLength": 128}
    return {"name": "image", "properties": props,
            "additionalProperties": {"type": "string"},
            "links": [{"rel": "self", "href": "{self}"},
                      {"rel": "enclosure", "href": "{file}"},
                      {"rel": "describedby", "href": "{schema}"}]}

def schema_documents(rules: GlanceRules) -> dict[str, Any]:
    """GET /v2/schemas/{image,images,member,members}: enough for clients that read them."""
    image = image_schema(rules)
    member = {"name": "member", "properties": {
        "member_id": {"type": "string"}, "image_id": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "accepted", "rejected"]},
        "created_at": {"type": "string"}, "updated_at": {"type": "string"},
        "schema": {"type": "string", "readOnly": True}}}
    schemas: dict[str, Any] = {
        "image": image,
        "images": {"name": "images", "properties": {
            "images": {"type": "array", "items": image},
            "schema": {"type": "string"}, "first": {"type": "string"},
            "next": {"type": "string"}},
            "links": [{"rel": "first", "href": "{first}"},
                      {"rel": "next", "href": "{next}"},
                      {"rel": "describedby", "href": "{schema}"}]},
        "member": member,
        "members": {"name": "members", "properties": {
            "members": {"type": "array", "items": member},
            "schema": {"type": "string"}},
            "links": [{"rel": "describedby", "href": "{schema}"}]},
    }
    return schemas


def decode_pointer(pointer: Any) -> list[str]:
    """Glance accepts a limited JSON pointer: '/a' (or '/locations/N')."""
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        raise SimHTTPError(400, f"Pointer `{pointer}` does not start with \"/\".")
    if re.search(r"/\s*?/", pointer[1:]):
        raise SimHTTPError(400, f"Pointer `{pointer}` contains adjacent \"/\".")
    if len(pointer) > 1 and pointer.endswith("/"):
        raise SimHTTPError(400, f"Pointer `{pointer}` end with \"/\".")
    if re.search("~[^01]", pointer) or pointer.endswith("~"):
        raise SimHTTPError(400, f"Pointer `{pointer}` contains \"~\" not part of a recognized "
                                "escape sequence.")
    return [part.replace("~1", "/").replace("~0", "~").strip()
            for part in pointer.lstrip("/").split("/")]


def parse_patch(body: Any, draft: int) -> list[tuple[str, str, Any]]:
    """(op, path, value) of each change, refusing what Glance's deserializer refuses."""
    if not isinstance(body, list):
        raise SimHTTPError(400, "Request body must be a JSON array of operation objects.")
    changes = []
    for raw in body:
        if not isinstance(raw, dict):
            raise SimHTTPError(400, "Operations must be JSON objects.")
        if draft == 10:
            op = raw.get("op")
            if op not in ("add", "remove", "replace"):
                raise SimHTTPError(400, f"Invalid operation: `{op}`. It must be one of the "
                                        "following: add, remove, replace.")
            if "path" not in raw:
                raise SimHTTPError(400, "Unable to find 'path' in JSON Schema change")
            pointer = raw["path"]
        else:
            present = [k for k in ("add", "remove", "replace") if k in raw]
            if len(present) != 1:
                raise SimHTTPError(400, 'Operation objects must contain exactly one member '
                                        'named "add", "remove", or "replace".')
            op = present[0]
            pointer = raw[op]
        path = decode_pointer(pointer)
        depth = {"add": 2, "remove": 2, "replace": 1}[op] if path[0] == "locations" else 1
        if len(path) != depth:
            raise SimHTTPError(400, "Invalid JSON pointer for this resource: "
                                    f"'/{'/'.join(path)}'")
        if op != "remove" and "value" not in raw:
            raise SimHTTPError(400, f'Operation "{op}" requires a member named "value".')
        changes.append((op, path[0], raw.get("value")))
    return changes
