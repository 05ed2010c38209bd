"""Generating a realistic Liberty-era inventory as a seed document.

What an operator of an old cloud actually has: an admin-owned external network and a shared
network, per-tenant IPv4 networks behind routers, security groups (one referring to another
tenant's group), keypairs, AArch64 and x86_64 images where the AArch64 ones carry the legacy
out-of-tree UEFI hack properties (their bytes carry a qcow2 header, except a few mislabelled
ones), private images shared with another tenant through members, volumes created from images
and blank ones, per-tenant quotas, and (``servers_per_tenant``) servers: image-backed AArch64
ones with a floating IP, volume-backed x86 ones with a data volume attached, SHUTOFF ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The keys an out-of-tree Liberty patch used to boot AArch64 guests with UEFI, before
# upstream's hw_firmware_type (Mitaka). The default translation rules drop them.
LEGACY_UEFI_HACK = {"hw_boot_mode": "uefi",
                    "hw_loader_path": "/usr/share/AAVMF/AAVMF_CODE.fd"}
NAMES = ["physics", "chemistry", "biology", "geology", "astronomy", "mathematics",
         "medicine", "linguistics", "history", "economics", "robotics", "climate"]


@dataclass(frozen=True)
class SeedShape:
    tenants: int = 3
    images_per_tenant: int = 2
    volumes_per_tenant: int = 2
    image_size: int = 4 << 20
    volume_data_size: int = 4 << 20
    users_per_tenant: int = 2
    # 0: every image has its own content; N: contents cycle through N seeds (cheap at scale,
    # since the simulator hashes each distinct content once).
    content_pool: int = 0
    seed: int = 1
    # Tenants whose first user gets a clouds.yaml entry of its own (per-tenant credentials).
    own_credentials: int = 1
    # The last N images of the inventory carry a disk_format label their bytes contradict,
    # as old clouds have: alternately a qcow2 label on raw bytes (which modern Glance
    # refuses) and a raw label on qcow2 bytes (which it lets through). The others' bytes
    # carry the header of their label.
    mislabelled: int = 2
    # Servers per tenant (0: none, as before servers were simulated): see _servers.
    servers_per_tenant: int = 0


def tenant_name(i: int, count: int) -> str:
    if count <= len(NAMES):
        return NAMES[i]
    return f"tenant-{i:05d}"


def _image(shape: SeedShape, t: int, j: int, name: str) -> dict[str, Any]:
    serial = t * shape.images_per_tenant + j
    content_seed = shape.seed * 100_003 + (serial % shape.content_pool
                                           if shape.content_pool else serial)
    aarch64 = j % 2 == 0
    props: dict[str, str] = {"os_distro": "ubuntu" if aarch64 else "centos",
                             "os_version": "16.04" if aarch64 else "7", "os_type": "linux",
                             "hw_disk_bus": "virtio"}
    if aarch64:
        props |= {"architecture": "aarch64", "hw_machine_type": "virt", **LEGACY_UEFI_HACK}
    else:
        props |= {"architecture": "x86_64", "hw_video_model": "cirrus"}
    image: dict[str, Any] = {
        "name": f"{name}-{'arm64' if aarch64 else 'x86'}-{j}",
        "disk_format": "qcow2", "container_format": "bare", "min_disk": 1, "min_ram": 512,
        "visibility": "private", "properties": props,
        "content": {"generated": {"size": shape.image_size, "seed": content_seed}},
    }
    from_end = shape.tenants * shape.images_per_tenant - 1 - serial
    if from_end < shape.mislabelled:
        label, content = ("qcow2", "raw") if from_end % 2 == 0 else ("raw", "qcow2")
        image["disk_format"] = label
        image["content"]["generated"]["format"] = content
    return image


def _tenant(shape: SeedShape, t: int) -> dict[str, Any]:
    name = tenant_name(t, shape.tenants)
    users = [{"name": f"{name}-user{u}", "password": f"{name}-user{u}-pw",
              "email": f"{name}-user{u}@example.org",
              **({"clouds_yaml": True} if u == 0 and t < shape.own_credentials else {})}
             for u in range(shape.users_per_tenant)]
    net = f"{name}-net"
    subnet = f"{name}-subnet"
    groups: list[dict[str, Any]] = [
        {"name": "web", "description": "web servers", "rules": [
            {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
             "port_range_min": 80, "port_range_max": 80, "remote_ip_prefix": "0.0.0.0/0"},
            {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
             "port_range_min": 443, "port_range_max": 443, "remote_ip_prefix": "0.0.0.0/0"},
            {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
             "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "10.0.0.0/8"},
            {"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp"}]},
        {"name": "db", "description": "databases", "rules": [
            {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
             "port_range_min": 5432, "port_range_max": 5432, "remote_group": "web"}]},
    ]
    if t == 1:  # a rule that refers to another tenant's group
        groups[1]["rules"].append(
            {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
             "port_range_min": 5432, "port_range_max": 5432,
             "remote_group": f"{tenant_name(0, shape.tenants)}/web"})
    images = [_image(shape, t, j, name) for j in range(shape.images_per_tenant)]
    if images and shape.tenants > 1 and len(images) > 1:
        images[1]["members"] = [tenant_name((t + 1) % shape.tenants, shape.tenants)]
    if t == 0 and images:
        images[0]["visibility"] = "public"
    volumes: list[dict[str, Any]] = []
    for v in range(shape.volumes_per_tenant):
        if v % 2 == 0 and images:
            volumes.append({"name": f"{name}-boot-{v}", "size": 1, "volume_type": "standard",
                            "image": images[(v // 2) % len(images)]["name"],
                            "metadata": {"purpose": "boot"}})
        else:
            volumes.append({"name": f"{name}-data-{v}", "size": 1, "volume_type": "ssd",
                            "metadata": {"purpose": "data"},
                            "content": {"generated": {"size": shape.volume_data_size}}})
    servers = _servers(shape, name, images, volumes)
    return {
        "name": name, "description": f"{name} department",
        "quotas": {
            "compute": {"instances": 20, "cores": 40, "ram": 102400, "key_pairs": 100,
                        "floating_ips": 10, "security_groups": 20,
                        "security_group_rules": 200, "injected_files": 5,
                        "metadata_items": 128},
            "volume": {"volumes": 20, "gigabytes": 2000, "snapshots": 20},
            "network": {"network": 10, "subnet": 20, "router": 5, "port": 100,
                        "security_group": 20, "security_group_rule": 200},
        },
        "users": users,
        "networks": [{"name": net, "subnets": [
            {"name": subnet, "cidr": f"10.{(t >> 8) & 255}.{t & 255}.0/24",
             "dns_nameservers": ["192.0.2.53"]}]}],
        "routers": [{"name": f"{name}-router", "external_network": "public",
                     "interfaces": [subnet]}],
        "security_groups": groups,
        "keypairs": [{"name": f"{name}-key", "user": users[0]["name"]}] if users else [],
        "images": images,
        "volumes": volumes,
        **({"servers": servers} if servers else {}),
    }


def _servers(shape: SeedShape, name: str, images: list[dict[str, Any]],
             volumes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A tenant's servers, in a cycle of four: an image-backed AArch64 web server with a
    floating IP, a volume-backed x86 database with a data volume attached, an x86 server
    left SHUTOFF, an AArch64 worker. Boot and data volumes join ``volumes``."""
    if not images:
        return []
    arm = next((i for i in images if i["properties"]["architecture"] == "aarch64"), images[0])
    x86 = next((i for i in images if i["properties"]["architecture"] == "x86_64"), images[0])
    out: list[dict[str, Any]] = []
    for s in range(shape.servers_per_tenant):
        server_name = f"{name}-vm{s}"
        kind = s % 4
        server: dict[str, Any] = {"name": server_name, "key_name": f"{name}-key",
                                  "networks": [f"{name}-net"]}
        if kind == 0:
            server.update(flavor="a1.large", image=arm["name"], security_groups=["web"],
                          metadata={"role": "web"}, floating_ip=True)
        elif kind == 1:
            root, data = f"{server_name}-root", f"{server_name}-data"
            volumes.append({"name": root, "size": 1, "volume_type": "standard",
                            "image": x86["name"], "metadata": {"purpose": "boot"}})
            volumes.append({"name": data, "size": 1, "volume_type": "ssd",
                            "metadata": {"purpose": "data"},
                            "content": {"generated": {"size": shape.volume_data_size}}})
            server.update(flavor="m1.medium", boot_volume=root, volumes=[data],
                          security_groups=["db"], metadata={"role": "db"})
        elif kind == 2:
            server.update(flavor="m1.small", image=x86["name"], status="SHUTOFF",
                          metadata={"role": "batch"})
        else:
            server.update(flavor="m1.small", image=arm["name"], metadata={"role": "worker"})
        out.append(server)
    return out


