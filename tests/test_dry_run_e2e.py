"""``migrator execute PLAN --dry-run`` end to end against the simulator (the image and volume
world of tests/handlers/data_world.py): each problem a real run would meet is found, and the
target receives no write: every call it counts is a GET (or HEAD), except the token requests
(``POST /identity/v3/auth/tokens``, which write nothing).

Problems: an over-quota target, a name clash, a volume type the plan maps to that the
target does not have, an image labelled with a format its bytes contradict, a missing
permission. A clean dry run passes, is recorded as a run of kind ``dry_run`` and does not
disturb the real run that follows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import select

from migrator.cli.main import cli
from migrator.operations.discover import discover
from migrator.store.db import make_engine
from migrator.store.models import Event, Run, Step
from tests.handlers.data_world import DataWorld, world  # noqa: F401 - the module's world
from tests.sim.conftest import Admin, make_member
from tests.sim.glance_seed import project_id, seed_image

TOKEN = "POST /identity/v3/auth/tokens"


class Cli:
    def __init__(self, data_world: DataWorld, url: str, clouds: Path | None = None) -> None:
        self.world, self.url, self.runner = data_world, url, CliRunner()
        self.clouds = clouds or data_world.sim.clouds_yaml

    def __call__(self, *args: str) -> Result:
        extra = ["--clouds-yaml", str(self.clouds)] if args[0] in ("plan", "execute") else []
        return self.runner.invoke(cli, ["--db", self.url, *args, *extra], prog_name="migrator")


@pytest.fixture
def target(world: DataWorld) -> Iterator[Admin]:  # noqa: F811
    admin = Admin(world.sim, "target")
    yield admin
    admin.clear_faults()


def plan(c: Cli, tmp_path: Path, name: str, **replace: str) -> Path:
    config = c.world.config(tmp_path, **replace)
    path = tmp_path / "plans" / f"{name}.yaml"
    result = c("plan", "--config", str(config), "-o", str(path))
    assert result.exit_code == 0, result.output
    return path


def dry_run(c: Cli, path: Path, target: Admin) -> tuple[Result, dict[str, Any]]:
    """The dry run as JSON, asserting that the target saw no write."""
    target.reset_calls()
    result = c("execute", str(path), "--dry-run", "--format", "json")
    writes = {k: n for k, n in target.calls().items()
              if not k.startswith(("GET ", "HEAD ")) and k != TOKEN}
    assert writes == {}, writes
    data = json.loads(result.stdout)
    return result, data.get("dry_run") or data


def errors(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(tenant, f["check"], f["message"]) for tenant, found in report["tenants"].items()
            for f in found if f["result"] == "error"]


def runs(url: str) -> list[tuple[str, str, bool, dict[str, Any]]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [(r.name, r.status, r.dry_run, dict(r.options or {})) for r in conn.execute(
                select(Run.name, Run.status, Run.dry_run, Run.options).order_by(Run.id))]
    finally:
        engine.dispose()


def test_a_clean_dry_run_is_recorded_apart_and_the_real_run_follows(
        world: DataWorld, tmp_path: Path, target: Admin) -> None:  # noqa: F811
    c = Cli(world, world.url(tmp_path))
    path = plan(c, tmp_path, "clean")
    result, report = dry_run(c, path, target)
    assert result.exit_code == 0, result.output
    assert report["ok"] is True and errors(report) == []
    checks = {f["check"] for found in report["tenants"].values() for f in found}
    assert {"credentials", "permissions", "quota", "volume types", "image formats"} <= checks
    estimate = report["estimate"]
    assert estimate["bytes"] > 0 and estimate["images"] > 0 and estimate["volumes"] > 0
    assert estimate["seconds"] > 0 and "nothing measured yet" in estimate["basis"]
    assert report["calls"]["target"] > 10 and report["calls"]["source"] > 0
    assert set(report["per_tenant_bytes"]) == {"physics", "chemistry"}
    # Recorded as a run of its own kind: no steps, dry_run set, the findings kept.
    [(name, status, flagged, options)] = runs(c.url)
    assert (name, status, flagged, options["kind"]) == ("clean-dry-run", "finished", True,
                                                        "dry_run")
    assert options["findings"] and options["plan_hash"]
    # The real run is not disturbed: registered as the plan's first run, executed.
    done = c("execute", str(path), "--workers", "4")
    assert done.exit_code == 0, done.output
    assert "Run clean: finished" in done.stdout
    # And the table form of a later dry run: per tenant, with the estimate measured now.
    again = c("execute", str(path), "--dry-run")
    assert again.exit_code == 7  # the plan's run exists: a real execute needs --resume
    assert "Findings" in again.stdout and "Estimate:" in again.stdout
    assert "rate measured in run clean; step times measured in run clean" in again.stdout
    assert "was already executed as run clean" in again.stderr
    c("rollback", "--run", "clean", "--yes", "--clouds-yaml", str(world.sim.clouds_yaml))


def test_over_quota_target_is_found_without_a_write(
        world: DataWorld, tmp_path: Path, target: Admin) -> None:  # noqa: F811
    c = Cli(world, world.url(tmp_path))
    path = plan(c, tmp_path, "tight", **{"fixed: {}": "fixed: {volume: {volumes: 1}}"})
    result, report = dry_run(c, path, target)
    assert result.exit_code == 7, result.output
    found = [e for e in errors(report) if e[1] == "quota"]
    assert {t for t, _c, _m in found} == {"physics", "chemistry"}
    assert all("2 volumes > 1 (volume, the plan's quota)" in m for _t, _c, m in found), found


def test_name_clash_and_unmapped_volume_type_are_found_without_a_write(
        world: DataWorld, tmp_path: Path, target: Admin) -> None:  # noqa: F811
    c = Cli(world, world.url(tmp_path))
    fast = world.target.block_storage.create_type(name="fast")
    path = plan(c, tmp_path, "clash", **{"volume_types: {}": "volume_types: {standard: fast, "
                                                             "ssd: fast}"})
    # Since planning: the type was removed and someone made a project called physics.
    world.target.block_storage.delete_type(fast)
    clash = world.target.identity.create_project(name="physics", domain_id="default")
    try:
        result, report = dry_run(c, path, target)
    finally:
        world.target.identity.delete_project(clash.id)
    assert result.exit_code == 7, result.output
    assert any("project 'physics' now exists on the target" in p for p in report["problems"])
    types = [e for e in errors(report) if e[1] == "volume types"]
    assert len(types) == 4 and all("volume type 'fast'" in m and "does not exist" in m
                                   for _t, _c, m in types), types
    # Both are in the error lines of the table form too.
    table = c("execute", str(path), "--dry-run")
    assert table.exit_code == 7
    assert "volume type 'fast'" in table.stderr


def test_mislabelled_image_format_is_found_without_a_write(
        world: DataWorld, tmp_path: Path, target: Admin) -> None:  # noqa: F811
    c = Cli(world, world.url(tmp_path))
    physics = project_id(world.sim, "legacy", "physics")
    # Random bytes (raw) labelled qcow2.
    image = seed_image(world.sim, "legacy", name="physics-mislabelled", size=4096, seed=21,
                       owner=physics, disk_format="qcow2", container_format="bare")
    try:
        discover(c.url, "legacy", clouds_yaml=world.sim.clouds_yaml)
        path = plan(c, tmp_path, "labels",
                    **{"image_formats: detect": "image_formats: trust_legacy"})
        result, report = dry_run(c, path, target)
    finally:
        world.sim.call(lambda: world.sim.cloud("legacy").state.delete("images", image["id"]))
    assert result.exit_code == 7, result.output
    found = [e for e in errors(report) if e[1] == "image formats"
             and "'physics-mislabelled'" in e[2]]
    assert len(found) == 1 and found[0][0] == "physics", errors(report)
    assert "would be sent as qcow2 but its bytes are raw" in found[0][2]


def test_missing_permission_is_found_without_a_write(
        world: DataWorld, tmp_path: Path, target: Admin) -> None:  # noqa: F811
    c = Cli(world, world.url(tmp_path))
    path = plan(c, tmp_path, "member")
    # The same target, with the credentials of a user holding only the member role.
    project, _user = make_member(world.target, "dry-member-project", "dry-member")
    clouds = yaml.safe_load(world.sim.clouds_yaml.read_text())
    auth = clouds["clouds"]["target"]["auth"]
    auth.update(username="dry-member", password="pw-member",
                project_name="dry-member-project")
    member_clouds = tmp_path / "clouds-member.yaml"
    member_clouds.write_text(yaml.safe_dump(clouds))
    try:
        result, report = dry_run(Cli(world, c.url, member_clouds), path, target)
    finally:
        world.target.identity.delete_project(project.id)
        world.target.identity.delete_user(_user.id)
    assert result.exit_code == 7, result.output
    perms = [m for _t, check, m in errors(report) if check == "permissions"]
    assert any("user steps need identity:list_users: the probe was refused (HTTP 403)" in m
               for m in perms), perms
    assert any("the token's roles are member" in m and "needs the admin role" in m
               for m in perms), perms
    # The dry run is on record, failed, and no step of any run exists.
    recorded = [r for r in runs(c.url) if r[3].get("kind") == "dry_run"]
    assert [(r[0], r[1]) for r in recorded] == [("member-dry-run", "failed")]
    engine = make_engine(c.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(Step.id)).first() is None
            assert conn.execute(select(Event.detail).where(Event.trigger == "run-status")
                                ).scalar_one()["errors"] >= 2
    finally:
        engine.dispose()
