"""Glance v2 metadata through openstacksdk against both profiles: discovery, create, listing,
filters, pagination, visibility, members, JSON-patch, tags, delete, schemas."""

from __future__ import annotations

from typing import Any

import openstack
import pytest
import requests

from migrator.sim.server import SimServer
from tests.sim.conftest import Admin, connect, make_member, member_connection
from tests.sim.glance_seed import admin_project_id, project_id, seed_image

CLOUDS = ["legacy", "target"]
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


def image_url(sim: SimServer, cloud: str, suffix: str = "") -> str:
    return f"{sim.cloud(cloud).base_url}/image/v2/images{suffix}"


def raw(conn: openstack.connection.Connection, method: str, url: str, **kwargs: Any
        ) -> requests.Response:
    """A request through the SDK's authenticated session, returned whatever its status."""
    return conn.session.request(url, method, raise_exc=False, **kwargs)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def members(sim: SimServer) -> dict[str, dict[str, Any]]:
    """On each cloud, two member projects/users: 'glance-a' (alice) and 'glance-b' (bob)."""
    out: dict[str, dict[str, Any]] = {}
    for cloud in CLOUDS:
        admin = connect(sim, cloud)
        make_member(admin, "glance-a", "glance-alice")
        make_member(admin, "glance-b", "glance-bob")
        out[cloud] = {
            "a": project_id(sim, cloud, "glance-a"),
            "b": project_id(sim, cloud, "glance-b"),
            "alice": member_connection(sim, cloud, "glance-a", "glance-alice"),
            "bob": member_connection(sim, cloud, "glance-b", "glance-bob"),
        }
    return out


# -- discovery ------------------------------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_version_document_lists_the_profile_versions(sim: SimServer, cloud: str) -> None:
    base = sim.cloud(cloud).base_url
    for path in ("/image", "/image/"):
        resp = requests.get(base + path, timeout=10)
        assert resp.status_code == 300
        versions = resp.json()["versions"]
        ids = [v["id"] for v in versions]
        assert ids == list(sim.cloud(cloud).profile.glance_versions)
        assert versions[0]["status"] == "CURRENT"
        assert all(v["status"] == "SUPPORTED" for v in versions[1:])
        for v in versions:
            major = v["id"].split(".")[0]
            assert v["links"] == [{"rel": "self", "href": f"{base}/image/{major}/"}]
    assert any(i.startswith("v1") for i in ids) == (cloud == "legacy")
    conn = connect(sim, cloud)
    assert conn.image.get_endpoint().rstrip("/").endswith("/image/v2")


# -- create -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_create_looks_name_up_then_posts_flat_properties(
    sim: SimServer, cloud: str, admin_api: dict[str, Admin]
) -> None:
    conn = connect(sim, cloud)
    admin_api[cloud].reset_calls()
    image = conn.image.create_image("create-flat", disk_format="qcow2", container_format="bare",
                                    hw_disk_bus="scsi", hw_firmware_type="uefi")
    calls = admin_api[cloud].calls()
    # The SDK's name lookup: GET by name must 404, then a filtered listing.
    assert calls["GET /image/v2/images/{image_id}"] == 1
    assert calls["GET /image/v2/images"] >= 1
    assert calls["POST /image/v2/images"] == 1
    body = raw(conn, "GET", image_url(sim, cloud, f"/{image.id}")).json()
    assert body["status"] == "queued" and body["size"] is None and body["checksum"] is None
    assert body["hw_disk_bus"] == "scsi" and body["hw_firmware_type"] == "uefi"
    assert body["owner_specified.openstack.object"] == "images/create-flat"
    assert body["owner"] == admin_project_id(sim, cloud)
    assert body["self"] == f"/v2/images/{image.id}"
    assert body["file"] == f"/v2/images/{image.id}/file"
    assert body["schema"] == "/v2/schemas/image"
    assert "properties" not in body
    modern_keys = {"os_hidden", "os_hash_algo", "os_hash_value"}
    if cloud == "legacy":
        assert body["visibility"] == "private"
        assert not modern_keys & set(body)
    else:
        assert body["visibility"] == "shared"
        assert body["os_hidden"] is False and body["os_hash_algo"] is None
    # The SDK finds the name again but, given no md5/sha256 to compare, treats the image as
    # out of date and creates a second one: the name lookup does not prevent duplicates.
    again = conn.image.create_image("create-flat", disk_format="qcow2",
                                    container_format="bare")
    assert again.id != image.id
    with pytest.raises(openstack.exceptions.DuplicateResource):
        conn.image.find_image("create-flat")


