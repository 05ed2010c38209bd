"""Target calls per migrated resource, counted by the simulator (every request it answered, by
route) while ``migrator execute`` moves two tenants of every kind the benchmark moves
(projects, quotas, users, role assignments, networks, subnets, routers and their interfaces,
security groups and rules, keypairs, images and image members): a lookup and a create per
resource, verification from the create's answer instead of a second read, one read of each
image after its upload, at most 2.5 calls per step overall."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner

from migrator.cli.main import cli
from migrator.config import SAMPLE
from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.server import CloudSpec, SimServer
from tests.e2e_support import connect, run_steps

# Routes of the target per kind (the simulator's route names). Keystone's create route is
# shared by projects and users: checked on its own below.
ROUTES: dict[str, tuple[str, ...]] = {
    "project": ("GET /identity/v3/projects", "GET /identity/v3/{kind}/{id}"),
    "quota": ("PUT /compute/v2.1/os-quota-sets/{target_id}",
              "PUT /network/v2.0/quotas/{project_id}",
              "PUT /volume/v3/{project_id}/os-quota-sets/{target_id}",
              "GET /compute/v2.1/os-quota-sets/{target_id}",
              "GET /network/v2.0/quotas/{project_id}",
              "GET /volume/v3/{project_id}/os-quota-sets/{target_id}"),
    "user": ("GET /identity/v3/users",),
    "role_assignment": (
        "PUT /identity/v3/projects/{project_id}/users/{user_id}/roles/{role_id}",
        "HEAD /identity/v3/projects/{project_id}/users/{user_id}/roles/{role_id}"),
    "network": ("GET /network/v2.0/networks", "POST /network/v2.0/networks",
                "GET /network/v2.0/networks/{id}"),
    "subnet": ("GET /network/v2.0/subnets", "POST /network/v2.0/subnets",
               "GET /network/v2.0/subnets/{id}"),
    "router": ("GET /network/v2.0/routers", "POST /network/v2.0/routers",
               "GET /network/v2.0/routers/{id}"),
    "router_interface": ("GET /network/v2.0/ports",
                         "PUT /network/v2.0/routers/{id}/add_router_interface",
                         "GET /network/v2.0/ports/{id}"),
    "security_group": ("GET /network/v2.0/security-groups",
                       "POST /network/v2.0/security-groups",
                       "GET /network/v2.0/security-groups/{id}"),
    "security_group_rule": ("GET /network/v2.0/security-group-rules",
                            "POST /network/v2.0/security-group-rules",
                            "GET /network/v2.0/security-group-rules/{id}"),
    "keypair": ("GET /compute/v2.1/os-keypairs/{name}", "POST /compute/v2.1/os-keypairs"),
    "image": ("GET /image/v2/images", "POST /image/v2/images",
              "PUT /image/v2/images/{image_id}/file", "GET /image/v2/images/{image_id}"),
    "image_member": ("POST /image/v2/images/{image_id}/members",
                     "PUT /image/v2/images/{image_id}/members/{member_id}",
                     "GET /image/v2/images/{image_id}/members/{member_id}"),
}
# Calls per step of each kind: a lookup and a create (quotas: the PUT per service; a role:
# the grant; an image: the tag lookup, the create, the upload, one read after it; a member:
# add and accept), plus a few once per run (the quota keys of each service, the first
# lookup of the external network...).
BUDGET = {"project": 2, "quota": 1, "user": 2, "role_assignment": 1, "network": 2,
          "subnet": 2, "router": 2, "router_interface": 2, "security_group": 2,
          "security_group_rule": 2, "keypair": 2, "image": 4, "image_member": 2}
ONCE_PER_RUN = 3


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimServer]:
    seed = generate(SeedShape(tenants=2, volumes_per_tenant=0, image_size=4096,
                              mislabelled=0, own_credentials=0))
    (tmp_path / "seed.json").write_text(json.dumps(seed))
    server = SimServer([CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")],
                       tmp_path / "sim", seed=tmp_path / "seed.json").start()
    try:
        target = connect(server.clouds_yaml, "target")
        public = target.network.create_network(name="public", is_router_external=True)
        target.network.create_subnet(network_id=public.id, ip_version=6,
                                     cidr="2001:db8:ffff::/64")
        shared = target.network.create_network(name="shared-net", is_shared=True)
        target.network.create_subnet(network_id=shared.id, ip_version=6,
                                     cidr="2001:db8:fffe::/64")
        yield server
    finally:
        server.stop()


def target_calls(sim: SimServer) -> Counter[str]:
    url = f"{sim.cloud('target').base_url}/_sim/calls"
    return Counter(requests.get(url, timeout=30).json()["calls"])


def test_target_calls_per_resource_kind(sim: SimServer, tmp_path: Path) -> None:
    config = yaml.safe_load(SAMPLE)
    config["users"]["password_file"] = str(tmp_path / "passwords.yaml")
    config["address_plan"]["ipv6_prefix"] = "2001:db8:100::/40"
    (tmp_path / "migrator.yaml").write_text(yaml.safe_dump(config))
    db = f"sqlite:///{tmp_path / 'state.db'}"
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(cli, ["--db", db, *args], prog_name="migrator")
        assert result.exit_code == 0, result.output
        return result

    cy = ["--clouds-yaml", str(sim.clouds_yaml)]
    plan = str(tmp_path / "plan.yaml")
    run("init", "--config", str(tmp_path / "migrator.yaml"))
    run("discover", "--config", str(tmp_path / "migrator.yaml"), "--cloud", "legacy", *cy)
    run("plan", "--config", str(tmp_path / "migrator.yaml"), *cy, "-o", plan)
    before = target_calls(sim)
    run("execute", plan, "--config", str(tmp_path / "migrator.yaml"), *cy)
    calls = target_calls(sim) - before

    _, steps = run_steps(db, "plan")
    kinds = Counter(step.kind for step in steps.values())
    assert all(step.state == "done" for step in steps.values())
    assert set(kinds) == set(BUDGET), kinds
    per_kind = {kind: sum(calls[route] for route in routes) for kind, routes in ROUTES.items()}
    creates = calls["POST /identity/v3/{kind}"]
    assert creates == kinds["project"] + kinds["user"]  # one create each, no re-read:
    assert calls["GET /identity/v3/{kind}/{id}"] == 0
    per_kind["project"] += kinds["project"]
    per_kind["user"] += kinds["user"]
    report = {kind: (per_kind[kind], kinds[kind]) for kind in BUDGET}
    for kind, budget in BUDGET.items():
        assert per_kind[kind] <= budget * kinds[kind] + ONCE_PER_RUN, (kind, report)
    # Verification reads the create's answer: no read of one resource by id, but an image's
    # once after its upload.
    for route in calls:
        if route.endswith(("/{id}", "/{member_id}")) and route.startswith(("GET", "HEAD")):
            assert calls[route] == 0, (route, calls)
    assert calls["GET /image/v2/images/{image_id}"] == kinds["image"]
    total = sum(calls.values())
    assert total <= 2.5 * sum(kinds.values()), (total, sum(kinds.values()), calls)
