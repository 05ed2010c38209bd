"""Image property translation (transfer/properties.py): each rule kind, the default rule set
on generated legacy images read through openstacksdk, validation errors naming the key path
and a volume's image metadata (the Glance fields of a target image:
tests/plan/test_image_fields.py)."""

from __future__ import annotations

from typing import Any

import openstack
import pytest

from migrator.errors import ConfigError
from migrator.sim.seed_gen import LEGACY_UEFI_HACK, SeedShape, _image
from migrator.sim.server import SimServer
from migrator.transfer.properties import (
    DEFAULT_RULES,
    NEVER_COPIED_RULE,
    Change,
    RulesError,
    default_rule_list,
    describe_change,
    image_properties,
    parse_image_properties,
    parse_rules,
    translate,
    volume_image_metadata,
)
from tests.sim.glance_seed import seed_image

Conn = openstack.connection.Connection


def rules(*items: dict[str, Any]) -> Any:
    return parse_rules(list(items), "image_properties.rules")


# -- each rule kind -----------------------------------------------------------------------------
def test_pass_through_by_default() -> None:
    props = {"os_distro": "debian", "hw_disk_bus": "scsi"}
    assert translate(props, rules()) == (props, [])


def test_rename() -> None:
    rs = rules({"rename": {"from": "old", "to": "new"}})
    new, changes = translate({"old": "1", "x": "2"}, rs)
    assert new == {"new": "1", "x": "2"}
    label = "image_properties.rules[0] rename"
    assert changes == [Change("new", None, "1", label), Change("old", "1", None, label)]
    # An existing target key wins unless overwrite is set; the old key goes either way.
    assert translate({"old": "1", "new": "0"}, rs)[0] == {"new": "0"}
    forced = rules({"rename": {"from": "old", "to": "new", "overwrite": True}})
    assert translate({"old": "1", "new": "0"}, forced)[0] == {"new": "1"}
    assert translate({"x": "2"}, rs) == ({"x": "2"}, [])


def test_drop_with_globs_and_keep() -> None:
    rs = rules({"drop": {"keys": ["vmware_*", "hw_boot_mode"]}},
               {"name": "my keep", "keep": {"keys": ["vmware_ostype"]}})
    new, changes = translate({"vmware_adaptertype": "lsi", "vmware_ostype": "linux",
                              "hw_boot_mode": "uefi", "hw_disk_bus": "virtio"}, rs)
    # keep protects from every drop, wherever it stands in the list
    assert new == {"vmware_ostype": "linux", "hw_disk_bus": "virtio"}
    assert [(c.key, c.after) for c in changes] == [("hw_boot_mode", None),
                                                   ("vmware_adaptertype", None)]
    # allow-list mode: drop everything, keep some
    allow = rules({"drop": {"keys": "*"}}, {"keep": {"keys": ["architecture", "os_*"]}})
    assert translate({"architecture": "x86_64", "os_type": "linux", "hw_video_model": "vga"},
                     allow)[0] == {"architecture": "x86_64", "os_type": "linux"}


def test_set_when() -> None:
    rs = rules({"set": {"key": "hw_scsi_model", "value": "virtio-scsi",
                        "when": {"hw_disk_bus": "scsi", "os_type": ["linux", "windows"]}}})
    assert translate({"hw_disk_bus": "scsi", "os_type": "linux"}, rs)[0][
        "hw_scsi_model"] == "virtio-scsi"
    assert "hw_scsi_model" not in translate({"hw_disk_bus": "scsi"}, rs)[0]
    assert "hw_scsi_model" not in translate({"hw_disk_bus": "ide", "os_type": "linux"}, rs)[0]
    # no when: always; overwrite false leaves an existing value alone
    always = rules({"set": {"values": {"a": "1", "b": "2"}}})
    assert translate({"a": "0"}, always)[0] == {"a": "1", "b": "2"}
    gentle = rules({"set": {"key": "a", "value": "1", "overwrite": False}})
    assert translate({"a": "0"}, gentle) == ({"a": "0"}, [])


def test_set_if_architecture() -> None:
    rs = rules({"set_if_architecture": {"architecture": ["aarch64", "armv7l"],
                                        "set": {"hw_video_model": "virtio"}}})
    assert translate({"architecture": "aarch64"}, rs)[0]["hw_video_model"] == "virtio"
    assert translate({"architecture": "x86_64"}, rs) == ({"architecture": "x86_64"}, [])
    assert translate({}, rs) == ({}, [])