@pytest.mark.parametrize("cloud", CLOUDS)
def test_create_refusals(sim: SimServer, cloud: str) -> None:
    conn = connect(sim, cloud)
    url = image_url(sim, cloud)

    def post(body: dict[str, Any]) -> int:
        return raw(conn, "POST", url, json=body).status_code

    assert post({"name": "bad", "status": "active"}) == 403
    assert post({"name": "bad", "size": 10}) == 403
    assert post({"name": "bad", "self": "/x"}) == 403
    assert post({"name": "bad", "deleted": "x"}) == 403
    # Liberty's create checked only its factory's reserved list, which lacked 'location'.
    assert post({"name": "loc", "location": "file:///x"}) == (201 if cloud == "legacy"
                                                               else 403)
    assert post({"name": "bad", "extra": 5}) == 400
    assert post({"name": "bad", "disk_format": "floppy"}) == 400
    assert post({"name": "bad", "protected": "yes"}) == 400
    assert post({"name": "bad", "visibility": "community"}) == (400 if cloud == "legacy"
                                                                else 201)
    # Liberty had no 'owner' base property: it is a reserved extra property there.
    assert post({"name": "owned", "owner": admin_project_id(sim, cloud)}) == (
        403 if cloud == "legacy" else 201)
    if cloud == "target":
        assert post({"name": "bad", "os_hash_value": "x"}) == 403
        assert post({"name": "bad", "os_glance_import_task": "x"}) == 403
    image_id = "9d8f5a34-53f6-4d0e-9c1e-9b8d6ea8a0c1"
    assert post({"name": "with-id", "id": image_id}) == 201
    assert post({"name": "with-id", "id": image_id}) == 409


# -- listing and pagination -----------------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_pagination_follows_glance_next_links(
    sim: SimServer, cloud: str, admin_api: dict[str, Admin]
) -> None:
    for i in range(60):
        seed_image(sim, cloud, name=f"pager-{i:02d}", tags=["pager"])
    conn = connect(sim, cloud)
    admin_api[cloud].reset_calls()
    names = [i.name for i in conn.image.images(tag="pager")]
    assert sorted(names) == [f"pager-{i:02d}" for i in range(60)]
    assert admin_api[cloud].calls()["GET /image/v2/images"] == 3  # 25 + 25 + 10
    first = raw(conn, "GET", image_url(sim, cloud, "?tag=pager")).json()
    assert len(first["images"]) == 25
    assert first["first"] == "/v2/images?tag=pager"
    assert first["schema"] == "/v2/schemas/images"
    last_id = first["images"][-1]["id"]
    assert first["next"] == f"/v2/images?tag=pager&marker={last_id}"
    # Default order: created_at then id, both descending.
    keys = [(i["created_at"], i["id"]) for i in first["images"]]
    assert keys == sorted(keys, reverse=True)
    # A full last page still announces a next page, which comes back empty.
    page = raw(conn, "GET", image_url(sim, cloud, "?tag=pager&limit=30")).json()
    follow = raw(conn, "GET", image_url(sim, cloud, page["next"][len("/v2/images"):])).json()
    assert len(follow["images"]) == 30 and "next" in follow
    tail = raw(conn, "GET", image_url(sim, cloud, follow["next"][len("/v2/images"):])).json()
    assert tail["images"] == [] and "next" not in tail
    assert len(raw(conn, "GET", image_url(sim, cloud, "?limit=5000")).json()["images"]) <= 1000
    bad = raw(conn, "GET", image_url(sim, cloud, "?marker=00000000-0000-0000-0000-000000000000"))
    assert bad.status_code == 400


