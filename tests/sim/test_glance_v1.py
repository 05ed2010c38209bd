"""Glance v1 on the Liberty profile, spoken with raw HEAD/GET calls through the SDK's
authenticated session (the SDK's own v1 proxy is unsafe, see openstack-notes)."""

from __future__ import annotations

import hashlib
from typing import Any

import openstack
import pytest
import requests

from migrator.sim.server import SimServer
from tests.sim.conftest import Admin, connect, make_member, member_connection
from tests.sim.glance_seed import admin_project_id, generated_bytes, md5_hex, seed_image


def v1_url(sim: SimServer, cloud: str, suffix: str) -> str:
    return f"{sim.cloud(cloud).base_url}/image/v1/images{suffix}"


def call(conn: openstack.connection.Connection, method: str, url: str, **kwargs: Any
         ) -> requests.Response:
    return conn.session.request(url, method, raise_exc=False, **kwargs)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def alice(sim: SimServer) -> openstack.connection.Connection:
    make_member(connect(sim, "legacy"), "v1-physics", "v1-alice")
    return member_connection(sim, "legacy", "v1-physics", "v1-alice")


def test_head_returns_image_meta_headers(sim: SimServer) -> None:
    size = 1 * (1 << 20) + 321
    image = seed_image(sim, "legacy", name="v1-head", size=size, seed=21, disk_format="qcow2",
                       container_format="bare", protected=True,
                       properties={"Hw_Disk_Bus": "scsi", "architecture": "aarch64"})
    conn = connect(sim, "legacy")
    resp = call(conn, "HEAD", v1_url(sim, "legacy", f"/{image['id']}"))
    assert resp.status_code == 200 and resp.content == b""
    h = resp.headers
    assert h["x-image-meta-id"] == image["id"]
    assert h["x-image-meta-name"] == "v1-head"
    assert h["x-image-meta-status"] == "active"
    assert h["x-image-meta-size"] == str(size)
    assert h["x-image-meta-checksum"] == md5_hex(generated_bytes(21, size))
    assert h["ETag"] == h["x-image-meta-checksum"]
    assert h["x-image-meta-disk_format"] == "qcow2"
    assert h["x-image-meta-container_format"] == "bare"
    assert h["x-image-meta-is_public"] == "False"
    assert h["x-image-meta-protected"] == "True"
    assert h["x-image-meta-deleted"] == "False"
    assert h["x-image-meta-min_disk"] == "0"
    assert h["x-image-meta-owner"] == admin_project_id(sim, "legacy")
    assert h["x-image-meta-created_at"].endswith(".000000")
    assert "x-image-meta-deleted_at" not in h and "x-image-meta-virtual_size" not in h
    # Property names are lower-cased in the header names, values kept.
    assert h["x-image-meta-property-hw_disk_bus"] == "scsi"
    assert h["x-image-meta-property-architecture"] == "aarch64"
    missing = call(conn, "HEAD", v1_url(sim, "legacy", "/00000000-0000-0000-0000-000000000000"))
    assert missing.status_code == 404


def test_get_returns_bytes_with_the_same_headers(sim: SimServer,
                                                 admin_api: dict[str, Admin]) -> None:
    size = 2 * (1 << 20) + 5
    image = seed_image(sim, "legacy", name="v1-get", size=size, seed=22, visibility="public")
    conn = connect(sim, "legacy")
    resp = call(conn, "GET", v1_url(sim, "legacy", f"/{image['id']}"))
    assert resp.status_code == 200
    assert resp.content == generated_bytes(22, size)
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Content-Length"] == str(size)
    assert resp.headers["x-image-meta-is_public"] == "True"
    assert resp.headers["x-image-meta-checksum"] == hashlib.md5(
        resp.content, usedforsecurity=False).hexdigest()
    # The fault layer applies to v1 bodies too.
    admin_api["legacy"].add_fault(match="GET /image/v1/images/*", corrupt_offset=10, times=1)
    bad = call(conn, "GET", v1_url(sim, "legacy", f"/{image['id']}"))
    assert md5_hex(bad.content) != resp.headers["x-image-meta-checksum"]
    # An image without data is 404 on GET but HEAD still describes it.
    queued = seed_image(sim, "legacy", name="v1-queued")
    assert call(conn, "GET", v1_url(sim, "legacy", f"/{queued['id']}")).status_code == 404
    head = call(conn, "HEAD", v1_url(sim, "legacy", f"/{queued['id']}"))
    assert head.headers["x-image-meta-status"] == "queued"
    assert "x-image-meta-size" not in head.headers and "ETag" not in head.headers


