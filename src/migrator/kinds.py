"""The step kinds a plan may hold, in the order steps are listed per tenant (no import of
anything heavy: ``migrator status`` orders its tables by it)."""

from __future__ import annotations

KINDS = (
    "project", "quota", "user", "role_assignment",
    "network", "subnet", "router", "router_interface",
    "security_group", "security_group_rule", "keypair",
    "image", "image_member", "volume", "server",
)
KIND_ORDER = {kind: i for i, kind in enumerate(KINDS)}
