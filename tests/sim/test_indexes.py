"""The simulator's indexes never go stale: after creates, renames, tag changes, owner changes
and deletes (through the APIs, over HTTP, and on the state itself, including a change
announced only by a bare mark_dirty and a state loaded from disk), every filtered answer is
the one a full scan of the collection gives, in the same order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openstack
import pytest

from migrator.sim.server import SimServer
from migrator.sim.state import SimState


def scan(state: SimState, coll: str, field: str, value: Any) -> list[str]:
    return [r["id"] for r in state.data[coll].values() if r.get(field) == value]


def tag_scan(state: SimState, coll: str, tag: str) -> list[str]:
    return [r["id"] for r in state.data[coll].values() if tag in (r.get("tags") or [])]


def ids(records: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in records]


def agree(state: SimState) -> None:
    """Every lookup the indexes answer equals the scan, for every value present (and one
    absent)."""
    for field in ("name", "project_id", "colour"):
        values = {r.get(field) for r in state.data["networks"].values()} | {"absent"}
        for value in values:
            expected = scan(state, "networks", field, value)
            assert ids(state.lookup("networks", field, value)) == expected, (field, value)
            assert ids(state.find("networks", **{field: value})) == expected, (field, value)
            one = state.find_one("networks", **{field: value})
            assert (one["id"] if one else None) == (expected[0] if expected else None)
    for value in {r.get("project_id") for r in state.data["networks"].values()}:
        assert ids(state.where("networks", "project_id", value)) == scan(
            state, "networks", "project_id", value)
    tags = {t for r in state.data["networks"].values() for t in r.get("tags") or []}
    for tag in tags | {"absent"}:
        assert ids(state.tagged("networks", tag)) == tag_scan(state, "networks", tag), tag


def test_state_indexes_follow_put_touch_delete_mark_dirty_and_load(tmp_path: Path) -> None:
    state = SimState(tmp_path / "state.json")
    for n in range(12):
        state.put("networks", {"id": f"n{n:02d}", "name": f"net-{n % 4}", "project_id": f"p{n % 3}",
                               "tags": [f"t{n % 5}", "all"], "colour": "red"})
    agree(state)  # builds every index

    renamed = state.data["networks"]["n05"]
    renamed["name"] = "net-0"  # renamed in place, announced by touch: moved in the index
    renamed["tags"] = ["t9"]
    state.touch("networks", renamed)
    agree(state)

    quiet = state.data["networks"]["n07"]
    quiet["colour"] = "blue"  # changed in place, announced only by a bare mark_dirty
    quiet["name"] = "net-9"
    state.mark_dirty()
    agree(state)

    state.delete("networks", "n00")
    state.delete("networks", "n04")
    agree(state)
    # Put again after a delete: last in the collection's order, and in the index's answers.
    state.put("networks", {"id": "n00", "name": "net-0", "project_id": "p0", "tags": ["all"],
                           "colour": "red"})
    agree(state)
    assert ids(state.lookup("networks", "name", "net-0"))[-1] == "n00"
    # Replaced by a new record under the same id: the old one is no longer answered.
    state.put("networks", {"id": "n01", "name": "net-7", "project_id": "p2", "colour": "red"})
    agree(state)

    state.save()
    loaded = SimState(tmp_path / "state.json")
    assert loaded.load()
    agree(loaded)
    # An index built before a load answers from the loaded records.
    state.load()
    agree(state)


def test_positions_keep_the_collection_order(tmp_path: Path) -> None:
    state = SimState()
    for name in ("a", "b", "c"):
        state.put("users", {"id": name, "name": "same"})
    assert ids(state.lookup("users", "name", "same")) == ["a", "b", "c"]
    state.delete("users", "a")
    state.put("users", {"id": "a", "name": "same"})
    assert ids(state.lookup("users", "name", "same")) == ["b", "c", "a"]
    state.data["users"]["b"]["name"] = "other"
    state.touch("users", state.data["users"]["b"])
    assert ids(state.lookup("users", "name", "same")) == ["c", "a"]
    assert ids(state.lookup("users", "name", "other")) == ["b"]


# -- through the APIs ---------------------------------------------------------------------------
def test_keystone_listings_agree_after_rename_retag_and_delete(
        target: openstack.connection.Connection) -> None:
    made = [target.identity.create_project(name=f"idx-p{n}", domain_id="default",
                                           tags=[f"idx-t{n % 2}"]) for n in range(4)]
    target.identity.update_project(made[0], name="idx-renamed")
    made[1].set_tags(target.identity, ["idx-t0", "idx-new"])
    made[2].remove_tag(target.identity, "idx-t0")
    target.identity.delete_project(made[3])
    everything = list(target.identity.projects())

    def expect(pred: Any) -> list[str]:
        return [p.id for p in everything if pred(p)]

    # The new name and tags first: an index that missed a change answers them wrong (the old
    # ones would notice a record that no longer matches and build the index again).
    for name in ("idx-renamed", "idx-p0", "idx-p1", "idx-p3"):
        assert [p.id for p in target.identity.projects(name=name)] == expect(
            lambda p, n=name: p.name == n)
    for tag in ("idx-new", "idx-t0", "idx-t1"):
        assert [p.id for p in target.identity.projects(tags=tag)] == expect(
            lambda p, t=tag: t in (p.tags or []))
    user = target.identity.create_user(name="idx-u", domain_id="default", password="pw")
    target.identity.update_user(user, name="idx-u2")
    assert [u.id for u in target.identity.users(name="idx-u2")] == [user.id]
    assert [u.id for u in target.identity.users(name="idx-u")] == []
    target.identity.delete_user(user)
    assert [u.id for u in target.identity.users(name="idx-u2")] == []


def test_glance_listing_by_tag_and_owner_agrees_after_changes(
        target: openstack.connection.Connection) -> None:
    project = target.identity.create_project(name="idx-img-owner", domain_id="default")
    images = [target.image.create_image(name=f"idx-img{n}", disk_format="raw",
                                        container_format="bare", tags=["idx-img-tag"])
              for n in range(3)]
    # Listed once first, so that the indexes exist before the changes.
    assert len(list(target.image.images(tag="idx-img-tag"))) == 3
    assert list(target.image.images(owner=project.id)) == []
    assert list(target.image.images(tag="idx-img-extra")) == []
    target.image.add_tag(images[0], "idx-img-extra")
    target.image.remove_tag(images[1], "idx-img-tag")
    target.image.update_image(images[2], owner=project.id)
    target.image.delete_image(images[1])
    everything = list(target.image.images())
    assert [i.id for i in target.image.images(owner=project.id)] == [images[2].id]
    for tag in ("idx-img-extra", "idx-img-tag"):
        assert [i.id for i in target.image.images(tag=tag)] == [
            i.id for i in everything if tag in (i.tags or [])]
    assert [i.id for i in target.image.images(owner=project.id)] == [
        i.id for i in everything if i.owner == project.id] == [images[2].id]


def test_neutron_listings_agree_after_rename_retag_and_delete(
        target: openstack.connection.Connection) -> None:
    nets = [target.network.create_network(name=f"idx-net{n % 2}") for n in range(4)]
    # Listed once first, so that the indexes exist before the changes.
    for query in ({"name": "idx-net1"}, {"tags": "idx-other"}, {"tags": "idx-tag"}):
        assert len(list(target.network.networks(**query))) == (2 if "name" in query else 0)
    for net in nets[:2]:
        target.network.set_tags(net, ["idx-tag"])
    target.network.update_network(nets[0], name="idx-net1")
    target.network.set_tags(nets[1], ["idx-other"])
    target.network.delete_network(nets[3])
    everything = list(target.network.networks())
    for name in ("idx-net1", "idx-net0"):
        assert [n.id for n in target.network.networks(name=name)] == [
            n.id for n in everything if n.name == name]
    for tag in ("idx-other", "idx-tag"):
        assert [n.id for n in target.network.networks(tags=tag)] == [
            n.id for n in everything if tag in (n.tags or [])]

    router = target.network.create_router(name="idx-router")
    subnet = target.network.create_subnet(network_id=nets[2].id, ip_version=4,
                                          cidr="10.77.0.0/24")
    assert list(target.network.ports(device_id=router.id)) == []
    target.network.add_interface_to_router(router, subnet_id=subnet.id)
    by_device = [p.id for p in target.network.ports(device_id=router.id)]
    assert by_device == [p.id for p in target.network.ports() if p.device_id == router.id]
    assert len(by_device) == 1
    target.network.remove_interface_from_router(router, subnet_id=subnet.id)
    assert list(target.network.ports(device_id=router.id)) == []


@pytest.mark.parametrize("cloud", ["legacy", "target"])
def test_ipam_gives_back_the_lowest_address_once_released(sim: SimServer, cloud: str) -> None:
    conn = openstack.connect(cloud=cloud)
    net = conn.network.create_network(name=f"idx-ipam-{cloud}")
    conn.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.78.0.0/29",
                               gateway_ip="10.78.0.1")
    ports = [conn.network.create_port(network_id=net.id) for _ in range(3)]
    assert [p.fixed_ips[0]["ip_address"] for p in ports] == [
        "10.78.0.2", "10.78.0.3", "10.78.0.4"]
    conn.network.delete_port(ports[0])
    again = conn.network.create_port(network_id=net.id)
    assert again.fixed_ips[0]["ip_address"] == "10.78.0.2"
    assert conn.network.create_port(network_id=net.id).fixed_ips[0]["ip_address"] == \
        "10.78.0.5"
