"""A generated legacy inventory shaped as discovery stores it (same kinds, source ids and raw
attributes as LegacySource reads from the Liberty simulator), for planner tests and the
planning benchmark: stored with ``store.inventory.save_snapshot``.

Per tenant ``t``: a project, 2 users with the ``_member_`` role, 3 quota sets, network
``<t>-net`` with an IPv4 subnet, router ``<t>-router`` (gateway on the admin's ``public``,
one interface), groups ``web`` (4 rules) and ``db`` (1 rule on ``web``; odd tenants also on
the previous tenant's ``web``), each with the 2 default egress rules, and a keypair. The admin
tenant owns ``public`` (external) and ``shared-net`` (shared).
"""

from __future__ import annotations

import uuid
from typing import Any

from migrator.store.inventory import Item

NAMES = ["physics", "chemistry", "biology"]
ROLE_MEMBER = "db2604e7294948f0aba7a6b2f897d346"
ROLE_ADMIN = "38aa502d706741389d3e80d84670c40b"
_NS = uuid.UUID("6f1a0b7e-0000-4000-8000-000000000000")


def uid(*parts: object) -> str:
    return str(uuid.uuid5(_NS, "/".join(map(str, parts))))


def hexid(*parts: object) -> str:
    return uuid.uuid5(_NS, "/".join(map(str, parts))).hex


def tenant_name(i: int, count: int) -> str:
    return NAMES[i] if count <= len(NAMES) else f"tenant-{i:05d}"


def _rule(tenant: str, group: str, rid: str, direction: str, ethertype: str, **kw: Any
          ) -> Item:
    attrs = {"direction": direction, "ethertype": ethertype, "id": rid,
             "port_range_max": None, "port_range_min": None, "protocol": None,
             "remote_group_id": None, "remote_ip_prefix": None, "security_group_id": group,
             "tenant_id": tenant, **kw}
    return Item("security_group_rule", rid, tenant, None, attrs)


def _group(tenant: str, gid: str, name: str, description: str, rules: list[Item]) -> list[Item]:
    egress = [_rule(tenant, gid, uid(gid, "egress", e), "egress", e) for e in ("IPv4", "IPv6")]
    rules = egress + rules
    group = Item("security_group", gid, tenant, name, {
        "description": description, "id": gid, "name": name, "tenant_id": tenant,
        "security_group_rules": [r.attributes for r in rules]})
    return [group, *rules]


def admin_items() -> list[Item]:
    pid = hexid("admin")
    public, shared = uid("net", "public"), uid("net", "shared-net")
    out = [
        Item("domain", "default", None, "Default", {"id": "default", "name": "Default",
                                                   "enabled": True}),
        Item("role", ROLE_MEMBER, None, "_member_", {"id": ROLE_MEMBER, "name": "_member_"}),
        Item("role", ROLE_ADMIN, None, "admin", {"id": ROLE_ADMIN, "name": "admin"}),
        Item("project", pid, pid, "admin", {"id": pid, "name": "admin", "domain_id": "default",
                                            "enabled": True, "description": "admin"}),
    ]
    for nid, name, external, cidr in ((public, "public", True, "203.0.113.0/24"),
                                       (shared, "shared-net", False, "192.168.0.0/22")):
        sid = uid("subnet", name)
        out.append(Item("network", nid, pid, name, {
            "id": nid, "name": name, "admin_state_up": True, "mtu": 1500, "shared": not external,
            "router:external": external, "port_security_enabled": True, "status": "ACTIVE",
            "subnets": [sid], "tenant_id": pid}))
        out.append(Item("subnet", sid, pid, f"{name}-subnet", {
            "id": sid, "name": f"{name}-subnet", "cidr": cidr, "ip_version": 4,
            "network_id": nid, "enable_dhcp": not external, "tenant_id": pid,
            "gateway_ip": cidr.replace("0/", "1/").split("/")[0]}))
    return out


