"""Servers in a seed file: written straight into the state as the API would leave them once
built (ports with addresses of the subnets, volumes attached, a floating IP, a power state),
with ids derived from names like every seeded record.

A server entry (under a tenant's ``servers``)::

    - name: web-1
      flavor: m1.small                  # a flavor of the seed (or of the cloud)
      image: physics-arm64-0            # boot from an image ("other-tenant/image" too) ...
      boot_volume: physics-root-1       # ... or from a bootable volume of the tenant
      delete_on_termination: false      # for the boot volume
      volumes: [physics-data-1]         # data volumes attached, /dev/vdb on, in this order
      networks: [physics-net]           # default: the tenant's first network
      security_groups: [web]            # default: [default]
      key_name: physics-key             # a key pair of the owner
      user: physics-user0               # the owner (default: the tenant's first user)
      metadata: {role: web}
      floating_ip: true                 # an address of the external network its router uses
      status: ACTIVE                    # ACTIVE | SHUTOFF | ERROR
      fault: "No valid host was found." # the fault message of an ERROR server
      description: ...
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from migrator.sim.nova_compute import (
    ACTIVE,
    AVAILABILITY_ZONE,
    ERROR,
    HOSTS,
    NO_VALID_HOST,
    NOSTATE,
    ROOT_DEVICE,
    RUNNING,
    SHUTDOWN,
    STOPPED,
    attachment_entry,
    normalized_arch,
)
from migrator.sim.nova_servers import hostname_of, image_meta_from_image, image_meta_from_volume
from migrator.sim.state import Record

if TYPE_CHECKING:
    from migrator.sim.seed import _Seeder

STATES = {"ACTIVE": (ACTIVE, RUNNING), "SHUTOFF": (STOPPED, SHUTDOWN), "ERROR": (ERROR, NOSTATE)}


class ServerSeeder:
    """Seeds the ``servers`` of every tenant, after networks, groups, images and volumes."""

    def __init__(self, seeder: _Seeder, uid: Any) -> None:
        self.seeder = seeder
        self.cloud = seeder.cloud
        self.state = seeder.state
        self.uid = uid
        self.seq = max((int(s.get("_seq") or 0) for s in self.state.values("servers")),
                       default=0)
        self._gateways: dict[str, Record] | None = None

    def fail(self, node: Any, where: str, problem: str) -> Exception:
        return self.seeder.fail(node, where, problem)

    def seed(self, t: dict[str, Any], srv: dict[str, Any], where: str) -> None:
        project = self.seeder.projects[t["name"]]
        sid = self.uid(self.cloud, "server", t["name"], srv["name"])
        status = srv.get("status", "ACTIVE")
        if status not in STATES:
            raise self.fail(srv, f"{where}.status", f"{status!r} is not one of "
                                                    f"{', '.join(STATES)}")
        flavor = self.state.find_one("flavors", name=srv["flavor"])
        if flavor is None:
            raise self.fail(srv, f"{where}.flavor", f"unknown flavor {srv['flavor']!r}")
        user = (self.seeder._user(t, srv["user"]) if srv.get("user")
                else self.seeder.first_user.get(project["id"]))
        if user is None:
            raise self.fail(srv, f"{where}.user", f"unknown user {srv.get('user')!r} in "
                                                  f"tenant {t['name']!r}")
        key = srv.get("key_name")
        if key and self.state.get("keypairs", f"{user['id']}:{key}") is None:
            raise self.fail(srv, f"{where}.key_name", f"user {user['name']!r} has no key "
                                                      f"pair {key!r}")
        if bool(srv.get("image")) == bool(srv.get("boot_volume")):
            raise self.fail(srv, where, "a server boots from exactly one of 'image' or "
                                        "'boot_volume'")
        server = self._record(t, srv, sid, project, user, flavor, status)
        volumes: list[tuple[Record, bool]] = []
        if srv.get("image"):
            image = self._image(t, srv, where)
            server.update(image_id=image["id"], image_meta=image_meta_from_image(image),
                          _content=dict(image["_content"]))
        else:
            root = self._volume(t, srv, srv["boot_volume"], f"{where}.boot_volume")
            if not root.get("bootable"):
                raise self.fail(srv, f"{where}.boot_volume",
                                f"volume {srv['boot_volume']!r} is not bootable")
            server["image_meta"] = image_meta_from_volume(root.get("volume_image_metadata")
                                                          or {})
            volumes.append((root, True))
        for k, name in enumerate(srv.get("volumes") or []):
            volumes.append((self._volume(t, srv, name, f"{where}.volumes[{k}]"), False))
        if status == "ERROR":
            # A build that failed: no host, no ports, nothing attached.
            server["fault"] = {"code": 500, "created": self.seeder.stamp,
                               "message": srv.get("fault") or NO_VALID_HOST, "details": ""}
            self.state.put("servers", server)
            return
        server["host"] = self._host(server)
        server["node"] = f"{server['host']}.sim"
        self._attach(server, volumes, srv)
        self._ports(t, srv, server, where, status)
        self.state.put("servers", server)
        if srv.get("floating_ip"):
            self._floating_ip(t, srv, server, where)

    def _record(self, t: dict[str, Any], srv: dict[str, Any], sid: str, project: Record,
                user: Record, flavor: Record, status: str) -> Record:
        vm_state, power = STATES[status]
        self.seq += 1
        stamp = self.seeder.stamp
        return {
            "id": sid, "name": srv["name"], "description": srv.get("description"),
            "project_id": project["id"], "user_id": user["id"], "vm_state": vm_state,
            "task_state": None, "power_state": power,
            "flavor": {"id": flavor["id"], "name": flavor["name"], "vcpus": flavor["vcpus"],
                       "ram": flavor["ram"], "disk": flavor["disk"],
                       "ephemeral": int(flavor.get("ephemeral") or 0),
                       "swap": int(flavor.get("swap") or 0),
                       "extra_specs": dict(flavor.get("extra_specs") or {})},
            "image_id": "", "image_meta": {}, "key_name": srv.get("key_name"),
            "metadata": {str(k): str(v) for k, v in (srv.get("metadata") or {}).items()},
            "security_groups": list(srv.get("security_groups") or ["default"]),
            "availability_zone": AVAILABILITY_ZONE, "requested_availability_zone": None,
            "host": None, "node": None, "instance_name": f"instance-{self.seq:08x}",
            "hostname": hostname_of(srv["name"]), "reservation_id": f"r-{sid[:8]}",
            "created_at": stamp, "updated_at": stamp,
            "launched_at": None if status == "ERROR" else stamp, "config_drive": "",
            "access_ipv4": "", "access_ipv6": "", "locked": False, "tags": [],
            "user_data": None, "ports": [], "_nova_ports": [], "block_devices": [],
            "root_device_name": ROOT_DEVICE, "fault": None, "progress": 0, "_content": None,
            "_seq": self.seq}

    def _image(self, t: dict[str, Any], srv: dict[str, Any], where: str) -> Record:
        owner, _, name = str(srv["image"]).rpartition("/")
        image = self.seeder.images_by_name.get((owner or t["name"], name))
        if image is None:
            raise self.fail(srv, f"{where}.image", f"unknown image {srv['image']!r}")
        return image

    def _volume(self, t: dict[str, Any], srv: dict[str, Any], name: str, where: str
                ) -> Record:
        vol = self.state.get("volumes", self.uid(self.cloud, "volume", t["name"], name))
        if vol is None:
            raise self.fail(srv, where, f"unknown volume {name!r} in tenant {t['name']!r}")
        if vol.get("attachments"):
            raise self.fail(srv, where, f"volume {name!r} is attached to another server")
        return vol

    def _host(self, server: Record) -> str:
        arch = normalized_arch(server["image_meta"].get("properties", {}).get("architecture"))
        return next((h.name for h in HOSTS if h.arch == arch), HOSTS[0].name)

    def _attach(self, server: Record, volumes: list[tuple[Record, bool]],
                srv: dict[str, Any]) -> None:
        letters = iter("bcdefghijklmnopqrstuvwxyz")
        for vol, root in volumes:
            device = ROOT_DEVICE if root else f"/dev/vd{next(letters)}"
            attachment_id = self.uid(self.cloud, "attachment", server["id"], vol["id"])
            server["block_devices"].append({
                "volume_id": vol["id"], "device_name": device, "boot_index": 0 if root else None,
                "delete_on_termination": bool(root and srv.get("delete_on_termination")),
                "source_type": "volume", "destination_type": "volume",
                "volume_size": vol["size"], "attachment_id": attachment_id,
                "bdm_uuid": self.uid(self.cloud, "bdm", server["id"], vol["id"]), "tag": None,
                "disk_bus": None, "device_type": "disk"})
            vol.update(status="in-use",
                       attachments=[attachment_entry(vol, server, device, attachment_id)])

    def _ports(self, t: dict[str, Any], srv: dict[str, Any], server: Record, where: str,
               status: str) -> None:
        names = srv.get("networks")
        if names is None:
            own = t.get("networks") or []
            names = [own[0]["name"]] if own else []
        groups = [self._group(t, srv, g, where) for g in server["security_groups"]]
        for k, name in enumerate(names):
            net = self.seeder.networks_by_name.get(name)
            if net is None or not net["subnets"]:
                raise self.fail(srv, f"{where}.networks[{k}]",
                                f"unknown network {name!r} (or one without a subnet)")
            subnet = self.state.get("subnets", net["subnets"][0])
            assert subnet is not None
            port = self.seeder._port(server["project_id"], net, server["id"],
                                     f"compute:{AVAILABILITY_ZONE}", subnet,
                                     self.seeder._next_ip(subnet))
            port.update(security_groups=[g["id"] for g in groups],
                        status="ACTIVE" if status == "ACTIVE" else "DOWN",
                        port_security_enabled=True,
                        **{"binding:host_id": server["host"], "binding:vif_type": "ovs"})
            server["ports"].append(port["id"])
            server["_nova_ports"].append(port["id"])

    def _group(self, t: dict[str, Any], srv: dict[str, Any], name: str, where: str) -> Record:
        group = self.seeder.groups_by_name.get((t["name"], name))
        if group is not None:
            return group
        if name != "default":
            raise self.fail(srv, f"{where}.security_groups",
                            f"unknown security group {name!r} in tenant {t['name']!r}")
        # Neutron's per-project default group, with its four default rules.
        self.seeder._security_group(t, {"name": "default",
                                        "description": "Default security group"})
        group = self.seeder.groups_by_name[(t["name"], "default")]
        for ethertype in ("IPv4", "IPv6"):
            self.seeder._put_rule(group, {"direction": "ingress", "ethertype": ethertype},
                                  group["id"])
        return group

    def _floating_ip(self, t: dict[str, Any], srv: dict[str, Any], server: Record,
                     where: str) -> None:
        port = self.state.get("ports", server["ports"][0]) if server["ports"] else None
        if port is None:
            raise self.fail(srv, f"{where}.floating_ip", "the server has no port")
        fixed = port["fixed_ips"][0]
        router = self._router_for(fixed["subnet_id"])
        if router is None:
            raise self.fail(srv, f"{where}.floating_ip",
                            f"no router of tenant {t['name']!r} joins the server's subnet "
                            "to an external network")
        ext = self.state.get("networks", router["external_gateway_info"]["network_id"])
        assert ext is not None
        ext_subnet = self.state.get("subnets", ext["subnets"][0])
        assert ext_subnet is not None
        fid = self.uid(self.cloud, "floatingip", t["name"], srv["name"])
        address = self.seeder._next_ip(ext_subnet)
        if ipaddress.ip_address(address) not in ipaddress.ip_network(ext_subnet["cidr"]):
            raise self.fail(srv, f"{where}.floating_ip",
                            f"no address left in {ext['name']!r} ({ext_subnet['cidr']})")
        self.seeder._port("", ext, fid, "network:floatingip", ext_subnet, address)
        stamp = self.seeder.stamp
        self.state.put("floatingips", {
            "id": fid, "project_id": server["project_id"], "floating_network_id": ext["id"],
            "floating_ip_address": address, "port_id": port["id"],
            "fixed_ip_address": fixed["ip_address"], "router_id": router["id"],
            "status": "ACTIVE", "description": "", "tags": [], "created_at": stamp,
            "updated_at": stamp, "revision_number": 1})

    def _router_for(self, subnet_id: str) -> Record | None:
        if self._gateways is None:
            # subnet -> router with a gateway, built once: routers are seeded before servers
            # (a scan of every port per server would make a large seed quadratic).
            self._gateways = {}
            for port in self.state.find("ports", device_owner="network:router_interface"):
                router = self.state.get("routers", port["device_id"])
                if router is None or not router.get("external_gateway_info"):
                    continue
                for ip in port.get("fixed_ips") or []:
                    self._gateways.setdefault(ip["subnet_id"], router)
        return self._gateways.get(subnet_id)
