"""Servers cut over end to end, through the CLI against the simulator: one Liberty tenant
(``seed_gen`` with three servers: an image-backed AArch64 web server with a floating IP, a
volume-backed x86 database with a data volume attached, an x86 server left SHUTOFF) planned
with a flavor mapping and an address map, executed, then checked on both clouds; status shows
the measured downtime. Refusals at plan time: an unmapped flavor, a server in ERROR.
"""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator.operations.discover import discover
from tests.servers_world import (
    ServersWorld,
    raw_servers,
    servers_world,
    target_by_source,
)


@dataclass
class Moved:
    world: ServersWorld
    url: str
    plan: dict[str, Any]
    address_map: list[dict[str, str]]
    legacy_before: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moved]:
    root = tmp_path_factory.mktemp("servers")
    with servers_world(root) as world:
        url = world.url(root / "run")
        config = world.config(root / "run")
        plan_file = root / "plans" / "servers.yaml"
        address_map = root / "addresses.csv"
        planned = world.cli(url, "plan", "--config", str(config), "-o", str(plan_file),
                            "--address-map", str(address_map), "--format", "json")
        assert planned.exit_code == 0, planned.output
        before = raw_servers(world.legacy)
        result = world.cli(url, "execute", str(plan_file))
        assert result.exit_code == 0, result.output
        with address_map.open() as fh:
            rows = list(csv.DictReader(fh))
        yield Moved(world, url, json.loads(planned.stdout), rows, before)


def test_every_server_arrives_once_with_flavor_addresses_key_and_power_state(
        moved: Moved) -> None:
    world = moved.world
    planned = {row["server"]: row for row in moved.plan["servers"]}
    assert sorted(planned) == ["physics-vm0", "physics-vm1", "physics-vm2"]
    by_source = target_by_source(world.target)
    legacy = raw_servers(world.legacy)
    passwords = yaml.safe_load((moved.world.root / "run" / "passwords.yaml").read_text())
    assert passwords  # the owners were created with a recorded password
    for name, row in planned.items():
        source = legacy[name]
        found = by_source[source["id"]]
        assert len(found) == 1, (name, found)
        server = found[0]
        want_status = "SHUTOFF" if moved.legacy_before[name]["status"] == "SHUTOFF" else \
            "ACTIVE"
        assert server["status"] == want_status
        assert source["status"] == "SHUTOFF"  # left stopped, never deleted
        flavor = server["flavor"]
        wanted_flavor = row["flavor"].split(" -> ")[1]
        assert flavor.get("original_name", wanted_flavor) == wanted_flavor
        assert server["key_name"] == source["key_name"] == "physics-key"
        addresses = {a["addr"] for net in server["addresses"].values() for a in net}
        assert {a["ipv6"] for a in row["addresses"]} <= addresses
        assert all(":" in a for a in addresses)  # IPv6 only
        macs = {a["OS-EXT-IPS-MAC:mac_addr"] for net in server["addresses"].values()
                for a in net}
        assert macs == {a["mac"] for a in row["addresses"]}
        # Booted as its owner: the migrated user's key pair is the one Nova used.
        owner = world.target.identity.get(f"/users/{server['user_id']}").json()["user"]
        legacy_owner = world.legacy.identity.get(f"/users/{source['user_id']}").json()["user"]
        assert owner["name"] == legacy_owner["name"]
        # The source is otherwise untouched.
        before = moved.legacy_before[name]
        for key in ("name", "metadata", "key_name", "flavor", "image",
                    "os-extended-volumes:volumes_attached"):
            assert source.get(key) == before.get(key), key
        assert {k: v for k, v in server["metadata"].items()
                if k != "migrator_source_id"} == source["metadata"]


