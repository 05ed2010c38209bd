"""plan and execute PLAN against the simulator: a seeded legacy cloud discovered into the
state database, the modern target read and written through openstacksdk."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import openstack
import pytest
from sqlalchemy import func, select

from migrator.errors import ConfigError, PlanError
from migrator.operations.db import init_state
from migrator.operations.discover import discover
from migrator.operations.execute import ExecuteOptions, execute_plan
from migrator.operations.plan import load_plan, make_plan
from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.server import CloudSpec, SimServer
from migrator.store.db import make_engine
from migrator.store.models import IdMap, Plan, Run, Step
from tests.plan.conftest import write_config


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    data = tmp_path_factory.mktemp("sim")
    seed = generate(SeedShape(tenants=3, image_size=1024, volume_data_size=1024))
    (data / "seed.json").write_text(json.dumps(seed))
    server = SimServer([CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")],
                       data / "sim", seed=data / "seed.json").start()
    previous = os.environ.get("OS_CLIENT_CONFIG_FILE")
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(server.clouds_yaml)
    conn = openstack.connect(cloud="target")
    net = conn.network.create_network(name="public", is_router_external=True)
    conn.network.create_subnet(network_id=net.id, ip_version=6, cidr="2001:db8:ffff::/64")
    try:
        yield server
    finally:
        server.stop()
        if previous is None:
            os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
        else:
            os.environ["OS_CLIENT_CONFIG_FILE"] = previous


@pytest.fixture(scope="module")
def discovered(sim: SimServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "state.db"
    init_state(f"sqlite:///{path}")
    discover(f"sqlite:///{path}", "legacy", clouds_yaml=sim.clouds_yaml)
    return path


@pytest.fixture
def url(discovered: Path, tmp_path: Path) -> str:
    copy = tmp_path / "state.db"
    shutil.copy(discovered, copy)
    return f"sqlite:///{copy}"


@pytest.fixture
def target(sim: SimServer) -> openstack.connection.Connection:
    return openstack.connect(cloud="target")


RENAMES = ("projects: {}                     # renames: legacy tenant name -> target "
           "project name")
DECISIONS = "projects: {}                     # per name, e.g. {physics: adopt}"
# The seeded volume types, and the images shared with tenants a test does not select.
DATA = {"volume_types: {}": "volume_types: {standard: __DEFAULT__, ssd: __DEFAULT__}",
        "members_outside: refuse": "members_outside: skip"}


def rows(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {m.__tablename__: int(conn.execute(select(func.count()).select_from(m))
                                         .scalar_one()) for m in (Plan, Run, Step, IdMap)}
    finally:
        engine.dispose()


def test_plan_dry_run_execute_and_the_translated_target(
        url: str, sim: SimServer, tmp_path: Path,
        target: openstack.connection.Connection) -> None:
    config = write_config(tmp_path, **DATA)
    result = make_plan(url, config=config, tenants=["physics"], clouds_yaml=sim.clouds_yaml,
                       output=tmp_path / "plans" / "physics.yaml")
    plan = result.plan
    # 20 tenant steps, 2 images, 2 volumes (the member chemistry is skipped: not selected)
    assert plan.target["checked"] is True and plan.summary["steps"] == 24
    assert plan.mappings["roles"]["_member_"]["target"] == "member"
    assert plan.mappings["external_networks"]["public"]["id"] == \
        target.network.find_network("public").id
    before = rows(url)
    rehearsal = execute_plan(url, result.path,
        ExecuteOptions(dry_run=True, clouds_yaml=sim.clouds_yaml, handle_sigint=False))
    assert rehearsal.dry_run is not None and rehearsal.dry_run.ok, rehearsal.dry_run
    # The dry run is recorded as one run of its own (no step, no plan row, no id map).
    assert rows(url) == {**before, "runs": before["runs"] + 1}
    assert rehearsal.dry_run.run_name == "physics-dry-run"
    assert target.identity.find_project("physics") is None
    done = execute_plan(url, result.path,
        ExecuteOptions(clouds_yaml=sim.clouds_yaml, handle_sigint=False, backoff_base=0.05))
    assert done.run is not None and done.run.status == "finished", done.run
    assert done.registered is not None and done.registered.run_name == "physics"
    assert rows(url)["id_map"] == 24
    project = target.identity.find_project("physics")
    assert project.domain_id == "default" and project.description == "physics department"
    net = target.network.find_network("physics-net", project_id=project.id)
    subnets = list(target.network.subnets(network_id=net.id))
    subnet_step = next(s for s in plan.steps if s.kind == "subnet")
    assert [(s.ip_version, s.cidr, s.ipv6_address_mode) for s in subnets] == [
        (6, subnet_step.spec["attrs"]["cidr"], "slaac")]
    router = target.network.find_router("physics-router", project_id=project.id)
    assert router.external_gateway_info["network_id"] == target.network.find_network("public").id
    db = target.network.find_security_group("db", project_id=project.id)
    web = target.network.find_security_group("web", project_id=project.id)
    ingress = [r for r in target.network.security_group_rules(security_group_id=db.id)
               if r.direction == "ingress"]
    assert [(r.ether_type, r.protocol, r.port_range_min, r.remote_group_id)
            for r in ingress] == [("IPv6", "tcp", 5432, web.id)]
    # Again without --resume: refused (the run exists); with --resume: nothing left to do.
    with pytest.raises(PlanError, match="was already executed as run physics"):
        execute_plan(url, result.path,
            ExecuteOptions(clouds_yaml=sim.clouds_yaml, handle_sigint=False))
    again = execute_plan(url, result.path,
        ExecuteOptions(resume=True, clouds_yaml=sim.clouds_yaml, handle_sigint=False))
    assert again.run is not None and again.run.status == "finished"
    assert again.registered is not None and again.registered.created is False


def test_stale_plan_refused_then_replanned(url: str, sim: SimServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, **DATA)
    result = make_plan(url, config=config, tenants=["biology"], clouds_yaml=sim.clouds_yaml,
                       output=tmp_path / "plans" / "biology.yaml")
    legacy = openstack.connect(cloud="legacy")
    project = legacy.identity.find_project("biology")
    legacy.network.create_network(name="biology-extra", tenant_id=project.id)
    discover(url, "legacy", clouds_yaml=sim.clouds_yaml)
    before = rows(url)
    with pytest.raises(PlanError, match=r"biology.yaml: stale plan: the inventory of legacy "
                                        r"changed since planning \(planned from snapshot 1, "
                                        r"latest is snapshot 2"):
        execute_plan(url, result.path,
            ExecuteOptions(clouds_yaml=sim.clouds_yaml, handle_sigint=False))
    assert rows(url) == before
    rehearsal = execute_plan(url, result.path,
        ExecuteOptions(replan=True, dry_run=True, clouds_yaml=sim.clouds_yaml,
                       handle_sigint=False))
    assert rehearsal.replanned and rehearsal.dry_run is not None and rehearsal.dry_run.ok
    replanned = load_plan(result.path)
    assert replanned.source["snapshot_id"] == 2
    assert "biology-extra" in {s.name for s in replanned.steps}
    assert rows(url) == {**before, "runs": before["runs"] + 1}


def test_name_clash_needs_a_decision(url: str, sim: SimServer, tmp_path: Path,
                                     target: openstack.connection.Connection) -> None:
    existing = target.identity.create_project(name="chem", domain_id="default")
    config = write_config(tmp_path, **DATA, **{RENAMES:
                                       "projects: {chemistry: chem}"})
    with pytest.raises(PlanError) as caught:
        make_plan(url, config=config, tenants=["chemistry"], include_dependencies=True,
                  clouds_yaml=sim.clouds_yaml, output=tmp_path / "c.yaml")
    assert str(caught.value).startswith(
        f"project 'chem' (legacy chemistry) already exists on the target ({existing.id}) and "
        "was not created by migrator from ")
    assert str(caught.value).endswith("decide in conflicts.projects.chemistry: adopt, rename "
                                      "or fail")
    assert not (tmp_path / "c.yaml").exists()
    adopt = write_config(tmp_path, **DATA, **{RENAMES:
                                      "projects: {chemistry: chem}",
                                      DECISIONS:
                                      "projects: {chemistry: adopt}"})
    plan = make_plan(url, config=adopt, tenants=["chemistry"], include_dependencies=True,
                     clouds_yaml=sim.clouds_yaml, output=tmp_path / "c.yaml").plan
    step = next(s for s in plan.steps if s.kind == "project" and s.tenant == "chemistry")
    assert step.spec["lookup"] == {"adopt_id": existing.id}
    rename = write_config(tmp_path, **DATA, **{RENAMES:
                                       "projects: {chemistry: chem}",
                                       DECISIONS:
                                       "projects: {chem: rename}"})
    plan = make_plan(url, config=rename, tenants=["chemistry"], include_dependencies=True,
                     clouds_yaml=sim.clouds_yaml, output=tmp_path / "c.yaml").plan
    step = next(s for s in plan.steps if s.kind == "project" and s.tenant == "chemistry")
    assert step.spec["attrs"]["name"] == "chem-migrated"


def test_missing_role_mapping_and_waves(url: str, sim: SimServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, **DATA, **{"roles: {_member_: member}":
                                       "roles: {_member_: participant}"})
    with pytest.raises(PlanError) as refused:
        make_plan(url, config=config, tenants=["physics"], clouds_yaml=sim.clouds_yaml,
                  output=tmp_path / "p.yaml")
    # Every problem is listed (the CLI prints one per line), the role's among them.
    assert any("legacy role _member_ maps to 'participant', which does not exist on the "
               "target; map it in mappings.roles" in problem
               for problem in refused.value.problems), refused.value.problems
    config = write_config(tmp_path, **DATA, **{"waves: []": "waves: [[physics], [chemistry]]"})
    path = make_plan(url, config=config, tenants=["physics", "chemistry"],
                     clouds_yaml=sim.clouds_yaml, output=tmp_path / "waves.yaml").path
    before = rows(url)
    with pytest.raises(PlanError, match=r"wave 1 of plan waves has not run; run it first: "
                                        r"migrator execute .*waves.yaml --wave 1"):
        execute_plan(url, path,
            ExecuteOptions(wave=2, clouds_yaml=sim.clouds_yaml, handle_sigint=False))
    with pytest.raises(PlanError, match="wave 3 does not exist"):
        execute_plan(url, path,
            ExecuteOptions(wave=3, clouds_yaml=sim.clouds_yaml, handle_sigint=False))
    assert rows(url) == before
    first = execute_plan(url, path,
        ExecuteOptions(wave=1, clouds_yaml=sim.clouds_yaml, handle_sigint=False,
                       backoff_base=0.05))
    assert first.run is not None and first.run.status == "finished"
    assert first.registered is not None and first.registered.run_name == "waves-wave-1"
    second = execute_plan(url, path,
        ExecuteOptions(wave=2, clouds_yaml=sim.clouds_yaml, handle_sigint=False,
                       backoff_base=0.05))
    assert second.run is not None and second.run.status == "finished", second.run
    # chemistry: 21 tenant steps, 2 images, 2 volumes, and the member of physics's image
    assert second.run.counts == {"done": 26}
    with pytest.raises(ConfigError, match="no such configuration file"):
        make_plan(url, config=tmp_path / "nope.yaml")
