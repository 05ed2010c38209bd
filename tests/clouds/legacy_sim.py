"""A seeded legacy (Liberty) simulator for discovery tests, and the limited-permissions set-up.

- :func:`start_legacy`: a 3-tenant generated inventory (tiny images), every tenant's first user
  with a clouds.yaml entry ``legacy-<tenant>-user0``.
- :func:`add_operator`: a NON-admin user ``operator`` holding the member role on some tenants
  only, with a clouds.yaml entry ``legacy-operator``: the admin of a cloud whose admin rights
  are incomplete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openstack
import requests
import yaml

from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.server import CloudSpec, SimServer

TENANTS = ["physics", "chemistry", "biology"]
OPERATOR_PASSWORD = "operator-secret-pw"


def start_legacy(data_dir: Path, *, tenants: int = 3, faults: list[dict[str, Any]] | None = None,
                 tls: bool = False) -> SimServer:
    seed = generate(SeedShape(tenants=tenants, image_size=1024, volume_data_size=1024,
                              own_credentials=tenants))
    if faults:
        seed["clouds"]["legacy"]["faults"] = faults
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "seed.json"
    path.write_text(json.dumps(seed))
    return SimServer([CloudSpec("legacy", "liberty")], data_dir / "sim", seed=path,
                     tls=tls).start()


def admin_connection(sim: SimServer) -> openstack.connection.Connection:
    config = openstack.config.loader.OpenStackConfig(
        config_files=[str(sim.clouds_yaml)], secure_files=[], load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud="legacy"))


def add_operator(sim: SimServer, member_of: list[str], home: str) -> str:
    """Create the non-admin ``operator`` user (member of ``member_of``) and its clouds.yaml
    entry ``legacy-operator`` scoped to ``home``; returns the entry name."""
    identity: Any = admin_connection(sim).identity
    projects = {p.name: p for p in identity.projects()}
    role = next(r.id for r in identity.roles() if r.name == "_member_")
    user = identity.create_user(name="operator", password=OPERATOR_PASSWORD,
                                     domain_id="default",
                                     default_project_id=projects[home].id)
    for name in member_of:
        identity.assign_project_role_to_user(projects[name], user, role)
    data = yaml.safe_load(sim.clouds_yaml.read_text())
    entry = json.loads(json.dumps(data["clouds"]["legacy"]))
    entry["auth"].update(username="operator", password=OPERATOR_PASSWORD, project_name=home)
    data["clouds"]["legacy-operator"] = entry
    sim.clouds_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    return "legacy-operator"


def passwords(sim: SimServer) -> list[str]:
    """Every password of the clouds.yaml (admin and tenant users) plus the operator's."""
    data = yaml.safe_load(sim.clouds_yaml.read_text())
    found = {entry["auth"]["password"] for entry in data["clouds"].values()}
    found.update(f"{t}-user{u}-pw" for t in TENANTS for u in range(2))
    return sorted(found | {OPERATOR_PASSWORD})


class SimAdmin:
    """The simulator's unauthenticated admin endpoint (/_sim/...) of the legacy cloud."""

    def __init__(self, sim: SimServer) -> None:
        self.base = f"{sim.cloud('legacy').listen_url}/_sim"
        # A simulator serving HTTPS is trusted through its own CA.
        self.verify: bool | str = str(sim.cacert) if sim.cacert else True

    def calls(self) -> dict[str, int]:
        calls: dict[str, int] = requests.get(f"{self.base}/calls",
                                             timeout=10, verify=self.verify).json()["calls"]
        return calls

    def reset_calls(self) -> None:
        requests.delete(f"{self.base}/calls", timeout=10, verify=self.verify).raise_for_status()

    def add_fault(self, **rule: Any) -> None:
        requests.post(f"{self.base}/faults", json=rule,
                      timeout=10, verify=self.verify).raise_for_status()

    def clear_faults(self) -> None:
        requests.delete(f"{self.base}/faults", timeout=10, verify=self.verify).raise_for_status()
