"""LegacySource against the Liberty simulator, through openstacksdk over real HTTP."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator.clouds.connection import CloudHandle, open_cloud
from migrator.clouds.errors import CloudCallError
from migrator.clouds.source import LegacySource, ReadResult
from migrator.errors import ConfigError
from migrator.sim.server import SimServer
from migrator.store.inventory import Item
from tests.clouds.legacy_sim import TENANTS, SimAdmin, add_operator, start_legacy


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    server = start_legacy(tmp_path_factory.mktemp("legacy"))
    add_operator(server, member_of=["physics", "chemistry"], home="physics")
    yield server
    server.stop()


@pytest.fixture
def admin(sim: SimServer) -> Iterator[CloudHandle]:
    handle = open_cloud("legacy", config_file=sim.clouds_yaml)
    yield handle
    handle.close()


@pytest.fixture(scope="module")
def full(sim: SimServer) -> ReadResult:
    handle = open_cloud("legacy", config_file=sim.clouds_yaml)
    return LegacySource(handle).read()


def by_kind(result: ReadResult, kind: str) -> list[Item]:
    return [i for i in result.items if i.kind == kind]


def named(result: ReadResult, kind: str, name: str) -> Item:
    matches = [i for i in by_kind(result, kind) if i.name == name]
    assert len(matches) == 1, (kind, name, matches)
    return matches[0]


def project_ids(result: ReadResult) -> dict[str, str]:
    return {i.name or "": i.source_id for i in by_kind(result, "project")}


def test_every_kind_is_read_with_contract_ids(full: ReadResult) -> None:
    counts = Counter(i.kind for i in full.items)
    assert set(counts) == {"domain", "project", "user", "role", "role_assignment", "quota",
                           "flavor", "network", "subnet", "router", "security_group",
                           "security_group_rule", "keypair", "image", "volume"}
    projects = project_ids(full)
    assert set(TENANTS) | {"admin"} <= set(projects)
    assert full.mode == "admin" and full.unreadable == []
    # Projects belong to themselves; cloud-wide kinds to nobody.
    for item in by_kind(full, "project"):
        assert item.tenant == item.source_id
        assert {"domain_id", "parent_id", "description", "enabled"} <= set(item.attributes)
    for kind in ("domain", "role", "flavor"):
        assert all(i.tenant is None for i in by_kind(full, kind))
    # Role assignments: "<user>:<project>:<role>", tenant = project.
    for item in by_kind(full, "role_assignment"):
        user, project, role = item.source_id.split(":")
        assert item.tenant == project and user and role
    # Quotas: three services per project, "<service>:<project>".
    quotas = {i.source_id: i for i in by_kind(full, "quota")}
    for name in TENANTS:
        pid = projects[name]
        assert quotas[f"compute:{pid}"].attributes["instances"] == 20
        assert quotas[f"volume:{pid}"].attributes["gigabytes"] == 2000
        assert quotas[f"network:{pid}"].attributes["subnet"] == 20
        assert all(quotas[f"{s}:{pid}"].tenant == pid for s in ("compute", "volume", "network"))


def test_users_carry_no_password(full: ReadResult) -> None:
    users = {i.name: i for i in by_kind(full, "user")}
    physics = users["physics-user0"]
    assert physics.attributes["email"] == "physics-user0@example.org"
    assert physics.tenant == project_ids(full)["physics"]
    for user in users.values():
        assert not any("password" in key for key in user.attributes)


def test_neutron_owner_from_raw_tenant_id(full: ReadResult) -> None:
    projects = project_ids(full)
    for name in TENANTS:
        net = named(full, "network", f"{name}-net")
        assert net.tenant == projects[name] == net.attributes["tenant_id"]
        subnet = named(full, "subnet", f"{name}-subnet")
        assert subnet.tenant == projects[name]
        assert subnet.attributes["network_id"] == net.source_id
    assert named(full, "network", "public").tenant == projects["admin"]
    assert named(full, "network", "public").attributes["router:external"] is True
    assert named(full, "network", "shared-net").attributes["shared"] is True


def test_routers_have_gateway_and_interfaces(full: ReadResult) -> None:
    public = named(full, "network", "public")
    for index, name in enumerate(TENANTS):
        router = named(full, "router", f"{name}-router")
        assert router.attributes["external_gateway_info"]["network_id"] == public.source_id
        subnet = named(full, "subnet", f"{name}-subnet")
        (interface,) = router.attributes["interfaces"]
        assert interface["subnet_id"] == subnet.source_id
        assert interface["ip_address"] == f"10.0.{index}.1"
        assert interface["port_id"]


def test_security_groups_and_rules(full: ReadResult) -> None:
    projects = project_ids(full)
    groups = {(g.tenant, g.name): g for g in by_kind(full, "security_group")}
    physics_web = groups[(projects["physics"], "web")]
    chemistry_db = groups[(projects["chemistry"], "db")]
    rules = [r for r in by_kind(full, "security_group_rule")
             if r.attributes["security_group_id"] == chemistry_db.source_id]
    remotes = {r.attributes["remote_group_id"] for r in rules}
    # The second tenant's db group refers to its own web group and to physics' web group.
    assert physics_web.source_id in remotes
    assert groups[(projects["chemistry"], "web")].source_id in remotes
    assert all(r.tenant == projects["chemistry"] for r in rules)


def test_keypairs_per_user(full: ReadResult) -> None:
    users = {i.name: i.source_id for i in by_kind(full, "user")}
    projects = project_ids(full)
    keypairs = {i.source_id: i for i in by_kind(full, "keypair")}
    for name in TENANTS:
        key = keypairs[f"{users[f'{name}-user0']}:{name}-key"]
        assert key.tenant == projects[name]
        assert key.attributes["public_key"].startswith("ssh-rsa ")
        assert key.attributes["fingerprint"]
        assert key.attributes["user_id"] == users[f"{name}-user0"]


def test_images_members_and_properties(full: ReadResult) -> None:
    projects = project_ids(full)
    for index, name in enumerate(TENANTS):
        arm = named(full, "image", f"{name}-arm64-0")
        assert arm.tenant == projects[name]
        # Legacy UEFI hack keys and the other properties are top-level raw keys.
        assert arm.attributes["hw_boot_mode"] == "uefi"
        assert arm.attributes["architecture"] == "aarch64"
        assert arm.size_bytes == 1024
        assert arm.content_hash == f"md5:{arm.attributes['checksum']}"
        assert arm.attributes["members"] == []
        shared = named(full, "image", f"{name}-x86-1")
        member = TENANTS[(index + 1) % len(TENANTS)]
        assert [m["member_id"] for m in shared.attributes["members"]] == [projects[member]]
    assert named(full, "image", "physics-arm64-0").attributes["visibility"] == "public"


def test_volumes_with_image_metadata(full: ReadResult) -> None:
    projects = project_ids(full)
    for name in TENANTS:
        boot = named(full, "volume", f"{name}-boot-0")
        assert boot.tenant == projects[name]
        image = named(full, "image", f"{name}-arm64-0")
        assert boot.attributes["volume_image_metadata"]["image_id"] == image.source_id
        assert boot.attributes["bootable"] == "true"
        assert boot.attributes["volume_type"] == "standard"
        assert boot.size_bytes == 1 << 30
        data = named(full, "volume", f"{name}-data-1")
        assert data.attributes["volume_type"] == "ssd"


def test_flavors_with_extra_specs_and_access(full: ReadResult) -> None:
    projects = project_ids(full)
    hpc = named(full, "flavor", "hpc.xlarge")
    assert hpc.attributes["is_public"] is False
    assert hpc.attributes["access"] == [projects["physics"]]
    assert named(full, "flavor", "a1.large").attributes["extra_specs"] == {
        "hw:cpu_policy": "dedicated"}
    assert named(full, "flavor", "m1.tiny").attributes["is_public"] is True


def test_tenant_selection_keeps_references(admin: CloudHandle, full: ReadResult) -> None:
    result = LegacySource(admin).read(["chemistry"])
    projects = project_ids(full)
    chemistry = projects["chemistry"]
    assert [t.name for t in result.tenants] == ["chemistry"]
    tenants = {i.tenant for i in result.items}
    assert tenants <= {None, chemistry, projects["physics"], projects["admin"]}
    own = [i for i in result.items if i.tenant == chemistry and i.kind != "user"]
    assert Counter(i.kind for i in own) == Counter(
        i.kind for i in full.items if i.tenant == chemistry and i.kind != "user")
    # Users: chemistry's own, and the operator (home physics) through its assignment there.
    assert {i.name for i in by_kind(result, "user")} == {
        "chemistry-user0", "chemistry-user1", "operator"}
    foreign = {(i.kind, i.name) for i in result.items
               if i.tenant not in (None, chemistry)}
    # Remote security group of the db rule, external and shared networks, owners' projects.
    assert {("security_group", "web"), ("network", "public"), ("network", "shared-net"),
            ("project", "physics"), ("project", "admin")} <= foreign
    assert not any(i.kind in ("quota", "keypair", "volume", "router") for i in result.items
                   if i.tenant not in (None, chemistry))


def test_unknown_tenant_is_a_config_error(admin: CloudHandle) -> None:
    with pytest.raises(ConfigError, match=r"unknown tenant 'nosuch' on cloud legacy"):
        LegacySource(admin).read(["nosuch"])


# Routes that name one resource and are nevertheless list calls of a sub-collection or the
# per-owner reads the APIs only offer that way.
PER_OWNER_ROUTES = {
    "GET /compute/v2.1/{project_id}/os-quota-sets/{target_id}",
    "GET /volume/v2/{project_id}/os-quota-sets/{target_id}",
    "GET /compute/v2.1/{project_id}/os-keypairs",
    "GET /image/v2/images/{image_id}/members",
    "GET /compute/v2.1/{project_id}/flavors/{flavor_id}/os-extra_specs",
    "GET /compute/v2.1/{project_id}/flavors/{flavor_id}/os-flavor-access",
}


def test_calls_are_list_calls_and_bounded(sim: SimServer, admin: CloudHandle) -> None:
    api = SimAdmin(sim)
    api.reset_calls()
    before = admin.calls
    result = LegacySource(admin).read()
    calls = api.calls()
    made = admin.calls - before
    assert made == sum(calls.values())  # the handle's counter sees every request
    item_routes = [r for r in calls if re.search(r"\{[a-z_]+\}$", r.split("?")[0])
                   and r.startswith("GET") and r not in PER_OWNER_ROUTES]
    # No GET of a single item: the only templated routes are the per-owner ones above.
    assert [r for r in item_routes if not r.endswith("{project_id}")] == [], calls
    tenants = len(project_ids(result))
    users = len(by_kind(result, "user"))
    # Per tenant: compute + volume quota; per user: keypairs; per shared image: members.
    assert calls["GET /compute/v2.1/{project_id}/os-quota-sets/{target_id}"] == tenants
    assert calls["GET /volume/v2/{project_id}/os-quota-sets/{target_id}"] == tenants
    assert calls["GET /compute/v2.1/{project_id}/os-keypairs"] == users
    assert calls["GET /image/v2/images/{image_id}/members"] == len(TENANTS)
    assert calls["GET /network/v2.0/networks"] == 1
    # Per image: its first bytes (these images are smaller than the head: no tail read).
    images = len(by_kind(result, "image"))
    assert calls["GET /image/v2/images/{image_id}/file"] == images
    flavors = len(by_kind(result, "flavor"))
    # Servers: one listing each of servers, ports and floating IPs.
    assert made <= 23 + 2 * tenants + users + len(TENANTS) + flavors + images + 1


def test_503s_are_retried(sim: SimServer) -> None:
    api = SimAdmin(sim)
    api.add_fault(match="GET /network/*", status=503, retry_after=0, rate=0.5, times=4)
    api.add_fault(match="GET /compute/*", status=500, times=2)
    api.add_fault(match="GET /image/v2/images", status=502, times=1)
    try:
        handle = open_cloud("legacy", config_file=sim.clouds_yaml)
        result = LegacySource(handle).read()
    finally:
        api.clear_faults()
    assert handle.counter.retries >= 3
    assert len(by_kind(result, "network")) == 5 and len(by_kind(result, "image")) == 6


def test_limited_operator_with_tenant_credentials_reads_all_three(sim: SimServer) -> None:
    operator = open_cloud("legacy-operator", config_file=sim.clouds_yaml)
    result = LegacySource(operator, tenant_credentials={"biology": "legacy-biology-user0"}
                          ).read(TENANTS)
    assert result.mode == "limited"
    assert sorted(t.name for t in result.tenants) == sorted(TENANTS)
    projects = project_ids(result)
    for name in TENANTS:
        pid = projects[name]
        kinds = {i.kind for i in result.items if i.tenant == pid}
        assert {"project", "quota", "network", "subnet", "router", "security_group",
                "security_group_rule", "image", "volume"} <= kinds, (name, kinds)
        assert named(result, "network", f"{name}-net").tenant == pid
        assert {i.name for i in result.items if i.kind == "volume" and i.tenant == pid} == {
            f"{name}-boot-0", f"{name}-data-1"}
    # biology's own user reads its own keypair; the operator cannot read the others'.
    assert any(i.name == "biology-key" for i in by_kind(result, "keypair"))
    unreadable = {(u.tenant_name, u.kind) for u in result.unreadable}
    assert ("physics", "keypair") in unreadable and ("chemistry", "keypair") in unreadable
    assert not any(u.tenant_name == "biology" and u.kind in ("network", "image", "volume")
                   for u in result.unreadable)


def test_limited_operator_without_credentials_reports_the_tenant(sim: SimServer) -> None:
    operator = open_cloud("legacy-operator", config_file=sim.clouds_yaml)
    result = LegacySource(operator).read(TENANTS)
    assert sorted(t.name for t in result.tenants) == ["chemistry", "physics"]
    assert any(u.tenant_name == "biology" and u.kind == "project" for u in result.unreadable)
    assert not any(i.name and i.name.startswith("biology") for i in result.items)


def test_explicit_clouds_yaml_wins_over_environment(sim: SimServer, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "clouds.yaml"
    other.write_text("clouds: {elsewhere: {auth: {auth_url: 'http://127.0.0.1:9'}}}\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(other))
    handle = open_cloud("legacy", config_file=sim.clouds_yaml)
    assert handle.project_id
    with pytest.raises(ConfigError, match=r"no cloud named 'legacy' in clouds.yaml \(searched "
                       + re.escape(str(other))):
        open_cloud("legacy")


def test_a_failed_per_owner_read_stops_the_listings_and_is_the_error(sim: SimServer) -> None:
    # Quotas are read beside the listings; the flavor listing is slowed so that the quota
    # failure comes first: the flavor details are then not read, and the error reported is
    # the quota read's, not the listings' stop.
    api = SimAdmin(sim)
    api.reset_calls()
    api.add_fault(match="GET /compute/*/flavors/detail", latency_ms=800, times=1)
    api.add_fault(match="GET /compute/*/os-quota-sets/*", status=400, times=1)
    try:
        handle = open_cloud("legacy", config_file=sim.clouds_yaml)
        with pytest.raises(CloudCallError, match=r"os-quota-sets") as raised:
            LegacySource(handle).read()
    finally:
        api.clear_faults()
    assert raised.value.status == 400
    calls = api.calls()
    assert calls.get("GET /compute/v2.1/{project_id}/flavors/{flavor_id}/os-extra_specs",
                     0) == 0, calls


def test_a_failed_listing_waits_for_the_reads_beside(sim: SimServer) -> None:
    api = SimAdmin(sim)
    api.add_fault(match="GET /volume/*/volumes/detail", status=400, times=1)
    try:
        handle = open_cloud("legacy", config_file=sim.clouds_yaml)
        with pytest.raises(CloudCallError, match=r"volumes/detail"):
            LegacySource(handle).read()
    finally:
        api.clear_faults()
    assert not [t for t in threading.enumerate() if t.name.startswith("discover")]
