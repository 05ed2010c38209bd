"""Reading and validating seed files: every error names the file, the line and the key.

A seed file is YAML. Mappings are loaded as ``Node`` dicts that remember their line, so a
problem found after parsing can still point at the line an operator has to fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from migrator.bounded_yaml import YamlProblem, check_yaml, decode_text, read_bytes, yaml_problem

try:  # libyaml parses large generated seeds several times faster
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class SeedError(ValueError):
    """A seed file is wrong; the message says where and why."""


class Node(dict[str, Any]):
    """A mapping that knows the line it started on."""

    line: int = 0


class _LineLoader(_BaseLoader):
    pass


def _construct_mapping(loader: Any, node: yaml.MappingNode) -> Node:
    loader.flatten_mapping(node)
    out = Node()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# A generated seed of 10,000 tenants is a few tens of MiB; a bigger file is refused unread.
MAX_SEED_BYTES = 512 << 20


def load_yaml(path: Path) -> Any:
    """A seed file's content, read in bounded time and memory (bounded_yaml): aliases within
    a budget, nesting within a depth, binary content refused naming the line."""
    try:
        data = read_bytes(path, MAX_SEED_BYTES)
        text = decode_text(data)
        if path.suffix == ".json":
            # JSON is YAML too, but json.loads reads a 10,000-tenant seed in a second; errors
            # then name the key path without a line.
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise SeedError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
            except RecursionError:
                raise SeedError(f"{path}: not valid JSON: nested too deep") from None
        check_yaml(data)
        return yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass
    except OSError as exc:
        raise SeedError(f"{path}: cannot read the seed file: {exc.strerror}") from exc
    except YamlProblem as exc:
        raise SeedError(exc.at(path)) from None
    except yaml.YAMLError as exc:
        raise SeedError(yaml_problem(exc, data).at(path)) from exc


# -- the schema: allowed keys and their types per section --------------------------------------
Spec = dict[str, Any]  # key -> type, tuple of types, or a nested Spec / [Spec] for lists

RULE = {"direction": str, "ethertype": str, "protocol": (str, int, type(None)),
        "port_range_min": (int, type(None)), "port_range_max": (int, type(None)),
        "remote_ip_prefix": (str, type(None)), "remote_group": (str, type(None)),
        "description": str}
CONTENT = {"generated": {"size": int, "seed": int, "format": str}, "file": str}
SCHEMA: Spec = {
    "clouds": {"*": {
        "faults": list,
        "services": [str],
        "token_ttl": (int, float),
        "delays": {"volume_create": (int, float), "volume_delete": (int, float),
                   "volume_upload": (int, float), "image_upload": (int, float),
                   "server_build": (int, float), "server_power": (int, float),
                   "server_snapshot": (int, float)},
        "domains": [{"name": str, "description": str, "enabled": bool}],
        "roles": [str],
        "flavors": [{"name": str, "id": str, "vcpus": int, "ram": int, "disk": int,
                     "swap": int, "ephemeral": int, "is_public": bool, "extra_specs": dict,
                     "projects": [str]}],
        "volume_types": [{"name": str, "description": str, "is_public": bool,
                          "extra_specs": dict}],
        "tenants": [{
            "name": str, "domain": str, "description": str, "enabled": bool,
            "quotas": {"compute": dict, "volume": dict, "network": dict},
            "users": [{"name": str, "password": str, "email": str, "enabled": bool,
                       "roles": [str], "clouds_yaml": bool}],
            "networks": [{"name": str, "shared": bool, "external": bool,
                          "admin_state_up": bool, "mtu": int, "description": str,
                          "subnets": [{"name": str, "cidr": str, "ip_version": int,
                                       "gateway_ip": (str, type(None)), "enable_dhcp": bool,
                                       "dns_nameservers": [str],
                                       "ipv6_ra_mode": (str, type(None)),
                                       "ipv6_address_mode": (str, type(None))}]}],
            "routers": [{"name": str, "external_network": (str, type(None)),
                         "enable_snat": bool, "interfaces": [str]}],
            "security_groups": [{"name": str, "description": str, "rules": [RULE]}],
            "keypairs": [{"name": str, "user": str, "public_key": str, "type": str}],
            "images": [{"name": str, "id": str, "visibility": str, "disk_format": str,
                        "container_format": str, "min_disk": int, "min_ram": int,
                        "protected": bool, "properties": dict, "members": [str],
                        "tags": [str], "content": CONTENT}],
            "volumes": [{"name": str, "size": int, "volume_type": (str, type(None)),
                         "bootable": bool, "image": (str, type(None)), "metadata": dict,
                         "description": str, "content": CONTENT}],
            "servers": [{"name": str, "flavor": str, "image": str, "boot_volume": str,
                         "delete_on_termination": bool, "volumes": [str],
                         "networks": [str], "security_groups": [str], "key_name": str,
                         "user": str, "metadata": dict, "floating_ip": bool, "status": str,
                         "fault": str, "description": str}],
        }],
    }},
}
REQUIRED = {
    "tenants": ("name",), "users": ("name",), "networks": ("name",), "subnets": ("cidr",),
    "routers": ("name",), "security_groups": ("name",), "keypairs": ("name", "user"),
    "images": ("name",), "volumes": ("name", "size"), "flavors": ("name",),
    "volume_types": ("name",), "domains": ("name",), "servers": ("name", "flavor"),
}


def _type_name(expected: Any) -> str:
    if isinstance(expected, tuple):
        return " or ".join(_type_name(t) for t in expected)
    if isinstance(expected, list):
        return "a list"
    if isinstance(expected, dict):
        return "a mapping"
    return {str: "a string", int: "an integer", bool: "true or false", dict: "a mapping",
            list: "a list", type(None): "null"}.get(expected, str(expected))


def validate(doc: Any, path: Path) -> None:
    """Check a loaded seed document against SCHEMA; raise SeedError at the first problem."""
    if not isinstance(doc, dict) or "clouds" not in doc:
        raise SeedError(f"{path}:1: a seed file is a mapping with a 'clouds' key")
    _check(doc, SCHEMA, path, "", getattr(doc, "line", 1))


def _check(value: Any, spec: Any, path: Path, where: str, line: int) -> None:
    line = getattr(value, "line", line)
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise SeedError(f"{path}:{line}: {where or 'top level'}: expected a mapping")
        if "*" in spec:
            for key, item in value.items():
                _check(item, spec["*"], path, f"{where}.{key}" if where else str(key), line)
            return
        for key, item in value.items():
            if key not in spec:
                known = ", ".join(sorted(spec))
                raise SeedError(f"{path}:{line}: {where or 'top level'}: unknown key "
                                f"{key!r} (known: {known})")
            _check(item, spec[key], path, f"{where}.{key}" if where else str(key), line)
        section = where.rsplit(".", 1)[-1].split("[", 1)[0]
        for key in REQUIRED.get(section, ()):
            if key not in value:
                raise SeedError(f"{path}:{line}: {where}: missing required key {key!r}")
        return
    if isinstance(spec, list):
        if not isinstance(value, list):
            raise SeedError(f"{path}:{line}: {where}: expected a list")
        for i, item in enumerate(value):
            _check(item, spec[0], path, f"{where}[{i}]", line)
        return
    ok = isinstance(value, spec) and not (
        (isinstance(value, bool) and spec is int) or (isinstance(spec, tuple)
        and isinstance(value, bool) and bool not in spec))
    if not ok:
        raise SeedError(f"{path}:{line}: {where}: expected {_type_name(spec)}, "
                        f"got {value!r}")