@pytest.mark.parametrize("cloud", CLOUDS)
def test_filters_and_sorting(sim: SimServer, cloud: str) -> None:
    seed_image(sim, cloud, name="flt-small", size=1000, tags=["flt"], disk_format="raw",
               properties={"os_distro": "cirros"})
    seed_image(sim, cloud, name="flt-big", size=5000, tags=["flt", "big"],
               disk_format="qcow2", protected=True)
    seed_image(sim, cloud, name="flt-queued", tags=["flt"])
    conn = connect(sim, cloud)

    def names(**query: Any) -> list[str]:
        return [i.name for i in conn.image.images(tag="flt", **query)]

    assert sorted(names()) == ["flt-big", "flt-queued", "flt-small"]
    assert names(sort_key="name", sort_dir="asc") == ["flt-big", "flt-queued", "flt-small"]
    assert names(sort="name:desc") == ["flt-small", "flt-queued", "flt-big"]
    assert names(sort_key="size", sort_dir="desc")[:2] == ["flt-big", "flt-small"]
    assert names(status="queued") == ["flt-queued"]
    assert names(size_min=2000) == ["flt-big"]
    assert names(size_max=2000) == ["flt-small"]
    assert names(disk_format="raw") == ["flt-small"]
    if cloud == "legacy":
        assert names(protected=True) == ["flt-big"]
    else:
        # Modern Glance accepts only lower-case booleans; the SDK sends 'True'.
        with pytest.raises(openstack.exceptions.BadRequestException):
            names(protected=True)
        assert names(protected="true") == ["flt-big"]
    assert names(name="flt-big") == ["flt-big"]
    assert names(os_distro="cirros") == ["flt-small"]  # unknown keys filter properties
    assert [i.name for i in conn.image.images(tag=["flt", "big"])] == ["flt-big"]
    bad_sort = raw(conn, "GET", image_url(sim, cloud, "?sort_key=owner"))
    assert bad_sort.status_code == 400
    assert raw(conn, "GET", image_url(sim, cloud, "?sort_dir=up")).status_code == 400
    assert raw(conn, "GET", image_url(sim, cloud, "?member_status=x")).status_code == 400
    if cloud == "target":
        assert names(name="in:flt-big,flt-small", sort_key="name", sort_dir="asc") == [
            "flt-big", "flt-small"]


def test_hidden_images_only_on_modern(sim: SimServer) -> None:
    seed_image(sim, "target", name="hidden-one", os_hidden=True, tags=["hid"])
    conn = connect(sim, "target")
    assert [i.name for i in conn.image.images(tag="hid")] == []
    assert [i.name for i in conn.image.images(tag="hid", is_hidden=True)] == ["hidden-one"]
    assert conn.image.find_image("hidden-one") is not None
    # Liberty has no os_hidden: the filter is an (absent) extra property.
    seed_image(sim, "legacy", name="plain-one", tags=["hid"])
    legacy = connect(sim, "legacy")
    assert [i.name for i in legacy.image.images(tag="hid")] == ["plain-one"]
    assert [i.name for i in legacy.image.images(tag="hid", is_hidden=True)] == []


# -- visibility and members -----------------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_visibility_rules(sim: SimServer, cloud: str,
                          members: dict[str, dict[str, Any]]) -> None:
    m = members[cloud]
    secret = seed_image(sim, cloud, name="vis-private", visibility="private", tags=["vis"])
    open_image = seed_image(sim, cloud, name="vis-public", visibility="public", tags=["vis"])
    bobs = seed_image(sim, cloud, name="vis-bob", visibility="private", owner=m["b"],
                      tags=["vis"])
    alice = m["alice"]
    assert sorted(i.name for i in alice.image.images(tag="vis")) == ["vis-public"]
    with pytest.raises(openstack.exceptions.NotFoundException):
        alice.image.get_image(secret["id"])
    with pytest.raises(openstack.exceptions.NotFoundException):
        alice.image.get_image(bobs["id"])
    assert alice.image.get_image(open_image["id"]).name == "vis-public"
    # A visible image that is not hers: she may not change or delete it.
    resp = raw(alice, "PATCH", image_url(sim, cloud, f"/{open_image['id']}"), headers=PATCH,
               json=[{"op": "replace", "path": "/name", "value": "mine"}])
    assert resp.status_code == 403
    assert raw(alice, "DELETE", image_url(sim, cloud, f"/{open_image['id']}")).status_code == 403
    # The admin lists every project's images (Glance's admin query has no owner clause).
    admin = connect(sim, cloud)
    assert {"vis-private", "vis-public", "vis-bob"} <= {i.name for i in admin.image.images(
        tag="vis")}
    if cloud == "target":
        seed_image(sim, cloud, name="vis-community", visibility="community", owner=m["b"],
                   tags=["vis"])
        # Community images are listed only when asked for (or by their owner).
        assert "vis-community" not in {i.name for i in alice.image.images(tag="vis")}
        assert [i.name for i in alice.image.images(tag="vis", visibility="community")] == [
            "vis-community"]
        assert "vis-community" in {i.name for i in m["bob"].image.images(tag="vis")}
        assert "vis-community" not in {i.name for i in admin.image.images(tag="vis")}


