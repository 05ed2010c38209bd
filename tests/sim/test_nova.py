"""Nova through openstacksdk against both profiles: Liberty (2.1 to 2.12, project in the URL)
and modern (2.1 to 2.96)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openstack
import pytest
import requests

from migrator.sim.nova_keypairs import generate_ssh_key, ssh_fingerprint
from migrator.sim.server import SimServer
from tests.sim.conftest import Admin, connect, make_member, member_connection

CLOUDS = ["legacy", "target"]
MAX = {"legacy": "2.12", "target": "2.96"}


def raw_get(conn: openstack.connection.Connection, path: str, **headers: str
            ) -> requests.Response:
    url = conn.compute.get_endpoint().rstrip("/") + path
    return requests.get(url, headers={"X-Auth-Token": conn.auth_token, **headers}, timeout=10)


@pytest.fixture(scope="module")
def members(sim: SimServer) -> Iterator[dict[str, tuple[Any, Any, Any]]]:
    """A member project and user per cloud ("nova-team"/"nick"): (project, user, connection)."""
    out = {}
    for cloud in CLOUDS:
        project, user = make_member(connect(sim, cloud), "nova-team", "nick")
        out[cloud] = (project, user, member_connection(sim, cloud, "nova-team", "nick"))
    yield out


# -- discovery and microversions ----------------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_version_documents_and_endpoints(sim: SimServer, cloud: str) -> None:
    base = sim.cloud(cloud).base_url
    docs = requests.get(f"{base}/compute/", timeout=10).json()["versions"]
    assert [(d["id"], d["version"], d["min_version"]) for d in docs] == [
        ("v2.1", MAX[cloud], "2.1")]
    for path in ("/compute/v2.1", "/compute/v2.1/"):
        assert requests.get(f"{base}{path}", timeout=10).json()["version"]["version"] == MAX[
            cloud]
    conn = connect(sim, cloud)
    endpoint = conn.compute.get_endpoint()
    if cloud == "legacy":
        assert endpoint.endswith(f"/compute/v2.1/{conn.current_project_id}")
    else:
        assert endpoint.endswith("/compute/v2.1")
    major, minor = MAX[cloud].split(".")
    assert conn.compute.get_endpoint_data().max_microversion == (int(major), int(minor))


@pytest.mark.parametrize("cloud", CLOUDS)
def test_microversion_headers(sim: SimServer, cloud: str) -> None:
    conn = connect(sim, cloud)
    legacy = "X-OpenStack-Nova-API-Version"
    assert raw_get(conn, "/flavors").headers[legacy] == "2.1"
    assert raw_get(conn, "/flavors", **{legacy: "latest"}).headers[legacy] == MAX[cloud]
    too_new = raw_get(conn, "/flavors", **{legacy: "2.97" if cloud == "target" else "2.13"})
    assert too_new.status_code == 406 and "computeFault" in too_new.json()
    assert raw_get(conn, "/flavors", **{legacy: "2"}).status_code == 400
    generic = raw_get(conn, "/flavors", **{"OpenStack-API-Version": "compute 2.5"})
    if cloud == "legacy":
        # Liberty predates the generic header (2.27): it is ignored, the minimum is served.
        assert generic.headers[legacy] == "2.1" and "OpenStack-API-Version" not in generic.headers
    else:
        assert generic.headers["OpenStack-API-Version"] == "compute 2.5"
        assert generic.headers[legacy] == "2.5"


def test_pinned_microversion_applies_to_every_call(sim: SimServer) -> None:
    # compute_api_version '2.12' pins the microversion; the SDK's own maximum for quota sets
    # (2.56) would hide nova-network's keys on the modern cloud.
    default = connect(sim, "target")
    pinned = connect(sim, "target", compute_api_version="2.12")
    pid = default.current_project_id
    assert default.compute.get_quota_set(pid).floating_ips is None
    assert pinned.compute.get_quota_set(pid).floating_ips == 10
    too_high = connect(sim, "legacy", compute_api_version="2.13")
    with pytest.raises(openstack.exceptions.SDKException):
        list(too_high.compute.flavors())


# -- flavors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_flavors(sim: SimServer, cloud: str, admin_api: dict[str, Admin],
                 members: dict[str, tuple[Any, Any, openstack.connection.Connection]]) -> None:
    admin = connect(sim, cloud)
    project, _, member = members[cloud]
    public = [admin.compute.create_flavor(name=f"pub-{i}", ram=256 * (i + 1), vcpus=1, disk=i,
                                          id=f"pub-{i}") for i in range(5)]
    private = admin.compute.create_flavor(name="secret", ram=1024, vcpus=2, disk=10,
                                          is_public=False, id="secret")
    with pytest.raises(openstack.exceptions.ConflictException):
        admin.compute.create_flavor(name="secret", ram=1, vcpus=1, disk=1)
    # Nova lists public flavors only unless asked is_public=None; the SDK always asks so.
    raw_names = {f["name"] for f in admin.compute.get("/flavors/detail").json()["flavors"]}
    assert {f.name for f in public} <= raw_names and "secret" not in raw_names
    assert "secret" in {f.name for f in admin.compute.flavors()}
    # A member gets public flavors only, whatever it asks.
    assert "secret" not in {f.name for f in member.compute.flavors(is_public=None)}
    assert {f.name for f in admin.compute.flavors(is_public=False)} == {"secret"}
    # Pages follow flavors_links (then one more call: the SDK probes past the last page).
    admin_api[cloud].reset_calls()
    paged = [f.id for f in admin.compute.flavors(is_public=None, limit=2)]
    assert paged == sorted(paged) and set(paged) == {f.id for f in [*public, private]}
    route = ("GET /compute/v2.1/{project_id}/flavors/detail" if cloud == "legacy"
             else "GET /compute/v2.1/flavors/detail")
    assert admin_api[cloud].calls()[route] == -(-len(paged) // 2) + 1
    # A member sees a private flavor only once its project has access.
    with pytest.raises(openstack.exceptions.NotFoundException):
        member.compute.get_flavor(private.id)
    admin.compute.flavor_add_tenant_access(private, project.id)
    assert member.compute.get_flavor(private.id).name == "secret"
    assert "secret" in {f.name for f in member.compute.flavors()}
    access = admin.compute.get_flavor_access(private)
    assert [(a["flavor_id"], a["tenant_id"]) for a in access] == [(private.id, project.id)]
    # Extra specs, and swap shown as "" before 2.75.
    admin.compute.create_flavor_extra_specs(private, {"hw:cpu_policy": "dedicated"})
    assert admin.compute.fetch_flavor_extra_specs(private).extra_specs == {
        "hw:cpu_policy": "dedicated"}
    raw = admin.compute.get(f"/flavors/{private.id}", microversion="2.12").json()["flavor"]
    assert raw["swap"] == "" and "extra_specs" not in raw
    assert raw["os-flavor-access:is_public"] is False
    if cloud == "target":
        new = admin.compute.get(f"/flavors/{private.id}", microversion="2.75").json()["flavor"]
        assert new["swap"] == 0 and new["extra_specs"] == {"hw:cpu_policy": "dedicated"}
    with pytest.raises(openstack.exceptions.ForbiddenException):
        member.compute.create_flavor(name="mine", ram=1, vcpus=1, disk=1)


# -- keypairs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_keypairs_per_user(sim: SimServer, cloud: str,
                           members: dict[str, tuple[Any, Any, openstack.connection.Connection]]
                           ) -> None:
    admin = connect(sim, cloud)
    _, nick, member = members[cloud]
    public_key, _ = generate_ssh_key()
    imported = member.compute.create_keypair(name="laptop", public_key=public_key)
    assert imported.fingerprint == ssh_fingerprint(public_key) and imported.private_key is None
    generated = member.compute.create_keypair(name="made")
    assert generated.private_key.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert generated.public_key.startswith("ssh-rsa ")
    with pytest.raises(openstack.exceptions.ConflictException):
        member.compute.create_keypair(name="laptop", public_key=public_key)
    with pytest.raises(openstack.exceptions.BadRequestException):
        member.compute.create_keypair(name="broken", public_key="ssh-rsa not-base64!")
    assert {k.name for k in member.compute.keypairs()} == {"laptop", "made"}
    # An admin reaches another user's keypairs with user_id (the SDK sends 2.10).
    theirs = {k.name for k in admin.compute.keypairs(user_id=nick.id)}
    assert theirs == {"laptop", "made"}
    assert admin.compute.get_keypair("laptop", user_id=nick.id).user_id == nick.id
    raw = admin.compute.get(f"/os-keypairs?user_id={nick.id}", microversion="2.10").json()
    assert sorted(k["keypair"]["name"] for k in raw["keypairs"]) == ["laptop", "made"]
    assert all(k["keypair"]["type"] == "ssh" for k in raw["keypairs"])
    # Below 2.10 user_id is ignored: the admin sees its own keypairs, without "type" (< 2.2).
    old = admin.compute.get(f"/os-keypairs?user_id={nick.id}", microversion="2.1").json()
    assert {k["keypair"]["name"] for k in old["keypairs"]}.isdisjoint({"laptop", "made"})
    assert all("type" not in k["keypair"] for k in old["keypairs"])
    # A member cannot name another user.
    with pytest.raises(openstack.exceptions.ForbiddenException):
        list(member.compute.keypairs(user_id=admin.current_user_id))
    admin.compute.delete_keypair("made", user_id=nick.id)
    assert {k.name for k in member.compute.keypairs()} == {"laptop"}


@pytest.mark.parametrize("cloud", CLOUDS)
def test_keypair_quota_and_generation_rules(sim: SimServer, cloud: str) -> None:
    admin = connect(sim, cloud)
    project, _ = make_member(admin, f"keys-{cloud}", f"kate-{cloud}")
    admin.compute.update_quota_set(project.id, key_pairs=1)
    kate = member_connection(sim, cloud, f"keys-{cloud}", f"kate-{cloud}")
    kate.compute.create_keypair(name="one", public_key=generate_ssh_key()[0])
    with pytest.raises(openstack.exceptions.ForbiddenException,
                       match="Quota exceeded, too many key pairs"):
        kate.compute.create_keypair(name="two", public_key=generate_ssh_key()[0])
    if cloud == "target":
        # From 2.92 Nova no longer generates keys: public_key is required.
        resp = admin.compute.post("/os-keypairs", json={"keypair": {"name": "gen"}},
                                  microversion="2.92")
        assert resp.status_code == 400 and "public_key" in resp.text
        created = admin.compute.post("/os-keypairs", json={"keypair": {
            "name": "typed", "type": "ssh", "public_key": generate_ssh_key()[0]}},
            microversion="2.92")
        assert created.status_code == 201 and created.json()["keypair"]["type"] == "ssh"
    old = admin.compute.post("/os-keypairs", json={"keypair": {"name": "t", "type": "ssh"}},
                             microversion="2.1")
    assert old.status_code == 400 and "'type' was unexpected" in old.text


# -- quota sets and limits ----------------------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
def test_quota_keys_follow_the_microversion(sim: SimServer, cloud: str) -> None:
    admin = connect(sim, cloud)
    project, _ = make_member(admin, f"quota-{cloud}", f"quinn-{cloud}")
    pid = project.id

    def keys(microversion: str) -> set[str]:
        resp = admin.compute.get(f"/os-quota-sets/{pid}", microversion=microversion)
        assert resp.status_code == 200, resp.text
        return set(resp.json()["quota_set"])

    assert {"floating_ips", "security_groups", "injected_files", "key_pairs"} <= keys("2.12")
    if cloud == "target":
        assert "floating_ips" not in keys("2.36") and "injected_files" in keys("2.36")
        assert "injected_files" not in keys("2.57") and "key_pairs" in keys("2.57")
        # The SDK asks at 2.56 and cannot set nova-network keys there.
        with pytest.raises(openstack.exceptions.BadRequestException,
                           match="floating_ips"):
            admin.compute.update_quota_set(pid, floating_ips=3)
    else:
        updated = admin.compute.update_quota_set(pid, floating_ips=3, instances=4)
        assert (updated.floating_ips, updated.instances) == (3, 4)
    admin.compute.update_quota_set(pid, cores=7)
    assert admin.compute.get_quota_set(pid).cores == 7
    stored = sim.cloud(cloud).state.get("quotas", f"compute:{pid}")
    assert stored is not None and stored["limits"]["cores"] == 7
    detail = admin.compute.get_quota_set(pid, usage=True)
    assert detail.cores == 7 and detail.usage["cores"] == 0
    assert admin.compute.get_quota_set_defaults(pid).cores == 20
    with pytest.raises(openstack.exceptions.BadRequestException):
        admin.compute.update_quota_set(pid, networks=2)
    quinn = member_connection(sim, cloud, f"quota-{cloud}", f"quinn-{cloud}")
    assert quinn.compute.get_quota_set(pid).cores == 7
    with pytest.raises(openstack.exceptions.ForbiddenException):
        quinn.compute.get_quota_set(admin.current_project_id)
    with pytest.raises(openstack.exceptions.ForbiddenException):
        quinn.compute.update_quota_set(pid, cores=100)
    limits = quinn.compute.get_limits()
    assert limits.absolute.total_cores == 7


def test_url_project_must_be_the_tokens(sim: SimServer) -> None:
    conn = connect(sim, "legacy")
    url = conn.compute.get_endpoint().replace(conn.current_project_id, "someone-else")
    resp = requests.get(f"{url}/flavors", headers={"X-Auth-Token": conn.auth_token}, timeout=10)
    assert resp.status_code == 400 and "Malformed request URL" in resp.text
