"""Applying a seed document to a simulated cloud's state.

Records are written directly in the internal form the services render (see state.py and
images.py), so a seed of 10,000 tenants loads in seconds instead of 200,000 API calls. Ids are
derived from names (uuid5), so seeding the same file twice gives the same ids.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from migrator.sim import images
from migrator.sim.cloud import SERVICES, SimCloud
from migrator.sim.content import GENERATED_FORMATS
from migrator.sim.faults import FaultSpecError
from migrator.sim.http import SimHTTPError
from migrator.sim.nova_keypairs import ssh_fingerprint
from migrator.sim.profiles import top_level_parent
from migrator.sim.seed_schema import SeedError, load_yaml, validate
from migrator.sim.seed_servers import ServerSeeder
from migrator.sim.state import Record, now_iso

_NS = uuid.UUID("0b7c5a52-7f0e-4cbb-9a57-5b0f3e0f4d11")


def load_seed(path: Path) -> dict[str, Any]:
    """Read and validate a seed file (errors name the file, the line and the key)."""
    doc = load_yaml(path)
    validate(doc, path)
    return doc


def _uid(cloud: SimCloud, *parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join((cloud.name, *parts))))


def _hex(cloud: SimCloud, *parts: str) -> str:
    return uuid.uuid5(_NS, "/".join((cloud.name, *parts))).hex


def fake_public_key(name: str) -> str:
    body = hashlib.sha512(name.encode()).digest() * 4
    return "ssh-rsa " + base64.b64encode(b"\x00\x00\x00\x07ssh-rsa" + body).decode() + (
        f" {name}@legacy")


class _Seeder:
    def __init__(self, cloud: SimCloud, spec: dict[str, Any], path: Path) -> None:
        self.cloud = cloud
        self.state = cloud.state
        self.spec = spec
        self.path = path
        self.stamp = now_iso()
        self.networks_by_name: dict[str, Record] = {}
        self.subnets_by_name: dict[tuple[str, str], Record] = {}
        self.groups_by_name: dict[tuple[str, str], Record] = {}
        self.images_by_name: dict[tuple[str, str], Record] = {}
        self.projects: dict[str, Record] = {}
        self.used_ips: dict[str, int] = {}
        # Name indexes: scanning the collections per item would make a 10,000-tenant seed
        # quadratic.
        self.users: dict[tuple[str, str], Record] = {
            (u["domain_id"], u["name"]): u for u in self.state.values("users")}
        self.roles: dict[str, Record] = {r["name"]: r for r in self.state.values("roles")}
        self.grants: set[tuple[str, str, str]] = {
            (ra["user_id"], ra.get("project_id") or "", ra["role_id"])
            for ra in self.state.values("role_assignments")}
        self.first_user: dict[str, Record] = {}
        self.existing_projects: dict[tuple[str, str], Record] = {
            (p["domain_id"], p["name"]): p for p in self.state.values("projects")}

    def fail(self, node: Any, where: str, problem: str) -> SeedError:
        line = getattr(node, "line", 0)
        return SeedError(f"{self.path}:{line}: clouds.{self.cloud.name}.{where}: {problem}")

    # -- apply -------------------------------------------------------------------------------
    def apply_faults(self) -> None:
        """Faults, token lifetime, status delays and the services in the catalog: the seed's
        run-time behaviour, applied again on every start (they are not part of the saved
        state)."""
        delays = self.spec.get("delays")
        if delays:
            for key, value in delays.items():
                if value < 0:
                    raise self.fail(delays, f"delays.{key}", "must be >= 0")
            self.cloud.profile = replace(self.cloud.profile,
                                         delays=replace(self.cloud.profile.delays, **delays))
        if "services" in self.spec:
            unknown = sorted(set(self.spec["services"]) - set(SERVICES))
            if unknown:
                raise self.fail(self.spec, "services", f"unknown service {unknown[0]!r} "
                                f"(known: {', '.join(SERVICES)})")
            self.cloud.services = frozenset({"identity", *self.spec["services"]})
        if "token_ttl" in self.spec:
            if self.spec["token_ttl"] <= 0:
                raise self.fail(self.spec, "token_ttl", "must be > 0")
            self.cloud.token_ttl = float(self.spec["token_ttl"])
        rules = list(self.spec.get("faults") or [])
        try:
            self.cloud.faults.load(rules)
        except FaultSpecError as exc:
            # Point at the rule's own line.
            node = rules[exc.index] if 0 <= exc.index < len(rules) else self.spec
            raise self.fail(node, "faults", str(exc)) from exc

    def apply(self) -> None:
        spec = self.spec
        self.apply_faults()
        for d in spec.get("domains") or []:
            did = _hex(self.cloud, "domain", d["name"])
            self.state.put("domains", {"id": did, "name": d["name"],
                                       "description": d.get("description", ""),
                                       "enabled": d.get("enabled", True)})
        for role in spec.get("roles") or []:
            if role not in self.roles:
                self.roles[role] = self.state.put("roles", {
                    "id": _hex(self.cloud, "role", role), "name": role, "domain_id": None})
        self.volume_types = {vt["name"] for vt in self.state.values("volume_types")}
        self.volume_types |= {vt["name"] for vt in spec.get("volume_types") or []}
        for vt in spec.get("volume_types") or []:
            self.state.put("volume_types", {
                "id": _uid(self.cloud, "volume_type", vt["name"]), "name": vt["name"],
                "description": vt.get("description"), "is_public": vt.get("is_public", True),
                "extra_specs": {str(k): str(v) for k, v in (vt.get("extra_specs") or {}).items()}})
        tenants = spec.get("tenants") or []
        for i, t in enumerate(tenants):
            self.projects[t["name"]] = self._project(t, f"tenants[{i}]")
        for f in spec.get("flavors") or []:
            self._flavor(f)
        # Networks first (every tenant), then what refers to them across tenants.
        for i, t in enumerate(tenants):
            for j, n in enumerate(t.get("networks") or []):
                self._network(t, n, f"tenants[{i}].networks[{j}]")
        for i, t in enumerate(tenants):
            where = f"tenants[{i}]"
            self._users(t, where)
            for g in t.get("security_groups") or []:
                self._security_group(t, g)
            for j, r in enumerate(t.get("routers") or []):
                self._router(t, r, f"{where}.routers[{j}]")
            for j, img in enumerate(t.get("images") or []):
                self._image(t, img, f"{where}.images[{j}]")
        for i, t in enumerate(tenants):
            where = f"tenants[{i}]"
            for j, g in enumerate(t.get("security_groups") or []):
                self._rules(t, g, f"{where}.security_groups[{j}]")
            for j, img in enumerate(t.get("images") or []):
                self._members(t, img, f"{where}.images[{j}]")
            for j, k in enumerate(t.get("keypairs") or []):
                self._keypair(t, k, f"{where}.keypairs[{j}]")
            for j, v in enumerate(t.get("volumes") or []):
                self._volume(t, v, f"{where}.volumes[{j}]")
        servers = ServerSeeder(self, _uid)
        for i, t in enumerate(tenants):
            for j, srv in enumerate(t.get("servers") or []):
                servers.seed(t, srv, f"tenants[{i}].servers[{j}]")

    # -- identity ----------------------------------------------------------------------------
    def _domain_id(self, node: Any, where: str, name: str | None) -> str:
        if not name or name in ("Default", "default"):
            return "default"
        dom = self.state.find_one("domains", name=name)
        if dom is None:
            raise self.fail(node, where + ".domain", f"unknown domain {name!r}")
        return str(dom["id"])

    def _project(self, t: dict[str, Any], where: str) -> Record:
        domain_id = self._domain_id(t, where, t.get("domain"))
        existing = self.existing_projects.get((domain_id, t["name"]))
        project = existing or {
            "id": _hex(self.cloud, "project", domain_id, t["name"]), "name": t["name"],
            "domain_id": domain_id, "description": t.get("description", ""),
            "enabled": t.get("enabled", True),
            "parent_id": top_level_parent(self.cloud.profile, domain_id), "is_domain": False}
        if self.cloud.profile.name != "liberty":
            project.setdefault("tags", [])
        self.state.put("projects", project)
        for service, limits in (t.get("quotas") or {}).items():
            qid = f"{service}:{project['id']}"
            self.state.put("quotas", {"id": qid, "service": service,
                                      "project_id": project["id"],
                                      "limits": {str(k): int(v) for k, v in limits.items()}})
        return project

    def _users(self, t: dict[str, Any], where: str) -> None:
        project = self.projects[t["name"]]
        for j, u in enumerate(t.get("users") or []):
            user = self.users.get((project["domain_id"], u["name"]))
            if user is None:
                user = self.state.put("users", {
                    "id": _hex(self.cloud, "user", project["domain_id"], u["name"]),
                    "name": u["name"], "domain_id": project["domain_id"],
                    "enabled": u.get("enabled", True), "email": u.get("email"),
                    "password": u.get("password") or f"{u['name']}-pass",
                    "default_project_id": project["id"]})
                self.users[(project["domain_id"], u["name"])] = user
            self.first_user.setdefault(project["id"], user)
            if u.get("clouds_yaml"):
                user["_clouds_yaml_project"] = project["name"]
            for role_name in u.get("roles") or ["_member_" if self.cloud.profile.name ==
                                                "liberty" else "member"]:
                role = self.roles.get(role_name)
                if role is None:
                    raise self.fail(u, f"{where}.users[{j}].roles", f"unknown role {role_name!r}")
                grant = (user["id"], project["id"], role["id"])
                if grant not in self.grants:
                    self.grants.add(grant)
                    self.state.put("role_assignments", {
                        "id": _hex(self.cloud, "ra", user["id"], project["id"], role["id"]),
                        "user_id": user["id"], "project_id": project["id"],
                        "role_id": role["id"]})

    def _user(self, t: dict[str, Any], name: str) -> Record | None:
        project = self.projects[t["name"]]
        return self.users.get((project["domain_id"], name))

    # -- compute -----------------------------------------------------------------------------
    def _flavor(self, f: dict[str, Any]) -> None:
        access = [self.projects[p]["id"] for p in f.get("projects") or [] if p in self.projects]
        self.state.put("flavors", {
            "id": f.get("id") or _uid(self.cloud, "flavor", f["name"]), "name": f["name"],
            "vcpus": f.get("vcpus", 1), "ram": f.get("ram", 512), "disk": f.get("disk", 1),
            "swap": f.get("swap", 0), "ephemeral": f.get("ephemeral", 0),
            "is_public": f.get("is_public", True), "rxtx_factor": 1.0,
            "extra_specs": {str(k): str(v) for k, v in (f.get("extra_specs") or {}).items()},
            "_access": access, "description": None})

    def _fingerprint(self, node: dict[str, Any], where: str, public_key: str) -> str:
        # The same md5-of-the-key-blob Nova computes, so the fingerprint read back matches.
        try:
            return ssh_fingerprint(public_key)
        except SimHTTPError as exc:
            raise self.fail(node, where + ".public_key", "not an OpenSSH public key") from exc

    def _keypair(self, t: dict[str, Any], k: dict[str, Any], where: str) -> None:
        user = self._user(t, k["user"])
        if user is None:
            raise self.fail(k, where + ".user", f"unknown user {k['user']!r} in tenant "
                                                f"{t['name']!r}")
        public_key = k.get("public_key") or fake_public_key(f"{t['name']}-{k['name']}")
        self.state.put("keypairs", {
            "id": f"{user['id']}:{k['name']}", "name": k["name"], "user_id": user["id"],
            "public_key": public_key, "fingerprint": self._fingerprint(k, where, public_key),
            "type": k.get("type", "ssh"), "created_at": self.stamp})

    # -- network -----------------------------------------------------------------------------
    def _network(self, t: dict[str, Any], n: dict[str, Any], where: str) -> None:
        project = self.projects[t["name"]]
        if n["name"] in self.networks_by_name:
            raise self.fail(n, where + ".name", f"network name {n['name']!r} is used twice "
                                                "(names must be unique in a seed)")
        net: Record = {
            "id": _uid(self.cloud, "network", t["name"], n["name"]), "name": n["name"],
            "project_id": project["id"], "admin_state_up": n.get("admin_state_up", True),
            "shared": n.get("shared", False), "router:external": n.get("external", False),
            "status": "ACTIVE", "subnets": [], "mtu": n.get("mtu", 1500),
            "description": n.get("description", ""), "port_security_enabled": True,
            "tags": [], "created_at": self.stamp, "updated_at": self.stamp,
            "revision_number": 1, "availability_zones": ["nova"]}
        self.state.put("networks", net)
        self.networks_by_name[n["name"]] = net
        for k, s in enumerate(n.get("subnets") or []):
            self._subnet(t, net, s, f"{where}.subnets[{k}]")

    def _subnet(self, t: dict[str, Any], net: Record, s: dict[str, Any], where: str) -> None:
        try:
            cidr = ipaddress.ip_network(s["cidr"], strict=True)
        except ValueError as exc:
            raise self.fail(s, where + ".cidr", str(exc)) from exc
        hosts = cidr.hosts()
        gateway = s["gateway_ip"] if "gateway_ip" in s else str(next(hosts))
        first = cidr.network_address + 2  # .1 is the gateway
        last = cidr.broadcast_address - (1 if cidr.version == 4 else 0)
        name = s.get("name") or f"{net['name']}-subnet{len(net['subnets'])}"
        sub: Record = {
            "id": _uid(self.cloud, "subnet", t["name"], net["name"], name), "name": name,
            "network_id": net["id"], "project_id": net["project_id"], "cidr": str(cidr),
            "ip_version": cidr.version, "gateway_ip": gateway,
            "enable_dhcp": s.get("enable_dhcp", True),
            "allocation_pools": [{"start": str(first), "end": str(last)}],
            "dns_nameservers": list(s.get("dns_nameservers") or []), "host_routes": [],
            "ipv6_ra_mode": s.get("ipv6_ra_mode"), "ipv6_address_mode": s.get("ipv6_address_mode"),
            "subnetpool_id": None, "description": "", "tags": [], "created_at": self.stamp,
            "updated_at": self.stamp, "revision_number": 1}
        self.state.put("subnets", sub)
        net["subnets"].append(sub["id"])
        self.subnets_by_name[(t["name"], name)] = sub

    def _next_ip(self, subnet: Record) -> str:
        used = self.used_ips.get(subnet["id"], 0) + 1
        self.used_ips[subnet["id"]] = used
        start = ipaddress.ip_address(subnet["allocation_pools"][0]["start"])
        return str(start + used)

    def _port(self, project_id: str, net: Record, device_id: str, owner: str,
              subnet: Record, ip: str) -> Record:
        pid = _uid(self.cloud, "port", device_id, subnet["id"], owner)
        mac = "fa:16:3e:" + ":".join(pid.replace("-", "")[i : i + 2] for i in (0, 2, 4))
        return self.state.put("ports", {
            "id": pid, "name": "", "network_id": net["id"], "project_id": project_id,
            "device_id": device_id, "device_owner": owner, "mac_address": mac,
            "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": ip}],
            "status": "ACTIVE", "admin_state_up": True, "security_groups": [],
            "description": "", "tags": [], "created_at": self.stamp, "updated_at": self.stamp,
            "revision_number": 1})

    def _router(self, t: dict[str, Any], r: dict[str, Any], where: str) -> None:
        project = self.projects[t["name"]]
        rid = _uid(self.cloud, "router", t["name"], r["name"])
        gateway = None
        if r.get("external_network"):
            ext = self.networks_by_name.get(r["external_network"])
            if ext is None:
                raise self.fail(r, where + ".external_network",
                                f"unknown network {r['external_network']!r}")
            fixed = []
            for sid in ext["subnets"][:1]:
                sub = self.state.get("subnets", sid)
                assert sub is not None
                ip = self._next_ip(sub)
                fixed.append({"subnet_id": sid, "ip_address": ip})
                self._port("", ext, rid, "network:router_gateway", sub, ip)
            gateway = {"network_id": ext["id"], "enable_snat": r.get("enable_snat", True),
                       "external_fixed_ips": fixed}
        self.state.put("routers", {
            "id": rid, "name": r["name"], "project_id": project["id"], "admin_state_up": True,
            "status": "ACTIVE", "external_gateway_info": gateway, "routes": [],
            "description": "", "tags": [], "created_at": self.stamp, "updated_at": self.stamp,
            "revision_number": 1, "distributed": False, "ha": False})
        for k, sub_name in enumerate(r.get("interfaces") or []):
            sub = self.subnets_by_name.get((t["name"], sub_name))
            if sub is None:
                raise self.fail(r, f"{where}.interfaces[{k}]",
                                f"unknown subnet {sub_name!r} in tenant {t['name']!r}")
            net = self.state.get("networks", sub["network_id"])
            assert net is not None
            self._port(project["id"], net, rid, "network:router_interface", sub,
                       sub["gateway_ip"])

    def _security_group(self, t: dict[str, Any], g: dict[str, Any]) -> None:
        project = self.projects[t["name"]]
        gid = _uid(self.cloud, "secgroup", t["name"], g["name"])
        group = self.state.put("security_groups", {
            "id": gid, "name": g["name"], "description": g.get("description", ""),
            "project_id": project["id"], "tags": [], "created_at": self.stamp,
            "updated_at": self.stamp, "revision_number": 1, "stateful": True})
        self.groups_by_name[(t["name"], g["name"])] = group
        for ethertype in ("IPv4", "IPv6"):  # Neutron's default egress rules
            self._put_rule(group, {"direction": "egress", "ethertype": ethertype}, None)

    def _put_rule(self, group: Record, r: dict[str, Any], remote: str | None) -> None:
        proto = r.get("protocol")
        key = "/".join(str(x) for x in (group["id"], r.get("direction"), r.get("ethertype"),
                                         proto, r.get("port_range_min"),
                                         r.get("port_range_max"), r.get("remote_ip_prefix"),
                                         remote))
        self.state.put("security_group_rules", {
            "id": _uid(self.cloud, "rule", key), "security_group_id": group["id"],
            "project_id": group["project_id"], "direction": r.get("direction", "ingress"),
            "ethertype": r.get("ethertype", "IPv4"),
            "protocol": str(proto) if proto is not None else None,
            "port_range_min": r.get("port_range_min"), "port_range_max": r.get("port_range_max"),
            "remote_ip_prefix": r.get("remote_ip_prefix"), "remote_group_id": remote,
            "description": r.get("description", ""), "created_at": self.stamp,
            "updated_at": self.stamp, "revision_number": 1})

    def _rules(self, t: dict[str, Any], g: dict[str, Any], where: str) -> None:
        group = self.groups_by_name[(t["name"], g["name"])]
        for k, r in enumerate(g.get("rules") or []):
            remote = None
            if r.get("remote_group"):
                owner, _, name = r["remote_group"].rpartition("/")
                ref = self.groups_by_name.get((owner or t["name"], name))
                if ref is None:
                    raise self.fail(r, f"{where}.rules[{k}].remote_group",
                                    f"unknown security group {r['remote_group']!r}")
                remote = ref["id"]
            self._put_rule(group, r, remote)

    # -- images and volumes ------------------------------------------------------------------
    def _content(self, node: dict[str, Any], where: str, default_seed: str, size: int,
                 default_format: str | None = None) -> dict[str, Any]:
        """The content spec; generated image bytes carry the header of their ``disk_format``
        unless ``content.generated.format`` says otherwise (a mislabelled image)."""
        content = node.get("content") or {}
        if "file" in content:
            path = Path(content["file"])
            if not path.is_absolute():
                path = self.path.parent / path
            if not path.is_file():
                raise self.fail(node, where + ".content.file", f"no such file {path}")
            return {"kind": "file", "path": str(path)}
        gen = content.get("generated") or {}
        seed = gen.get("seed")
        if seed is None:
            seed = int(hashlib.sha256(default_seed.encode()).hexdigest()[:8], 16)
        spec: dict[str, Any] = {"kind": "generated", "seed": int(seed),
                                "size": int(gen.get("size", size))}
        fmt = gen.get("format", default_format if default_format in GENERATED_FORMATS
                      else None)
        if fmt is not None and fmt not in GENERATED_FORMATS:
            raise self.fail(node, where + ".content.generated.format",
                            f"unknown format {fmt!r} (known: {', '.join(GENERATED_FORMATS)})")
        if fmt not in (None, "raw"):
            spec["format"] = fmt
        return spec

    def _image(self, t: dict[str, Any], img: dict[str, Any], where: str) -> None:
        project = self.projects[t["name"]]
        visibility = img.get("visibility", "private")
        if visibility not in self.cloud.profile.glance_visibilities:
            raise self.fail(img, where + ".visibility",
                            f"{visibility!r} is not a visibility of a "
                            f"{self.cloud.profile.name} cloud")
        spec = self._content(img, where, f"{self.cloud.name}/{t['name']}/{img['name']}",
                             1 << 20, img.get("disk_format", "qcow2"))
        rec = images.new_image(
            self.cloud, id=img.get("id") or _uid(self.cloud, "image", t["name"], img["name"]),
            name=img["name"], owner=project["id"], visibility=visibility,
            disk_format=img.get("disk_format", "qcow2"),
            container_format=img.get("container_format", "bare"),
            min_disk=img.get("min_disk", 0), min_ram=img.get("min_ram", 0),
            protected=img.get("protected", False), tags=list(img.get("tags") or []),
            properties=img.get("properties") or {})
        images.set_content(self.cloud, rec, spec, self.cloud.digest(spec))
        self.images_by_name[(t["name"], img["name"])] = rec

    def _members(self, t: dict[str, Any], img: dict[str, Any], where: str) -> None:
        rec = self.images_by_name[(t["name"], img["name"])]
        for k, member in enumerate(img.get("members") or []):
            project = self.projects.get(member)
            if project is None:
                raise self.fail(img, f"{where}.members[{k}]", f"unknown tenant {member!r}")
            self.state.put("image_members", {
                "id": f"{rec['id']}:{project['id']}", "image_id": rec["id"],
                "member_id": project["id"], "status": "accepted",
                "created_at": self.stamp, "updated_at": self.stamp})

    def _volume(self, t: dict[str, Any], v: dict[str, Any], where: str) -> None:
        project = self.projects[t["name"]]
        vtype = v.get("volume_type")
        if vtype and vtype not in self.volume_types:
            raise self.fail(v, where + ".volume_type", f"unknown volume type {vtype!r}")
        image_meta: dict[str, str] = {}
        bootable = v.get("bootable", False)
        if v.get("image"):
            owner, _, name = str(v["image"]).rpartition("/")
            img = self.images_by_name.get((owner or t["name"], name))
            if img is None:
                raise self.fail(v, where + ".image", f"unknown image {v['image']!r}")
            if (img["size"] or 0) > v["size"] << 30:
                raise self.fail(v, where + ".size", f"{v['size']} GiB is smaller than image "
                                                    f"{name!r}")
            spec = dict(img["_content"])
            bootable = v.get("bootable", True)
            image_meta = {"image_id": img["id"], "image_name": img["name"],
                          "checksum": img["checksum"], "size": str(img["size"]),
                          "container_format": img["container_format"],
                          "disk_format": img["disk_format"], "min_disk": str(img["min_disk"]),
                          "min_ram": str(img["min_ram"]), **img["properties"]}
        else:
            spec = self._content(v, where, f"{self.cloud.name}/{t['name']}/vol/{v['name']}",
                                 v["size"] << 30)
        user = self.first_user.get(project["id"])
        self.state.put("volumes", {
            "id": _uid(self.cloud, "volume", t["name"], v["name"]), "name": v["name"],
            "description": v.get("description"), "size": v["size"], "status": "available",
            "volume_type": vtype, "bootable": bootable,
            "metadata": {str(k): str(val) for k, val in (v.get("metadata") or {}).items()},
            "volume_image_metadata": image_meta, "project_id": project["id"],
            "user_id": user["id"] if user else None, "availability_zone": "nova",
            "attachments": [], "source_volid": None, "snapshot_id": None, "encrypted": False,
            "multiattach": False, "created_at": self.stamp, "updated_at": self.stamp,
            "_content": spec})


def apply_seed(cloud: SimCloud, doc: dict[str, Any], path: Path) -> bool:
    """Seed ``cloud`` from the document's entry for it; False when the seed has none."""
    spec = (doc.get("clouds") or {}).get(cloud.name)
    if spec is None:
        return False
    _Seeder(cloud, spec, path).apply()
    return True


def apply_faults(cloud: SimCloud, doc: dict[str, Any], path: Path) -> None:
    """Only the fault rules of the seed (a restored cloud keeps its saved resources)."""
    spec = (doc.get("clouds") or {}).get(cloud.name)
    if spec is not None:
        _Seeder(cloud, spec, path).apply_faults()