@pytest.mark.parametrize("cloud", CLOUDS)
def test_member_flow(sim: SimServer, cloud: str, members: dict[str, dict[str, Any]]) -> None:
    m = members[cloud]
    owner = connect(sim, cloud)
    visibility = "private" if cloud == "legacy" else "shared"
    image = seed_image(sim, cloud, name=f"shared-{cloud}", visibility=visibility, size=2048,
                       tags=["mem"])
    alice, bob = m["alice"], m["bob"]
    member = owner.image.add_member(image["id"], member_id=m["a"])
    assert member.status == "pending" and member.id == m["a"]
    # Pending: she can read the image but it is not in her default listing.
    assert alice.image.get_image(image["id"]).id == image["id"]
    assert [i.name for i in alice.image.images(tag="mem")] == []
    assert [i.name for i in alice.image.images(tag="mem", member_status="pending")] == [
        f"shared-{cloud}"]
    # The member sets her status (an admin may too; an owner may not, see below).
    resp = raw(owner, "PUT", image_url(sim, cloud, f"/{image['id']}/members/{m['a']}"),
               json={"status": "rejected"})
    assert resp.status_code == 200 and resp.json()["status"] == "rejected"
    assert [i.name for i in alice.image.images(tag="mem", member_status="rejected")] == [
        f"shared-{cloud}"]
    accepted = alice.image.update_member(m["a"], image["id"], status="accepted")
    assert accepted.status == "accepted"
    assert [i.name for i in alice.image.images(tag="mem")] == [f"shared-{cloud}"]
    # A member sees only her own membership; only the owner adds members.
    assert [x.id for x in alice.image.members(image["id"])] == [m["a"]]
    with pytest.raises(openstack.exceptions.ForbiddenException):
        alice.image.add_member(image["id"], member_id=m["b"])
    assert raw(bob, "GET", image_url(sim, cloud, f"/{image['id']}")).status_code == 404
    with pytest.raises(openstack.exceptions.ConflictException):
        owner.image.add_member(image["id"], member_id=m["a"])
    resp = raw(alice, "PUT", image_url(sim, cloud, f"/{image['id']}/members/{m['a']}"),
               json={"status": "maybe"})
    assert resp.status_code == 400
    assert owner.image.get_member(m["a"], image["id"]).status == "accepted"
    owner.image.remove_member(m["a"], image["id"])
    assert raw(alice, "GET", image_url(sim, cloud, f"/{image['id']}")).status_code == 404


@pytest.mark.parametrize("cloud", CLOUDS)
def test_owner_cannot_set_member_status(
    sim: SimServer, cloud: str, members: dict[str, dict[str, Any]]
) -> None:
    m = members[cloud]
    visibility = "private" if cloud == "legacy" else "shared"
    image = seed_image(sim, cloud, name="owner-status", visibility=visibility, owner=m["b"])
    bob = m["bob"]
    bob.image.add_member(image["id"], member_id=m["a"])
    url = image_url(sim, cloud, f"/{image['id']}/members/{m['a']}")
    assert raw(bob, "PUT", url, json={"status": "accepted"}).status_code == 403
    assert raw(m["alice"], "PUT", url, json={"status": "accepted"}).status_code == 200
    # Only the owner removes a member, not the member herself.
    assert raw(m["alice"], "DELETE", url).status_code == 403
    assert raw(bob, "DELETE", url).status_code == 204


@pytest.mark.parametrize("cloud", CLOUDS)
def test_members_only_where_the_profile_allows(sim: SimServer, cloud: str,
                                               members: dict[str, dict[str, Any]]) -> None:
    owner = connect(sim, cloud)
    public_image = seed_image(sim, cloud, name="members-public", visibility="public")
    with pytest.raises(openstack.exceptions.ForbiddenException):
        owner.image.add_member(public_image["id"], member_id=members[cloud]["a"])
    private_image = seed_image(sim, cloud, name="members-private", visibility="private")
    if cloud == "legacy":
        assert owner.image.add_member(private_image["id"],
                                      member_id=members[cloud]["a"]).status == "pending"
    else:
        with pytest.raises(openstack.exceptions.ForbiddenException):
            owner.image.add_member(private_image["id"], member_id=members[cloud]["a"])


