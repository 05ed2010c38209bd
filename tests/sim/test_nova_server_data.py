"""What a server holds, through openstacksdk on both profiles: its disk (createImage of an
image-backed server yields the disk's bytes; of a volume-backed one, a zero-byte image with a
block_device_mapping naming Cinder snapshots), boot from volume, volume attachments,
interfaces, and Neutron floating IPs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import openstack
import pytest

from migrator.sim.server import CloudSpec, SimServer
from tests.sim.conftest import connect
from tests.sim.server_world import (
    INTERVAL,
    WAIT,
    World,
    boot,
    build_world,
    download_md5,
    raw,
    wait_image,
    wait_server,
    wait_volume,
)

CLOUDS = ["legacy", "target"]
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def image_json(conn: openstack.connection.Connection, image_id: str) -> dict[str, object]:
    return conn.image.get(f"/images/{image_id}").json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def worlds(sim: SimServer) -> Iterator[dict[str, World]]:
    yield {cloud: build_world(sim, cloud, "data") for cloud in CLOUDS}


@pytest.mark.parametrize("cloud", CLOUDS)
def test_snapshot_of_an_image_backed_server_holds_its_disk(worlds: dict[str, World],
                                                           cloud: str) -> None:
    world = worlds[cloud]
    server = boot(world, "snap-me", image=world.image_arm)
    image_id = world.member.compute.create_server_image(server, "snap-me-1",
                                                        metadata={"purpose": "migration"}).id
    image = wait_image(world.member, image_id)
    # The root disk started as the image's bytes: the snapshot has them.
    assert image.size == world.image_arm["size"]
    assert image.checksum == world.image_arm["checksum"]
    assert download_md5(world.member, image) == world.image_arm["checksum"]
    assert (image.owner, image.visibility, image.disk_format) == (world.project_id, "private",
                                                                  "qcow2")
    extra = image_json(world.admin, image_id)  # Glance v2 shows properties flat
    assert extra["architecture"] == "aarch64" and extra["hw_machine_type"] == "virt"
    assert extra["image_type"] == "snapshot" and extra["instance_uuid"] == server.id
    assert extra["base_image_ref"] == world.image_arm["id"]
    assert extra["purpose"] == "migration" and extra["os_distro"] == "ubuntu"
    if cloud == "target":
        assert extra["owner_project_name"] == "data-team"
    assert wait_server(world.member, server, "ACTIVE").task_state is None
    # A stopped server can be snapshotted too; one in a task cannot.
    world.member.compute.stop_server(server)
    wait_server(world.member, server, "SHUTOFF")
    wait_image(world.member, world.member.compute.create_server_image(server, "cold").id)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_pre_245_answers_with_a_location(worlds: dict[str, World], cloud: str) -> None:
    world = worlds[cloud]
    server = boot(world, "location", image=world.image_x86)
    answer = raw(world.member, "POST", f"/servers/{server.id}/action", "2.1",
                 json={"createImage": {"name": "by-location"}})
    assert answer.status_code == 202 and not answer.content
    image_id = answer.headers["Location"].rsplit("/", 1)[1]
    assert answer.headers["Location"].endswith(f"/image/images/{image_id}")
    wait_image(world.member, image_id)
    if cloud == "target":
        body = raw(world.member, "POST", f"/servers/{server.id}/action", "2.45",
                   json={"createImage": {"name": "by-body"}})
        assert body.status_code == 202 and "Location" not in body.headers
        wait_image(world.member, body.json()["image_id"])


@pytest.mark.parametrize("cloud", CLOUDS)
def test_boot_from_volume_and_snapshot_it(worlds: dict[str, World], cloud: str) -> None:
    world = worlds[cloud]
    member = world.member
    server = boot(world, "from-volume", block_device_mapping=[{
        "boot_index": 0, "uuid": world.image_x86["id"], "source_type": "image",
        "destination_type": "volume", "volume_size": 1, "delete_on_termination": True}])
    assert not server.image  # "" on the wire: booted from a volume
    assert raw(member, "GET", f"/servers/{server.id}").json()["server"]["image"] == ""
    [root] = server.attached_volumes
    volume = wait_volume(member, root["id"], "in-use")
    assert volume.is_bootable and volume.attachments[0]["server_id"] == server.id
    assert volume.attachments[0]["device"] == "/dev/vda"
    assert volume.volume_image_metadata["image_id"] == world.image_x86["id"]
    image_id = member.compute.create_server_image(server, "bfv-snap").id
    image = wait_image(member, image_id)
    assert image.size == 0
    if cloud == "legacy":  # Glance v1 activated it with no formats and no checksum
        assert (image.disk_format, image.container_format, image.checksum) == (None, None,
                                                                               None)
    else:  # modern Nova uploads zero bytes as raw/bare
        assert (image.disk_format, image.checksum) == ("raw", EMPTY_MD5)
    props = image_json(world.admin, image_id)
    assert props["bdm_v2"] == "True" and props["root_device_name"] == "/dev/vda"
    assert props["architecture"] == "x86_64"
    [mapping] = json.loads(props["block_device_mapping"])
    assert (mapping["source_type"], mapping["destination_type"], mapping["boot_index"],
            mapping["volume_size"], mapping["device_name"]) == ("snapshot", "volume", 0, 1,
                                                                "/dev/vda")
    snapshot = member.block_storage.get_snapshot(mapping["snapshot_id"])
    snapshot = member.block_storage.wait_for_status(snapshot, "available", failures=["error"],
                                                    interval=INTERVAL, wait=WAIT)
    assert snapshot.volume_id == volume.id and snapshot.name == "snapshot for bfv-snap"
    # A volume made from the snapshot boots a second server.
    copy = member.block_storage.create_volume(size=1, snapshot_id=snapshot.id, name="copy")
    copy = wait_volume(member, copy, "available")
    assert copy.is_bootable and copy.snapshot_id == snapshot.id
    second = boot(world, "from-copy", block_device_mapping=[{
        "boot_index": 0, "uuid": copy.id, "source_type": "volume",
        "destination_type": "volume"}])
    assert [v["id"] for v in second.attached_volumes] == [copy.id]
    # Deleting the first server deletes its root volume (delete_on_termination) once the
    # snapshot that depends on it is gone.
    with pytest.raises(openstack.exceptions.BadRequestException, match="have snapshots"):
        member.block_storage.delete_volume(volume)
    member.block_storage.delete_snapshot(snapshot)
    member.block_storage.wait_for_delete(snapshot, interval=INTERVAL, wait=WAIT)
    member.compute.delete_server(server)
    member.compute.wait_for_delete(server, interval=INTERVAL, wait=WAIT)
    member.block_storage.wait_for_delete(volume, interval=INTERVAL, wait=WAIT)
    second_volume = member.block_storage.get_volume(copy.id)
    assert second_volume.status == "in-use"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_boot_volume_must_be_bootable_and_available(worlds: dict[str, World],
                                                    cloud: str) -> None:
    world = worlds[cloud]
    blank = world.member.block_storage.create_volume(size=1, name="blank")
    wait_volume(world.member, blank, "available")
    with pytest.raises(openstack.exceptions.BadRequestException, match="is not bootable"):
        boot(world, "no-boot", block_device_mapping=[{
            "boot_index": 0, "uuid": blank.id, "source_type": "volume",
            "destination_type": "volume"}])


@pytest.mark.parametrize("cloud", CLOUDS)
def test_attach_and_detach_a_data_volume(worlds: dict[str, World], cloud: str) -> None:
    world = worlds[cloud]
    member = world.member
    server = boot(world, "with-data", image=world.image_x86)
    data = wait_volume(member, member.block_storage.create_volume(size=1, name="data"),
                       "available")
    attachment = member.compute.create_volume_attachment(server, data)
    assert (attachment.volume_id, attachment.device) == (data.id, "/dev/vdb")
    volume = wait_volume(member, data, "in-use")
    assert volume.attachments[0]["server_id"] == server.id
    assert ("attached_at" in volume.attachments[0]) == (cloud == "target")
    assert [a.volume_id for a in member.compute.volume_attachments(server)] == [data.id]
    assert [v["id"] for v in member.compute.get_server(server).attached_volumes] == [data.id]
    with pytest.raises(openstack.exceptions.BadRequestException, match="status must be"):
        member.compute.create_volume_attachment(server, data)
    with pytest.raises(openstack.exceptions.BadRequestException, match="attached"):
        member.block_storage.delete_volume(data)
    member.compute.delete_volume_attachment(server, data)
    assert wait_volume(member, data, "available").attachments == []
    assert list(member.compute.volume_attachments(server)) == []


@pytest.mark.parametrize("cloud", CLOUDS)
def test_root_volume_cannot_be_detached(worlds: dict[str, World], cloud: str) -> None:
    world = worlds[cloud]
    server = boot(world, "rooted", block_device_mapping=[{
        "boot_index": 0, "uuid": world.image_arm["id"], "source_type": "image",
        "destination_type": "volume", "volume_size": 1}])
    root = server.attached_volumes[0]["id"]
    answer = raw(world.member, "DELETE", f"/servers/{server.id}/os-volume_attachments/{root}")
    if cloud == "legacy":
        assert (answer.status_code, answer.json()["forbidden"]["message"]) == (
            403, "Can't detach root device volume")
    else:
        assert (answer.status_code, answer.json()["badRequest"]["message"]) == (
            400, "Cannot detach a root device volume")


@pytest.mark.parametrize("cloud", CLOUDS)
def test_floating_ip_on_the_external_network(worlds: dict[str, World], cloud: str) -> None:
    world = worlds[cloud]
    member = world.member
    server = boot(world, "public", image=world.image_arm)
    [port] = member.network.ports(device_id=server.id)
    fip = member.network.create_ip(floating_network_id=world.external.id, port_id=port.id)
    assert fip.floating_ip_address.startswith("203.0.113.")
    assert (fip.port_id, fip.fixed_ip_address, fip.router_id, fip.status) == (
        port.id, port.fixed_ips[0]["ip_address"], world.router.id, "ACTIVE")
    raw_fip = member.network.get(f"/floatingips/{fip.id}").json()["floatingip"]
    assert ("project_id" in raw_fip) == (cloud == "target")
    assert raw_fip["tenant_id"] == world.project_id
    entries = member.compute.get_server(server).addresses[world.network.name]
    assert [(e["addr"], e["OS-EXT-IPS:type"]) for e in entries] == [
        (fip.fixed_ip_address, "fixed"), (fip.floating_ip_address, "floating")]
    assert entries[1]["OS-EXT-IPS-MAC:mac_addr"] == port.mac_address
    assert [f.id for f in member.network.ips(port_id=port.id)] == [fip.id]
    # Disassociate, associate again, then the server's deletion frees it.
    member.network.update_ip(fip, port_id=None)
    assert member.network.get_ip(fip).status == "DOWN"
    member.network.update_ip(fip, port_id=port.id)
    member.compute.delete_server(server)
    member.compute.wait_for_delete(server, interval=INTERVAL, wait=WAIT)
    freed = member.network.get_ip(fip)
    assert (freed.port_id, freed.fixed_ip_address, freed.status) == (None, None, "DOWN")
    member.network.delete_ip(fip)
    assert member.network.find_ip(fip.id) is None


@pytest.mark.parametrize("cloud", CLOUDS)
def test_floating_ip_refusals(worlds: dict[str, World], cloud: str) -> None:
    world = worlds[cloud]
    with pytest.raises(openstack.exceptions.BadRequestException,
                       match="is not a valid external network"):
        world.member.network.create_ip(floating_network_id=world.network.id)
    lonely = world.member.network.create_network(name=f"lonely-{cloud}")
    world.member.network.create_subnet(network_id=lonely.id, cidr="10.99.0.0/24",
                                       ip_version=4)
    port = world.member.network.create_port(network_id=lonely.id)
    with pytest.raises(openstack.exceptions.NotFoundException, match="is not reachable"):
        world.member.network.create_ip(floating_network_id=world.external.id,
                                       port_id=port.id)
    world.admin.network.update_quota(world.project_id, floating_ips=0)
    with pytest.raises(openstack.exceptions.ConflictException, match="floatingip"):
        world.member.network.create_ip(floating_network_id=world.external.id)
    world.admin.network.update_quota(world.project_id, floating_ips=50)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_interfaces(worlds: dict[str, World], cloud: str) -> None:
    world = worlds[cloud]
    member = world.member
    server = boot(world, "nics", image=world.image_x86)
    [first] = member.compute.server_interfaces(server)
    assert first.net_id == world.network.id and first.port_state == "ACTIVE"
    extra = member.network.create_port(network_id=world.network.id, name="extra")
    member.compute.create_server_interface(server, port_id=extra.id)
    assert {i.port_id for i in member.compute.server_interfaces(server)} == {first.port_id,
                                                                              extra.id}
    assert member.network.get_port(extra.id).device_id == server.id
    member.compute.delete_server_interface(extra.id, server=server)
    assert [i.port_id for i in member.compute.server_interfaces(server)] == [first.port_id]
    assert member.network.get_port(extra.id).device_id == ""


def test_servers_survive_a_restart_and_a_build_in_flight_fails(tmp_path: Path) -> None:
    data_dir = tmp_path
    specs = [CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")]
    with SimServer(specs, data_dir) as first:
        world = build_world(first, "target", "keep")
        kept = boot(world, "kept", image=world.image_x86)
        world.member.compute.stop_server(kept)
        wait_server(world.member, kept, "SHUTOFF")
        # A build that never finishes: the compute side is slow in this cloud.
        cloud = first.cloud("target")
        cloud.profile = replace(cloud.profile, delays=replace(cloud.profile.delays,
                                                              server_build=3600))
        stuck = boot(world, "stuck", image=world.image_x86, wait=False)
        assert world.member.compute.get_server(stuck).status == "BUILD"
    with SimServer(specs, data_dir) as second:
        admin = connect(second, "target")
        again = admin.compute.get_server(kept.id)
        assert (again.status, again.power_state, again.name) == ("SHUTOFF", 4, "kept")
        assert again.addresses == kept.addresses
        # Nova's compute, started again, puts an instance stuck in building in ERROR.
        assert admin.compute.get_server(stuck.id).status == "ERROR"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_snapshot_by_an_admin_of_another_project(worlds: dict[str, World], cloud: str) -> None:
    world = worlds[cloud]
    server = boot(world, "admin-snap", image=world.image_x86)
    image = wait_image(world.admin, world.admin.compute.create_server_image(server, "by-admin").id)
    admin_project = world.admin.current_project_id
    assert image.owner == admin_project  # the caller's project owns it, as in Nova
    if cloud == "target":  # modern Nova shares it with the server's project
        assert image.visibility == "shared"
        members = world.admin.image.get(f"/images/{image.id}/members").json()["members"]
        assert [(m["member_id"], m["status"]) for m in members] == [(world.project_id,
                                                                     "pending")]
    else:
        assert image.visibility == "private"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_a_boot_volume_is_reserved_until_the_build_ends(sim: SimServer,
                                                        worlds: dict[str, World],
                                                        cloud: str) -> None:
    world = worlds[cloud]
    member = world.member
    volume = member.block_storage.create_volume(size=1, image_id=world.image_x86["id"],
                                                name=f"reserved-{cloud}")
    volume = wait_volume(member, volume, "available")
    bdm = [{"boot_index": 0, "uuid": volume.id, "source_type": "volume",
            "destination_type": "volume"}]
    sim_cloud = sim.cloud(cloud)
    quick = sim_cloud.profile
    sim_cloud.profile = replace(quick, delays=replace(quick.delays, server_build=3600))
    try:
        slow = boot(world, "slow", block_device_mapping=bdm, wait=False)
        # Nova's API reserves the volume at once: a second boot from it is refused.
        reserved = "attaching" if cloud == "legacy" else "reserved"
        assert member.block_storage.get_volume(volume).status == reserved
        with pytest.raises(openstack.exceptions.BadRequestException, match="status must be"):
            boot(world, "second", block_device_mapping=bdm, wait=False)
        member.compute.delete_server(slow)  # deleted while it builds: the volume is free
        member.compute.wait_for_delete(slow, interval=INTERVAL, wait=WAIT)
    finally:
        sim_cloud.profile = quick
    assert wait_volume(member, volume, "available").attachments == []
    # A build that fails frees it too.
    world.admin.compute.update_quota_set(world.project_id, cores=-1, ram=-1)
    huge = world.admin.compute.create_flavor(name=f"giant-{cloud}", ram=1 << 20, vcpus=4096,
                                             disk=1)
    failed = boot(world, "giant", flavor_id=huge.id, block_device_mapping=bdm, wait=False)
    member.compute.wait_for_server(failed, status="ERROR", interval=INTERVAL, wait=WAIT)
    assert wait_volume(member, volume, "available").attachments == []
    # An ERROR server still holds its quota, as in Nova, until it is deleted.
    with pytest.raises(openstack.exceptions.BadRequestException, match="already used"):
        world.admin.compute.update_quota_set(world.project_id, cores=20)
    member.compute.delete_server(failed)
    member.compute.wait_for_delete(failed, interval=INTERVAL, wait=WAIT)
    world.admin.compute.update_quota_set(world.project_id, cores=20, ram=51200)
