"""A target of Keystone, Glance and Cinder only (no compute, no network in its catalog), as
the real-services lane has: the plan leaves out the kinds it cannot take and the quotas of
the missing services, images wait on nothing but their project, the run moves the images and
volumes; a kind asked for by name is refused in one line; a plan made without the target is
refused by execute, or, run anyway, fails the steps that need a missing service at once
(final) without blocking the rest. Through the CLI and openstacksdk against the simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openstack
import pytest
from click.testing import CliRunner, Result

from migrator.cli.main import cli
from migrator.operations.db import init_state
from migrator.operations.execute import ExecuteOptions, execute_plan
from migrator.operations.plan import load_plan
from migrator.plan.target_names import OfflineTarget
from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.server import CloudSpec, SimServer
from tests.handlers.data_world import step_events
from tests.plan.conftest import write_config

KEPT = {"project", "quota", "user", "role_assignment", "image", "image_member", "volume"}
DATA = {"volume_types: {}": "volume_types: {standard: __DEFAULT__, ssd: __DEFAULT__}",
        "poll_interval: 2 ": "poll_interval: 0.05 "}


@dataclass
class KgWorld:
    sim: SimServer
    root: Path
    db_url: str
    config: Path

    def cli(self, *args: str) -> Result:
        extra = ["--clouds-yaml", str(self.sim.clouds_yaml)] if args[0] in (
            "discover", "plan", "execute") else []
        return CliRunner().invoke(cli, ["--db", self.db_url, *args, *extra],
                                  prog_name="migrator")

    def target(self) -> openstack.connection.Connection:
        return openstack.connect(cloud="target")


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KgWorld]:
    monkeypatch.delenv("MIGRATOR_DB", raising=False)
    doc = generate(SeedShape(tenants=2, image_size=65536, volume_data_size=65536))
    doc["clouds"]["target"] = {"services": ["image", "volume"]}
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(doc))
    sim = SimServer([CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")],
                    tmp_path / "sim", seed=seed).start()
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(sim.clouds_yaml))
    url = f"sqlite:///{tmp_path / 'state.db'}"
    init_state(url)
    config = write_config(tmp_path, **DATA)
    w = KgWorld(sim, tmp_path, url, config)
    try:
        result = w.cli("discover", "--cloud", "legacy")
        assert result.exit_code == 0, result.output
        yield w
    finally:
        sim.stop()


def test_plan_and_run_onto_keystone_glance_cinder(world: KgWorld) -> None:
    plan_path = world.root / "kg.yaml"
    result = world.cli("plan", "--config", str(world.config), "-o", str(plan_path))
    assert result.exit_code == 0, result.output
    assert ("Kinds left out: network (no network service), subnet (no network service), "
            "router (no network service)") in result.stdout
    assert "keypair (no compute service)" in result.stdout
    assert ("Warning: the target has no compute service in its catalog: kind(s) keypair, "
            "server not planned") in result.stderr
    plan = load_plan(plan_path)
    assert plan.target["services"] == ["identity", "image", "volume"]
    assert {s.kind for s in plan.steps} == KEPT
    assert {s.source_id.split(":")[0] for s in plan.steps if s.kind == "quota"} == {"volume"}
    owners = {i["id"]: i["owner"] for i in world.sim.cloud("legacy").state.values("images")}
    for step in plan.steps:
        if step.kind == "image":  # its project, nothing else
            assert step.depends_on == [f"project:{owners[step.source_id]}"]
        if step.kind == "volume":
            assert all(d.startswith(("project:", "quota:volume:", "image:"))
                       for d in step.depends_on)
    result = world.cli("execute", str(plan_path))
    assert result.exit_code == 0, result.output
    target = world.target()
    legacy = openstack.connect(cloud="legacy")
    moved = {i.name: i for i in target.image.images()}
    for image in legacy.image.images():
        if image.name.startswith(("physics", "chemistry")):
            got = moved[image.name]
            assert (got.status, got.size, got.checksum) == ("active", image.size,
                                                            image.checksum)
    volumes = {v.name for v in target.block_storage.volumes(all_projects=True)}
    assert {v.name for v in legacy.block_storage.volumes(all_projects=True)} <= volumes
    # To create the volumes in their projects migrator's user took the member role there
    # (what Cinder's and Glance's default policies ask of these calls), not admin.
    roles = {r.id: r.name for r in target.identity.roles()}
    me = target.current_user_id
    for project in ("physics", "chemistry"):
        pid = target.identity.find_project(project).id
        held = {roles[a.role["id"]] for a in target.identity.role_assignments(
            user_id=me, scope_project_id=pid)}
        assert held == {"member"}, (project, held)


def test_kinds_asked_by_name_and_selected_kinds(world: KgWorld) -> None:
    refused = world.cli("plan", "--config", str(world.config), "--kinds", "project,network",
                        "-o", str(world.root / "no.yaml"))
    assert refused.exit_code == 7
    assert refused.stderr.strip() == (
        "Error: the target cloud target has no network service in its catalog, which "
        "kind(s) network need; leave them out (--exclude-kinds network)")
    assert not (world.root / "no.yaml").exists()
    only = world.root / "images.yaml"
    result = world.cli("plan", "--config", str(world.config), "--kinds", "image",
                       "--kinds", "volume", "-o", str(only))
    assert result.exit_code == 0, result.output
    plan = load_plan(only)
    assert {s.kind for s in plan.steps} == {"project", "image", "volume"}
    assert plan.selection["kinds_added"] == ["project"]


def test_offline_plan_is_refused_or_fails_fast(world: KgWorld) -> None:
    plan_path = world.root / "offline.yaml"
    result = world.cli("plan", "--config", str(world.config), "--offline", "-o",
                       str(plan_path))
    assert result.exit_code == 0, result.output
    plan = load_plan(plan_path)
    assert "network" in {s.kind for s in plan.steps}
    projects_before = len(list(world.target().identity.projects()))
    refused = world.cli("execute", str(plan_path))
    assert refused.exit_code == 7
    first, *problems = refused.stderr.strip().splitlines()
    assert first == (f"Error: {plan_path}: 2 problems (each on a line below); nothing was "
                     "changed on the target")
    assert problems[0].startswith("  - the target cloud target has no compute service in its "
                                  "catalog: ")
    assert "of kind(s) quota, keypair need it" in problems[0]
    assert problems[1].startswith("  - the target cloud target has no network service")
    assert len(list(world.target().identity.projects())) == projects_before
    # Run anyway (the catalog not checked, as if it changed after the check): each step that
    # needs a missing service fails at its first attempt, what needs it is blocked, the rest
    # (projects, users, images, volumes) is done and the run ends.
    done = execute_plan(world.db_url, plan_path, ExecuteOptions(
        clouds_yaml=world.sim.clouds_yaml, target_names=OfflineTarget(), handle_sigint=False,
        backoff_base=30, max_attempts=3))
    assert done.run is not None and done.run.status == "failed"
    fails = step_events(world.db_url, "fail")
    assert fails and all(d.get("final") and d["attempt"] == 1 for _k, d in fails), fails
    assert all(k.split(":")[0] in ("quota", "keypair", "network", "router",
                                   "security_group") for k, _d in fails)
    assert any("no such endpoint in the catalog" in d["error"] for _k, d in fails)
    done_kinds = {k.split(":")[0] for k, _d in step_events(world.db_url, "complete")}
    assert {"project", "user", "image", "volume"} <= done_kinds