# -- update (JSON patch), tags, delete ------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_update_through_sdk_and_raw_json_patch(sim: SimServer, cloud: str) -> None:
    conn = connect(sim, cloud)
    image = conn.image.create_image("patch-me", disk_format="raw", container_format="bare",
                                    os_distro="cirros", hw_firmware_type="bios")
    updated = conn.image.update_image(image, name="patched", min_ram=512,
                                      hw_firmware_type="uefi")
    assert updated.name == "patched" and updated.min_ram == 512
    body = raw(conn, "GET", image_url(sim, cloud, f"/{image.id}")).json()
    assert body["hw_firmware_type"] == "uefi" and body["min_ram"] == 512
    url = image_url(sim, cloud, f"/{image.id}")

    def patch(ops: list[dict[str, Any]], headers: dict[str, str] = PATCH) -> requests.Response:
        return raw(conn, "PATCH", url, json=ops, headers=headers)

    resp = patch([{"op": "add", "path": "/arch_hack", "value": "aarch64"},
                  {"op": "remove", "path": "/os_distro"},
                  {"op": "replace", "path": "/protected", "value": True}])
    assert resp.status_code == 200
    assert resp.json()["arch_hack"] == "aarch64" and "os_distro" not in resp.json()
    assert resp.json()["protected"] is True
    assert patch([{"op": "replace", "path": "/nothing", "value": "x"}]).status_code == 409
    assert patch([{"op": "remove", "path": "/nothing"}]).status_code == 409
    assert patch([{"op": "remove", "path": "/name"}]).status_code == 403
    assert patch([{"op": "replace", "path": "/status", "value": "active"}]).status_code == 403
    assert patch([{"op": "add", "path": "/n", "value": 3}]).status_code == 400
    assert patch([{"op": "move", "path": "/n", "from": "/m"}]).status_code == 400
    assert patch([{"op": "add", "path": "/tags/0", "value": "x"}]).status_code == 400
    wrong_type = patch([], headers={"Content-Type": "application/json"})
    assert wrong_type.status_code == 415
    assert "openstack-images-v2.1-json-patch" in wrong_type.headers["Accept-Patch"]
    shared = patch([{"op": "replace", "path": "/visibility", "value": "shared"}])
    assert shared.status_code == (400 if cloud == "legacy" else 200)
    # A refused change list leaves the image untouched.
    patch([{"op": "replace", "path": "/name", "value": "half"},
           {"op": "replace", "path": "/missing", "value": "x"}])
    assert raw(conn, "GET", url).json()["name"] == "patched"
    # Protected: no delete until unprotected.
    with pytest.raises(openstack.exceptions.ForbiddenException):
        conn.image.delete_image(image, ignore_missing=False)
    assert patch([{"op": "replace", "path": "/protected", "value": False}]).status_code == 200
    conn.image.delete_image(image, ignore_missing=False)
    assert raw(conn, "GET", url).status_code == 404
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.image.delete_image(image.id, ignore_missing=False)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_tags(sim: SimServer, cloud: str) -> None:
    conn = connect(sim, cloud)
    image = conn.image.create_image("tagged", disk_format="raw", container_format="bare")
    conn.image.add_tag(image, "alpha")
    conn.image.add_tag(image, "beta")
    conn.image.add_tag(image, "alpha")
    assert conn.image.get_image(image).tags == ["alpha", "beta"]
    conn.image.remove_tag(image, "alpha")
    assert conn.image.get_image(image).tags == ["beta"]
    resp = raw(conn, "DELETE", image_url(sim, cloud, f"/{image.id}/tags/alpha"))
    assert resp.status_code == 404


@pytest.mark.parametrize("cloud", CLOUDS)
def test_schemas(sim: SimServer, cloud: str) -> None:
    conn = connect(sim, cloud)
    schema = conn.image.get_image_schema()
    assert schema.properties["visibility"]["enum"] == list(
        sim.cloud(cloud).profile.glance_visibilities)
    assert ("os_hash_value" in schema.properties) == (cloud == "target")
    assert schema.additional_properties == {"type": "string"}
    assert conn.image.get_images_schema().properties["images"]["type"] == "array"
    assert conn.image.get_member_schema().properties["status"]["enum"] == [
        "pending", "accepted", "rejected"]
