"""Plan rules, one module per kind group: each turns the selected inventory items of its kinds
into steps with their translated target representation and their dependencies.

They run in this order (a rule may refer only to steps of earlier rules): identity (project,
quota, user, role_assignment), network (network, subnet, router, router_interface), security
(security_group, security_group_rule), compute (keypair), storage (image, image_member,
volume), servers (server: it takes over the volume steps of its attached volumes).
"""

from __future__ import annotations

from migrator.plan.context import PlanState
from migrator.plan.rules import compute, identity, network, security, servers, storage

RULES = (identity.plan, network.plan, security.plan, compute.plan, storage.plan,
         servers.plan)


def apply_rules(state: PlanState) -> None:
    for rule in RULES:
        rule(state)


__all__ = ["RULES", "apply_rules"]
