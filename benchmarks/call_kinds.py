"""Target calls attributed to the kinds of resources migrator moves, from the simulator's own
call record (``/_sim/calls``: calls per ``METHOD /route/{template}``): exact for every kind,
images included, whose steps keep no call count in their checkpoints.

A route belongs to the kind whose steps make it in the execute benchmark's inventory (no
servers, no volumes): ports are read only by router interfaces there, roles only by role
assignments. Calls of no kind (tokens, version documents, extension lists) are counted apart.
"""

from __future__ import annotations

import re
from collections import Counter

# (pattern on the route's path, kind): the first that matches.
ROUTE_KINDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), kind) for pattern, kind in (
        (r"/auth/tokens$", "(tokens)"),
        (r"^/identity/v3/projects/[^/]+/users/[^/]+/roles", "role_assignment"),
        (r"^/identity/v3/(role_assignments|roles)\b", "role_assignment"),
        (r"^/identity/v3/projects\b", "project"),
        (r"^/identity/v3/users\b", "user"),
        (r"/os-quota-sets\b|^/network/v2\.0/quotas\b", "quota"),
        (r"^/network/v2\.0/routers/[^/]+/(add|remove)_router_interface$", "router_interface"),
        (r"^/network/v2\.0/ports\b", "router_interface"),
        (r"^/network/v2\.0/routers\b", "router"),
        (r"^/network/v2\.0/networks\b", "network"),
        (r"^/network/v2\.0/subnets\b", "subnet"),
        (r"^/network/v2\.0/security-group-rules\b", "security_group_rule"),
        (r"^/network/v2\.0/security-groups\b", "security_group"),
        (r"/os-keypairs\b", "keypair"),
        (r"^/image/v2/images/[^/]+/members\b", "image_member"),
        (r"^/image/v2/images\b", "image"),
        (r"^/(identity|image|network|compute|volume)(/v[0-9.]+)?/?$|/extensions\b|"
         r"/schemas/", "(discovery)"),
    ))


def kind_of(route: str) -> str:
    """The kind a call record key (``METHOD /path/{template}``) is attributed to."""
    path = route.partition(" ")[2]
    for pattern, kind in ROUTE_KINDS:
        if pattern.search(path):
            return kind
    return "(other)"


def calls_by_kind(calls: dict[str, int]) -> Counter[str]:
    out: Counter[str] = Counter()
    for route, count in calls.items():
        out[kind_of(route)] += count
    return out
