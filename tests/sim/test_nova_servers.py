"""Nova servers through openstacksdk on both profiles: boot from an image, the views (Liberty's
v2.1 extensions up to 2.12, the modern API up to 2.96), ports made on boot, listing with
``all_tenants`` and filters, stop/start, delete, quota refusals and ERROR with a fault."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import openstack
import pytest

from migrator.sim.server import SimServer
from tests.sim.server_world import World, boot, build_world, raw, wait_server

CLOUDS = ["legacy", "target"]


@pytest.fixture(scope="module")
def worlds(sim: SimServer) -> Iterator[dict[str, World]]:
    yield {cloud: build_world(sim, cloud, "srv") for cloud in CLOUDS}


@pytest.mark.parametrize("cloud", CLOUDS)
def test_boot_from_image_goes_active_with_ports_and_addresses(worlds: dict[str, World],
                                                              cloud: str) -> None:
    world = worlds[cloud]
    member = world.member
    created = member.compute.create_server(
        name="web-1", image_id=world.image_arm["id"], flavor_id=world.flavor.id,
        networks=[{"uuid": world.network.id}], key_name=world.key_name,
        security_groups=[{"name": world.group.name}], metadata={"role": "web"},
        availability_zone="nova")
    assert created.admin_password and len(created.admin_password) == 12
    server = wait_server(member, created, "ACTIVE")
    assert (server.name, server.key_name, server.metadata) == ("web-1", world.key_name,
                                                               {"role": "web"})
    assert (server.vm_state, server.power_state, server.task_state) == ("active", 1, None)
    assert server.availability_zone == "nova" and server.project_id == world.project_id
    assert server.image.id == world.image_arm["id"]
    assert [g["name"] for g in server.security_groups] == [world.group.name]
    assert server.launched_at and server.host_id
    # Nova made one port on the network, owned by the server, with an address of the subnet.
    ports = list(member.network.ports(device_id=server.id))
    assert len(ports) == 1
    port = ports[0]
    assert port.device_owner == "compute:nova" and port.status == "ACTIVE"
    assert port.security_group_ids == [world.group.id]
    address = port.fixed_ips[0]["ip_address"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(world.subnet.cidr)
    assert server.addresses == {world.network.name: [
        {"version": 4, "addr": address, "OS-EXT-IPS:type": "fixed",
         "OS-EXT-IPS-MAC:mac_addr": port.mac_address}]}
    assert server.attached_volumes == []


def test_liberty_view_embeds_the_flavor_as_a_link(worlds: dict[str, World]) -> None:
    world = worlds["legacy"]
    server = boot(world, "liberty-view", image=world.image_x86)
    body = raw(world.member, "GET", f"/servers/{server.id}", "2.12").json()["server"]
    assert body["flavor"] == {"id": world.flavor.id, "links": [
        {"rel": "bookmark", "href": body["flavor"]["links"][0]["href"]}]}
    assert body["flavor"]["links"][0]["href"].endswith(
        f"/compute/{world.project_id}/flavors/{world.flavor.id}")
    assert body["locked"] is False and body["OS-DCF:diskConfig"] == "MANUAL"
    for later in ("description", "tags", "host_status", "pinned_availability_zone",
                  "OS-EXT-SRV-ATTR:host"):
        assert later not in body
    assert "locked" not in raw(world.member, "GET", f"/servers/{server.id}",
                               "2.8").json()["server"]
    # Admins see the extended server attributes (more of them from 2.3).
    admin = raw(world.admin, "GET", f"/servers/{server.id}", "2.3").json()["server"]
    assert admin["OS-EXT-SRV-ATTR:host"] == "compute-x86-1"
    assert admin["OS-EXT-SRV-ATTR:root_device_name"] == "/dev/vda"
    assert admin["OS-EXT-SRV-ATTR:instance_name"].startswith("instance-")
    assert "OS-EXT-SRV-ATTR:hostname" not in raw(world.admin, "GET", f"/servers/{server.id}",
                                                 "2.1").json()["server"]
    assert raw(world.member, "GET", f"/servers/{server.id}", "2.13").status_code == 406


def test_modern_view_embeds_the_flavor_fields(worlds: dict[str, World]) -> None:
    world = worlds["target"]
    server = boot(world, "modern-view", image=world.image_x86, description="a server")
    body = raw(world.member, "GET", f"/servers/{server.id}", "2.96").json()["server"]
    assert body["flavor"] == {"vcpus": 1, "ram": 512, "disk": 1, "ephemeral": 0, "swap": 0,
                              "original_name": world.flavor.name, "extra_specs": {}}
    assert body["description"] == "a server" and body["tags"] == []
    assert body["pinned_availability_zone"] is None and body["server_groups"] == []
    assert body["OS-EXT-SRV-ATTR:hostname"] == "modern-view"
    assert body["locked_reason"] is None and body["trusted_image_certificates"] is None
    assert "server_groups" not in raw(world.member, "GET", "/servers/detail",
                                      "2.96").json()["servers"][0]
    old = raw(world.member, "GET", f"/servers/{server.id}", "2.46").json()["server"]
    assert set(old["flavor"]) == {"id", "links"}
    assert server.flavor.original_name == world.flavor.name  # the SDK parses it too
    admin = raw(world.admin, "GET", f"/servers/{server.id}", "2.96").json()["server"]
    assert admin["host_status"] == "UP" and admin["OS-EXT-SRV-ATTR:host"] == "compute-x86-1"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_boot_refusals_name_their_cause(worlds: dict[str, World], cloud: str) -> None:
    world = worlds[cloud]
    base = {"name": "bad", "flavor_id": world.flavor.id,
            "networks": [{"uuid": world.network.id}]}
    cases = [
        ({"image_id": "9e2b7c1e-0000-4000-8000-000000000000"}, 400,
         "Can not find requested image"),
        ({"image_id": world.image_x86["id"], "key_name": "nope"}, 400,
         "Invalid key_name provided."),
        ({"image_id": world.image_x86["id"], "security_groups": [{"name": "nope"}]}, 400,
         "Security group nope not found."),
        ({"image_id": world.image_x86["id"], "networks": [{"uuid": "not-a-uuid"}]}, 400,
         "Bad networks format: network uuid is not in proper format (not-a-uuid)"),
        ({"image_id": world.image_x86["id"], "availability_zone": "elsewhere"}, 400,
         "The requested availability zone is not available"),
        ({}, 400, "Block Device Mapping is Invalid: Boot sequence"),
    ]
    for extra, status, message in cases:
        with pytest.raises(openstack.exceptions.HttpException) as info:
            world.member.compute.create_server(**{**base, **extra})
        assert info.value.status_code == status, extra
        assert message in str(info.value), (extra, str(info.value))
    body = {"server": {"name": "x", "imageRef": world.image_x86["id"],
                       "flavorRef": world.flavor.id}}
    answer = raw(world.member, "POST", "/servers", "2.37" if cloud == "target" else "2.12",
                 json=body)
    if cloud == "target":  # 2.37 made networks required
        assert answer.status_code == 400 and "'networks' is a required property" in answer.text
    else:  # Liberty picks the project's one network (the shared ones are not there)
        assert answer.status_code == 202
        server = wait_server(world.member, world.member.compute.get_server(
            answer.json()["server"]["id"]), "ACTIVE")
        assert list(server.addresses) == [world.network.name]


@pytest.mark.parametrize("cloud", CLOUDS)
def test_listing_all_tenants_filters_and_pages(worlds: dict[str, World], cloud: str) -> None:
    world = worlds[cloud]
    mine = [boot(world, f"list-{i}", image=world.image_x86) for i in range(3)]
    own_ids = {s.id for s in world.member.compute.servers()}
    assert {s.id for s in mine} <= own_ids
    # The admin's own project has no servers; all_tenants shows everyone's.
    assert not {s.id for s in world.admin.compute.servers()} & own_ids
    everyone = {s.id: s for s in world.admin.compute.servers(all_projects=True)}
    assert own_ids <= set(everyone)
    assert everyone[mine[0].id].project_id == world.project_id
    with pytest.raises(openstack.exceptions.ForbiddenException):
        list(world.member.compute.servers(all_projects=True))
    by_project = {s.id for s in world.admin.compute.servers(all_projects=True,
                                                            project_id=world.project_id)}
    assert by_project == own_ids
    # name is a regular expression, as Nova's database filter.
    assert {s.name for s in world.member.compute.servers(name="^list-[12]$")} == {
        "list-1", "list-2"}
    assert {s.id for s in world.member.compute.servers(status="ACTIVE",
                                                       flavor=world.flavor.id,
                                                       image=world.image_x86["id"])} >= {
        s.id for s in mine}
    assert list(world.member.compute.servers(status="SHUTOFF", name="^list-")) == []
    address = mine[1].addresses[world.network.name][0]["addr"]
    assert [s.id for s in world.member.compute.servers(ipv4_address=f"^{address}$")] == [
        mine[1].id]
    # Newest first; pages follow servers_links.
    paged = [s.id for s in world.member.compute.servers(details=False, limit=2)]
    assert sorted(paged) == sorted(own_ids) and len(paged) == len(own_ids)
    newest = raw(world.member, "GET", "/servers?limit=1").json()
    assert newest["servers"][0]["id"] == mine[-1].id and "servers_links" in newest
    gone = raw(world.member, "GET", "/servers?marker=9e2b7c1e-0000-4000-8000-000000000001")
    assert gone.status_code == 400
    assert gone.json()["badRequest"]["message"] == (
        "marker [9e2b7c1e-0000-4000-8000-000000000001] not found")


@pytest.mark.parametrize("cloud", CLOUDS)
def test_stop_and_start(worlds: dict[str, World], cloud: str) -> None:
    world = worlds[cloud]
    server = boot(world, "power", image=world.image_arm)
    world.member.compute.stop_server(server)
    stopped = wait_server(world.member, server, "SHUTOFF")
    assert (stopped.vm_state, stopped.power_state, stopped.task_state) == ("stopped", 4, None)
    assert [p.status for p in world.member.network.ports(device_id=server.id)] == ["DOWN"]
    with pytest.raises(openstack.exceptions.ConflictException) as info:
        world.member.compute.stop_server(server)
    assert f"Cannot 'stop' instance {server.id} while it is in vm_state stopped" in str(
        info.value)
    world.member.compute.start_server(server)
    started = wait_server(world.member, server, "ACTIVE")
    assert (started.vm_state, started.power_state) == ("active", 1)
    with pytest.raises(openstack.exceptions.ConflictException, match="vm_state active"):
        world.member.compute.start_server(server)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_delete_removes_the_server_and_its_ports(worlds: dict[str, World], cloud: str) -> None:
    world = worlds[cloud]
    own_port = world.member.network.create_port(network_id=world.network.id, name="kept")
    server = boot(world, "doomed", image=world.image_x86,
                  networks=[{"uuid": world.network.id}, {"port": own_port.id}])
    assert len(server.addresses[world.network.name]) == 2
    nova_port = next(p for p in world.member.network.ports(device_id=server.id)
                     if p.id != own_port.id)
    world.member.compute.delete_server(server)
    world.member.compute.wait_for_delete(server, interval=0.05, wait=30)
    with pytest.raises(openstack.exceptions.NotFoundException, match="could not be found"):
        world.member.compute.get_server(server.id)
    assert world.member.network.find_port(nova_port.id) is None
    kept = world.member.network.get_port(own_port.id)
    assert (kept.device_id, kept.device_owner) == ("", "")


@pytest.mark.parametrize("cloud", CLOUDS)
def test_quota_refusal_is_novas_answer(sim: SimServer, cloud: str) -> None:
    world = build_world(sim, cloud, "quota")
    admin = world.admin
    admin.compute.update_quota_set(world.project_id, instances=1)
    boot(world, "first", image=world.image_x86)
    answer = raw(world.member, "POST", "/servers", json={"server": {
        "name": "second", "imageRef": world.image_x86["id"], "flavorRef": world.flavor.id,
        "networks": [{"uuid": world.network.id}]}})
    assert answer.status_code == 403
    assert answer.json() == {"forbidden": {"code": 403, "message": (
        "Quota exceeded for instances: Requested 1, but already used 1 of 1 instances")}}
    # Liberty's API adds Retry-After: 0 to its quota refusals; modern Nova does not.
    assert answer.headers.get("Retry-After") == ("0" if cloud == "legacy" else None)
    admin.compute.update_quota_set(world.project_id, instances=10, cores=1, ram=600)
    with pytest.raises(openstack.exceptions.ForbiddenException) as info:
        boot(world, "third", image=world.image_x86)
    assert ("Quota exceeded for cores, ram: Requested 1, 512, but already used 1, 512 of "
            "1, 600 cores, ram") in str(info.value)
    limits = raw(world.member, "GET", "/limits").json()["limits"]["absolute"]
    assert (limits["totalInstancesUsed"], limits["totalCoresUsed"],
            limits["totalRAMUsed"]) == (1, 1, 512)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_unschedulable_server_goes_to_error_with_a_fault(worlds: dict[str, World],
                                                         cloud: str) -> None:
    world = worlds[cloud]
    admin = world.admin
    admin.compute.update_quota_set(world.project_id, cores=-1, ram=-1)
    huge = admin.compute.create_flavor(name=f"huge-{cloud}", ram=1 << 20, vcpus=4096, disk=1)
    server = boot(world, "too-big", image=world.image_x86, flavor_id=huge.id, wait=False)
    failed = world.member.compute.wait_for_server(server, status="ERROR", interval=0.05,
                                                  wait=30)
    assert failed.vm_state == "error" and failed.power_state == 0
    assert failed.fault["code"] == 500
    assert failed.fault["message"] == ("No valid host was found. There are not enough hosts "
                                       "available.")
    assert "details" not in failed.fault  # code 500: details for admins only
    assert "NoValidHost" in admin.compute.get_server(server.id).fault["details"]
    assert list(world.member.network.ports(device_id=server.id)) == []
    # An image for an architecture no host has fails the same way.
    image = world.member.image.create_image(name=f"ppc-{cloud}", disk_format="raw",
                                            container_format="bare", data=b"\0" * 1024,
                                            architecture="ppc64le")
    odd = boot(world, "ppc", image={"id": image.id}, wait=False)
    assert world.member.compute.wait_for_server(odd, status="ERROR", interval=0.05,
                                                wait=30).fault["message"].startswith(
        "No valid host was found.")