def test_detail_listing_stops_at_25_without_limit(sim: SimServer) -> None:
    for i in range(30):
        seed_image(sim, "legacy", name=f"v1-list-{i:02d}", size=100 + i, seed=30 + i,
                   properties={"batch": "v1-list"})
    conn = connect(sim, "legacy")
    detail = call(conn, "GET", v1_url(sim, "legacy", "/detail?property-batch=v1-list")).json()
    assert len(detail["images"]) == 25 and set(detail) == {"images"}  # no next link
    first = detail["images"][0]
    assert first["properties"] == {"batch": "v1-list"}
    assert first["is_public"] is False and first["deleted"] is False
    assert {"id", "name", "status", "size", "checksum", "owner", "min_ram", "protected",
            "created_at", "updated_at", "deleted_at"} <= set(first)
    everything = call(conn, "GET", v1_url(sim, "legacy", "/detail?property-batch=v1-list"
                                                         "&limit=100")).json()["images"]
    assert sorted(i["name"] for i in everything) == [f"v1-list-{i:02d}" for i in range(30)]
    # Paging with marker=, sorted by created_at then id, descending.
    paged: list[str] = []
    marker = ""
    while True:
        query = "/detail?property-batch=v1-list&limit=12" + (f"&marker={marker}" if marker
                                                              else "")
        page = call(conn, "GET", v1_url(sim, "legacy", query)).json()["images"]
        if not page:
            break
        paged += [i["id"] for i in page]
        marker = page[-1]["id"]
    assert paged == [i["id"] for i in everything]
    index = call(conn, "GET", v1_url(sim, "legacy", "?property-batch=v1-list&sort_key=name"
                                                    "&sort_dir=asc")).json()["images"]
    assert [i["name"] for i in index] == [f"v1-list-{i:02d}" for i in range(25)]
    assert set(index[0]) == {"id", "name", "size", "disk_format", "container_format",
                             "checksum"}
    assert call(conn, "GET", v1_url(sim, "legacy", "/detail?marker=nope")).status_code == 400
    assert call(conn, "GET", v1_url(sim, "legacy", "/detail?sort_key=owner")).status_code == 400


def test_admin_sees_other_projects_private_images_only_with_is_public_none(
    sim: SimServer, alice: openstack.connection.Connection
) -> None:
    alice_project = alice.current_project_id
    theirs = seed_image(sim, "legacy", name="v1-theirs", size=10, owner=alice_project,
                        properties={"batch": "v1-admin"})
    public = seed_image(sim, "legacy", name="v1-public", size=10, visibility="public",
                        owner=alice_project, properties={"batch": "v1-admin"})
    mine = seed_image(sim, "legacy", name="v1-mine", size=10, properties={"batch": "v1-admin"})
    admin = connect(sim, "legacy")

    def names(conn: openstack.connection.Connection, extra: str = "") -> set[str]:
        url = v1_url(sim, "legacy", f"/detail?property-batch=v1-admin{extra}")
        return {i["name"] for i in call(conn, "GET", url).json()["images"]}

    assert names(admin) == {"v1-public", "v1-mine"}
    assert names(admin, "&is_public=None") == {"v1-theirs", "v1-public", "v1-mine"}
    assert names(admin, "&is_public=false") == {"v1-theirs", "v1-mine"}
    assert names(alice) == {"v1-theirs", "v1-public"}
    assert names(alice, "&is_public=None") == {"v1-theirs", "v1-public"}  # not an admin
    # v2 on the same cloud: the admin lists everything without asking.
    v2 = {i.name for i in admin.image.images(visibility=None) if i.name in (
        "v1-theirs", "v1-public", "v1-mine")}
    assert v2 == {"v1-theirs", "v1-public", "v1-mine"}
    assert call(alice, "HEAD", v1_url(sim, "legacy", f"/{mine['id']}")).status_code == 404
    assert call(alice, "HEAD", v1_url(sim, "legacy", f"/{theirs['id']}")).status_code == 200
    assert call(alice, "HEAD", v1_url(sim, "legacy", f"/{public['id']}")).status_code == 200


def test_no_v1_on_the_modern_profile(sim: SimServer) -> None:
    image = seed_image(sim, "target", name="no-v1", size=10)
    conn = connect(sim, "target")
    assert call(conn, "HEAD", v1_url(sim, "target", f"/{image['id']}")).status_code == 404
    assert call(conn, "GET", v1_url(sim, "target", "/detail")).status_code == 404