def _public_cidr(shape: SeedShape) -> str:
    """A router gateway per tenant and a floating IP per four servers must fit."""
    needed = shape.tenants * (1 + (shape.servers_per_tenant + 3) // 4)
    return "203.0.113.0/24" if needed <= 250 else "198.18.0.0/15"


def generate(shape: SeedShape, cloud: str = "legacy") -> dict[str, Any]:
    """A seed document with one entry, for ``cloud``."""
    admin = {"name": "admin", "networks": [
        {"name": "public", "external": True,
         "subnets": [{"name": "public-subnet", "cidr": _public_cidr(shape),
                      "enable_dhcp": False}]},
        {"name": "shared-net", "shared": True,
         "subnets": [{"name": "shared-subnet", "cidr": "192.168.0.0/22"}]}]}
    tenants = [admin] + [_tenant(shape, t) for t in range(shape.tenants)]
    first = tenant_name(0, shape.tenants) if shape.tenants else None
    return {"clouds": {cloud: {
        "volume_types": [{"name": "standard", "extra_specs": {"volume_backend_name": "lvm"}},
                         {"name": "ssd", "extra_specs": {"volume_backend_name": "ssd"}}],
        "flavors": [
            {"name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1},
            {"name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20},
            {"name": "m1.medium", "vcpus": 2, "ram": 4096, "disk": 40},
            {"name": "m1.large", "vcpus": 4, "ram": 8192, "disk": 80},
            {"name": "a1.large", "vcpus": 8, "ram": 16384, "disk": 80,
             "extra_specs": {"hw:cpu_policy": "dedicated"}},
            {"name": "hpc.xlarge", "vcpus": 32, "ram": 131072, "disk": 200, "is_public": False,
             "projects": [first] if first else []},
        ],
        "tenants": tenants,
    }}}
