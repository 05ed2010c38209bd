"""The address plan: which IPv6 /64 each legacy subnet gets.

Allocation is deterministic and stable across re-plans:

1. a subnet the target already has (created by migrator: it carries the source id) keeps the
   /64 it has there;
2. every other legacy subnet of the snapshot (all tenants, selected or not, so that waves
   planned separately never hand out the same /64) gets slot ``sha256(source id) mod N`` of
   the N /64s of the prefix, probing the next free slot on a collision, subnets taken in
   source id order. Adding or removing other subnets therefore moves nothing, except the
   rare subnet whose slot a new one had taken first.

With a target subnet pool instead of a prefix, the pool allocates and the plan holds only the
prefix length.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping

from migrator.errors import PlanError

SUBNET_PREFIXLEN = 64
IPV6_MODES = {
    "slaac": ("slaac", "slaac"),
    "dhcpv6-stateful": ("dhcpv6-stateful", "dhcpv6-stateful"),
    "dhcpv6-stateless": ("dhcpv6-stateless", "dhcpv6-stateless"),
}


def allocate(prefix: str, subnet_ids: Iterable[str],
             recorded: Mapping[str, str] | None = None) -> dict[str, str]:
    """source subnet id -> IPv6 /64 (text) cut from ``prefix``."""
    net = ipaddress.IPv6Network(prefix)
    bits = SUBNET_PREFIXLEN - net.prefixlen
    if bits < 0:
        raise PlanError(f"address_plan.ipv6_prefix {prefix} is longer than /64")
    slots = 1 << bits
    base = int(net.network_address)
    out: dict[str, str] = {}
    used: set[int] = set()
    for source_id, cidr in sorted((recorded or {}).items()):
        try:
            sub = ipaddress.IPv6Network(cidr)
        except ValueError:
            continue
        if sub.prefixlen == SUBNET_PREFIXLEN and sub.subnet_of(net):
            used.add((int(sub.network_address) - base) >> (128 - SUBNET_PREFIXLEN))
        out[source_id] = str(sub)
    wanted = sorted(set(subnet_ids) - set(out))
    if len(wanted) + len(used) > slots:
        raise PlanError(f"address_plan.ipv6_prefix {prefix} holds {slots} /64 subnets, "
                        f"{len(wanted) + len(used)} are needed; give a shorter prefix")
    for source_id in wanted:
        slot = int.from_bytes(hashlib.sha256(source_id.encode()).digest()[:8], "big") % slots
        while slot in used:
            slot = (slot + 1) % slots
        used.add(slot)
        address = ipaddress.IPv6Address(base + (slot << (128 - SUBNET_PREFIXLEN)))
        out[source_id] = f"{address}/{SUBNET_PREFIXLEN}"
    return out


def ipv6_modes(mode: str) -> tuple[str, str]:
    """(ipv6_ra_mode, ipv6_address_mode) for the configured mode."""
    return IPV6_MODES[mode]
