"""The other cutover paths, each on a fresh world (tests/servers_world.py): the
``snapshot_running`` policy (disks read while the source runs, stopped just before the
target boots: the copy is outside the window), and a target server that reaches ERROR (its
step fails with Nova's fault message, the source is started again)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers_world import ServersWorld, raw_servers, servers_world, target_by_source


@pytest.fixture
def world(tmp_path: Path) -> Iterator[ServersWorld]:
    with servers_world(tmp_path) as w:
        yield w


def run(world: ServersWorld, where: Path, text: tuple[tuple[str, str], ...]
        ) -> tuple[str, int]:
    url = world.url(where)
    config = world.config(where)
    body = config.read_text()
    for old, new in text:
        assert old in body, old
        body = body.replace(old, new)
    config.write_text(body)
    plan = where / "plan.yaml"
    planned = world.cli(url, "plan", "--config", str(config), "-o", str(plan))
    assert planned.exit_code == 0, planned.output
    return url, world.cli(url, "execute", str(plan)).exit_code


def test_snapshot_running_copies_before_the_window(world: ServersWorld,
                                                   tmp_path: Path) -> None:
    _url, code = run(world, tmp_path / "r",
                     (("  cutover: stop ", "  cutover: snapshot_running "),))
    assert code == 0
    legacy = raw_servers(world.legacy)
    by_source = target_by_source(world.target)
    assert {name: by_source[s["id"]][0]["status"] for name, s in legacy.items()} == {
        "physics-vm0": "ACTIVE", "physics-vm1": "ACTIVE", "physics-vm2": "SHUTOFF"}
    assert {s["status"] for s in legacy.values()} == {"SHUTOFF"}
    with sqlite3.connect(tmp_path / "r" / "state.db") as conn:
        rows = conn.execute("SELECT name, copy_seconds, downtime_seconds, bytes FROM "
                            "server_downtimes ORDER BY name").fetchall()
        events = conn.execute(
            "SELECT e.detail FROM events e JOIN steps s ON s.id = e.step_id WHERE "
            "s.name = 'physics-vm1' AND e.trigger = 'checkpoint' ORDER BY e.id").fetchall()
    assert [r[0] for r in rows] == ["physics-vm0", "physics-vm1", "physics-vm2"]
    assert all(r[1] == 0.0 and r[2] > 0 and r[3] > 0 for r in rows), rows
    # The copy came before the source was stopped: "stopped_at" is recorded in the boot
    # phase, after the copy phase's checkpoint.
    phases = [json.loads(d[0]).get("phase") for d in events]
    copied = phases.index("copy")
    stopped = next(i for i, d in enumerate(events) if "stopped_at" in json.loads(d[0])
                   .get("data", {}))
    assert stopped > copied, phases


def test_a_target_server_in_error_fails_its_step_with_novas_fault(
        world: ServersWorld, tmp_path: Path) -> None:
    world.target.compute.create_flavor(name="huge", vcpus=4096, ram=2048, disk=20)
    url, code = run(world, tmp_path / "e", (
        ("flavors: {a1.large: a2.large}", "flavors: {a1.large: a2.large, m1.medium: huge}"),
        ("  fixed: {}", "  fixed: {compute: {cores: -1}}"),
        ("  policy: copy", "  policy: fixed")))
    assert code == 1
    failed = json.loads(world.cli(url, "status", "--format", "json").stdout)["failed"]
    assert [(f["kind"], f["name"], f["attempts"]) for f in failed] == [
        ("server", "physics-vm1", 1)]
    error = failed[0]["last_error"]
    assert "is in ERROR on the target: No valid host was found" in error, error
    assert "the source was started again" in error and "\n" not in error
    assert raw_servers(world.legacy)["physics-vm1"]["status"] == "ACTIVE"


def test_dry_run_checks_the_flavors_and_touches_nothing(world: ServersWorld,
                                                        tmp_path: Path) -> None:
    url = world.url(tmp_path / "d")
    config = world.config(tmp_path / "d")
    plan = tmp_path / "d.yaml"
    assert world.cli(url, "plan", "--config", str(config), "-o", str(plan)).exit_code == 0
    before = {n: s["status"] for n, s in raw_servers(world.legacy).items()}
    ready = world.cli(url, "execute", str(plan), "--dry-run")
    assert ready.exit_code == 0 and "Result: ready to execute." in ready.output
    flavor = world.target.compute.find_flavor("a2.large")
    world.target.compute.delete_flavor(flavor)
    refused = world.cli(url, "execute", str(plan), "--dry-run")
    assert refused.exit_code == 7
    assert "server physics-vm0: flavor 'a2.large' does not exist on the target" \
        in refused.output
    assert {n: s["status"] for n, s in raw_servers(world.legacy).items()} == before
    assert not raw_servers(world.target)


def test_owner_without_a_known_password_gets_the_key_imported_for_the_boot(
        world: ServersWorld, tmp_path: Path) -> None:
    """``password_policy: external``: migrator's user boots the servers with the owner's
    public key imported under the owner's key name, and removes that copy afterwards."""
    _url, code = run(world, tmp_path / "x", (
        ("  password_policy: random ", "  password_policy: external "),))
    assert code == 0
    legacy = raw_servers(world.legacy)
    by_source = target_by_source(world.target)
    me = world.target.current_user_id
    for name, source in legacy.items():
        (server,) = by_source[source["id"]]
        assert server["key_name"] == "physics-key", name
        assert server["user_id"] == me  # booted by migrator's user
    # The owner's key pair (the keypair step's) is on the target; migrator's copy is gone.
    mine = world.target.compute.get("/os-keypairs").json()["keypairs"]
    assert not [k for k in mine if k["keypair"]["name"] == "physics-key"]


def test_servers_racing_for_the_last_instance_places(world: ServersWorld,
                                                     tmp_path: Path) -> None:
    """Room for two servers, three planned: whichever way the race goes (refused before the
    stop, or by Nova at the boot), two arrive, one step fails naming the quota, its source is
    as it was, and no port is left without a server."""
    before = {n: s["status"] for n, s in raw_servers(world.legacy).items()}
    url, code = run(world, tmp_path / "q", (
        ("  fixed: {}", "  fixed: {compute: {instances: 2, cores: -1, ram: -1}}"),
        ("  policy: copy", "  policy: fixed")))
    assert code == 1
    failed = json.loads(world.cli(url, "status", "--format", "json").stdout)["failed"]
    assert len(failed) == 1 and failed[0]["kind"] == "server", failed
    assert "quota" in failed[0]["last_error"] and "\n" not in failed[0]["last_error"]
    loser = failed[0]["name"]
    after = raw_servers(world.legacy)
    assert after[loser]["status"] == before[loser]
    by_source = target_by_source(world.target)
    assert sorted(n for n, s in after.items() if s["id"] in by_source) == sorted(
        n for n in before if n != loser)
    servers = {s["id"] for s in raw_servers(world.target).values()}
    ports = world.target.network.get("/ports").json()["ports"]
    ours = [p for p in ports if any(t.startswith("migrator-src-") for t in p.get("tags") or [])]
    assert len(ours) == 2 and all(p["device_id"] in servers for p in ours), ours
