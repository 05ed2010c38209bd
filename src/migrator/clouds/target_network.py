"""Target Neutron: networks, subnets, routers (gateway by ``PUT /routers/{id}``), router
interfaces, security groups and rules. Resources carry the tag ``migrator-src-<source id>``
and the description ``migrated from <cloud> <id>``; rules, which have no tags, carry the
description ``migrator-src:<id>``."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from migrator.clouds.target_base import (
    RULE_DESCRIPTION_PREFIX,
    TargetBase,
    TargetCloudError,
    source_of_tags,
    source_tag,
)
from migrator.errors import CloudError

# Neutron's extension letting POST bodies carry tags (else: one PUT per tag after creation).
TAG_CREATION_EXTENSION = "tag-creation"
# Fields of a rule that make two rules the same rule (Neutron's own duplicate check).
RULE_IDENTITY_FIELDS = (
    "direction", "ethertype", "protocol", "port_range_min", "port_range_max",
    "remote_ip_prefix", "remote_group_id",
)
_RULE_ID = re.compile(r"Rule id is ([0-9a-fA-F-]{32,36})")
_PROTOCOL_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132,
                     "dccp": 33, "udplite": 136, "gre": 47, "esp": 50, "ah": 51, "vrrp": 112}


class NetworkMixin(TargetBase):
    # -- generic tagged resources ----------------------------------------------------------
    def neutron_extensions(self) -> frozenset[str]:
        def read() -> frozenset[str]:
            body = self.request("network", "GET", "/extensions", op="list", what="extensions")
            return frozenset(e["alias"] for e in body["extensions"])

        return frozenset(self.cached("neutron-extensions", read))

    def _find_tagged(self, path: str, key: str, member: str, source_id: str,
                     attrs: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """The resource tagged with the source id. Without the tag-creation extension the tag
        is added by a second call, so a crash between the two leaves the resource untagged:
        it is then found by what the create call wrote atomically (the description marker,
        or the source's own description, with the name and project) and tagged now."""
        items = self.request(
            "network", "GET", f"/{path}", op=f"find {member}", what=f"of source {source_id}",
            params={"tags": source_tag(source_id)},
        )[key]
        if len(items) > 1:
            ids = ", ".join(sorted(i["id"] for i in items))
            raise CloudError(f"{self.name}: {len(items)} {member}s carry source id "
                             f"{source_id} ({ids}); remove the duplicates by hand")
        if items:
            return dict(items[0])
        if attrs is None or TAG_CREATION_EXTENSION in self.neutron_extensions():
            return None
        params = {"description": attrs.get("description") or self.source_description(source_id)}
        for field in ("name", "project_id", "network_id"):
            if attrs.get(field):
                params[field] = attrs[field]
        untagged = [i for i in self._list(path, key, params) if not source_of_tags(i.get("tags"))]
        if len(untagged) != 1:
            return None
        found = untagged[0]
        self.add_tag(path, found["id"], source_tag(source_id))
        found["tags"] = [*found.get("tags", []), source_tag(source_id)]
        return found

    def _create_tagged(self, path: str, key: str, source_id: str, attrs: Mapping[str, Any]
                       ) -> dict[str, Any]:
        body = dict(attrs)
        if not body.get("description"):
            body["description"] = self.source_description(source_id)
        tag = source_tag(source_id)
        inline = TAG_CREATION_EXTENSION in self.neutron_extensions()
        if inline:
            body["tags"] = sorted({*body.get("tags", []), tag})
        else:
            body.pop("tags", None)
        created = dict(self.request(
            "network", "POST", f"/{path}", op=f"create {key.replace('_', ' ')}",
            what=repr(body.get("name", "")), json={key: body},
        )[key])
        if not inline:
            self.add_tag(path, created["id"], tag)
            created["tags"] = [*created.get("tags", []), tag]
        return created

    def add_tag(self, path: str, resource_id: str, tag: str) -> None:
        """Add one tag (idempotent PUT): how an adopted resource gets its source id."""
        self.request("network", "PUT", f"/{path}/{resource_id}/tags/{tag}", op="tag",
                     what=f"{path} {resource_id}")

    def _get(self, path: str, key: str, rid: str) -> dict[str, Any]:
        out = self.request("network", "GET", f"/{path}/{rid}", op=f"get {key}", what=rid,
                           missing_ok=True)
        if out is None:
            raise self.not_found(key.replace("_", " "), rid, self.name)
        return dict(out[key])

    def _list(self, path: str, key: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [dict(i) for i in self.request(
            "network", "GET", f"/{path}", op=f"list {path}", what="", params=params)[key]]

    def _delete(self, path: str, rid: str) -> None:
        self.request("network", "DELETE", f"/{path}/{rid}", op=f"delete {path}", what=rid,
                     missing_ok=True)

    # -- networks --------------------------------------------------------------------------
    def find_network_by_source(self, source_id: str, attrs: Mapping[str, Any] | None = None
                              ) -> dict[str, Any] | None:
        """By tag; with ``attrs`` (the create body) also an untagged leftover of a crash."""
        return self._find_tagged("networks", "networks", "network", source_id, attrs)

    def find_network_by_name(self, name: str, project_id: str | None = None
                             ) -> dict[str, Any] | None:
        """A network by name (in ``project_id`` when given); None when absent."""
        params = {"name": name, **({"project_id": project_id} if project_id else {})}
        found = self._list("networks", "networks", params)
        return found[0] if found else None

    def find_external_network(self, name: str) -> dict[str, Any] | None:
        found = self._list("networks", "networks", {"name": name, "router:external": "True"})
        return found[0] if found else None

    def get_network(self, network_id: str) -> dict[str, Any]:
        return self._get("networks", "network", network_id)

    def create_network(self, source_id: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
        return self._create_tagged("networks", "network", source_id, attrs)

    def delete_network(self, network_id: str) -> None:
        self._delete("networks", network_id)

    def wait_for_network_active(self, network_id: str, timeout: float | None = None
                                ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            net = self.get_network(network_id)
            return net if str(net.get("status", "ACTIVE")).upper() == "ACTIVE" else None

        result: dict[str, Any] = self.wait_until(f"network {network_id} to be ACTIVE", probe,
                                                 timeout=timeout)
        return result

    # -- subnets ---------------------------------------------------------------------------
    def find_subnet_by_source(self, source_id: str, attrs: Mapping[str, Any] | None = None
                              ) -> dict[str, Any] | None:
        """By tag; with ``attrs`` (the create body) also an untagged leftover of a crash."""
        return self._find_tagged("subnets", "subnets", "subnet", source_id, attrs)

    def get_subnet(self, subnet_id: str) -> dict[str, Any]:
        return self._get("subnets", "subnet", subnet_id)

    def create_subnet(self, source_id: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
        return self._create_tagged("subnets", "subnet", source_id, attrs)

    def delete_subnet(self, subnet_id: str) -> None:
        self._delete("subnets", subnet_id)

    def find_subnetpool_by_name(self, name: str) -> dict[str, Any] | None:
        found = self._list("subnetpools", "subnetpools", {"name": name})
        return found[0] if found else None

    # -- routers ---------------------------------------------------------------------------
    def find_router_by_source(self, source_id: str, attrs: Mapping[str, Any] | None = None
                              ) -> dict[str, Any] | None:
        """By tag; with ``attrs`` (the create body) also an untagged leftover of a crash."""
        return self._find_tagged("routers", "routers", "router", source_id, attrs)

    def get_router(self, router_id: str) -> dict[str, Any]:
        return self._get("routers", "router", router_id)

    def create_router(self, source_id: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
        return self._create_tagged("routers", "router", source_id, attrs)

    def set_router_gateway(self, router_id: str, gateway: Mapping[str, Any]) -> dict[str, Any]:
        """``update_router(router_id, external_gateway_info=...)``: Neutron has no
        add_gateway_router call (the SDK's add_gateway_to_router 404s)."""
        out = self.request(
            "network", "PUT", f"/routers/{router_id}", op="set gateway of router",
            what=router_id, json={"router": {"external_gateway_info": dict(gateway)}},
        )
        return dict(out["router"])

    def delete_router(self, router_id: str) -> None:
        self._delete("routers", router_id)

    def find_router_interface(self, router_id: str, subnet_id: str) -> dict[str, Any] | None:
        """The router's port on ``subnet_id`` (its interface), or None."""
        ports = self._list("ports", "ports", {"device_id": router_id,
                                              "fixed_ips": f"subnet_id={subnet_id}"})
        ports = [p for p in ports if any(ip.get("subnet_id") == subnet_id
                                         for ip in p.get("fixed_ips") or [])]
        return ports[0] if ports else None

    def add_router_interface(self, router_id: str, subnet_id: str) -> dict[str, Any]:
        """``add_interface_to_router``: returns {id (router), subnet_id, port_id, ...}."""
        out = self.request(
            "network", "PUT", f"/routers/{router_id}/add_router_interface",
            op="add interface to router", what=f"{router_id} (subnet {subnet_id})",
            json={"subnet_id": subnet_id},
        )
        return dict(out)

    def remove_router_interface(self, router_id: str, subnet_id: str) -> None:
        self.request(
            "network", "PUT", f"/routers/{router_id}/remove_router_interface",
            op="remove interface from router", what=f"{router_id} (subnet {subnet_id})",
            json={"subnet_id": subnet_id}, missing_ok=True,
        )

    def get_port(self, port_id: str) -> dict[str, Any]:
        return self._get("ports", "port", port_id)

    # -- ports of servers ------------------------------------------------------------------
    def find_port_by_source(self, source_id: str, attrs: Mapping[str, Any] | None = None
                            ) -> dict[str, Any] | None:
        return self._find_tagged("ports", "ports", "port", source_id, attrs)

    def create_port(self, source_id: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """A port (the admin may set ``mac_address`` and ``project_id``) tagged with the
        source port's id."""
        return self._create_tagged("ports", "port", source_id, attrs)

    def delete_port(self, port_id: str) -> None:
        self._delete("ports", port_id)

    # -- security groups -------------------------------------------------------------------
    def find_security_group_by_source(self, source_id: str,
                                      attrs: Mapping[str, Any] | None = None
                                      ) -> dict[str, Any] | None:
        """By tag; with ``attrs`` (the create body) also an untagged leftover of a crash."""
        return self._find_tagged("security-groups", "security_groups", "security group",
                                 source_id, attrs)

    def find_security_group_by_name(self, name: str, project_id: str
                                    ) -> dict[str, Any] | None:
        """A project's group by name; asking for ``default`` makes Neutron create the
        project's default group if it did not exist yet (as any first access does)."""
        found = self._list("security-groups", "security_groups",
                           {"name": name, "project_id": project_id})
        return found[0] if found else None

    def get_security_group(self, group_id: str) -> dict[str, Any]:
        return self._get("security-groups", "security_group", group_id)

    def create_security_group(self, source_id: str, attrs: Mapping[str, Any]
                              ) -> dict[str, Any]:
        return self._create_tagged("security-groups", "security_group", source_id, attrs)

    def tag_security_group(self, group_id: str, source_id: str) -> None:
        self.add_tag("security-groups", group_id, source_tag(source_id))

    def delete_security_group(self, group_id: str) -> None:
        self._delete("security-groups", group_id)

    # -- security group rules --------------------------------------------------------------
    @staticmethod
    def rule_description(source_id: str) -> str:
        return f"{RULE_DESCRIPTION_PREFIX}{source_id}"

    def find_security_group_rule_by_source(
        self, source_id: str, *, like: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The rule described ``migrator-src:<id>``; else, with ``like`` (the rule's body,
        security_group_id included), an identical rule of that group (adopted after a 409:
        rules cannot be re-described)."""
        description = self.rule_description(source_id)
        if like and like.get("security_group_id"):
            # One list of the group's rules answers both: ours (by description) first, else
            # an identical one.
            rules = self._list("security-group-rules", "security_group_rules",
                               {"security_group_id": like["security_group_id"]})
            ours = [r for r in rules if r.get("description") == description]
            if ours:
                return ours[0]
            return next((r for r in rules if same_rule(r, like)), None)
        found = self._list("security-group-rules", "security_group_rules",
                           {"description": description})
        return found[0] if found else None

    def get_security_group_rule(self, rule_id: str) -> dict[str, Any]:
        return self._get("security-group-rules", "security_group_rule", rule_id)

    def create_security_group_rule(self, source_id: str, attrs: Mapping[str, Any]
                                   ) -> tuple[dict[str, Any], bool]:
        """(rule, adopted): a 409 SecurityGroupRuleExists adopts the identical rule."""
        body = {**attrs, "description": self.rule_description(source_id)}
        try:
            out = self.request(
                "network", "POST", "/security-group-rules", op="create security group rule",
                what=f"of source {source_id}", json={"security_group_rule": body},
            )
        except TargetCloudError as exc:
            if exc.status != 409 or exc.error_type != "SecurityGroupRuleExists":
                raise
            match = _RULE_ID.search(exc.server_message)
            if match:
                return self.get_security_group_rule(match.group(1)), True
            existing = self.find_security_group_rule_by_source(source_id, like=attrs)
            if existing is None:
                raise
            return existing, True
        return dict(out["security_group_rule"]), False

    def delete_security_group_rule(self, rule_id: str) -> None:
        self._delete("security-group-rules", rule_id)

    # -- quotas ----------------------------------------------------------------------------
    def get_network_quotas(self, project_id: str) -> dict[str, Any]:
        return dict(self.request("network", "GET", f"/quotas/{project_id}",
                                 op="get network quotas", what=f"of project {project_id}")
                    ["quota"])

    def put_network_quotas(self, project_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.request("network", "PUT", f"/quotas/{project_id}",
                                 op="set network quotas", what=f"of project {project_id}",
                                 json={"quota": dict(values)})["quota"])


def protocol_number(value: Any) -> Any:
    """``tcp`` and ``6`` are the same protocol to Neutron."""
    if value is None:
        return None
    text = str(value).lower()
    if text.isdigit():
        return int(text)
    return _PROTOCOL_NUMBERS.get(text, text)


def _prefix(value: Any) -> Any:
    if not value:
        return None
    try:
        return ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return value


def same_rule(rule: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """Neutron's duplicate test: same direction, ethertype, protocol (name or number), ports,
    remote prefix (normalised) and remote group."""
    for key in RULE_IDENTITY_FIELDS:
        have, wanted = rule.get(key), want.get(key)
        if key == "protocol":
            have, wanted = protocol_number(have), protocol_number(wanted)
        elif key == "remote_ip_prefix":
            have, wanted = _prefix(have), _prefix(wanted)
        elif key == "ethertype":
            have, wanted = str(have or "IPv4").lower(), str(wanted or "IPv4").lower()
        if have != wanted:
            return False
    return True