def test_security_groups_attachments_and_uefi_boot_image(moved: Moved) -> None:
    world = moved.world
    legacy = raw_servers(world.legacy)
    by_source = target_by_source(world.target)
    for name in ("physics-vm0", "physics-vm1", "physics-vm2"):
        server = by_source[legacy[name]["id"]][0]
        groups = {g["name"] for g in server.get("security_groups") or []}
        assert groups == {g["name"] for g in legacy[name]["security_groups"]}
    # The volume-backed server: its boot volume then its data volume, in order.
    db = by_source[legacy["physics-vm1"]["id"]][0]
    attached = world.target.compute.get(
        f"/servers/{db['id']}/os-volume_attachments").json()["volumeAttachments"]
    names = [world.target.block_storage.get(f"/volumes/{a['volumeId']}").json()["volume"]
             ["name"] for a in sorted(attached, key=lambda a: a["device"])]
    assert names == ["physics-vm1-root", "physics-vm1-data"]
    # The image-backed web server: its data volumes in their order.
    web = by_source[legacy["physics-vm0"]["id"]][0]
    attached = world.target.compute.get(
        f"/servers/{web['id']}/os-volume_attachments").json()["volumeAttachments"]
    names = [world.target.block_storage.get(f"/volumes/{a['volumeId']}").json()["volume"]
             ["name"] for a in sorted(attached, key=lambda a: a["device"])]
    assert names == ["physics-vm0-logs", "physics-vm0-cache"]
    # The AArch64 web server boots from an image with the standard UEFI keys.
    web = by_source[legacy["physics-vm0"]["id"]][0]
    image = world.target.image.get(f"/images/{web['image']['id']}").json()
    assert image["hw_firmware_type"] == "uefi"
    assert image["architecture"] == "aarch64"


def test_no_temporary_image_or_orphan_port_is_left(moved: Moved) -> None:
    world = moved.world
    for conn in (world.legacy, world.target):
        names = [i["name"] for i in conn.image.get("/images").json()["images"]]
        assert not [n for n in names if n.startswith(("migrator-snap-", "migrator-tmp-"))]
    ports = world.target.network.get("/ports").json()["ports"]
    tagged = [p for p in ports if any(t.startswith("migrator-src-") for t in p.get("tags")
                                      or [])]
    assert tagged and all(p["device_id"] for p in tagged)


def test_address_map_lists_every_old_address(moved: Moved) -> None:
    legacy = raw_servers(moved.world.legacy)
    old = {(name, a["addr"]) for name, s in legacy.items()
           for net in s["addresses"].values() for a in net}
    mapped = {(r["server"], r["old_address"]) for r in moved.address_map}
    assert old == mapped
    floating = [r for r in moved.address_map if r["kind"] == "floating"]
    assert [r["server"] for r in floating] == ["physics-vm0"]
    fixed = {r["server"]: r["new_address"] for r in moved.address_map if r["kind"] == "fixed"}
    assert floating[0]["new_address"] == fixed["physics-vm0"]


def test_status_shows_the_measured_downtime_per_tenant(moved: Moved) -> None:
    result = moved.world.cli(moved.url, "status", "--format", "json")
    assert result.exit_code == 0, result.output
    servers = json.loads(result.stdout)["servers"]
    assert [(s["tenant"], s["servers"]) for s in servers] == [("physics", 3)]
    assert 0 < servers[0]["worst_seconds"] <= servers[0]["total_seconds"]
    table = moved.world.cli(moved.url, "status")
    assert "Servers cut over" in table.stdout


