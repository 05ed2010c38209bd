"""``migrator plan``, ``execute`` and ``discover`` through the CLI against the simulator: every
problem listed (one per line on stderr, all of them in ``--format json``), ``discover`` reading
./migrator.yaml like ``plan``, and a target cloud that goes away in the middle of a run (exit
8 naming the cloud and the call, then ``--resume`` once it is back)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import openstack
import pytest

from migrator.operations.db import init_state
from migrator.operations.discover import discover
from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.server import CloudSpec, SimServer
from tests.cli.conftest import Invoke
from tests.cli.process import MIGRATOR
from tests.plan.conftest import write_config
from tests.sim.conftest import Admin

MISSING_ROLE = {"roles: {_member_: member}": "roles: {_member_: participant}"}


def serve(root: Path, specs: list[CloudSpec] | None = None) -> SimServer:
    """Three seeded tenants (no images or volumes) on a legacy cloud, and a modern target
    with the ``public`` network the routers' gateways map to."""
    if not (root / "seed.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        seed = generate(SeedShape(tenants=3, images_per_tenant=0, volumes_per_tenant=0))
        (root / "seed.json").write_text(json.dumps(seed))
    first = specs is None
    server = SimServer(specs or [CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")],
                       root / "sim", seed=root / "seed.json").start()
    if first:
        target = connect(server, "target")
        net = target.network.create_network(name="public", is_router_external=True)
        target.network.create_subnet(network_id=net.id, ip_version=6,
                                     cidr="2001:db8:ffff::/64")
    return server


def connect(sim: SimServer, cloud: str) -> openstack.connection.Connection:
    config = openstack.config.loader.OpenStackConfig(
        config_files=[str(sim.clouds_yaml)], secure_files=[], load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=cloud))


def discovered_copy(sim: SimServer, root: Path, tmp_path: Path) -> str:
    """A state database holding the legacy cloud's inventory (discovered once per sim)."""
    original = root / "discovered.db"
    if not original.exists():
        init_state(f"sqlite:///{original}")
        discover(f"sqlite:///{original}", "legacy", clouds_yaml=sim.clouds_yaml)
    copy = tmp_path / "state.db"
    shutil.copy(original, copy)
    return f"sqlite:///{copy}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimServer, Path]]:
    root = tmp_path_factory.mktemp("world")
    sim = serve(root)
    yield sim, root
    sim.stop()


def problem_lines(stderr: str) -> list[str]:
    return [line[4:] for line in stderr.splitlines() if line.startswith("  - ")]


def test_plan_lists_every_problem(invoke: Invoke, world: tuple[SimServer, Path],
                                  tmp_path: Path) -> None:
    sim, root = world
    url = discovered_copy(sim, root, tmp_path)
    config = write_config(tmp_path, **MISSING_ROLE)
    args = ("--db", url, "plan", "--config", str(config), "--clouds-yaml", str(sim.clouds_yaml),
            "-o", str(tmp_path / "p.yaml"))
    result = invoke(*args)
    assert result.exit_code == 7, result.output
    lines = result.stderr.splitlines()
    problems = problem_lines(result.stderr)
    assert lines[0] == (f"Error: the selection cannot be planned: {len(problems)} problems "
                        "(each on a line below); no plan file was written")
    assert lines[1:] == [f"  - {p}" for p in problems]
    # One per tenant at least (each tenant's member role), all different.
    assert len(problems) >= 3 and len(set(problems)) == len(problems), problems
    assert sum("maps to 'participant', which does not exist on the target" in p
               for p in problems) >= 1, problems
    assert not (tmp_path / "p.yaml").exists()
    as_json = invoke(*args, "--format", "json")
    assert as_json.exit_code == 7
    error = json.loads(as_json.stdout)["error"]
    assert error["problems"] == problems and error["exit_code"] == 7
    assert as_json.stderr == result.stderr


def test_execute_lists_every_problem(invoke: Invoke, world: tuple[SimServer, Path],
                                     tmp_path: Path) -> None:
    """A plan made offline maps _member_ to a role the target lacks: every role assignment
    is a problem, and each one is printed (``--dry-run`` and the real run alike)."""
    sim, root = world
    url = discovered_copy(sim, root, tmp_path)
    config = write_config(tmp_path, **MISSING_ROLE)
    plan = tmp_path / "p.yaml"
    made = invoke("--db", url, "plan", "--config", str(config), "--offline", "-o", str(plan))
    assert made.exit_code == 0, made.output
    assignments = plan.read_text().count("\n  kind: role_assignment\n")
    assert assignments >= 3
    for extra in ((), ("--dry-run",)):
        args = ("--db", url, "execute", str(plan), "--clouds-yaml", str(sim.clouds_yaml),
                *extra)
        result = invoke(*args)
        assert result.exit_code == 7, result.output
        problems = problem_lines(result.stderr)
        assert len(problems) == assignments, result.stderr
        assert all(re.fullmatch(r"step role_assignment:\S+: role 'participant' does not exist "
                                r"on the target", p) for p in problems), problems
        first = result.stderr.splitlines()[0]
        assert first.startswith("Error: ") and f"{assignments} problems" in first, first
        as_json = invoke(*args, "--format", "json")
        assert as_json.exit_code == 7
        assert json.loads(as_json.stdout)["error"]["problems"] == problems


def test_discover_reads_migrator_yaml_by_default(invoke: Invoke, world: tuple[SimServer, Path],
                                                 db_url: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    sim, _ = world
    monkeypatch.chdir(tmp_path)
    # No configuration here and no --cloud: say what to do.
    result = invoke("--db", db_url, "discover", "--clouds-yaml", str(sim.clouds_yaml))
    assert result.exit_code == 2
    assert result.stderr == ("Error: no source cloud: give --cloud, or source.cloud in "
                             "migrator.yaml (there is none here: create one with 'migrator "
                             "init', or give --config)\n")
    # ./migrator.yaml names the source (and the tenant to read with its own credentials).
    (tmp_path / "migrator.yaml").write_text(
        "source:\n  cloud: legacy-physics-user0\n")
    result = invoke("--db", db_url, "discover", "--clouds-yaml", str(sim.clouds_yaml),
                    "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cloud"] == "legacy-physics-user0"
    # A broken ./migrator.yaml is reported as such, like plan reports it.
    (tmp_path / "migrator.yaml").write_text("source: [\n")
    result = invoke("--db", db_url, "discover", "--clouds-yaml", str(sim.clouds_yaml))
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: migrator.yaml:2: not valid YAML: ")


def test_target_going_away_mid_run(tmp_path: Path) -> None:
    """The target stops answering in the middle of ``execute``: the run stops at once (no
    step spends its attempts on a cloud that is gone), exit 8 naming the cloud and the call,
    and the advice works: once the target is back, ``--resume`` finishes the run."""
    root = tmp_path / "world"
    sim = serve(root)
    stopped = False
    try:
        url = discovered_copy(sim, root, tmp_path)
        plan = tmp_path / "p.yaml"
        config = write_config(tmp_path)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("MIGRATOR_DB", None)
        base = [*MIGRATOR, "--db", url]
        made = subprocess.run([*base, "plan", "--config", str(config), "--clouds-yaml",
                               str(sim.clouds_yaml), "-o", str(plan)], env=env,
                              capture_output=True, text=True, timeout=600)
        assert made.returncode == 0, made.stderr
        # Every write takes a while, so that the run is surely in its middle when the target
        # goes: the first step done is the moment.
        Admin(sim, "target").add_fault(match="POST *", latency_ms=300)
        ports = {name: cloud.port for name, cloud in sim.clouds.items()}
        run = subprocess.Popen([*base, "execute", str(plan), "--clouds-yaml",
                                str(sim.clouds_yaml), "--workers", "2", "--max-attempts", "1"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        assert run.stdout is not None
        seen = []
        for line in run.stdout:
            seen.append(line)
            if "] done " in line:
                break
        sim.stop()
        stopped = True
        out, err = run.communicate(timeout=600)
    finally:
        if not stopped:
            sim.stop()
    assert run.returncode == 8, (seen, out, err)
    last = err.splitlines()[-1]
    assert re.fullmatch(
        r"Error: cloud target: .+: cannot connect: Connection refused; run p stopped \(nothing "
        r"is lost: \d+ steps wait\); once it answers again: migrator execute "
        + re.escape(str(plan)) + " --resume", last), last
    assert "Run p: interrupted" in out
    # Back on the same ports, with the state it had: the run resumes and finishes.
    sim = serve(root, [CloudSpec(name, profile, ports[name])
                       for name, profile in (("legacy", "liberty"), ("target", "modern"))])
    try:
        resumed = subprocess.run([*base, "execute", str(plan), "--clouds-yaml",
                                  str(sim.clouds_yaml), "--resume"], env=env,
                                 capture_output=True, text=True, timeout=600)
    finally:
        sim.stop()
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(r"Run p: finished in .* \(\d+ done\)", resumed.stdout), resumed.stdout


def test_max_plan_size_default_is_the_plan_readers() -> None:
    from migrator.cli.execute import DEFAULT_MAX_PLAN_SIZE
    from migrator.config import parse_bytes
    from migrator.plan.planfile import DEFAULT_MAX_PLAN_BYTES

    assert parse_bytes(DEFAULT_MAX_PLAN_SIZE) == DEFAULT_MAX_PLAN_BYTES
