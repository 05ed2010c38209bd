"""The Glance fields of a target image (plan/image_fields.py)."""

from __future__ import annotations

from migrator.plan.image_fields import target_image_fields


def test_target_image_fields() -> None:
    raw = {"id": "i1", "name": "ubuntu", "disk_format": "qcow2", "container_format": "bare",
           "min_disk": 1, "min_ram": 512, "protected": True, "visibility": "private",
           "tags": ["b", "a"], "owner": "legacy-project", "size": 10, "architecture": "x"}
    fields = target_image_fields(raw, "target-project", member_count=2)
    assert fields == {"name": "ubuntu", "disk_format": "qcow2", "container_format": "bare",
                      "min_disk": 1, "min_ram": 512, "protected": True, "visibility": "shared",
                      "tags": ["a", "b"], "owner": "target-project"}
    assert target_image_fields(raw, None, 0)["visibility"] == "private"
    assert "owner" not in target_image_fields(raw, None, 0)
    public = {**raw, "visibility": "public"}
    assert target_image_fields(public, "p", 3)["visibility"] == "public"
    # a Glance v1 record: is_public, strings for numbers and booleans
    v1 = {"name": "old", "is_public": "True", "protected": "False", "min_disk": "2",
          "min_ram": None, "disk_format": "raw", "container_format": "bare"}
    assert target_image_fields(v1, "p", 0) == {
        "name": "old", "disk_format": "raw", "container_format": "bare", "min_disk": 2,
        "min_ram": 0, "protected": False, "visibility": "public", "tags": [], "owner": "p"}