def test_verify_reads_the_servers_back(moved: Moved) -> None:
    result = moved.world.cli(moved.url, "verify", "--run", "servers", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["outcome"] == "match", report
    servers = [t["kinds"]["server"] for t in report["tenants"] if "server" in t["kinds"]]
    assert servers == [{"match": 3}], report["tenants"]


def test_unmapped_flavor_and_server_in_error_are_refused_at_plan_time(
        moved: Moved, tmp_path: Path) -> None:
    world = moved.world
    url = world.url(tmp_path / "a")
    result = world.cli(url, "plan", "--config", str(world.config(tmp_path / "a", "flavors: {}")),
                       "-o", str(tmp_path / "a.yaml"))
    assert result.exit_code == 7
    assert "server physics-vm0" in result.output
    assert "flavor 'a1.large' has no mapping in mappings.flavors" in result.output
    assert not (tmp_path / "a.yaml").exists()
    # A server that went into ERROR on the source (discovered again): refused with the fault.
    legacy = world.sim.cloud("legacy")
    vm2 = next(s for s in legacy.state.values("servers") if s["name"] == "physics-vm2")

    def to_error() -> None:
        vm2.update(vm_state="error", fault={"code": 500, "message": "disk full on host",
                                            "created": vm2["created_at"], "details": ""})
    world.sim.call(to_error)
    try:
        url = world.url(tmp_path / "b")
        discover(url, "legacy", clouds_yaml=world.sim.clouds_yaml)
        result = world.cli(url, "plan", "--config", str(world.config(tmp_path / "b")),
                           "-o", str(tmp_path / "b.yaml"))
        assert result.exit_code == 7
        assert "server physics-vm2" in result.output and "is in ERROR on the source" \
            in result.output and "disk full on host" in result.output
    finally:
        def back() -> None:
            vm2.update(vm_state="stopped", fault=None)
        world.sim.call(back)


def test_a_target_over_its_instance_quota_fails_the_step_with_one_line(
        tmp_path: Path) -> None:
    """A target project allowed no server (quotas: fixed, instances 0): every server step
    fails at once with one line naming the server and the quota, before its source is
    touched; no target server, no port is made for it."""
    with servers_world(tmp_path) as world:
        url = world.url(tmp_path / "q")
        config = world.config(tmp_path / "q")
        text = config.read_text().replace("  fixed: {}", "  fixed: {compute: {instances: 0}}")
        config.write_text(text.replace("  policy: copy", "  policy: fixed"))
        plan = tmp_path / "q.yaml"
        result = world.cli(url, "plan", "--config", str(config), "-o", str(plan))
        assert result.exit_code == 0, result.output
        before = raw_servers(world.legacy)
        ran = world.cli(url, "execute", str(plan))
        assert ran.exit_code == 1, ran.output
        failed = json.loads(world.cli(url, "status", "--format", "json").stdout)["failed"]
        assert sorted(f["name"] for f in failed) == sorted(before)
        for row in failed:
            assert row["kind"] == "server" and row["attempts"] == 1
            assert "over its quota (instances 0 + 1 > 0)" in row["last_error"]
            assert f"server {row['name']} " in row["last_error"]
            assert "\n" not in row["last_error"]
        after = raw_servers(world.legacy)
        assert {n: s["status"] for n, s in after.items()} == {
            n: s["status"] for n, s in before.items()}
        assert not raw_servers(world.target)
        ports = world.target.network.get("/ports").json()["ports"]
        assert not [p for p in ports if str(p.get("device_owner", "")).startswith("compute:")
                    or str(p.get("name", "")).startswith("physics-vm")]


def test_audit_and_verify_see_the_volumes_a_server_moved(moved: Moved) -> None:
    world = moved.world
    legacy_volumes = {v["name"]: v for v in world.legacy.block_storage.get(
        "/volumes/detail", params={"all_tenants": 1}).json()["volumes"]}
    carried = ("physics-vm0-logs", "physics-vm0-cache", "physics-vm1-root", "physics-vm1-data")
    result = world.cli(moved.url, "audit", "--section", "id-map", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)["id_map"] if r["kind"] == "volume"}
    for name in carried:
        row = rows[name]
        assert row["source_id"] == legacy_volumes[name]["id"]
        target = world.target.block_storage.get(f"/volumes/{row['target_id']}").json()["volume"]
        assert target["name"] == name and target["status"] == "in-use"
        assert target["metadata"]["migrator_source_id"] == row["source_id"]
        assert row["state"] == "done" and row["bytes"] and row["md5"] and row["sha512"]
    # --kind volume lists them too (they have no volume step of their own).
    only = world.cli(moved.url, "audit", "--section", "id-map", "--kind", "volume",
                     "--format", "json")
    assert {r["name"] for r in json.loads(only.stdout)["id_map"]} >= set(carried)
    table = world.cli(moved.url, "audit", "--section", "id-map", "--kind", "volume")
    assert all(name in table.stdout for name in carried)
    # verify reads each of them back on the target: none missing.
    result = world.cli(moved.url, "verify", "--run", "servers", "--format", "json")
    report = json.loads(result.stdout)
    physics = next(t for t in report["tenants"] if t["tenant"] == "physics")
    assert physics["kinds"]["volume"] == {"match": len(rows)}, report["findings"]
    # ... really read: a carried volume whose mark was changed on the target differs.
    logs = rows["physics-vm0-logs"]
    path = f"/volumes/{logs['target_id']}/metadata/migrator_source_id"
    world.target.block_storage.put(path, json={"meta": {"migrator_source_id": "other"}})
    try:
        result = world.cli(moved.url, "verify", "--run", "servers", "--format", "json")
        assert result.exit_code != 0
        findings = [f for f in json.loads(result.stdout)["findings"]
                    if not f["result"].startswith("drift-")]  # the sources stopped
        assert [(f["kind"], f["name"], f["result"]) for f in findings] == [
            ("volume", "physics-vm0-logs", "differs")]
        assert "moved by server physics-vm0" in findings[0]["detail"]
    finally:
        world.target.block_storage.put(path, json={"meta": {
            "migrator_source_id": logs["source_id"]}})
    # The run's id map holds them (what later runs' lookups and rollback read).
    with sqlite3.connect(moved.url.removeprefix("sqlite:///")) as conn:
        mapped = dict(conn.execute("SELECT source_id, target_id FROM id_map "
                                   "WHERE kind = 'volume'").fetchall())
    assert {rows[n]["source_id"]: rows[n]["target_id"] for n in carried}.items() \
        <= mapped.items()


