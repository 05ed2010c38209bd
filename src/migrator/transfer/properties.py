"""Image properties from the legacy cloud to the target: what is a property at all, the
translation rules (:mod:`properties_rules`), the default rule set and a volume's image
metadata (the volume data path translates it too, transfer/volume_phases.py). Everything here
is pure and deterministic, so ``migrator plan`` can show the properties of every image before
and after. See docs/image-properties.md. The Glance fields of a target image, which only the
planner needs, are in plan/image_fields.py.

    props = image_properties(raw_json)                  # never ``image.properties`` alone
    new, changes = translate(props, DEFAULT_RULES)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from migrator.transfer.properties_rules import (
    Change,
    Context,
    RulesError,
    RuleSet,
    parse_rules,
)

__all__ = [
    "CINDER_IMAGE_CORE", "DEFAULT_LEGACY_UEFI_KEYS", "DEFAULT_RULES", "NEVER_COPIED",
    "Change", "RuleSet", "RulesError", "default_rule_list", "describe_change",
    "image_properties",
    "parse_image_properties", "parse_rules", "translate",
    "volume_image_metadata",
]

# Glance's own fields (core, read-only, reserved) and what the SDK or the server add: these are
# image attributes or server state, never properties to copy. Modern Glance refuses most of
# them in a create body (403 reserved, 400 read-only) and recomputes the rest.
NEVER_COPIED = frozenset({
    # core attributes (carried by target_image_fields, not as properties)
    "id", "name", "status", "visibility", "protected", "owner", "disk_format",
    "container_format", "min_disk", "min_ram", "tags", "os_hidden",
    # computed by the server from the bytes or the store
    "size", "virtual_size", "checksum", "os_hash_algo", "os_hash_value", "direct_url",
    "locations", "location", "stores",
    # bookkeeping and API plumbing
    "created_at", "updated_at", "deleted", "deleted_at", "self", "file", "schema",
    # Glance v1 shapes and openstacksdk's own attribute names in to_dict()
    "is_public", "properties", "store", "url", "metadata",
    # Cinder's key reference for an encrypted volume's image: the key lives in the legacy
    # cloud's key manager, the target cannot open it
    "cinder_encryption_key_id", "cinder_encryption_key_deletion_policy",
})
NEVER_COPIED_PREFIXES = (
    "owner_specified.openstack.",  # the SDK's upload record (md5/sha256/object of the source)
    "os_glance_",  # reserved for Glance's import machinery (403 on modern)
)
NEVER_COPIED_RULE = "not a property (Glance field or server state)"

# The keys an out-of-tree Liberty patch used to boot AArch64 guests with UEFI before upstream's
# hw_firmware_type (the simulator's seed uses the same: migrator.sim.seed_gen.LEGACY_UEFI_HACK).
DEFAULT_LEGACY_UEFI_KEYS = ("hw_boot_mode", "hw_loader_path")

# Keys Cinder keeps as columns of a volume's image metadata (glance_core_properties, and the
# base attributes modern Cinder copies from the image in volume_utils.get_volume_image_metadata)
CINDER_IMAGE_CORE = ("image_id", "image_name", "checksum", "container_format", "disk_format",
                     "min_disk", "min_ram", "size")
# Set by modern Cinder itself on a volume created from an image.
CINDER_MANAGED = ("signature_verified",)


def default_rule_list(legacy_uefi_keys: Sequence[str] = DEFAULT_LEGACY_UEFI_KEYS
                      ) -> list[dict[str, Any]]:
    """The default rules as configuration data (what ``image_properties.rules`` would hold)."""
    rules: list[dict[str, Any]] = [
        {"name": "default: architecture aliases Nova refuses",
         "map_values": {"key": "architecture",
                        "values": {"arm64": "aarch64", "amd64": "x86_64"}}},
        {"name": "default: AArch64 boots UEFI on the virt machine",
         "set_if_architecture": {"architecture": "aarch64",
                                 "set": {"hw_firmware_type": "uefi",
                                         "hw_machine_type": "virt"}}},
        {"name": "default: the legacy UEFI hack asked for UEFI",
         "set": {"key": "hw_firmware_type", "value": "uefi",
                 "when": {"hw_boot_mode": "uefi"}, "overwrite": False}},
    ]
    if legacy_uefi_keys:
        rules.append({"name": "default: legacy UEFI hack keys",
                      "drop": {"keys": list(legacy_uefi_keys)}})
    rules.append({"name": "default: architecture is kept", "keep": {"keys": ["architecture"]}})
    return rules


DEFAULT_RULES: RuleSet = parse_rules(default_rule_list(), "DEFAULT_RULES")

CONFIG_KEYS = ("defaults", "legacy_uefi_keys", "rules")


def parse_image_properties(raw: Any, where: str = "image_properties") -> RuleSet:
    """The configuration's ``image_properties`` mapping as a RuleSet::

        image_properties:
          defaults: true                              # start from the default rules
          legacy_uefi_keys: [hw_boot_mode, hw_loader_path]   # what the default drop removes
          rules: [...]                                # applied after the defaults

    Nothing configured: the default rules. Raises RulesError (a ConfigError) naming the key
    path, e.g. ``image_properties.rules[2].set_if_architecture: unknown architecture 'arm'``.
    """
    base = tuple(where.split("."))
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise RulesError(base, "expected a mapping (defaults, legacy_uefi_keys, rules)")
    for key in raw:
        if key not in CONFIG_KEYS:
            raise RulesError((*base, str(key)), f"unknown key (known: {', '.join(CONFIG_KEYS)})")
    defaults = raw.get("defaults", True)
    if not isinstance(defaults, bool):
        raise RulesError((*base, "defaults"), f"expected true or false, got {defaults!r}")
    hack = raw.get("legacy_uefi_keys", list(DEFAULT_LEGACY_UEFI_KEYS))
    if not isinstance(hack, list) or not all(isinstance(k, str) and k for k in hack):
        raise RulesError((*base, "legacy_uefi_keys"), "expected a list of property names")
    if "legacy_uefi_keys" in raw and not defaults:
        raise RulesError((*base, "legacy_uefi_keys"),
                         "only used by the default rules, and defaults is false")
    out = parse_rules(default_rule_list(hack), (*base, "defaults")) if defaults else RuleSet()
    return out + parse_rules(raw.get("rules"), (*base, "rules"))


def _never_copied(key: str) -> bool:
    return key in NEVER_COPIED or key.startswith(NEVER_COPIED_PREFIXES)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def image_properties(image: Mapping[str, Any]) -> dict[str, str]:
    """The properties of an image record: the raw Glance v2 JSON (flat), a v1 detail record
    (nested ``properties``) or ``Image.to_dict(original_names=True)``. Glance fields and
    server state are left out, None values too, everything else as a string."""
    flat: dict[str, Any] = dict(image)
    nested = flat.get("properties")
    if isinstance(nested, Mapping):
        flat.update(nested)
    return {str(k): _text(v) for k, v in sorted(flat.items())
            if v is not None and not _never_copied(str(k))}


def translate(properties: Mapping[str, str], rules: RuleSet = DEFAULT_RULES
              ) -> tuple[dict[str, str], list[Change]]:
    """Apply ``rules`` in order to a copy of ``properties``; return the new properties (keys
    sorted) and every change, in the order made. Keys that are no properties (Glance fields,
    server state: :data:`NEVER_COPIED`) are removed first, each with a Change."""
    props = dict(sorted((str(k), str(v)) for k, v in properties.items()))
    ctx = Context(props, rules.keeps)
    for key in sorted(props):
        if _never_copied(key):
            ctx.put(key, None, NEVER_COPIED_RULE)
    for rule in rules.rules:
        rule.apply(ctx)
    return dict(sorted(ctx.props.items())), ctx.changes


def volume_image_metadata(source: Mapping[str, Any], rules: RuleSet = DEFAULT_RULES,
                          image_ids: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a target volume's ``volume_image_metadata`` should hold, from the source
    volume's: Cinder's core keys as they were (``image_id`` mapped through ``image_ids``
    when the image was migrated too), the image properties through the rules."""
    core = {k: _text(v) for k, v in source.items() if k in CINDER_IMAGE_CORE and v is not None}
    if image_ids and core.get("image_id") in image_ids:
        core["image_id"] = image_ids[core["image_id"]]
    custom = {str(k): _text(v) for k, v in source.items()
              if k not in CINDER_IMAGE_CORE and k not in CINDER_MANAGED and v is not None}
    translated, _changes = translate(custom, rules)
    return dict(sorted({**translated, **core}.items()))


def describe_change(change: Change) -> str:
    """``hw_firmware_type: (none) -> 'uefi' [rule]`` for plans and logs."""
    before = "(none)" if change.before is None else repr(change.before)
    after = "(dropped)" if change.after is None else repr(change.after)
    return f"{change.key}: {before} -> {after} [{change.rule}]"