def test_map_values_and_order() -> None:
    rs = rules({"map_values": {"key": "hw_video_model", "values": {"cirrus": "virtio"}}},
               {"rename": {"from": "hw_video_model", "to": "hw_video_model_legacy"}})
    new, changes = translate({"hw_video_model": "cirrus"}, rs)
    # rules apply in order, each to what the previous ones left
    assert new == {"hw_video_model_legacy": "virtio"}
    assert [c.rule for c in changes] == ["image_properties.rules[0] map_values",
                                         "image_properties.rules[1] rename",
                                         "image_properties.rules[1] rename"]
    assert translate({"hw_video_model": "vga"}, rs)[0] == {"hw_video_model_legacy": "vga"}


def test_glance_fields_are_never_properties() -> None:
    new, changes = translate({"checksum": "abc", "os_hash_value": "x", "size": "3",
                              "owner_specified.openstack.md5": "", "os_glance_x": "1",
                              "direct_url": "file://", "ok": "1"}, rules())
    assert new == {"ok": "1"}
    assert {c.rule for c in changes} == {NEVER_COPIED_RULE} and len(changes) == 6


def test_translate_is_pure_and_deterministic() -> None:
    props = {"b": "2", "a": "1", "hw_boot_mode": "uefi", "architecture": "aarch64"}
    snapshot = dict(props)
    first = translate(props, DEFAULT_RULES)
    assert props == snapshot
    assert translate(dict(reversed(list(props.items()))), DEFAULT_RULES) == first
    assert list(first[0]) == sorted(first[0])


# -- the default rule set on generated legacy images --------------------------------------------
@pytest.mark.parametrize("index", [0, 1], ids=["aarch64", "x86_64"])
def test_default_rules_on_generated_images(sim: SimServer, legacy: Conn, index: int) -> None:
    spec = _image(SeedShape(), 0, index, f"gen-{index}")
    record = seed_image(sim, "legacy", name=spec["name"], size=1024, seed=5 + index,
                        disk_format=spec["disk_format"],
                        container_format=spec["container_format"],
                        properties=spec["properties"])
    raw = legacy.image.get(f"/images/{record['id']}").json()
    image = legacy.image.get_image(record["id"])
    # The SDK moves well-known keys to attributes: .properties alone loses them.
    assert "architecture" not in image.properties
    assert image.architecture == spec["properties"]["architecture"]
    props = image_properties(raw)
    assert props == spec["properties"]
    assert image_properties(image.to_dict(original_names=True)) == props
    new, changes = translate(props)
    if index == 0:
        assert new == {**{k: v for k, v in props.items() if k not in LEGACY_UEFI_HACK},
                       "hw_firmware_type": "uefi", "hw_machine_type": "virt"}
        assert {c.key for c in changes} == {"hw_firmware_type", *LEGACY_UEFI_HACK}
        assert describe_change(changes[0]) == (
            "hw_firmware_type: (none) -> 'uefi' [default: AArch64 boots UEFI on the virt "
            "machine]")
    else:  # x86_64: nothing forced, nothing dropped
        assert (new, changes) == (props, [])


def test_default_rule_details() -> None:
    # An x86 image carrying the hack asked for UEFI; an explicit value is left alone.
    assert translate({"architecture": "x86_64", "hw_boot_mode": "uefi"})[0] == {
        "architecture": "x86_64", "hw_firmware_type": "uefi"}
    assert translate({"hw_boot_mode": "uefi", "hw_firmware_type": "bios"})[0] == {
        "hw_firmware_type": "bios"}
    # Aliases Nova refuses are canonicalised first, so AArch64 rules see them.
    new = translate({"architecture": "arm64"})[0]
    assert new == {"architecture": "aarch64", "hw_firmware_type": "uefi",
                   "hw_machine_type": "virt"}
    # architecture survives even a drop-everything rule appended by the operator
    rs = parse_image_properties({"rules": [{"drop": {"keys": ["*"]}}]})
    assert translate({"architecture": "x86_64", "os_type": "linux"}, rs)[0] == {
        "architecture": "x86_64"}


