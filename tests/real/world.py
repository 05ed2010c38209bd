"""The world of a real-services test: a seeded Liberty SIMULATOR as the source (one per test),
the session's real Keystone, Glance and Cinder as the target, a state database, a
configuration, and ``migrator`` driven through its CLI as in tests/test_tenants_e2e.py.

The worlds of one session share the target, so they must never meet there: each migrates into
a Keystone domain of its own (``target.domain``: the same seeded tenant and user names arrive
again in each test, into another domain), and each names its simulated Liberty cloud
differently (``legacy-<token>``): the simulator derives every id from the cloud's name, and
migrator finds what it made on the target by source id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openstack
import yaml
from click.testing import CliRunner, Result

from migrator.cli.main import cli
from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.server import CloudSpec, SimServer
from tests.real.services import RealServices

REPO = Path(__file__).resolve().parents[2]
VOLUME_TYPES = {"standard": "__DEFAULT__", "ssd": "__DEFAULT__"}
# Until plans leave out what a target without Nova and Neutron cannot take, every image and
# volume step waits on the compute and network quota steps, which fail there.

def connect(clouds_yaml: Path, cloud: str) -> openstack.connection.Connection:
    config = openstack.config.loader.OpenStackConfig(
        config_files=[str(clouds_yaml)], secure_files=[], load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=cloud))


def config_data(root: Path, domain: str, legacy: str) -> dict[str, Any]:
    return {
        "source": {"cloud": legacy},
        "target": {"cloud": "target", "domain": domain},
        "selection": {"tenants": [], "exclude": ["admin", "service"]},
        "mappings": {"roles": {"_member_": "member"}, "volume_types": dict(VOLUME_TYPES)},
        "quotas": {"policy": "copy"},
        "users": {"password_policy": "random", "password_file": str(root / "passwords.yaml")},
        "conflicts": {"default": "fail"},
        "transfer": {"timeouts": {"poll_interval": 0.5, "image_active": 300,
                                  "volume_available": 300}},
    }


@dataclass
class RealWorld:
    root: Path
    sim: SimServer
    services: RealServices
    clouds_yaml: Path
    db_url: str
    config: Path
    domain: str  # the target domain's name (and id: see domain_id)
    domain_id: str
    legacy_cloud: str  # the Liberty cloud's name (clouds.yaml, source.cloud)
    legacy: openstack.connection.Connection  # admin
    target: openstack.connection.Connection  # admin
    runner: CliRunner = field(default_factory=CliRunner)

    def cli(self, *args: str) -> Result:
        """``migrator --db URL ARGS`` in-process; ``--clouds-yaml`` is added where taken."""
        extra = ["--clouds-yaml", str(self.clouds_yaml)] if args[0] in (
            "discover", "plan", "execute") else []
        return self.runner.invoke(cli, ["--db", self.db_url, *args, *extra],
                                  prog_name="migrator")

    def write_config(self, change: Callable[[dict[str, Any]], None] | None = None) -> Path:
        data = config_data(self.root, self.domain, self.legacy_cloud)
        if change:
            change(data)
        self.config.write_text(yaml.safe_dump(data, sort_keys=False))
        return self.config

    def discover_and_plan(self, name: str, *extra: str) -> Path:
        """``migrator discover`` and ``migrator plan`` through the CLI; the plan file."""
        result = self.cli("discover", "--config", str(self.config))
        assert result.exit_code == 0, result.output
        plan = self.root / "plans" / f"{name}.yaml"
        result = self.cli("plan", "--config", str(self.config), "-o", str(plan), *extra)
        assert result.exit_code == 0, result.output
        return plan

    def execute_process(self, plan: Path, *, resume: bool = False,
                        db_url: str | None = None) -> subprocess.Popen[str]:
        """``migrator execute PLAN [--resume]`` in its own process (to be killed)."""
        cmd = [sys.executable, "-c", "from migrator.cli.main import main; main()",
               "--db", db_url or self.db_url, "execute", str(plan), "--clouds-yaml",
               str(self.clouds_yaml), "--workers", "4", *(["--resume"] if resume else [])]
        return subprocess.Popen(cmd, cwd=self.root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def projects(self) -> dict[str, str]:
        """Legacy project id -> target project id, for the projects migrated (by source tag)."""
        out: dict[str, str] = {}
        response = self.target.identity.get("/projects", params={"domain_id": self.domain_id})
        assert response.status_code == 200, response.text
        for project in response.json()["projects"]:
            for tag in project.get("tags") or []:
                if tag.startswith("migrator-src-"):
                    out[tag.removeprefix("migrator-src-")] = project["id"]
        return out

    def temporary_images(self) -> dict[str, list[str]]:
        """Images named migrator-tmp-* left on either cloud."""
        out = {}
        for name, conn in (("legacy", self.legacy), ("target", self.target)):
            images = conn.image.get("/images", params={"limit": 1000}).json()["images"]
            out[name] = [i["name"] for i in images
                         if str(i.get("name")).startswith("migrator-tmp")]
        return out

    def stop(self) -> None:
        self.sim.stop()


def kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL, by its id, a process started by ``execute_process``."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()


def tenant_seed(shape: SeedShape, *, disk_format: str | None = "raw") -> dict[str, Any]:
    """A generated Liberty inventory with nothing of Nova or Neutron in its tenants (the real
    target has neither): projects, users, quotas, images and volumes. ``disk_format`` relabels
    every image (generated bytes are raw: real Glance refuses them under another label)."""
    seed = generate(shape)
    for tenant in seed["clouds"]["legacy"]["tenants"]:
        if tenant["name"] == "admin":
            continue
        for kind in ("networks", "routers", "security_groups", "keypairs"):
            tenant.pop(kind, None)
        if disk_format:
            for image in tenant.get("images") or []:
                image["disk_format"] = disk_format
    return seed


def start_world(root: Path, services: RealServices, seed: dict[str, Any]) -> RealWorld:
    """The Liberty simulator seeded with ``seed``, a domain of its own on the real target,
    a clouds.yaml naming both, the configuration and ``migrator init``."""
    root.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    legacy = f"legacy-{token}"
    seed = {**seed, "clouds": {legacy: seed["clouds"]["legacy"]}}
    (root / "seed.json").write_text(json.dumps(seed))
    sim = SimServer([CloudSpec(legacy, "liberty")], root / "sim",
                    seed=root / "seed.json").start()
    try:
        sim_clouds = yaml.safe_load(sim.clouds_yaml.read_text())["clouds"]
        clouds_yaml = services.write_clouds_yaml(root / "clouds.yaml", others=sim_clouds)
        target = connect(clouds_yaml, "target")
        domain = f"migrator-{token}"
        domain_id = target.identity.create_domain(name=domain).id
        world = RealWorld(root=root, sim=sim, services=services, clouds_yaml=clouds_yaml,
                          db_url=f"sqlite:///{root / 'state.db'}", config=root / "migrator.yaml",
                          domain=domain, domain_id=domain_id, legacy_cloud=legacy,
                          legacy=connect(clouds_yaml, legacy), target=target)
        world.write_config()
        result = world.cli("init", "--config", str(world.config))
        assert result.exit_code == 0, result.output
    except BaseException:
        sim.stop()
        raise
    return world
