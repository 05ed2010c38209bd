"""A fault storm through the CLI: one ``migrator execute``, exit 0, nothing doubled.

Three Liberty tenants (users, networks, routers, security groups, keypairs, quotas, images
shared between them, volumes made from an image and blank ones) are discovered and
planned on a quiet cloud; then, for the whole ``execute``:

- every route of both clouds answers 500 to 5% of the requests and 503 to another 5% (token
  requests and version discovery included);
- every token of both clouds is revoked every couple of seconds (clients meet 401s and must
  authenticate again);
- 10% of the legacy image downloads carry a corrupted byte;
- 10% of the target image uploads are cut after a few bytes.

The configuration gives steps more attempts than the default (byte copies that fail are
retried by their step, with a fresh stream: docs/configuration.md ``retries``). The fault
generator's seed is printed (``MIGRATOR_FAULT_SEED`` replays it; which request meets which
fault also depends on how the worker threads interleave).

Checked afterwards: exit 0 and the run finished; faults of every kind fired and tokens were
renewed; on the target, every collection of the simulator holds each source id at most once
(tags, ``migrator_source_id``, rule descriptions) and each unmarked thing (role assignments,
keypairs, image members, router interfaces) once; every planned step's resource is there,
images and volumes with the legacy bytes; no temporary image is left on either cloud.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
import requests
from click.testing import CliRunner

from migrator.cli.main import cli
from migrator.config import SAMPLE
from migrator.operations.plan import load_plan
from migrator.plan.model import Plan
from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.server import CloudSpec, SimServer
from tests.e2e_support import id_map_rows, run_steps
from tests.timing import replay_seed

KiB = 1 << 10
STORM = [
    {"match": "* /*", "rate": 0.05, "status": 500},
    {"match": "* /*", "rate": 0.05, "status": 503},
]
CORRUPT = {"match": "GET /image/v2/images/*/file", "rate": 0.1, "corrupt_offset": 100}
DROP = {"match": "PUT /image/v2/images/*/file", "rate": 0.1, "drop_after_bytes": 1000}
TOKEN_ROUTE = "POST /identity/v3/auth/tokens"
EXPIRE_EVERY_S = 1.0
RETRIES = """retries:
  step_attempts: 8
  step_backoff: 0.05
  step_backoff_max: 0.5
  call_retries: 4
  call_backoff: 0.02
  call_backoff_max: 0.2
  budget: 100
  budget_refill: 0.2
