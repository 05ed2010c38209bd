"""The yardstick of the execute benchmark: what an operator would write instead of migrator.

A plain sequential openstacksdk script: read the legacy cloud as its admin with the SDK's
proxies (list calls, the Liberty quirks handled the simplest way that works), then for every
tenant, one resource at a time, find the resource on the target by name and create it when it
is not there; image bytes are streamed from the legacy Glance into the target's (chunks of a
streamed download fed to the upload). No state database, no checkpoints, no verification
beyond what the SDK does, no parallelism: the shortest honest script that moves the same
resources as ``migrator execute`` (projects, quotas, users, role assignments, networks, IPv6
subnets, routers with their gateway and interfaces, security groups and rules, keypairs,
images, image members).

Run as ``python -m benchmarks.naive_copy CLOUDS_YAML SOURCE TARGET``; prints one JSON line
(resources created per kind, seconds).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import openstack
from openstack.connection import Connection

SKIP_PROJECTS = {"admin", "service"}
ROLE_MAP = {"_member_": "member"}
NOVA_NETWORK_KEYS = {"floating_ips", "fixed_ips", "security_groups", "security_group_rules",
                     "networks", "injected_files", "injected_file_content_bytes",
                     "injected_file_path_bytes"}
# Per-volume-type keys (gigabytes_ssd...) and consistencygroups are refused by a modern Cinder.
VOLUME_QUOTA_KEYS = {"volumes", "gigabytes", "snapshots", "backups", "backup_gigabytes",
                     "per_volume_gigabytes", "groups"}
IPV6_PREFIX = ipaddress.ip_network("2001:db8:200::/48")


def connect(clouds_yaml: str, cloud: str) -> Connection:
    config = openstack.config.loader.OpenStackConfig(
        config_files=[clouds_yaml], secure_files=[], load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=cloud))


def tenant_of(resource: Any) -> str | None:
    # Liberty's Neutron knows only tenant_id, which the SDK does not map to project_id.
    data = resource.to_dict()
    return data.get("project_id") or data.get("tenant_id")


class Copier:
    def __init__(self, src: Connection, dst: Connection) -> None:
        self.src, self.dst = src, dst
        self.created: Counter[str] = Counter()
        self.projects: dict[str, str] = {}  # legacy project id -> target id
        self.users: dict[str, str] = {}
        self.groups: dict[str, str] = {}
        self.keys_done: set[str] = set()
        self.subnets = (IPV6_PREFIX.subnets(new_prefix=64))
        domain = dst.identity.find_domain("Default")
        self.domain_id = domain.id if domain else "default"
        self.public = dst.network.find_network("public")
        self.roles = {r.name: r.id for r in dst.identity.roles()}

    def run(self) -> None:
        src = self.src
        projects = [p for p in src.identity.projects() if p.name not in SKIP_PROJECTS]
        assignments = list(src.identity.role_assignments())
        legacy_roles = {r.id: r.name for r in src.identity.roles()}
        legacy_users = {u.id: u for u in src.identity.users()}
        networks = list(src.network.networks())
        subnets = list(src.network.subnets())
        routers = list(src.network.routers())
        ports = [p for p in src.network.ports()
                 if p.device_owner == "network:router_interface"]
        groups = list(src.network.security_groups())
        images = list(src.image.images())
        for project in projects:
            self.copy_project(project, assignments, legacy_roles, legacy_users)
        for project in projects:
            mine = [n for n in networks if tenant_of(n) == project.id and not n.is_shared
                    and not n.is_router_external]
            self.copy_networks(project, mine, subnets, routers, ports, networks)
            self.copy_groups(project, [g for g in groups if tenant_of(g) == project.id])
        for project in projects:
            self.copy_rules([g for g in groups if tenant_of(g) == project.id])
        for project in projects:
            self.copy_images(project, [i for i in images if i.owner == project.id])

    # -- identity ---------------------------------------------------------------------------
    def copy_project(self, project: Any, assignments: list[Any], legacy_roles: dict[str, str],
                     legacy_users: dict[str, Any]) -> None:
        dst = self.dst
        found = dst.identity.find_project(project.name, domain_id=self.domain_id)
        if found is None:
            found = dst.identity.create_project(name=project.name, domain_id=self.domain_id,
                                                description=project.description or "",
                                                is_enabled=project.is_enabled)
            self.created["project"] += 1
        self.projects[project.id] = found.id
        self.copy_quotas(project.id, found.id)
        for assignment in assignments:
            scope = (assignment.scope or {}).get("project", {}).get("id")
            user_id = (assignment.user or {}).get("id")
            if scope != project.id or not user_id or user_id not in legacy_users:
                continue
            user = legacy_users[user_id]
            target_user = self.copy_user(user)
            role = legacy_roles.get(assignment.role["id"], "")
            role_id = self.roles.get(ROLE_MAP.get(role, role))
            if role_id is None:
                continue
            dst.identity.assign_project_role_to_user(found.id, target_user, role_id)
            self.created["role_assignment"] += 1
            self.copy_keypairs(user, target_user)

    def copy_quotas(self, legacy_id: str, target_id: str) -> None:
        src, dst = self.src, self.dst
        compute = src.compute.get_quota_set(legacy_id).to_dict()
        values = {k: v for k, v in compute.items() if isinstance(v, int) and
                  k not in NOVA_NETWORK_KEYS and v is not None}
        dst.compute.update_quota_set(target_id, **values)
        network = src.network.get_quota(legacy_id).to_dict()
        dst.network.update_quota(target_id, **{k: v for k, v in network.items()
                                               if isinstance(v, int)})
        volume = src.block_storage.get_quota_set(legacy_id).to_dict()
        dst.block_storage.update_quota_set(target_id, **{
            k: v for k, v in volume.items() if k in VOLUME_QUOTA_KEYS and isinstance(v, int)})
        self.created["quota"] += 3

    def copy_user(self, user: Any) -> Any:
        if user.id in self.users:
            return self.users[user.id]
        dst = self.dst
        found = dst.identity.find_user(user.name, domain_id=self.domain_id)
        if found is None:
            found = dst.identity.create_user(name=user.name, domain_id=self.domain_id,
                                             email=user.email, is_enabled=user.is_enabled,
                                             password=secrets.token_urlsafe(16))
            self.created["user"] += 1
        self.users[user.id] = found.id
        return found.id

    def copy_keypairs(self, user: Any, target_user: str) -> None:
        if user.id in self.keys_done:
            return
        self.keys_done.add(user.id)
        for key in self.src.compute.keypairs(user_id=user.id):
            if self.dst.compute.find_keypair(key.name, user_id=target_user) is None:
                self.dst.compute.create_keypair(name=key.name, public_key=key.public_key,
                                                user_id=target_user)
                self.created["keypair"] += 1

    # -- network ----------------------------------------------------------------------------
    def copy_networks(self, project: Any, networks: list[Any], subnets: list[Any],
                      routers: list[Any], ports: list[Any], all_networks: list[Any]) -> None:
        dst, owner = self.dst, self.projects[project.id]
        target_subnets: dict[str, str] = {}
        for net in networks:
            found = dst.network.find_network(net.name, project_id=owner)
            if found is None:
                found = dst.network.create_network(name=net.name, project_id=owner,
                                                   is_admin_state_up=net.is_admin_state_up)
                self.created["network"] += 1
            for sub in (s for s in subnets if s.network_id == net.id):
                existing = dst.network.find_subnet(sub.name, network_id=found.id)
                if existing is None:
                    existing = dst.network.create_subnet(
                        name=sub.name, network_id=found.id, project_id=owner, ip_version=6,
                        cidr=str(next(self.subnets)), ipv6_address_mode="slaac",
                        ipv6_ra_mode="slaac")
                    self.created["subnet"] += 1
                target_subnets[sub.id] = existing.id
        shared = {n.id: n.name for n in all_networks if n.is_shared}
        for router in (r for r in routers if tenant_of(r) == project.id):
            found = dst.network.find_router(router.name, project_id=owner)
            if found is None:
                gateway = {"network_id": self.public.id} if self.public else None
                found = dst.network.create_router(name=router.name, project_id=owner,
                                                  external_gateway_info=gateway)
                self.created["router"] += 1
            attached = {ip["subnet_id"] for p in dst.network.ports(device_id=found.id)
                        for ip in p.fixed_ips}
            for port in (p for p in ports if p.device_id == router.id):
                for ip in port.fixed_ips:
                    subnet_id = target_subnets.get(ip["subnet_id"])
                    if subnet_id is None and port.network_id in shared:
                        net = dst.network.find_network(shared[port.network_id])
                        subnet_id = net.subnet_ids[0] if net and net.subnet_ids else None
                    if subnet_id and subnet_id not in attached:
                        dst.network.add_interface_to_router(found, subnet_id=subnet_id)
                        self.created["router_interface"] += 1

    def copy_groups(self, project: Any, groups: list[Any]) -> None:
        dst, owner = self.dst, self.projects[project.id]
        for group in groups:
            if group.name == "default":
                found = dst.network.find_security_group("default", project_id=owner)
                if found is not None:
                    self.groups[group.id] = found.id
                    continue
            found = dst.network.find_security_group(group.name, project_id=owner)
            if found is None:
                found = dst.network.create_security_group(
                    name=group.name, description=group.description or "", project_id=owner)
                self.created["security_group"] += 1
            self.groups[group.id] = found.id

    def copy_rules(self, groups: list[Any]) -> None:
        dst = self.dst
        for group in groups:
            target_group = self.groups[group.id]
            owner = self.projects[tenant_of(group) or ""]
            existing = {_rule_key(r.to_dict()) for r in
                        dst.network.security_group_rules(security_group_id=target_group)}
            for rule in group.security_group_rules or []:
                if rule.get("ethertype") == "IPv6" and not rule.get("protocol"):
                    continue  # the default egress rules every new group already has
                if rule.get("direction") == "egress":
                    continue
                body = {"direction": rule["direction"], "ethertype": "IPv6",
                        "protocol": {"icmp": "ipv6-icmp"}.get(rule.get("protocol") or "",
                                                              rule.get("protocol")),
                        "port_range_min": rule.get("port_range_min"),
                        "port_range_max": rule.get("port_range_max"),
                        "remote_group_id": self.groups.get(rule.get("remote_group_id") or "")}
                if _rule_key(body) in existing:
                    continue
                dst.network.create_security_group_rule(
                    security_group_id=target_group, project_id=owner,
                    **{k: v for k, v in body.items() if v is not None})
                existing.add(_rule_key(body))
                self.created["security_group_rule"] += 1

    # -- images -----------------------------------------------------------------------------
    def copy_images(self, project: Any, images: list[Any]) -> None:
        src, dst, owner = self.src, self.dst, self.projects[project.id]
        for image in images:
            members = [] if image.visibility == "public" else [
                self.projects[m.member_id] for m in src.image.members(image.id)
                if m.member_id in self.projects]
            # A modern Glance has members only on "shared" images (Liberty: private ones).
            visibility = "shared" if members else image.visibility
            found = next(iter(dst.image.images(name=image.name, owner=owner)), None)
            if found is None:
                props = {k: v for k, v in (image.properties or {}).items()
                         if isinstance(v, str)}
                found = dst.image.create_image(
                    name=image.name, disk_format=image.disk_format,
                    container_format=image.container_format, visibility=visibility,
                    min_disk=image.min_disk, min_ram=image.min_ram, owner=owner,
                    allow_duplicates=True, data=_Chunks(src, image), **props)
                self.created["image"] += 1
            for member in members:
                if dst.image.find_member(member, found.id) is None:
                    dst.image.add_member(found.id, member_id=member)
                    self.created["image_member"] += 1


class _Chunks:
    """The legacy image's bytes as a streamed download, read by the upload in chunks."""

    def __init__(self, src: Connection, image: Any) -> None:
        self._response = src.image.download_image(image, stream=True)
        self._iter: Iterator[bytes] = self._response.iter_content(1 << 20)

    def __iter__(self) -> Iterator[bytes]:
        return self._iter


def _rule_key(rule: dict[str, Any]) -> tuple[Any, ...]:
    # The SDK's resource calls the field ether_type; the API's body calls it ethertype.
    return (rule.get("direction"), rule.get("ethertype") or rule.get("ether_type"),
            rule.get("protocol"),
            rule.get("port_range_min"), rule.get("port_range_max"),
            rule.get("remote_group_id"))


def main(clouds_yaml: str, source: str, target: str) -> None:
    began = time.monotonic()
    copier = Copier(connect(clouds_yaml, source), connect(clouds_yaml, target))
    copier.run()
    per_kind: dict[str, int] = defaultdict(int, copier.created)
    print(json.dumps({"seconds": time.monotonic() - began, "created": per_kind,
                      "resources": sum(per_kind.values()),
                      "cpu_s": time.process_time()}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