def test_configured_hack_keys_and_no_defaults() -> None:
    rs = parse_image_properties({"legacy_uefi_keys": ["uefi_hack", "loader"]})
    assert translate({"uefi_hack": "1", "loader": "x", "hw_boot_mode": "uefi"}, rs)[0] == {
        "hw_boot_mode": "uefi", "hw_firmware_type": "uefi"}
    assert parse_image_properties(None).rules == DEFAULT_RULES.rules
    bare = parse_image_properties({"defaults": False, "rules": [
        {"drop": {"keys": ["x"]}}]})
    assert translate({"architecture": "aarch64", "x": "1"}, bare)[0] == {
        "architecture": "aarch64"}
    assert default_rule_list([])[-1] == {"name": "default: architecture is kept",
                                         "keep": {"keys": ["architecture"]}}


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "message"), [
    ({"rules": [{"keep": {"keys": ["a"]}}, {"drop": {"keys": ["b"]}},
                {"set_if_architecture": {"architecture": "arm", "set": {"a": "b"}}}]},
     "image_properties.rules[2].set_if_architecture: unknown architecture 'arm' "
     "(did you mean 'armv6'?)"),
    ({"rules": [{"set": {"key": "a", "value": "b", "when": {"architecture": "amd64"}}}]},
     "image_properties.rules[0].set.when.architecture: unknown architecture 'amd64'"),
    ({"rules": [{"map_values": {"key": "architecture", "values": {"arm64": "arm"}}}]},
     "image_properties.rules[0].map_values.values: unknown architecture 'arm'"),
    ({"rules": [{"replace": {"keys": ["a"]}}]},
     "image_properties.rules[0]: unknown rule kind 'replace'"),
    ({"rules": [{"drop": {"keys": ["a"]}, "keep": {"keys": ["b"]}}]},
     "image_properties.rules[0]: 2 rule kinds in one item"),
    ({"rules": [{"set": {"key": "hw_vif_multiqueue_enabled", "value": True}}]},
     "image_properties.rules[0].set.value: expected a string value for "
     "'hw_vif_multiqueue_enabled', got boolean True (quote it"),
    ({"rules": [{"rename": {"from": "a", "too": "b"}}]},
     "image_properties.rules[0].rename.too: unknown key (known: from, to, overwrite)"),
    ({"rules": [{"rename": {"from": "a", "to": "a"}}]},
     "image_properties.rules[0].rename: 'from' and 'to' are both 'a'"),
    ({"rules": [{"drop": {"keys": []}}]},
     "image_properties.rules[0].drop.keys: expected a list of property names or globs"),
    ({"rules": [{"set": {"key": "a", "value": "1", "values": {"b": "2"}}}]},
     "image_properties.rules[0].set: give either key and value or values"),
    ({"rules": {"drop": {"keys": ["a"]}}},
     "image_properties.rules: expected a list of rules, got a mapping"),
    ({"rules": ["drop a"]}, "image_properties.rules[0]: expected a mapping with one rule kind"),
    ({"defaults": "yes"}, "image_properties.defaults: expected true or false"),
    ({"defaults": False, "legacy_uefi_keys": ["x"]},
     "image_properties.legacy_uefi_keys: only used by the default rules"),
    ({"legacy_uefi_keys": "hw_boot_mode"},
     "image_properties.legacy_uefi_keys: expected a list of property names"),
    ({"rule": []}, "image_properties.rule: unknown key (known: defaults, legacy_uefi_keys, "
                   "rules)"),
])
def test_errors_name_the_key_path(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_image_properties(raw)
    assert str(info.value).startswith(message), str(info.value)
    assert isinstance(info.value, RulesError) and info.value.path[0] == "image_properties"


def test_error_path_for_the_config_loader() -> None:
    with pytest.raises(RulesError) as info:
        parse_rules([{"drop": {"keys": ["a"]}}, {"set": {"key": ""}}], ("image_properties",
                                                                       "rules"))
    assert info.value.path == ("image_properties", "rules", 1, "set", "key")
    assert info.value.problem == "expected a property name, got str ''"


# -- Glance fields and volume image metadata ----------------------------------------------------
def test_volume_image_metadata() -> None:
    source = {"image_id": "legacy-image", "image_name": "arm", "checksum": "c", "size": "5",
              "min_disk": "0", "min_ram": "0", "disk_format": "raw", "container_format": "bare",
              "architecture": "aarch64", "hw_boot_mode": "uefi", "signature_verified": "False"}
    out = volume_image_metadata(source, DEFAULT_RULES, {"legacy-image": "target-image"})
    assert out["image_id"] == "target-image" and out["hw_firmware_type"] == "uefi"
    assert "hw_boot_mode" not in out and "signature_verified" not in out
    assert out["checksum"] == "c" and out["size"] == "5"
    assert volume_image_metadata(source)["image_id"] == "legacy-image"
    assert volume_image_metadata({}) == {}
