"""Handlers for Neutron kinds: network, subnet, router, router_interface, security_group,
security_group_rule.

Specs (see handlers/base.py for the common shape):

- network: attrs {name, admin_state_up, shared, description, ...}; refs {project_id};
  lookup {adopt_id?} (a clash the config resolved with ``adopt``).
- subnet: attrs {name, ip_version: 6, cidr | prefixlen, ipv6_ra_mode, ipv6_address_mode,
  enable_dhcp, gateway_ip, ...}; refs {network_id, project_id}; lookup {subnetpool_id? |
  subnetpool? (name)}: from a subnet pool, ``cidr`` is left to the pool.
- router: attrs {name, admin_state_up, description, external_gateway_info?}; refs
  {project_id}; lookup {external_network_id? | external_network? (name)}. Phase ``create``
  makes the router, phase ``gateway`` sets the gateway with ``PUT /routers/{id}``.
- router_interface: source id ``<router>:<subnet>``; refs {router_id, subnet_id}. The target
  id is the interface's port; an existing interface on that subnet is adopted.
- security_group: attrs {name, description, stateful?}; refs {project_id}. The project's
  ``default`` group, which Neutron creates by itself, is adopted (and tagged).
- security_group_rule: attrs {direction, ethertype, protocol, port_range_min,
  port_range_max, remote_ip_prefix}; refs {security_group_id, remote_group_id?}. A rule the
  target already has (409 SecurityGroupRuleExists, e.g. the default egress rules) is adopted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from migrator.clouds.target import RULE_DESCRIPTION_PREFIX, TargetCloud, same_rule
from migrator.engine.handlers import StepContext
from migrator.engine.steps import StepSnapshot
from migrator.errors import ConfigError, StepFailedError
from migrator.handlers.base import ResourceHandler, spec_part


class NetworkHandler(ResourceHandler):
    kind = "network"
    verify_fields = ("name", "admin_state_up", "shared", "description", "project_id", "mtu",
                     "router:external", "port_security_enabled")

    def find(self, tc: TargetCloud, step: StepSnapshot, source_id: str,
             attrs: dict[str, Any]) -> dict[str, Any] | None:
        return tc.find_network_by_source(source_id, attrs)

    def adopt_by_decision(self, tc: TargetCloud, step: StepSnapshot, source_id: str,
                          attrs: dict[str, Any]) -> dict[str, Any] | None:
        adopt_id = spec_part(step, "lookup").get("adopt_id")
        if not adopt_id:
            return None
        tc.add_tag("networks", str(adopt_id), f"migrator-src-{source_id}")
        return tc.get_network(str(adopt_id))

    def create(self, ctx: StepContext, tc: TargetCloud, step: StepSnapshot, source_id: str,
               attrs: dict[str, Any]) -> dict[str, Any]:
        return tc.create_network(source_id, attrs)

    def read(self, tc: TargetCloud, target_id: str, step: StepSnapshot,
             attrs: dict[str, Any]) -> dict[str, Any]:
        return tc.get_network(target_id)


class SubnetHandler(ResourceHandler):
    kind = "subnet"
    verify_fields = ("name", "network_id", "project_id", "ip_version", "cidr", "gateway_ip",
                     "enable_dhcp", "ipv6_ra_mode", "ipv6_address_mode", "dns_nameservers",
                     "allocation_pools", "host_routes", "subnetpool_id", "description")

    def find(self, tc: TargetCloud, step: StepSnapshot, source_id: str,
             attrs: dict[str, Any]) -> dict[str, Any] | None:
        return tc.find_subnet_by_source(source_id, attrs)

    def create(self, ctx: StepContext, tc: TargetCloud, step: StepSnapshot, source_id: str,
               attrs: dict[str, Any]) -> dict[str, Any]:
        return tc.create_subnet(source_id, self._with_pool(tc, step, attrs))

    def _with_pool(self, tc: TargetCloud, step: StepSnapshot, attrs: dict[str, Any]
                   ) -> dict[str, Any]:
        lookup = spec_part(step, "lookup")
        body = dict(attrs)
        pool_id = lookup.get("subnetpool_id")
        if not pool_id and lookup.get("subnetpool"):
            pool = tc.cached(f"subnetpool:{lookup['subnetpool']}",
                             lambda: tc.find_subnetpool_by_name(str(lookup["subnetpool"])))
            if pool is None:
                raise ConfigError(f"step {step.key!r}: subnet pool {lookup['subnetpool']!r} "
                                  f"does not exist on {tc.name}")
            pool_id = pool["id"]
        if pool_id:
            body["subnetpool_id"] = pool_id
            body.pop("cidr", None)
            body.setdefault("prefixlen", 64 if body.get("ip_version") == 6 else 24)
        return body

    def read(self, tc: TargetCloud, target_id: str, step: StepSnapshot,
             attrs: dict[str, Any]) -> dict[str, Any]:
        return tc.get_subnet(target_id)

    def extra_checks(self, tc: TargetCloud, step: StepSnapshot, attrs: dict[str, Any],
                     resource: dict[str, Any]) -> list[str]:
        want = attrs.get("prefixlen")
        if want and resource.get("cidr") and not str(resource["cidr"]).endswith(f"/{want}"):
            return [f"prefixlen: wanted /{want}, target has {resource['cidr']}"]
        return []


class RouterHandler(ResourceHandler):
    kind = "router"
    phases = ("create", "gateway")
    verify_fields = ("name", "admin_state_up", "project_id", "description")

    def find(self, tc: TargetCloud, step: StepSnapshot, source_id: str,
             attrs: dict[str, Any]) -> dict[str, Any] | None:
        return tc.find_router_by_source(source_id, attrs)

    def create(self, ctx: StepContext, tc: TargetCloud, step: StepSnapshot, source_id: str,
               attrs: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in attrs.items() if k != "external_gateway_info"}
        # Neutron takes the gateway in the create call: one call instead of three (create,
        # read, set gateway). The gateway phase then finds it in place (see notes()).
        gateway = self.gateway(tc, step, attrs)
        if gateway is not None:
            body["external_gateway_info"] = gateway
        return tc.create_router(source_id, body)

    def notes(self, resource: Mapping[str, Any]) -> Mapping[str, Any]:
        info = resource.get("external_gateway_info") or {}
        return {"gateway_network_id": info["network_id"]} if info.get("network_id") else {}

    def gateway(self, tc: TargetCloud, step: StepSnapshot, attrs: dict[str, Any]
                ) -> dict[str, Any] | None:
        """The wanted external_gateway_info (network id resolved), None for no gateway."""
        lookup = spec_part(step, "lookup")
        info = dict(attrs.get("external_gateway_info") or {})
        network_id = info.get("network_id") or lookup.get("external_network_id")
        if not network_id and lookup.get("external_network"):
            name = str(lookup["external_network"])
            net = tc.cached(f"external-network:{name}", lambda: tc.find_external_network(name))
            if net is None:
                raise ConfigError(f"step {step.key!r}: external network {name!r} does not "
                                  f"exist on {tc.name}")
            network_id = net["id"]
        if not network_id:
            return None
        info["network_id"] = network_id
        return info

    def extra_phase(self, ctx: StepContext, tc: TargetCloud, step: StepSnapshot, phase: str,
                    attrs: dict[str, Any]) -> Mapping[str, Any] | None:
        if phase != "gateway":
            return super().extra_phase(ctx, tc, step, phase, attrs)
        wanted = self.gateway(tc, step, attrs)
        if wanted is None:
            return {}
        if ctx.step.checkpoint.get("gateway_network_id") == wanted["network_id"]:
            return {}  # set by the create call, or found on the adopted router
        router_id = str(ctx.step.checkpoint["target_id"])
        current = tc.get_router(router_id).get("external_gateway_info") or {}
        if current.get("network_id") != wanted["network_id"]:
            tc.set_router_gateway(router_id, wanted)
        return {"gateway_network_id": wanted["network_id"]}

    def read(self, tc: TargetCloud, target_id: str, step: StepSnapshot,
             attrs: dict[str, Any]) -> dict[str, Any]:
        return tc.get_router(target_id)

    def extra_checks(self, tc: TargetCloud, step: StepSnapshot, attrs: dict[str, Any],
                     resource: dict[str, Any]) -> list[str]:
        wanted = self.gateway(tc, step, attrs)
        have = (resource.get("external_gateway_info") or {}).get("network_id")
        if (wanted or {}).get("network_id") != have:
            return [f"gateway: wanted {(wanted or {}).get('network_id')!r}, target has "
                    f"{have!r}"]
        return []


class RouterInterfaceHandler(ResourceHandler):
    kind = "router_interface"
    phases = ("attach",)
    marked = False

    @staticmethod
    def _ids(step: StepSnapshot, attrs: Mapping[str, Any]) -> tuple[str, str]:
        router_id, subnet_id = attrs.get("router_id"), attrs.get("subnet_id")
        if not router_id or not subnet_id:
            raise StepFailedError(f"step {step.key!r}: needs router_id and subnet_id "
                                  "(spec.refs)")
        return str(router_id), str(subnet_id)

    def find(self, tc: TargetCloud, step: StepSnapshot, source_id: str,
             attrs: dict[str, Any]) -> dict[str, Any] | None:
        return tc.find_router_interface(*self._ids(step, attrs))

    def create(self, ctx: StepContext, tc: TargetCloud, step: StepSnapshot, source_id: str,
               attrs: dict[str, Any]) -> dict[str, Any]:
        router_id, subnet_id = self._ids(step, attrs)
        out = tc.add_router_interface(router_id, subnet_id)
        # Neutron's answer names the router, the port and its subnet(s): the port as
        # verification sees it, without reading it again.
        subnets = out.get("subnet_ids") or [out.get("subnet_id")]
        return {"id": out["port_id"], "device_id": out.get("id"),
                "fixed_ips": [{"subnet_id": s} for s in subnets if s]}

    def read(self, tc: TargetCloud, target_id: str, step: StepSnapshot,
             attrs: dict[str, Any]) -> dict[str, Any]:
        return tc.get_port(target_id)

    def extra_checks(self, tc: TargetCloud, step: StepSnapshot, attrs: dict[str, Any],
                     resource: dict[str, Any]) -> list[str]:
        router_id, subnet_id = self._ids(step, attrs)
        problems = []
        if resource.get("device_id") != router_id:
            problems.append(f"device_id: wanted {router_id}, target has "
                            f"{resource.get('device_id')!r}")
        if not any(ip.get("subnet_id") == subnet_id for ip in resource.get("fixed_ips") or []):
            problems.append(f"fixed_ips: no address on subnet {subnet_id}")
        return problems

    verify_ignore = frozenset({"tags", "router_id", "subnet_id"})


class SecurityGroupHandler(ResourceHandler):
    kind = "security_group"
    verify_fields = ("name", "description", "project_id", "stateful")

    def find(self, tc: TargetCloud, step: StepSnapshot, source_id: str,
             attrs: dict[str, Any]) -> dict[str, Any] | None:
        found = tc.find_security_group_by_source(source_id, attrs)
        if found is None and attrs.get("name") == "default" and attrs.get("project_id"):
            # Neutron made the project's default group itself: adopt it, never duplicate.
            default = tc.find_security_group_by_name("default", str(attrs["project_id"]))
            if default is not None:
                tc.tag_security_group(default["id"], source_id)
                default["tags"] = [*default.get("tags", []), f"migrator-src-{source_id}"]
                return default
        return found

    def create(self, ctx: StepContext, tc: TargetCloud, step: StepSnapshot, source_id: str,
               attrs: dict[str, Any]) -> dict[str, Any]:
        return tc.create_security_group(source_id, attrs)

    def read(self, tc: TargetCloud, target_id: str, step: StepSnapshot,
             attrs: dict[str, Any]) -> dict[str, Any]:
        return self.shown(tc.get_security_group(target_id))

    def shown(self, group: dict[str, Any]) -> dict[str, Any]:
        if group.get("name") == "default":
            # The target's own description stays on the adopted default group.
            group = {k: v for k, v in group.items() if k != "description"}
        return group


class SecurityGroupRuleHandler(ResourceHandler):
    kind = "security_group_rule"
    # Compared with Neutron's own notion of "the same rule" (see extra_checks).
    verify_fields = ("security_group_id", "direction")

    def find(self, tc: TargetCloud, step: StepSnapshot, source_id: str,
             attrs: dict[str, Any]) -> dict[str, Any] | None:
        return tc.find_security_group_rule_by_source(source_id, like=attrs)

    def create(self, ctx: StepContext, tc: TargetCloud, step: StepSnapshot, source_id: str,
               attrs: dict[str, Any]) -> dict[str, Any]:
        rule, adopted = tc.create_security_group_rule(source_id, attrs)
        if adopted:
            ctx.log.info("step %s: the target already had this rule (%s): adopted",
                         step.key, rule["id"])
        return rule

    def read(self, tc: TargetCloud, target_id: str, step: StepSnapshot,
             attrs: dict[str, Any]) -> dict[str, Any]:
        return tc.get_security_group_rule(target_id)

    def extra_checks(self, tc: TargetCloud, step: StepSnapshot, attrs: dict[str, Any],
                     resource: dict[str, Any]) -> list[str]:
        return [] if same_rule(resource, attrs) else [
            f"rule: wanted {_rule_text(attrs)}, target has {_rule_text(resource)}"]

    def is_marked(self, step: StepSnapshot) -> bool:
        # An identical rule the target already had keeps its own description.
        return not step.checkpoint.get("adopted_rule")

    def notes(self, resource: Mapping[str, Any]) -> Mapping[str, Any]:
        if str(resource.get("description") or "").startswith(RULE_DESCRIPTION_PREFIX):
            return {}
        return {"adopted_rule": "identical rule already on the target"}


def _rule_text(rule: Mapping[str, Any]) -> str:
    keys = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max",
            "remote_ip_prefix", "remote_group_id")
    return " ".join(f"{k}={rule.get(k)}" for k in keys if rule.get(k) is not None)