def tenant_items(t: int, count: int) -> list[Item]:
    name = tenant_name(t, count)
    pid = hexid("project", t)
    out = [Item("project", pid, pid, name, {
        "id": pid, "name": name, "domain_id": "default", "enabled": True,
        "description": f"{name} department", "is_domain": False, "parent_id": "default"})]
    for u in range(2):
        user = hexid("user", t, u)
        out.append(Item("user", user, pid, f"{name}-user{u}", {
            "id": user, "name": f"{name}-user{u}", "domain_id": "default", "enabled": True,
            "email": f"{name}-user{u}@example.org", "default_project_id": pid}))
        out.append(Item("role_assignment", f"{user}:{pid}:{ROLE_MEMBER}", pid, None, {
            "role": {"id": ROLE_MEMBER}, "scope": {"project": {"id": pid}},
            "user": {"id": user}}))
    quotas = {
        "compute": {"instances": 20, "cores": 40, "ram": 102400, "key_pairs": 100,
                    "floating_ips": 10, "fixed_ips": -1, "security_groups": 20,
                    "security_group_rules": 200, "injected_files": 5, "metadata_items": 128},
        "volume": {"volumes": 20, "gigabytes": 2000, "snapshots": 20, "gigabytes_ssd": -1},
        "network": {"network": 10, "subnet": 20, "router": 5, "port": 100,
                    "security_group": 20, "security_group_rule": 200, "tenant_id": pid},
    }
    for service, values in quotas.items():
        out.append(Item("quota", f"{service}:{pid}", pid, service, values))
    net, sub, router = uid("net", t), uid("subnet", t), uid("router", t)
    cidr = f"10.{(t >> 8) & 255}.{t & 255}.0/24"
    out.append(Item("network", net, pid, f"{name}-net", {
        "id": net, "name": f"{name}-net", "admin_state_up": True, "mtu": 1500, "shared": False,
        "router:external": False, "port_security_enabled": True, "status": "ACTIVE",
        "provider:network_type": "vxlan", "subnets": [sub], "tenant_id": pid}))
    out.append(Item("subnet", sub, pid, f"{name}-subnet", {
        "id": sub, "name": f"{name}-subnet", "cidr": cidr, "ip_version": 4, "network_id": net,
        "enable_dhcp": True, "gateway_ip": cidr.replace("0/24", "1"),
        "allocation_pools": [{"start": cidr.replace("0/24", "2"),
                              "end": cidr.replace("0/24", "254")}],
        "dns_nameservers": ["192.0.2.53"], "host_routes": [], "ipv6_ra_mode": None,
        "ipv6_address_mode": None, "subnetpool_id": None, "tenant_id": pid}))
    out.append(Item("router", router, pid, f"{name}-router", {
        "id": router, "name": f"{name}-router", "admin_state_up": True, "status": "ACTIVE",
        "external_gateway_info": {"network_id": uid("net", "public"), "enable_snat": True},
        "interfaces": [{"subnet_id": sub, "port_id": uid("port", t),
                        "ip_address": cidr.replace("0/24", "1")}],
        "routes": [], "tenant_id": pid}))
    web, db = uid("web", t), uid("db", t)
    web_rules = [
        _rule(pid, web, uid(web, p), "ingress", "IPv4", protocol="tcp", port_range_min=p,
              port_range_max=p, remote_ip_prefix=prefix)
        for p, prefix in ((80, "0.0.0.0/0"), (443, "0.0.0.0/0"), (22, "10.0.0.0/8"))
    ] + [_rule(pid, web, uid(web, "icmp"), "ingress", "IPv4", protocol="icmp")]
    db_rules = [_rule(pid, db, uid(db, "pg"), "ingress", "IPv4", protocol="tcp",
                      port_range_min=5432, port_range_max=5432, remote_group_id=web)]
    if t % 2 == 1:
        db_rules.append(_rule(pid, db, uid(db, "pg-remote"), "ingress", "IPv4", protocol="6",
                              port_range_min=5432, port_range_max=5432,
                              remote_group_id=uid("web", t - 1)))
    out += _group(pid, web, "web", "web servers", web_rules)
    out += _group(pid, db, "db", "databases", db_rules)
    user0 = hexid("user", t, 0)
    out.append(Item("keypair", f"{user0}:{name}-key", pid, f"{name}-key", {
        "name": f"{name}-key", "user_id": user0, "type": "ssh",
        "public_key": f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{t:032d} {name}@legacy",
        "fingerprint": "00:11"}))
    return out


def inventory(tenants: int = 3) -> list[Item]:
    items = admin_items()
    for t in range(tenants):
        items += tenant_items(t, tenants)
    return items
