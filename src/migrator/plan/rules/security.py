"""Security groups and their rules.

- security_group: after its project and the project's network quota. The ``default`` group is
  planned too: the handler adopts the one Neutron creates by itself in every project.
- security_group_rule: after its group and after the group it names as remote group. Liberty
  quirks are normalised for the IPv6-only target:

  * protocol numbers become names (``6`` -> ``tcp``...), ``icmp`` on IPv6 is ``ipv6-icmp``;
    port ranges are kept only for protocols that have ports (tcp, udp, sctp, dccp, udplite);
  * IPv4 rules become IPv6 rules: ``0.0.0.0/0`` -> ``::/0``, the legacy subnet's own prefix ->
    its new /64, another private (RFC 1918) prefix -> the whole ``address_plan.ipv6_prefix``;
    a public IPv4 prefix cannot be translated: the rule is left out with a warning (unless
    ``keep_ipv4``, which also keeps every IPv4 rule as it is, source id ``<id>:ipv4``);
  * the rules Neutron creates by itself in a new group (egress to anywhere, and in ``default``
    ingress from the group itself) are not planned;
  * rules that become identical after translation are planned once.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from migrator.plan.context import PlanState
from migrator.plan.rules.common import network_quota
from migrator.store.inventory import Item

PROTOCOL_NAMES = {"1": "icmp", "6": "tcp", "17": "udp", "58": "ipv6-icmp", "132": "sctp",
                  "33": "dccp", "136": "udplite", "icmpv6": "ipv6-icmp"}
PORT_PROTOCOLS = frozenset({"tcp", "udp", "sctp", "dccp", "udplite"})
RULE_FIELDS = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max",
               "remote_ip_prefix")


def plan(state: PlanState) -> None:
    if not state.kinds.wants("security_group"):
        return
    for gid, item, tenant, project_key in state.owned("security_group"):
        attrs = {"name": item.name or "", "description": item.attributes.get("description")
                 or ""}
        state.add("security_group", gid, tenant_id=tenant, name=item.name, attrs=attrs,
                  refs={"project_id": project_key}, after=network_quota(state, tenant))
    if not state.kinds.wants("security_group_rule"):
        return
    subnet_prefixes = _subnet_prefixes(state)
    seen: set[tuple[Any, ...]] = set()
    for _rid, item in sorted(state.inventory.kind("security_group_rule").items()):
        group_id = str(item.attributes.get("security_group_id"))
        group_key = state.key_if("security_group", group_id)
        if group_key is None:
            continue
        _rule(state, item, group_id, group_key, subnet_prefixes, seen)


def _subnet_prefixes(state: PlanState) -> dict[str, str]:
    """legacy IPv4 subnet cidr -> its planned IPv6 /64 (when allocated from a prefix)."""
    out: dict[str, str] = {}
    for step in state.steps.values():
        if step.kind == "subnet" and "cidr" in step.spec["attrs"] \
                and step.spec["attrs"].get("ip_version") == 6:
            legacy = state.inventory.get("subnet", step.source_id)
            if legacy is not None and legacy.attributes.get("cidr"):
                out[str(legacy.attributes["cidr"])] = str(step.spec["attrs"]["cidr"])
    return out


def is_default_rule(rule: dict[str, Any], group: Item | None) -> bool:
    """A rule Neutron creates by itself in a new group (so it is not migrated)."""
    no_match = all(rule.get(k) in (None, "") for k in ("protocol", "port_range_min",
                                                       "port_range_max", "remote_ip_prefix"))
    if rule.get("direction") == "egress" and no_match and not rule.get("remote_group_id"):
        return True
    return bool(group is not None and group.name == "default" and no_match
                and rule.get("direction") == "ingress"
                and rule.get("remote_group_id") == group.source_id)


def normalise(rule: dict[str, Any], ipv6: bool) -> tuple[dict[str, Any], str | None]:
    """The protocol and ports of a rule for the target (and a note when ports were left out)."""
    out: dict[str, Any] = {"direction": rule.get("direction") or "ingress",
                           "ethertype": "IPv6" if ipv6 else "IPv4"}
    note = None
    protocol = rule.get("protocol")
    if protocol is not None and protocol != "":
        protocol = PROTOCOL_NAMES.get(str(protocol).lower(), str(protocol).lower())
        if ipv6 and protocol == "icmp":
            protocol = "ipv6-icmp"
        if not ipv6 and protocol == "ipv6-icmp":
            protocol = "icmp"
        out["protocol"] = protocol
    ports = (rule.get("port_range_min"), rule.get("port_range_max"))
    if any(p is not None for p in ports):
        if out.get("protocol") in PORT_PROTOCOLS:
            out["port_range_min"], out["port_range_max"] = ports
        elif ipv6 or out.get("protocol") not in ("icmp",):
            note = f"port range {ports[0]}-{ports[1]} of protocol {out.get('protocol')} left out"
        else:
            out["port_range_min"], out["port_range_max"] = ports
    return out, note


def translate_prefix(prefix: str, subnet_prefixes: dict[str, str],
                     ipv6_prefix: str | None) -> str | None:
    """An IPv4 remote prefix in the IPv6 plan; None when it has no translation."""
    net = ipaddress.ip_network(prefix, strict=False)
    if net.version == 6:
        return str(net)
    if net.prefixlen == 0:
        return "::/0"
    if str(net) in subnet_prefixes:
        return subnet_prefixes[str(net)]
    if net.is_private and ipv6_prefix:
        return ipv6_prefix
    return None


def _rule(state: PlanState, item: Item, group_id: str, group_key: str,
          subnet_prefixes: dict[str, str], seen: set[tuple[Any, ...]]) -> None:
    raw = item.attributes
    group = state.inventory.get("security_group", group_id)
    tenant = str(group.tenant if group is not None else item.tenant)
    if is_default_rule(raw, group):
        return
    refs: dict[str, Any] = {"security_group_id": group_key}
    remote = raw.get("remote_group_id")
    if remote:
        remote_key = state.key_if("security_group", str(remote))
        if remote_key is None:
            other = state.inventory.get("security_group", remote)
            if other is None:
                state.missing(f"security_group_rule {item.source_id}", tenant,
                              "security_group", remote)
            else:
                state.not_selected(f"security_group_rule {item.source_id}", tenant,
                                   "security_group", other)
            return
        refs["remote_group_id"] = remote_key
    keep_ipv4 = state.config.address_plan.keep_ipv4
    is_ipv4 = (raw.get("ethertype") or "IPv4") == "IPv4"
    variants: list[tuple[str, bool]] = [(item.source_id, True)]
    if is_ipv4 and keep_ipv4:
        variants.append((f"{item.source_id}:ipv4", False))
    for source_id, ipv6 in variants:
        attrs, note = normalise(raw, ipv6)
        prefix = raw.get("remote_ip_prefix")
        if prefix:
            translated = (translate_prefix(str(prefix), subnet_prefixes,
                                           state.config.address_plan.ipv6_prefix)
                          if ipv6 else str(prefix))
            if translated is None:
                if not keep_ipv4:
                    state.warnings.append(
                        f"security_group_rule {item.source_id} of tenant "
                        f"{state.inventory.tenant_name(tenant)} (group "
                        f"{group.name if group else group_id}): IPv4 prefix {prefix} has no "
                        "IPv6 translation; left out (keep it with address_plan.keep_ipv4)")
                continue
            attrs["remote_ip_prefix"] = translated
        if note:
            state.warnings.append(f"security_group_rule {item.source_id} of tenant "
                                  f"{state.inventory.tenant_name(tenant)}: {note}")
        identity = (group_id, remote, *(attrs.get(k) for k in RULE_FIELDS))
        if identity in seen:
            continue
        seen.add(identity)
        # No description: the target adapter marks rules with theirs (migrator-src:<id>).
        remote_group = state.inventory.get("security_group", remote) if remote else None
        label = rule_label(group.name if group else group_id, attrs,
                           (remote_group.name or str(remote)) if remote_group else
                           (str(remote) if remote else None))
        state.add("security_group_rule", source_id, tenant_id=tenant, name=label, attrs=attrs,
                  refs=refs, source_ref=item.source_id,
                  source_name=group.name if group else None)


def rule_label(group: str | None, attrs: dict[str, Any], remote_group: str | None) -> str:
    """What a person calls a rule (progress lines, status): ``web: ingress IPv6 tcp 22 from
    ::/0``. Rules have no name of their own; without this they showed as bare ids."""
    protocol = str(attrs.get("protocol") or "any")
    low, high = attrs.get("port_range_min"), attrs.get("port_range_max")
    ports = ""
    if low is not None and protocol in ("icmp", "icmpv6", "ipv6-icmp", "1", "58"):
        ports = f" type {low}" + (f" code {high}" if high is not None else "")
    elif low is not None:
        ports = f" {low}" if high in (None, low) else f" {low}-{high}"
    peer = f"group {remote_group}" if remote_group else (attrs.get("remote_ip_prefix")
                                                         or "anywhere")
    towards = "to" if attrs.get("direction") == "egress" else "from"
    return (f"{group or '?'}: {attrs.get('direction')} {attrs.get('ethertype')} {protocol}"
            f"{ports} {towards} {peer}")
