"""Simulator per-call cost against the size of the cloud it serves: the same fixed mix of calls
(what ``migrator execute`` asks of a modern target for one tenant: lookups by tag and by name,
creates, grants, quotas, a router with its gateway and interface, a security group and rule,
a keypair, an image with its bytes and a member) answered by a small and by a large cloud.

One process serves two modern clouds from one seed: ``small`` (``MIGRATOR_BENCH_SIM_SMALL``
tenants, default 1,000) and ``large`` (``MIGRATOR_BENCH_SIM_LARGE``, default 20,000); each
tenant brings about 2 users, 2 role assignments, 3 quota sets, a network, a subnet, a router,
2 ports, 2 security groups with 9 rules, a keypair, 2 images and an image member, so the
collections hold roughly N to 9N records. Batches of rounds (a new tenant's calls per round)
alternate between the two clouds; each batch's cost is the CPU time of the simulator's own
thread (``pthread_getcpuclockid``: the client's work is not in it) over the calls it answered.
The result is the median per-call cost per cloud and their ratio, measured in one run, so a
loaded machine moves both alike. The loaded state is frozen out of the garbage collector as
``migrator sim serve`` does, and saves are held off while measuring.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from benchmarks.harness import Metric, benchmark
from migrator.sim.seed import fake_public_key

SMALL = int(os.environ.get("MIGRATOR_BENCH_SIM_SMALL", "1000"))
LARGE = int(os.environ.get("MIGRATOR_BENCH_SIM_LARGE", "20000"))
BATCHES = int(os.environ.get("MIGRATOR_BENCH_SIM_BATCHES", "7"))
ROUNDS = int(os.environ.get("MIGRATOR_BENCH_SIM_ROUNDS", "8"))
RATIO_TARGET = 1.15
IMAGE_BYTES = b"\0" * 4096


class Client:
    """Plain HTTP calls to one simulated cloud, as its admin (no SDK: the client's own cost
    stays small, and it is not measured anyway)."""

    def __init__(self, base: str, password: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.trust_env = False
        self.calls = 0
        token = self.token("admin", password, "admin")
        self.http.headers["X-Auth-Token"] = token
        self.admin_project = self.get("/identity/v3/projects", name="admin")["projects"][0]["id"]
        self.member_role = self.get("/identity/v3/roles", name="member")["roles"][0]["id"]
        self.public_net = self.get("/network/v2.0/networks", name="public")["networks"][0]["id"]

    def call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 202, 204),
             **kwargs: Any) -> Any:
        self.calls += 1
        response = self.http.request(method, f"{self.base}{path}", timeout=60, **kwargs)
        if response.status_code not in ok:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content and response.headers.get(
            "Content-Type", "").startswith("application/json") else None

    def get(self, path: str, **params: str) -> Any:
        return self.call("GET", path, params=params)

    def token(self, user: str, password: str, project: str) -> str:
        self.calls += 1
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "password": password, "domain": {"id": "default"}}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
        response = self.http.post(f"{self.base}/identity/v3/auth/tokens", json=body,
                                  timeout=60, headers={"X-Auth-Token": ""})
        if response.status_code != 201:
            raise RuntimeError(f"token: {response.status_code} {response.text[:300]}")
        return str(response.headers["X-Subject-Token"])

    def tenant(self, tag: str) -> None:
        """The calls for one new tenant ``tag`` (about 45)."""
        src = f"migrator-src-{tag}"
        name = f"bench-{tag}"
        self.get("/identity/v3/projects", tags=src)
        self.get("/identity/v3/projects", name=name, domain_id="default")
        pid = self.call("POST", "/identity/v3/projects", json={"project": {
            "name": name, "domain_id": "default", "tags": [src]}})["project"]["id"]
        self.get(f"/identity/v3/projects/{pid}")
        self.get("/identity/v3/users", name=f"{name}-user", domain_id="default")
        uid = self.call("POST", "/identity/v3/users", json={"user": {
            "name": f"{name}-user", "domain_id": "default", "password": "pw",
            "default_project_id": pid, "description": src}})["user"]["id"]
        self.call("PATCH", f"/identity/v3/users/{uid}", json={"user": {"email": "a@b.c"}})
        self.get("/identity/v3/roles", name="member")
        grant = f"/identity/v3/projects/{pid}/users/{uid}/roles/{self.member_role}"
        self.call("PUT", grant)
        self.call("HEAD", grant)
        self.get("/identity/v3/role_assignments", **{"user.id": uid, "scope.project.id": pid})
        self.token(f"{name}-user", "pw", name)
        self.call("PUT", f"/compute/v2.1/os-quota-sets/{pid}",
                  json={"quota_set": {"instances": 20}})
        self.call("PUT", f"/network/v2.0/quotas/{pid}", json={"quota": {"network": 20}})
        self.call("PUT", f"/volume/v3/{self.admin_project}/os-quota-sets/{pid}",
                  json={"quota_set": {"volumes": 20}})
        self.get("/network/v2.0/networks", tags=f"{src}-net")
        net = self.call("POST", "/network/v2.0/networks", json={"network": {
            "name": "net", "project_id": pid, "tags": [f"{src}-net"]}})["network"]["id"]
        self.get("/network/v2.0/subnets", tags=f"{src}-subnet")
        subnet = self.call("POST", "/network/v2.0/subnets", json={"subnet": {
            "network_id": net, "project_id": pid, "ip_version": 6, "name": "subnet",
            "cidr": "2001:db8:1::/64", "tags": [f"{src}-subnet"]}})["subnet"]["id"]
        self.get("/network/v2.0/routers", tags=f"{src}-router")
        router = self.call("POST", "/network/v2.0/routers", json={"router": {
            "name": "router", "project_id": pid, "tags": [f"{src}-router"],
            "external_gateway_info": {"network_id": self.public_net}}})["router"]["id"]
        self.call("PUT", f"/network/v2.0/routers/{router}/add_router_interface",
                  json={"subnet_id": subnet})
        self.get("/network/v2.0/ports", device_id=router)
        self.get("/network/v2.0/security-groups", tags=f"{src}-sg")
        group = self.call("POST", "/network/v2.0/security-groups", json={"security_group": {
            "name": "web", "project_id": pid, "tags": [f"{src}-sg"]}})["security_group"]["id"]
        self.get("/network/v2.0/security-group-rules", security_group_id=group)
        self.call("POST", "/network/v2.0/security-group-rules", json={"security_group_rule": {
            "security_group_id": group, "direction": "ingress", "ethertype": "IPv6",
            "protocol": "tcp", "port_range_min": 443, "port_range_max": 443,
            "description": f"{src}-rule"}})
        self.get(f"/network/v2.0/networks/{net}")
        self.call("PUT", f"/network/v2.0/networks/{net}", json={"network": {
            "description": "renamed"}})
        self.call("GET", f"/compute/v2.1/os-keypairs/key-{tag}", ok=(404,),
                  params={"user_id": uid})
        self.call("POST", "/compute/v2.1/os-keypairs", headers={
            "OpenStack-API-Version": "compute 2.10", "X-OpenStack-Nova-API-Version": "2.10"},
            json={"keypair": {"name": f"key-{tag}", "user_id": uid,
                              "public_key": fake_public_key(f"key-{tag}")}})
        self.get("/image/v2/images", tag=f"{src}-image", visibility="all")
        image = self.call("POST", "/image/v2/images", json={
            "name": f"image-{tag}", "disk_format": "raw", "container_format": "bare",
            "owner": pid, "visibility": "shared", "tags": [f"{src}-image"]})["id"]
        self.call("PUT", f"/image/v2/images/{image}/file", data=IMAGE_BYTES,
                  headers={"Content-Type": "application/octet-stream"})
        self.get(f"/image/v2/images/{image}")
        self.call("POST", f"/image/v2/images/{image}/members",
                  json={"member": self.admin_project})
        self.call("PUT", f"/image/v2/images/{image}/members/{self.admin_project}",
                  json={"status": "accepted"})
        self.get(f"/image/v2/images/{image}/members/{self.admin_project}")
        self.get("/image/v2/images", owner=pid)


def thread_cpu(thread_id: int) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread_id))


def seed_doc(sizes: dict[str, int]) -> dict[str, Any]:
    from migrator.sim.seed_gen import SeedShape, generate

    clouds: dict[str, Any] = {}
    for cloud, tenants in sizes.items():
        clouds.update(generate(SeedShape(tenants=tenants, volumes_per_tenant=0,
                                         image_size=4096, content_pool=4, mislabelled=0,
                                         own_credentials=0), cloud=cloud)["clouds"])
    return {"clouds": clouds}


def measure(small: int, large: int, batches: int, rounds: int) -> dict[str, Any]:
    """Per-call simulator CPU (ms) of each cloud per batch, and the sizes of their stores."""
    from migrator.sim.server import CloudSpec, SavePolicy, SimServer

    sizes = {"small": small, "large": large}
    with tempfile.TemporaryDirectory(prefix="migrator-bench-sim-scaling-") as tmp:
        seed = Path(tmp) / "seed.json"
        seed.write_text(json.dumps(seed_doc(sizes)))
        never = SavePolicy(quiet=1e9, max_delay=1e9)
        server = SimServer([CloudSpec(name, "modern") for name in sizes], Path(tmp) / "sim",
                           seed=seed, save_policy=never, freeze_loaded_state=True).start()
        try:
            sim_thread = server.thread_id
            assert sim_thread is not None
            records = {name: {k: len(v) for k, v in server.cloud(name).state.data.items()
                              if v} for name in sizes}
            clients = {}
            for name in sizes:
                cloud = server.cloud(name)
                admin = cloud.state.find_one("users", name="admin")
                assert admin is not None
                clients[name] = Client(cloud.listen_url, admin["password"])
            # Warmed up (two tenants each): first-call caches, and the first address search
            # on the public network, which walks past the seeded gateways once.
            for name, client in clients.items():
                for n in range(2):
                    client.tenant(f"{name}-warm-{n}")
            measured = 0
            per_call: dict[str, list[float]] = {name: [] for name in sizes}
            for batch in range(batches):
                for name, client in clients.items():
                    calls = client.calls
                    began = thread_cpu(sim_thread)
                    for n in range(rounds):
                        client.tenant(f"{name}-{batch}-{n}")
                    spent = thread_cpu(sim_thread) - began
                    per_call[name].append(1000 * spent / (client.calls - calls))
                    measured += client.calls - calls
            calls_per_round = measured / (2 * batches * rounds)
        finally:
            server.stop()
            gc.unfreeze()
    return {"per_call_ms": per_call, "records": records, "calls_per_round": calls_per_round}


@benchmark("sim_scaling", f"simulator CPU per call for a fixed call mix at {SMALL:,} and "
           f"{LARGE:,} tenants (one process, batches interleaved, median of {BATCHES})")
def sim_scaling() -> list[Metric]:
    result = measure(SMALL, LARGE, BATCHES, ROUNDS)
    small = statistics.median(result["per_call_ms"]["small"])
    large = statistics.median(result["per_call_ms"]["large"])
    spread = {name: " ".join(f"{v:.3f}" for v in values)
              for name, values in result["per_call_ms"].items()}
    biggest = {name: max(counts.values()) for name, counts in result["records"].items()}
    return [
        Metric("small_sim_cpu_ms_per_call", small, "ms", better="lower",
               note=f"{SMALL:,} tenants (largest collection {biggest['small']:,} records); "
                    f"batches: {spread['small']}"),
        Metric("large_sim_cpu_ms_per_call", large, "ms", better="lower",
               note=f"{LARGE:,} tenants (largest collection {biggest['large']:,} records); "
                    f"batches: {spread['large']}"),
        Metric("large_over_small", large / small, "x", target=RATIO_TARGET, better="lower",
               note=f"{ROUNDS} tenants' calls per batch, "
                    f"{result['calls_per_round']:.0f} calls each"),
    ]