def test_report_shows_each_tenants_servers_and_their_downtime(moved: Moved,
                                                               tmp_path: Path) -> None:
    world = moved.world
    result = world.cli(moved.url, "report", "--run", "servers", "--format", "json")
    assert result.exit_code == 0, result.output
    tenants = {t["tenant"]: t for t in json.loads(result.stdout)["tenants"]}
    servers = tenants["physics"]["servers"]
    windows = servers["windows"]
    assert [w["name"] for w in windows] == ["physics-vm0", "physics-vm1", "physics-vm2"]
    by_source = target_by_source(world.target)
    for w in windows:
        assert [s["id"] for s in by_source[w["source_id"]]] == [w["target_id"]]
        assert w["downtime_seconds"] > 0 and w["bytes"] > 0
    assert servers["moved"] == 3
    assert servers["worst_seconds"] == max(w["downtime_seconds"] for w in windows)
    assert servers["total_seconds"] == pytest.approx(sum(w["downtime_seconds"]
                                                         for w in windows))
    status = json.loads(world.cli(moved.url, "status", "--format", "json").stdout)
    assert status["servers"][0]["worst_seconds"] == pytest.approx(servers["worst_seconds"])
    # The HTML: a section with the tenant's line and a line per server, every value escaped
    # (a server named like markup, as the state database may hold, is shown as text).
    hostile = "<img src=x onerror=alert(1)>"
    copy = tmp_path / "state.db"
    shutil.copy(moved.url.removeprefix("sqlite:///"), copy)
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE server_downtimes SET name = ? WHERE name = 'physics-vm1'",
                     (hostile,))
    out = tmp_path / "report.html"
    result = world.cli(f"sqlite:///{copy}", "report", "--run", "servers", "-o", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert hostile not in page and html.escape(hostile, quote=True) in page
    section = page[page.index('<section id="servers">'):]
    section = section[:section.index("</section>")]
    rows = re.findall(r"<tr>(.*?)</tr>", section)
    cells = [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)] for r in rows
             if "<td" in r]
    assert cells[0][:2] == ["physics", "3"]
    assert cells[0][3] == f"{servers['worst_seconds']:.1f} s"
    assert sorted(c[1] for c in cells[1:]) == sorted(["physics-vm0", hostile, "physics-vm2"])
