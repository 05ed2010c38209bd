"""Security groups and their rules in the simulated Neutron, with the validation Neutron does
on rules (protocol names and numbers, port ranges, ICMP type/code, ethertype against the
prefix, remote prefix xor remote group) and its duplicate detection, which treats ``tcp`` and
``6`` as the same protocol."""

from __future__ import annotations

import ipaddress
from typing import Any

from aiohttp import web

from migrator.sim.http import SimHTTPError, auth_of
from migrator.sim.neutron_common import (
    SECURITY_GROUP_RULES,
    SECURITY_GROUPS,
    NeutronCore,
    bad_request,
)
from migrator.sim.state import Record

LIBERTY_PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
# neutron-lib's IP_PROTOCOL_MAP (a modern server knows many more names).
MODERN_PROTOCOLS = {"ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0,
                    "icmp": 1, "igmp": 2, "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44,
                    "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60,
                    "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132,
                    "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112}
PORT_PROTOCOLS = {6, 17, 33, 132, 136}
ICMP_PROTOCOLS = {1, 58}
GROUP_ATTRS = {"name", "description", "tenant_id", "project_id", "stateful"}
RULE_ATTRS = {"security_group_id", "direction", "ethertype", "protocol", "port_range_min",
              "port_range_max", "remote_ip_prefix", "remote_group_id", "tenant_id",
              "project_id", "description", "remote_address_group_id"}


def invalid(message: str, kind: str = "InvalidInput") -> SimHTTPError:
    return SimHTTPError(400, message, neutron_type=kind)


class SecurityGroupHandlers:
    def __init__(self, core: NeutronCore) -> None:
        self.core = core
        self.state = core.state

    @property
    def protocols(self) -> dict[str, int]:
        return LIBERTY_PROTOCOLS if self.core.liberty else MODERN_PROTOCOLS

    # -- groups ------------------------------------------------------------------------------
    async def list_groups(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        # Neutron's get_security_groups makes sure the listed project has its default group.
        wanted = request.query.get("tenant_id") or (
            None if self.core.liberty else request.query.get("project_id"))
        self.core.ensure_default_group(wanted or ctx.project_id)
        return self.core.list_response(SECURITY_GROUPS, request)

    async def get_group(self, request: web.Request) -> web.Response:
        rec = self.core.get_visible(SECURITY_GROUPS, request.match_info["id"], auth_of(request))
        return self.core.show_response(SECURITY_GROUPS, rec, request)

    async def create_group(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        body = await self.core.body_of(request, SECURITY_GROUPS)
        tags = self.core.creation_tags(body)
        allowed = GROUP_ATTRS - ({"project_id", "stateful"} if self.core.liberty else set())
        self.core.check_unknown(SECURITY_GROUPS, body, allowed)
        name = str(body.get("name", ""))
        if name.lower() == "default":
            raise SimHTTPError(409, "Default security group already exists.",
                               neutron_type="SecurityGroupDefaultAlreadyExists")
        project = self.core.owner_for_create(body, ctx)
        self.core.enforce_quota(SECURITY_GROUPS, project)
        self.core.ensure_default_group(project)
        group = self.core.stamp_new({"name": name, "project_id": project,
                                     "description": str(body.get("description", "")),
                                     "stateful": bool(body.get("stateful", True)),
                                     "shared": False}, tags=tags)
        self.state.put("security_groups", group)
        for ethertype in ("IPv4", "IPv6"):
            self.core.add_rule(group, "egress", ethertype)
        return self.core.show_response(SECURITY_GROUPS, group, request, status=201)

    async def update_group(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        group = self.core.get_owned(SECURITY_GROUPS, request.match_info["id"], ctx, "update")
        body = await self.core.body_of(request, SECURITY_GROUPS)
        self.core.check_unknown(SECURITY_GROUPS, body, GROUP_ATTRS - {"tenant_id",
                                                                      "project_id"})
        if "name" in body and (group["name"] == "default" or str(body["name"]).lower()
                               == "default") and body["name"] != group["name"]:
            raise SimHTTPError(409, "Updating default security group not allowed.",
                               neutron_type="SecurityGroupCannotUpdateDefault")
        group.update(body)
        self.core.touch(group)
        return self.core.show_response(SECURITY_GROUPS, group, request)

    async def delete_group(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        group = self.core.get_owned(SECURITY_GROUPS, request.match_info["id"], ctx, "delete")
        if self.state.tagged("ports", group["id"], field="security_groups"):
            raise SimHTTPError(409, f"Security Group {group['id']} in use.",
                               neutron_type="SecurityGroupInUse")
        if group["name"] == "default" and not ctx.is_admin:
            raise SimHTTPError(409, "Insufficient rights for removing default security "
                               "group.", neutron_type="SecurityGroupCannotRemoveDefault")
        # Rules of the group and rules elsewhere naming it as remote group go with it
        # (ON DELETE CASCADE in Neutron's schema).
        for rule in [*self.state.where("security_group_rules", "security_group_id", group["id"]),
                     *self.state.lookup("security_group_rules", "remote_group_id", group["id"])]:
            self.state.delete("security_group_rules", rule["id"])
        self.state.delete("security_groups", group["id"])
        return web.Response(status=204)

    # -- rules -------------------------------------------------------------------------------
    async def list_rules(self, request: web.Request) -> web.Response:
        return self.core.list_response(SECURITY_GROUP_RULES, request)

    async def get_rule(self, request: web.Request) -> web.Response:
        rec = self.core.get_visible(SECURITY_GROUP_RULES, request.match_info["id"],
                                    auth_of(request))
        return self.core.show_response(SECURITY_GROUP_RULES, rec, request)

    async def delete_rule(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        rule = self.core.get_owned(SECURITY_GROUP_RULES, request.match_info["id"], ctx,
                                   "delete")
        self.state.delete("security_group_rules", rule["id"])
        return web.Response(status=204)

    async def create_rule(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        body = await self.core.body_of(request, SECURITY_GROUP_RULES)
        allowed = RULE_ATTRS - ({"project_id", "description", "remote_address_group_id"}
                                if self.core.liberty else set())
        self.core.check_unknown(SECURITY_GROUP_RULES, body, allowed)
        group_id = str(body.get("security_group_id") or "")
        if not group_id:
            raise bad_request("Failed to parse request. Required attribute "
                              "'security_group_id' not specified")
        group = self.core.get_owned(SECURITY_GROUPS, group_id, ctx, "create_security_group")
        project = (self.core.owner_for_create(body, ctx)
                   if "tenant_id" in body or "project_id" in body else group["project_id"])
        rule = self._validated(body, ctx.is_admin, project)
        duplicate = self._duplicate_of(group["id"], rule)
        if duplicate is not None:
            raise SimHTTPError(409, "Security group rule already exists. Rule id is "
                               f"{duplicate['id']}.", neutron_type="SecurityGroupRuleExists")
        self.core.enforce_quota(SECURITY_GROUP_RULES, project)
        rec = self.core.add_rule(group, rule.pop("direction"), rule.pop("ethertype"), **rule)
        rec["project_id"] = project
        return self.core.show_response(SECURITY_GROUP_RULES, rec, request, status=201)

    def _protocol(self, value: Any) -> str | None:
        """Neutron's convert_protocol: numbers 0-255 kept as text, known names lower-cased."""
        if value is None:
            return None
        names = sorted(self.protocols)
        refused = invalid(f"Security group rule protocol {value} not supported. Only protocol "
                          f"values {[None, *names]} and integer representations [0 to 255] "
                          "are supported.", "SecurityGroupRuleInvalidProtocol")
        try:
            number = int(value)
        except (TypeError, ValueError):
            if isinstance(value, str) and value.lower() in self.protocols:
                return value.lower()
            raise refused from None
        if not 0 <= number <= 255:
            raise refused
        return str(number)

    def _number(self, protocol: str | None) -> int | str | None:
        """The protocol number, so that ``tcp`` and ``6`` compare equal."""
        if protocol is None:
            return None
        if protocol in MODERN_PROTOCOLS:
            return MODERN_PROTOCOLS[protocol]
        return int(protocol) if str(protocol).isdigit() else protocol

    def _validated(self, body: dict[str, Any], is_admin: bool, project: str) -> dict[str, Any]:
        direction = body.get("direction")
        if direction not in ("ingress", "egress"):
            raise invalid(f"Invalid input for direction. Reason: '{direction}' is not in "
                          "['ingress', 'egress'].")
        ethertype = next((e for e in ("IPv4", "IPv6")
                          if str(body.get("ethertype", "IPv4")).lower() == e.lower()), None)
        if ethertype is None:
            raise invalid(f"Security group rule for ethertype '{body.get('ethertype')}' not "
                          "supported. Allowed values are ['IPv4', 'IPv6'].",
                          "SecurityGroupRuleInvalidEtherType")
        protocol = self._protocol(body.get("protocol"))
        ports = [self._port(body.get(k)) for k in ("port_range_min", "port_range_max")]
        self._check_ports(protocol, ports[0], ports[1])
        if protocol in ("icmpv6", "ipv6-icmp", "58") and ethertype == "IPv4":
            raise invalid(f"Invalid ethertype {ethertype} for protocol {protocol}.",
                          "SecurityGroupEthertypeConflictWithProtocol")
        prefix = body.get("remote_ip_prefix")
        remote_group = body.get("remote_group_id")
        if prefix and remote_group:
            raise invalid("Only remote_ip_prefix or remote_group_id may be provided.",
                          "SecurityGroupRemoteGroupAndRemoteIpPrefix")
        if prefix:
            prefix = self._prefix(str(prefix), ethertype)
        if remote_group:
            # The remote group must be readable by the rule's project (any group for admins).
            other = self.state.get("security_groups", str(remote_group))
            if other is None or (not is_admin and other.get("project_id") != project):
                raise SECURITY_GROUPS.not_found(str(remote_group))
        rule: dict[str, Any] = {"direction": direction, "ethertype": ethertype,
                                "protocol": protocol, "port_range_min": ports[0],
                                "port_range_max": ports[1], "remote_ip_prefix": prefix or None,
                                "remote_group_id": remote_group or None}
        if not self.core.liberty:
            rule["description"] = str(body.get("description", ""))
            if prefix:
                rule["normalized_cidr"] = str(ipaddress.ip_network(prefix, strict=False))
        return rule

    @staticmethod
    def _port(value: Any) -> int | None:
        if value is None:
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = -1
        if not 0 <= number <= 65535:
            raise invalid(f"Invalid value for port {value}", "SecurityGroupInvalidPortValue")
        return number

    def _check_ports(self, protocol: str | None, low: int | None, high: int | None) -> None:
        if low is None and high is None:
            return
        if protocol is None:
            raise invalid("Must also specify protocol if port range is given." if not
                          self.core.liberty else
                          "Must also specifiy protocol if port range is given.",
                          "SecurityGroupProtocolRequiredWithPorts")
        number = self._number(protocol)
        if number in ICMP_PROTOCOLS:
            for attr, field, value in (("port_range_min", "type", low),
                                       ("port_range_max", "code", high)):
                if value is not None and not 0 <= value <= 255:
                    raise invalid(f"Invalid value for ICMP {field} ({attr}) {value}. It must "
                                  "be 0 to 255.", "SecurityGroupInvalidIcmpValue")
            if low is None and high is not None:
                raise invalid(f"ICMP code (port-range-max) {high} is provided but ICMP type "
                              "(port-range-min) is missing.", "SecurityGroupMissingIcmpType")
            return
        ported = {6, 17} if self.core.liberty else PORT_PROTOCOLS
        if number in ported:
            if low is None or high is None or low > high:
                raise invalid("For TCP/UDP protocols, port_range_min must be <= "
                              "port_range_max", "SecurityGroupInvalidPortRange")
            if not self.core.liberty and 0 in (low, high):
                raise invalid("Invalid value for port 0", "SecurityGroupInvalidPortValue")
        elif not self.core.liberty:
            # Liberty silently kept ports on other protocols; later releases refuse them.
            raise invalid(f"Invalid protocol {protocol} for port range, only supported for "
                          "TCP, UDP, UDPLITE, SCTP and DCCP.",
                          "SecurityGroupInvalidProtoForPortRange")

    def _prefix(self, text: str, ethertype: str) -> str:
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError as exc:
            raise invalid(f"Invalid input for operation: '{text}' is not a valid IP subnet.",
                          "InvalidCIDR") from exc
        if f"IPv{iface.version}" != ethertype:
            raise invalid(f"Conflicting value ethertype {ethertype} for CIDR {text}",
                          "SecurityGroupRuleParameterConflict")
        # netaddr keeps the host bits (10.0.0.5/24 stays so); a bare address gains its /32.
        return f"{iface.ip}/{iface.network.prefixlen}"

    def _duplicate_of(self, group_id: str, rule: dict[str, Any]) -> Record | None:
        keys = ("direction", "ethertype", "port_range_min", "port_range_max",
                "remote_ip_prefix", "remote_group_id")
        for other in self.state.where("security_group_rules", "security_group_id", group_id):
            same = all(other.get(k) == rule.get(k) for k in keys)
            if same and self._number(other.get("protocol")) == self._number(rule["protocol"]):
                return other
        return None
