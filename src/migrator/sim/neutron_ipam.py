"""Address management for the simulated Neutron: subnet CIDR and IPv6 mode validation, default
gateway and allocation pools, picking free addresses, EUI-64 for SLAAC, and carving prefixes
out of subnet pools. Messages follow Neutron's own wording so that callers see what a real
cloud would tell them."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from typing import Any, Protocol

from migrator.sim.http import SimHTTPError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPV6_MODES = ("slaac", "dhcpv6-stateful", "dhcpv6-stateless")
# Modes in which hosts build their own address from the prefix and their MAC (EUI-64).
AUTO_ADDRESS_MODES = ("slaac", "dhcpv6-stateless")


def invalid_input(message: str) -> SimHTTPError:
    return SimHTTPError(400, f"Invalid input for operation: {message}.",
                        neutron_type="InvalidInput")


def parse_cidr(text: Any) -> IPNetwork:
    """A CIDR as Neutron's ``type:subnet`` validator accepts it: the network address itself."""
    if not isinstance(text, str) or "/" not in text:
        raise invalid_input(f"'{text}' is not a valid IP subnet")
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise invalid_input(f"'{text}' is not a valid IP subnet") from exc
    if str(net) != text and net.with_prefixlen != text:
        raise invalid_input(f"'{text}' isn't a recommended CIDR, use '{net}' instead")
    return net


def parse_ip(text: Any, what: str = "IP address") -> IPAddress:
    try:
        return ipaddress.ip_address(str(text))
    except ValueError as exc:
        raise invalid_input(f"'{text}' is not a valid {what}") from exc


def first_host(net: IPNetwork) -> IPAddress:
    """Neutron's default gateway: the first address after the network address."""
    return net.network_address + 1


def last_host(net: IPNetwork) -> IPAddress:
    # IPv4 keeps the broadcast address out of the pools; IPv6 has no broadcast.
    if net.version == 4:
        return net.broadcast_address - 1
    return net.broadcast_address


def default_pools(net: IPNetwork, gateway: IPAddress | None) -> list[dict[str, str]]:
    """The whole usable range, split around the gateway as Neutron does."""
    if net.prefixlen >= (31 if net.version == 4 else 127):
        return []
    start, end = int(first_host(net)), int(last_host(net))
    ranges: list[tuple[int, int]] = []
    gw = int(gateway) if gateway is not None else None
    if gw is not None and start <= gw <= end:
        if gw > start:
            ranges.append((start, gw - 1))
        if gw < end:
            ranges.append((gw + 1, end))
    else:
        ranges.append((start, end))
    return [{"start": _text(net, a), "end": _text(net, b)} for a, b in ranges]


def _text(net: IPNetwork, number: int) -> str:
    return str(ipaddress.ip_address(number) if net.version == 4
               else ipaddress.IPv6Address(number))


def validate_pools(net: IPNetwork, pools: Any, gateway: IPAddress | None
                   ) -> list[dict[str, str]]:
    if not isinstance(pools, list):
        raise invalid_input(f"Invalid data format for IP pool: '{pools}'")
    out: list[dict[str, str]] = []
    spans: list[tuple[int, int]] = []
    for pool in pools:
        if not isinstance(pool, dict) or "start" not in pool or "end" not in pool:
            raise invalid_input(f"Invalid data format for IP pool: '{pool}'")
        first, last = parse_ip(pool["start"]), parse_ip(pool["end"])
        start, end = int(first), int(last)
        if first not in net or last not in net or start > end:
            raise SimHTTPError(
                400, f"The allocation pool {first}-{last} spans beyond the subnet cidr {net}.",
                neutron_type="OutOfBoundsAllocationPool")
        if gateway is not None and start <= int(gateway) <= end:
            raise SimHTTPError(
                409, f"Gateway ip {gateway} conflicts with allocation pool {first}-{last}.",
                neutron_type="GatewayConflictWithAllocationPools")
        for other_start, other_end in spans:
            if start <= other_end and other_start <= end:
                raise SimHTTPError(
                    400, f"Found overlapping allocation pools: {first}-{last} and "
                    f"{_text(net, other_start)}-{_text(net, other_end)} for subnet {net}.",
                    neutron_type="OverlappingAllocationPools")
        spans.append((start, end))
        out.append({"start": str(first), "end": str(last)})
    return out


