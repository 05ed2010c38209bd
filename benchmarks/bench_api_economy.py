"""API economy: calls per migrated resource on the target, discovery calls per tenant on the
source, measured with the simulator's own call counts (``GET /_sim/calls``, reset before each
phase).

A generated Liberty inventory of N tenants (``MIGRATOR_BENCH_ECONOMY_TENANTS``, default 5;
per tenant 2 users, a network, subnet, router with gateway and interface, 2 security groups
with 5 rules, a keypair, 3 quota sets; no images or volumes: their data path is measured in
bench_transfer) is served with an empty modern cloud (its external network ``public`` and
shared network ``shared-net`` made first) by an in-process simulator; then, through the
operations the commands run:

1. ``discover`` with the legacy admin: source calls per tenant; the list calls (cloud-wide,
   a constant) and the per-owner reads (quotas per project, keypairs per user: the only way
   those APIs answer) counted apart; per-item GET routes (one resource by id) must be 0;
2. ``plan``: the target reads of clash detection and mappings (a constant);
3. ``execute``: every target call per migrated resource (a step is one resource), the goal
   being <= 3; per kind, each step's phase calls (recorded in its checkpoint) plus its
   verification read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import openstack
import requests
import yaml

from benchmarks.harness import Metric, benchmark
from migrator.config import SAMPLE
from migrator.operations.db import init_state
from migrator.operations.discover import discover
from migrator.operations.execute import ExecuteOptions, execute_plan
from migrator.operations.plan import make_plan
from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.server import CloudSpec, SimServer
from migrator.store.db import make_engine, session_factory
from migrator.store.models import Step

TENANTS = int(os.environ.get("MIGRATOR_BENCH_ECONOMY_TENANTS", "5"))
TARGET_CALLS_PER_RESOURCE = 3.0
# Routes that name an owner and are nevertheless the API's only listing for it.
PER_OWNER_ROUTES = {
    "GET /compute/v2.1/{project_id}/os-quota-sets/{target_id}",
    "GET /volume/v2/{project_id}/os-quota-sets/{target_id}",
    "GET /network/v2.0/quotas/{project_id}",
    "GET /compute/v2.1/{project_id}/os-keypairs",
    "GET /image/v2/images/{image_id}/members",
    "GET /compute/v2.1/{project_id}/flavors/{flavor_id}/os-extra_specs",
    "GET /compute/v2.1/{project_id}/flavors/{flavor_id}/os-flavor-access",
}
# Version documents and the token: per connection, not per resource.
CONNECTION_ROUTES = re.compile(r"^(GET /[a-z]+(/v[0-9.]+)?|POST /identity/v3/auth/tokens)$")
FLAVOR_ROUTES = {r for r in PER_OWNER_ROUTES if "/flavors/" in r}
PER_TENANT_GOAL = 6.0  # as bench_discovery: 2 quota reads + 2 users' keypairs + shared images
# The call sequence of each kind's step (phases, then the verification read).
SEQUENCES = {
    "project": "find by tag (list), create, verify read",
    "quota": "PUT (known keys by microversion, cached), verify read",
    "user": "one list by name (ours by source id, else a name clash), create, verify read",
    "role_assignment": "grant (PUT), verify (HEAD)",
    "network": "find by tag (list), create, verify read",
    "subnet": "find by tag (list), create, verify read",
    "router": "find by tag (list), create with its gateway, verify read",
    "router_interface": "find (port list), add interface, verify (port read)",
    "security_group": "find by tag (list), create, verify read",
    "security_group_rule": "the group's rules (one list: ours by description, else an "
                           "identical one), create, verify read",
    "keypair": "find (read), create, verify read",
}


class Sim:
    """The admin endpoints of both simulated clouds."""

    def __init__(self, server: SimServer) -> None:
        self.base = {c: f"{server.cloud(c).base_url}/_sim" for c in ("legacy", "target")}

    def reset(self) -> None:
        for base in self.base.values():
            requests.delete(f"{base}/calls", timeout=10).raise_for_status()

    def calls(self, cloud: str) -> dict[str, int]:
        calls: dict[str, int] = requests.get(f"{self.base[cloud]}/calls",
                                             timeout=10).json()["calls"]
        return calls


def _connect(clouds_yaml: Path, cloud: str) -> openstack.connection.Connection:
    config = openstack.config.loader.OpenStackConfig(
        config_files=[str(clouds_yaml)], secure_files=[], load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=cloud))


def _prepare_target(clouds_yaml: Path) -> None:
    conn = _connect(clouds_yaml, "target")
    public = conn.network.create_network(name="public", is_router_external=True)
    conn.network.create_subnet(network_id=public.id, ip_version=6, cidr="2001:db8:ffff::/64")
    shared = conn.network.create_network(name="shared-net", is_shared=True)
    conn.network.create_subnet(network_id=shared.id, ip_version=6, cidr="2001:db8:fffe::/64")
    conn.close()


def item_get_routes(calls: dict[str, int]) -> dict[str, int]:
    """GETs of one resource by id (a templated last segment), per-owner listings excepted."""
    return {route: n for route, n in calls.items()
            if route.startswith("GET ") and re.search(r"\{[a-z_]+\}$", route)
            and route not in PER_OWNER_ROUTES}


def _phase_calls(url: str) -> tuple[dict[str, list[int]], int]:
    """Per kind, each step's calls recorded in its checkpoint (all phases); and the number
    of retries recorded (which the call counts include)."""
    engine = make_engine(url)
    per_kind: dict[str, list[int]] = defaultdict(list)
    retries = 0
    try:
        with session_factory(engine)() as session:
            for step in session.query(Step).all():
                data = step.checkpoint or {}
                per_kind[step.kind].append(sum(int(v) for k, v in data.items()
                                               if k.endswith("_calls")))
                retries += sum(int(v) for k, v in data.items() if k.endswith("_retries"))
    finally:
        engine.dispose()
    return per_kind, retries


@benchmark("api_economy", f"API calls of discover, plan and execute for {TENANTS} generated "
           "tenants (simulator call counts): per migrated resource on the target, per tenant "
           "on the source")
def api_economy() -> list[Metric]:
    return measure(TENANTS)


def measure(tenants: int) -> list[Metric]:
    tmp = Path(tempfile.mkdtemp(prefix="migrator-bench-economy-"))
    try:
        seed = generate(SeedShape(tenants=tenants, images_per_tenant=0, volumes_per_tenant=0))
        (tmp / "seed.json").write_text(json.dumps(seed))
        server = SimServer([CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")],
                           tmp / "sim", seed=tmp / "seed.json").start()
        try:
            return _measure(server, tmp, tenants)
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(server: SimServer, tmp: Path, tenants: int) -> list[Metric]:
    clouds_yaml = server.clouds_yaml
    _prepare_target(clouds_yaml)
    sim = Sim(server)
    url = f"sqlite:///{tmp / 'state.db'}"
    init_state(url)
    config = tmp / "migrator.yaml"
    text = yaml.safe_load(SAMPLE)
    text["users"]["password_file"] = str(tmp / "passwords.yaml")
    config.write_text(yaml.safe_dump(text))

    sim.reset()
    found = discover(url, "legacy", clouds_yaml=clouds_yaml)
    source = sim.calls("legacy")
    source_total = sum(source.values())
    per_owner = sum(n for r, n in source.items() if r in PER_OWNER_ROUTES)
    growing = sum(n for r, n in source.items()
                  if r in PER_OWNER_ROUTES and r not in FLAVOR_ROUTES)
    connection = sum(n for r, n in source.items() if CONNECTION_ROUTES.match(r))
    lists = source_total - per_owner - connection
    item_gets = item_get_routes(source)

    sim.reset()
    planned = make_plan(url, config=config, clouds_yaml=clouds_yaml,
                        output=tmp / "plans" / "economy.yaml")
    plan_calls = sum(sim.calls("target").values())
    steps = planned.plan.steps
    kinds = Counter(s.kind for s in steps)

    sim.reset()
    rehearsal = execute_plan(url, planned.path,
        ExecuteOptions(dry_run=True, clouds_yaml=clouds_yaml, handle_sigint=False))
    assert rehearsal.dry_run is not None and rehearsal.dry_run.ok, rehearsal.dry_run
    rehearsal_calls = sim.calls("target")
    checks = sum(rehearsal_calls.values())

    sim.reset()
    done = execute_plan(url, planned.path,
        ExecuteOptions(clouds_yaml=clouds_yaml, handle_sigint=False))
    assert done.run is not None and done.run.status == "finished", done.run
    target = sim.calls("target")
    target_total = sum(target.values())
    per_kind, retries = _phase_calls(url)
    phases = sum(sum(v) for v in per_kind.values())
    connection_t = sum(n for r, n in target.items() if CONNECTION_ROUTES.match(r))
    # What is neither a step's phase nor the connection: the pre-run checks (as the dry run
    # makes them, token and versions apart) and the verification reads.
    checks -= sum(n for r, n in rehearsal_calls.items() if CONNECTION_ROUTES.match(r))
    verify_total = target_total - phases - connection_t - checks
    verify_per_step = verify_total / len(steps)

    metrics = [
        Metric("tenants", tenants, "tenants",
               note=f"{len(steps)} resources migrated: "
                    + ", ".join(f"{k} {n}" for k, n in kinds.items())),
        Metric("target_calls_per_resource", target_total / len(steps), "calls",
               target=TARGET_CALLS_PER_RESOURCE, better="lower",
               note=f"{target_total} target calls for {len(steps)} resources: {phases} in "
                    f"the steps' phases, {verify_total} verification reads, {checks} pre-run "
                    f"checks, {connection_t} connection (token, versions); {retries} "
                    "retries"),
    ]
    over, one_off = [], []
    for kind in kinds:
        calls = sorted(per_kind.get(kind) or [0])
        value = sum(calls) / len(calls) + verify_per_step
        typical = calls[len(calls) // 2] + verify_per_step
        if typical > TARGET_CALLS_PER_RESOURCE:
            over.append(kind)
        elif value > TARGET_CALLS_PER_RESOURCE:
            one_off.append(kind)
        metrics.append(Metric(f"target_calls_per_{kind}", value, "calls",
                              target=TARGET_CALLS_PER_RESOURCE, better="lower",
                              note=f"{len(calls)} steps, {sum(calls)} phase calls + "
                                   f"{verify_per_step:.2f} verification read each (median "
                                   f"step {typical:g}): {SEQUENCES.get(kind, '')}"))
    metrics += [
        Metric("target_calls_plan", plan_calls, "calls",
               note="plan: the target's names for clash detection and mappings (constant)"),
        Metric("source_calls_per_tenant", source_total / tenants, "calls",
               note=f"{source_total} discovery calls: {lists} list calls (cloud-wide), "
                    f"{per_owner} per-owner reads (quotas per project, keypairs per user, "
                    f"flavor details), {connection} connection; {found.items} items"),
        Metric("source_per_owner_calls_per_tenant", growing / tenants, "calls",
               target=PER_TENANT_GOAL, better="lower",
               note=f"what grows with the tenants ({growing} calls): 2 quota reads per "
                    "project and 1 keypair list per user, the admin's included (Neutron "
                    "quotas come in one list; flavor details are per flavor)"),
        Metric("source_item_get_routes", len(item_gets), "routes", target=0, better="lower",
               note=", ".join(f"{r} x{n}" for r, n in item_gets.items())
               or "no GET of one resource by id"),
    ]
    if over or one_off:
        metrics.append(Metric(
            "target_kinds_over_goal", len(over), "kinds",
            note="; ".join([f"{k}: {SEQUENCES.get(k, '?')}" for k in over]
                           + [f"{k}: only its first step (a lookup cached for the run)"
                              for k in one_off])))
    return metrics