"""


class Storm:
    """The faults of both clouds, and a thread revoking every token every few seconds."""

    def __init__(self, sim: SimServer) -> None:
        self.bases = {name: f"{sim.cloud(name).base_url}/_sim" for name in sim.clouds}
        self.stop = threading.Event()
        self.expiries = 0
        self.thread = threading.Thread(target=self._expire, name="token-expiry", daemon=True)

    def add(self, cloud: str, rules: list[dict[str, Any]]) -> None:
        requests.post(f"{self.bases[cloud]}/faults", json={"faults": rules},
                      timeout=10).raise_for_status()

    def _expire(self) -> None:
        # The first revocation soon after the start, so that even a quick run meets one.
        delay = EXPIRE_EVERY_S / 4
        while not self.stop.wait(delay):
            delay = EXPIRE_EVERY_S
            for base in self.bases.values():
                requests.post(f"{base}/tokens/expire", json={}, timeout=10).raise_for_status()
            self.expiries += 1

    def start(self) -> None:
        for base in self.bases.values():
            requests.delete(f"{base}/calls", timeout=10).raise_for_status()
        self.thread.start()

    def end(self) -> dict[str, Any]:
        """Stop; the rules as they fired, and the calls, per cloud."""
        self.stop.set()
        self.thread.join()
        out: dict[str, Any] = {}
        for name, base in self.bases.items():
            rules = requests.get(f"{base}/faults", timeout=10).json()["faults"]
            calls = requests.get(f"{base}/calls", timeout=10).json()["calls"]
            requests.delete(f"{base}/faults", timeout=10).raise_for_status()
            out[name] = {"rules": rules, "calls": calls}
        return out


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimServer]:
    fault_seed = replay_seed("MIGRATOR_FAULT_SEED", 20_240_611)
    seed = generate(SeedShape(tenants=3, images_per_tenant=3, volumes_per_tenant=3,
                              image_size=64 * KiB, volume_data_size=32 * KiB))
    (tmp_path / "seed.json").write_text(json.dumps(seed))
    server = SimServer([CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")],
                       tmp_path / "sim", seed=tmp_path / "seed.json",
                       fault_seed=fault_seed).start()
    try:
        yield server
    finally:
        server.stop()


def connect(sim: SimServer, cloud: str) -> openstack.connection.Connection:
    config = openstack.config.loader.OpenStackConfig(
        config_files=[str(sim.clouds_yaml)], secure_files=[], load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=cloud))


def test_one_execute_weathers_the_storm(sim: SimServer, tmp_path: Path) -> None:
    target = connect(sim, "target")
    public = target.network.create_network(name="public", is_router_external=True)
    target.network.create_subnet(network_id=public.id, ip_version=6, cidr="2001:db8:ffff::/64")
    target.block_storage.create_type(name="ssd")
    config = tmp_path / "migrator.yaml"
    sample = SAMPLE[:SAMPLE.index("retries:")]  # the sample's own retries section replaced
    config.write_text(sample.replace("state/passwords.yaml", str(tmp_path / "passwords.yaml"))
                      .replace("volume_types: {}", "volume_types: {standard: __DEFAULT__}")
                      .replace("poll_interval: 2 ", "poll_interval: 0.05") + RETRIES)
    db = f"sqlite:///{tmp_path / 'state.db'}"
    runner = CliRunner()

    def migrator(*args: str) -> Any:
        return runner.invoke(cli, ["--db", db, *args], prog_name="migrator")

    clouds = ["--clouds-yaml", str(sim.clouds_yaml)]
    for args in (["init", "--config", str(config)],
                 ["discover", "--config", str(config), *clouds],
                 ["plan", "--config", str(config), "-o", str(tmp_path / "storm.yaml"), *clouds]):
        result = migrator(*args)
        assert result.exit_code == 0, (args, result.output)
    plan = load_plan(tmp_path / "storm.yaml")

    storm = Storm(sim)
    for cloud in ("legacy", "target"):
        storm.add(cloud, STORM)
    storm.add("legacy", [CORRUPT])
    storm.add("target", [DROP])
    storm.start()
    began = time.monotonic()
    try:
        result = migrator("execute", str(tmp_path / "storm.yaml"), "--workers", "4", *clouds)
    finally:
        fired = storm.end()
    elapsed = time.monotonic() - began
    summary = {cloud: [(r["match"], r.get("status") or ("corrupt" if "corrupt_offset" in r
                                                         else "drop"), r["fired"])
                       for r in data["rules"]] for cloud, data in fired.items()}
    tokens = {cloud: data["calls"].get(TOKEN_ROUTE, 0) for cloud, data in fired.items()}
    print(f"execute took {elapsed:.1f} s; faults fired: {summary}; token requests {tokens} "
          f"across {storm.expiries} revocations")
    assert result.exit_code == 0, result.output[-3000:]
    assert f"Run {plan.name}: finished" in result.output

    # The storm happened: every kind of fault fired, tokens were renewed after revocations.
    for cloud in ("legacy", "target"):
        assert all(n > 0 for _match, _kind, n in summary[cloud]), summary
    assert storm.expiries >= 1
    assert all(n >= 2 for n in tokens.values()), tokens  # authenticated again

    run_id, steps = run_steps(db, plan.name)
    assert {s.state for s in steps.values()} == {"done"}
    assert_nothing_doubled(sim, plan)
    assert_everything_arrived(sim, plan, id_map_rows(db, run_id))


# -- the target, collection by collection ------------------------------------------------------

SOURCE_TAG = "migrator-src-"


def source_mark(record: dict[str, Any]) -> str | None:
    """The source id a target record carries, however its kind marks it."""
    for tag in record.get("tags") or []:
        if isinstance(tag, str) and tag.startswith(SOURCE_TAG):
            return tag[len(SOURCE_TAG):]
    if record.get("migrator_source_id"):
        return str(record["migrator_source_id"])
    meta = record.get("metadata")
    if isinstance(meta, dict) and meta.get("migrator_source_id"):
        return str(meta["migrator_source_id"])
    description = record.get("description")
    if isinstance(description, str) and description.startswith("migrator-src:"):
        return description[len("migrator-src:"):]
    return None


# Things with no source id mark, unique by what they are.
UNMARKED_KEYS = {
    "role_assignments": ("user_id", "project_id", "role_id"),
    "keypairs": ("user_id", "name"),
    "image_members": ("image_id", "member_id"),
}


def target_state(sim: SimServer) -> dict[str, list[dict[str, Any]]]:
    state = sim.cloud("target").state
    return sim.call(lambda: {name: [dict(r) for r in state.values(name)]
                             for name in state.data})  # type: ignore[no-any-return]


def assert_nothing_doubled(sim: SimServer, plan: Plan) -> None:
    state = target_state(sim)
    doubled: dict[str, dict[Any, int]] = {}
    for name, records in state.items():
        marks = Counter(m for m in map(source_mark, records) if m is not None)
        if name in UNMARKED_KEYS:
            marks = Counter(tuple(r.get(k) for k in UNMARKED_KEYS[name]) for r in records)
        if name == "ports":
            marks = Counter((p.get("device_id"), ip.get("subnet_id")) for p in records
                            if p.get("device_owner") == "network:router_interface"
                            for ip in p.get("fixed_ips") or [])
        doubled[name] = {k: n for k, n in marks.items() if n > 1}
    assert not any(doubled.values()), {k: v for k, v in doubled.items() if v}
    leftovers = [(cloud, image["name"]) for cloud in ("legacy", "target")
                 for image in sim.cloud(cloud).state.values("images")
                 if str(image.get("name", "")).startswith("migrator-tmp-")]
    assert not leftovers, leftovers
    # Every marked kind of the plan is on the target exactly once per source id.
    marked = {"project": "projects", "user": "users", "network": "networks",
              "subnet": "subnets", "router": "routers", "security_group": "security_groups",
              "security_group_rule": "security_group_rules", "image": "images",
              "volume": "volumes"}
    for step in plan.steps:
        collection = marked.get(step.kind)
        if collection is None:
            continue
        found = [r for r in state[collection] if source_mark(r) == step.source_id]
        assert len(found) == 1, (step.key, len(found))


def assert_everything_arrived(sim: SimServer, plan: Plan,
                              id_map: dict[tuple[str, str], str]) -> None:
    assert {f"{kind}:{sid}" for kind, sid in id_map} == {s.key for s in plan.steps}
    state = target_state(sim)
    legacy = sim.cloud("legacy").state
    for step in plan.steps:
        target_id = id_map[(step.kind, str(step.source_id))]
        if step.kind == "image":
            got = next(i for i in state["images"] if i["id"] == target_id)
            want = legacy.get("images", str(step.source_id))
            assert want is not None
            assert (got["status"], got.get("size"), got.get("checksum")) == (
                "active", want.get("size"), want.get("checksum")), step.key
        elif step.kind == "volume":
            got = next(v for v in state["volumes"] if v["id"] == target_id)
            want = legacy.get("volumes", str(step.source_id))
            assert want is not None
            assert (got["status"], got["size"]) == ("available", want["size"]), step.key