def validate_gateway(net: IPNetwork, gateway: Any) -> IPAddress | None:
    if gateway is None:
        return None
    ip = parse_ip(gateway)
    # force_gateway_on_subnet (Liberty's default, always on since): the gateway lives inside,
    # and an IPv4 gateway may be neither the network nor the broadcast address.
    invalid = ip not in net or (net.version == 4 and net.prefixlen < 31 and ip in (
        net.network_address, net.broadcast_address))
    if invalid:
        raise SimHTTPError(400, "Invalid input for operation: Gateway is not valid on "
                           "subnet.", neutron_type="InvalidInput")
    return ip


def validate_ipv6_modes(ip_version: int, ra_mode: Any, address_mode: Any,
                        net: IPNetwork | None) -> None:
    """Neutron's _validate_ipv6_attributes: v6 only, known values, equal when both set, and
    a /64 for the modes in which hosts compute their own EUI-64 address."""
    for name, value in (("ipv6_ra_mode", ra_mode), ("ipv6_address_mode", address_mode)):
        if value is None:
            continue
        if value not in IPV6_MODES:
            raise invalid_input(f"'{value}' is not in {list(IPV6_MODES)}")
        if ip_version != 6:
            raise invalid_input(f"{name} set to '{value}' with ip_version set to "
                                f"'{ip_version}' is not valid")
    if ra_mode is not None and address_mode is not None and ra_mode != address_mode:
        raise invalid_input(f"ipv6_ra_mode set to '{ra_mode}' with ipv6_address_mode set to "
                            f"'{address_mode}' is not valid. If both attributes are set, "
                            "they must be the same value")
    auto = ra_mode in AUTO_ADDRESS_MODES or address_mode in AUTO_ADDRESS_MODES
    if auto and net is not None and net.prefixlen != 64:
        raise invalid_input(f"Invalid CIDR {net} for IPv6 address mode. OpenStack uses the "
                            "EUI-64 address format, which requires the prefix to be /64")


def eui64(net: IPNetwork, mac: str) -> IPAddress:
    """The SLAAC address of a MAC in a /64 (universal/local bit flipped, ff:fe inserted)."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    interface = [*octets[:3], 255, 254, *octets[3:]]
    suffix = int.from_bytes(bytes(interface), "big")
    return ipaddress.ip_address(int(net.network_address) + suffix)


def random_mac(rng: random.Random) -> str:
    # Neutron's default base_mac is fa:16:3e:00:00:00.
    return "fa:16:3e:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))


class Used(Protocol):
    """The addresses taken (a set, or anything answering ``in``)."""

    def __contains__(self, address: object) -> bool: ...


def next_free_ip(subnet: dict[str, Any], used: Used, start: tuple[int, int] = (0, 0)
                 ) -> tuple[str, tuple[int, int]] | None:
    """The lowest free address of the subnet's allocation pools (in the pools' order), and
    where it is (pool number, address as a number). ``start``: where to begin, the place of
    an earlier answer when every address before it has stayed taken since."""
    for number, pool in enumerate(subnet.get("allocation_pools") or []):
        if number < start[0]:
            continue
        first = ipaddress.ip_address(pool["start"])
        current, end = int(first), int(ipaddress.ip_address(pool["end"]))
        if number == start[0]:
            current = max(current, start[1])
        make = ipaddress.IPv4Address if first.version == 4 else ipaddress.IPv6Address
        while current <= end:
            text = str(make(current))
            if text not in used:
                return text, (number, current)
            current += 1
    return None


def overlaps_any(net: IPNetwork, others: Iterable[str]) -> str | None:
    for text in others:
        other = ipaddress.ip_network(text, strict=False)
        if other.version == net.version and net.overlaps(other):
            return text
    return None


def allocate_prefix(prefixes: list[str], prefixlen: int, taken: Iterable[str]) -> str | None:
    """The first prefix of length ``prefixlen`` inside ``prefixes`` overlapping nothing taken."""
    used = [ipaddress.ip_network(t, strict=False) for t in taken]
    for text in prefixes:
        pool = ipaddress.ip_network(text, strict=False)
        if prefixlen < pool.prefixlen:
            continue
        for candidate in pool.subnets(new_prefix=prefixlen):
            if not any(candidate.overlaps(u) for u in used):
                return str(candidate)
    return None
