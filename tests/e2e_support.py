"""The world of the end-to-end tests (tests/test_tenants_e2e.py): a seeded Liberty cloud and an
empty modern one, served by the simulator over real HTTP, a state database, a configuration,
and the checks of what arrived on the target.

The legacy cloud (3 tenants from ``seed_gen``) is read the way a cloud with incomplete admin
rights is read:

- ``source.cloud`` is ``legacy-operator``, a NON-admin user holding ``_member_`` on physics and
  chemistry only (tests/clouds/legacy_sim.py): physics is read with the operator's token
  rescoped to it;
- chemistry is read with its own credentials (``legacy-chemistry-user0``), although the
  operator could read it too;
- biology is readable ONLY with its own credentials (``legacy-biology-user0``): the operator
  does not even see it.

biology's router also has an interface on the admin's shared network ``shared-net`` (mapped to
the target's ``shared-net`` through ``mappings.shared_networks``), and chemistry's ``db`` group
has a rule whose remote group is physics's ``web`` group (another project).

:func:`assert_migrated` checks every migrated resource on the target against the legacy cloud
as an admin reads it, with the translation rules restated here (not imported from the
planner); :func:`assert_no_duplicates` lists every kind on the target.
"""

from __future__ import annotations

import ipaddress
import json
import math
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openstack
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from migrator.cli.main import cli
from migrator.clouds.target import fingerprint, source_tag
from migrator.plan.model import Plan
from migrator.sim.seed_gen import SeedShape, generate
from migrator.sim.server import CloudSpec, SimServer
from migrator.store.db import make_engine, session_factory
from migrator.store.models import Event, IdMap, Run, Step
from migrator.store.models import Plan as PlanRow
from tests.clouds.legacy_sim import add_operator
from tests.sim.conftest import Admin

TENANTS = ("physics", "chemistry", "biology")
IPV6_PREFIX = "2001:db8:100::/48"
IPV6_MODE = "dhcpv6-stateful"
DNS = ["2001:db8::53"]
QUOTA_FACTOR = 2
FIXED = {"compute": {"instances": 7}}
# Nova-network era compute quota keys: refused by the target from microversion 2.36 on.
NOVA_NETWORK_KEYS = ("floating_ips", "fixed_ips", "security_groups", "security_group_rules",
                     "networks")
# Which legacy user's token reads each tenant (so: whose user, role and keypairs migrate).
READERS = {"physics": "operator", "chemistry": "chemistry-user0", "biology": "biology-user0"}
SHARED_TENANT = "biology"
MIGRATED_KINDS = ("project", "quota", "user", "role_assignment", "network", "subnet", "router",
                  "router_interface", "security_group", "security_group_rule", "keypair")


def connect(clouds_yaml: Path, cloud: str) -> openstack.connection.Connection:
    config = openstack.config.loader.OpenStackConfig(
        config_files=[str(clouds_yaml)], secure_files=[], load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=cloud))


def config_text(root: Path, **override: Any) -> str:
    data: dict[str, Any] = {
        "source": {"cloud": "legacy-operator",
                   "tenant_credentials": {"chemistry": "legacy-chemistry-user0",
                                          "biology": "legacy-biology-user0"}},
        "target": {"cloud": "target", "domain": "Default"},
        "selection": {"tenants": [], "exclude": ["admin", "service"]},
        "mappings": {"roles": {"_member_": "member"},
                     "external_networks": {"public": "public"},
                     "shared_networks": {"shared-net": "shared-net"}},
        "address_plan": {"ipv6_prefix": IPV6_PREFIX, "ipv6_mode": IPV6_MODE,
                         "dns_nameservers": DNS},
        "quotas": {"policy": "scale", "factor": QUOTA_FACTOR, "fixed": FIXED},
        "users": {"password_policy": "random",
                  "password_file": str(root / "passwords.yaml")},
        "conflicts": {"default": "fail"},
    }
    for dotted, value in override.items():
        node = data
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return yaml.safe_dump(data, sort_keys=False)


@dataclass
class World:
    root: Path
    sim: SimServer
    db_url: str
    config: Path
    legacy: openstack.connection.Connection  # admin
    target: openstack.connection.Connection  # admin
    public_id: str
    shared_subnet_id: str  # the target's IPv6 subnet of shared-net
    runner: CliRunner = field(default_factory=CliRunner)

    @property
    def clouds_yaml(self) -> Path:
        return self.sim.clouds_yaml

    def admin(self, cloud: str) -> Admin:
        return Admin(self.sim, cloud)

    def cli(self, *args: str) -> Result:
        """``migrator --db URL ARGS`` in-process; ``--clouds-yaml`` is added where taken."""
        extra = ["--clouds-yaml", str(self.clouds_yaml)] if args[0] in (
            "discover", "plan", "execute") else []
        return self.runner.invoke(cli, ["--db", self.db_url, *args, *extra],
                                  prog_name="migrator")

    def write_config(self, **override: Any) -> Path:
        self.config.write_text(config_text(self.root, **override))
        return self.config

    def stop(self) -> None:
        self.sim.stop()


def start_world(root: Path, *, tenants: int = 3, tls: bool = False) -> World:
    """Both clouds served, the legacy one prepared (operator, shared-net interface), the
    target's external and shared networks created, the state database and config written."""
    root.mkdir(parents=True, exist_ok=True)
    # No images or volumes: their data path is issue 5's (tests/transfer/); this world holds
    # the tenant kinds only, so that its plans are exactly those.
    seed = generate(SeedShape(tenants=tenants, images_per_tenant=0, volumes_per_tenant=0,
                              own_credentials=tenants))
    (root / "seed.json").write_text(json.dumps(seed))
    sim = SimServer([CloudSpec("legacy", "liberty"), CloudSpec("target", "modern")],
                    root / "sim", seed=root / "seed.json", tls=tls).start()
    try:
        add_operator(sim, member_of=["physics", "chemistry"], home="physics")
        legacy = connect(sim.clouds_yaml, "legacy")
        shared_subnet = legacy.network.find_subnet("shared-subnet")
        router = legacy.network.find_router(f"{SHARED_TENANT}-router")
        assert shared_subnet is not None and router is not None
        response = legacy.network.put(f"/routers/{router.id}/add_router_interface",
                                      json={"subnet_id": shared_subnet.id})
        assert response.status_code == 200, response.text
        target = connect(sim.clouds_yaml, "target")
        public = target.network.create_network(name="public", is_router_external=True)
        target.network.create_subnet(network_id=public.id, ip_version=6, name="public-v6",
                                     cidr="2001:db8:ffff::/64")
        shared = target.network.create_network(name="shared-net", is_shared=True)
        shared_v6 = target.network.create_subnet(
            network_id=shared.id, ip_version=6, name="shared-v6", cidr="2001:db8:fffe::/64",
            ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
        world = World(root=root, sim=sim, db_url=f"sqlite:///{root / 'state.db'}",
                      config=root / "migrator.yaml", legacy=legacy, target=target,
                      public_id=public.id, shared_subnet_id=shared_v6.id)
        world.write_config()
        result = world.cli("init", "--config", str(world.config))
        assert result.exit_code == 0, result.output
    except BaseException:
        sim.stop()
        raise
    return world


def copy_state(world: World, name: str) -> str:
    """A copy of the state database (e.g. right after discovery) for another scenario."""
    path = world.root / f"{name}.db"
    shutil.copy(world.root / "state.db", path)
    return f"sqlite:///{path}"


# -- the state database --------------------------------------------------------------------


def db_rows(url: str) -> dict[str, int]:
    """Rows of the tables a plan or a run writes (snapshots excluded)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {m.__tablename__: int(conn.execute(select(func.count()).select_from(m))
                                         .scalar_one()) for m in (PlanRow, Run, Step, IdMap,
                                                                  Event)}
    finally:
        engine.dispose()


def run_steps(url: str, run_name: str) -> tuple[int, dict[str, Step]]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            run = session.scalars(select(Run).where(Run.name == run_name)).one()
            steps = session.scalars(select(Step).where(Step.run_id == run.id)).all()
            return run.id, {s.key: s for s in steps}
    finally:
        engine.dispose()


def run_events(url: str, run_id: int) -> list[Event]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return list(session.scalars(select(Event).where(Event.run_id == run_id)
                                        .order_by(Event.id)).all())
    finally:
        engine.dispose()


def id_map_rows(url: str, run_id: int) -> dict[tuple[str, str], str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(IdMap.kind, IdMap.source_id, IdMap.target_id)
                                .where(IdMap.run_id == run_id)).all()
            return {(r.kind, r.source_id): r.target_id for r in rows}
    finally:
        engine.dispose()


# -- the target, listed ----------------------------------------------------------------------


def _list(conn: openstack.connection.Connection, service: str, path: str, key: str,
          **params: Any) -> list[dict[str, Any]]:
    proxy = getattr(conn, service)
    response = proxy.get(path, params=params)
    assert response.status_code == 200, (path, response.status_code, response.text)
    entries: list[dict[str, Any]] = response.json()[key]
    return entries


def target_inventory(conn: openstack.connection.Connection) -> dict[str, set[str]]:
    """Every resource id on the target, per kind (what 'nothing written' compares)."""
    out: dict[str, set[str]] = {}
    for kind, service, path, key in (
            ("project", "identity", "/projects", "projects"),
            ("user", "identity", "/users", "users"),
            ("network", "network", "/networks", "networks"),
            ("subnet", "network", "/subnets", "subnets"),
            ("router", "network", "/routers", "routers"),
            ("port", "network", "/ports", "ports"),
            ("security_group", "network", "/security-groups", "security_groups"),
            ("security_group_rule", "network", "/security-group-rules",
             "security_group_rules")):
        out[kind] = {str(e["id"]) for e in _list(conn, service, path, key)}
    out["role_assignment"] = {
        f"{a['user']['id']}:{a['scope'].get('project', {}).get('id')}:{a['role']['id']}"
        for a in _list(conn, "identity", "/role_assignments", "role_assignments")
        if "user" in a}
    out["keypair"] = {f"{u}:{k['keypair']['name']}" for u in out["user"]
                      for k in _keypairs(conn, u)}
    return out


def _keypairs(conn: openstack.connection.Connection, user_id: str) -> list[dict[str, Any]]:
    response = conn.compute.get("/os-keypairs", params={"user_id": user_id},
                                microversion="2.10")
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["keypairs"]
    return entries


def assert_no_duplicates(conn: openstack.connection.Connection) -> dict[str, int]:
    """List every kind on the target: one resource per source id (tag, extra attribute or
    rule description) and per name in its project; returns the migrated count per kind."""
    counts: dict[str, int] = {}

    def unique(kind: str, marks: list[str | None]) -> None:
        found = [m for m in marks if m]
        dupes = {m: n for m, n in Counter(found).items() if n > 1}
        assert not dupes, f"duplicate {kind} on the target: {dupes}"
        counts[kind] = len(found)

    def tag_of(entry: dict[str, Any]) -> str | None:
        return next((t for t in entry.get("tags") or [] if t.startswith("migrator-src-")), None)

    projects = _list(conn, "identity", "/projects", "projects")
    unique("project", [tag_of(p) for p in projects])
    unique("project name", [f"{p['domain_id']}/{p['name']}" for p in projects])
    users = _list(conn, "identity", "/users", "users")
    unique("user", [u.get("migrator_source_id") for u in users])
    unique("user name", [f"{u['domain_id']}/{u['name']}" for u in users])
    for kind, path, key in (("network", "/networks", "networks"),
                            ("subnet", "/subnets", "subnets"),
                            ("router", "/routers", "routers"),
                            ("security_group", "/security-groups", "security_groups")):
        entries = _list(conn, "network", path, key)
        unique(kind, [tag_of(e) for e in entries])
        unique(f"{kind} name", [f"{e['project_id']}/{e.get('network_id', '')}/{e['name']}"
                                for e in entries])
    rules = _list(conn, "network", "/security-group-rules", "security_group_rules")
    unique("security_group_rule", [r["description"] for r in rules
                                   if str(r.get("description") or "").startswith(
                                       "migrator-src:")])
    unique("security_group_rule content", [json.dumps(
        [r[k] for k in ("security_group_id", "direction", "ethertype", "protocol",
                        "port_range_min", "port_range_max", "remote_ip_prefix",
                        "remote_group_id")]) for r in rules])
    ports = _list(conn, "network", "/ports", "ports", device_owner="network:router_interface")
    unique("router_interface", [f"{p['device_id']}/{ip['subnet_id']}" for p in ports
                                for ip in p["fixed_ips"]])
    keypairs: list[str | None] = []
    for user in users:
        keypairs += [f"{user['id']}/{k['keypair']['name']}" for k in _keypairs(conn, user["id"])]
    unique("keypair", keypairs)
    return counts


# -- the translation, restated ---------------------------------------------------------------

PROTOCOLS = {"1": "icmp", "6": "tcp", "17": "udp", "icmpv6": "ipv6-icmp", "58": "ipv6-icmp"}


def _auto_rule(rule: dict[str, Any], group: dict[str, Any]) -> bool:
    """A rule Neutron creates by itself in a new group (legacy and target alike)."""
    bare = all(rule.get(k) in (None, "") for k in ("protocol", "port_range_min",
                                                   "port_range_max", "remote_ip_prefix"))
    if rule["direction"] == "egress" and bare and not rule.get("remote_group_id"):
        return True
    return bool(group["name"] == "default" and bare and rule["direction"] == "ingress"
                and rule.get("remote_group_id") == group["id"])


def expected_rule(rule: dict[str, Any], subnet_cidrs: dict[str, str],
                  group_ids: dict[str, str]) -> tuple[Any, ...]:
    """(direction, ethertype, protocol, ports, remote prefix, remote group) on the target."""
    protocol = rule.get("protocol")
    if protocol is not None:
        protocol = PROTOCOLS.get(str(protocol).lower(), str(protocol).lower())
        if protocol == "icmp":
            protocol = "ipv6-icmp"
    prefix = rule.get("remote_ip_prefix")
    if prefix:
        net = ipaddress.ip_network(prefix)
        if net.version == 4:
            prefix = ("::/0" if net.prefixlen == 0 else subnet_cidrs.get(str(net))
                      or (IPV6_PREFIX if net.is_private else None))
    ports = ((rule.get("port_range_min"), rule.get("port_range_max"))
             if protocol in ("tcp", "udp") else (None, None))
    remote = rule.get("remote_group_id")
    return (rule["direction"], "IPv6", protocol, *ports, prefix,
            group_ids[remote] if remote else None)


def target_rule(rule: dict[str, Any]) -> tuple[Any, ...]:
    return (rule["direction"], rule["ethertype"], rule.get("protocol"),
            rule.get("port_range_min"), rule.get("port_range_max"),
            rule.get("remote_ip_prefix"), rule.get("remote_group_id"))


def scaled(service: str, key: str, value: int) -> int:
    fixed = FIXED.get(service, {})
    if key in fixed:
        return fixed[key]
    return value if value < 0 else math.ceil(value * QUOTA_FACTOR)


# -- what arrived ----------------------------------------------------------------------------


@dataclass
class Report:
    checked: Counter[str] = field(default_factory=Counter)


def _one(conn: openstack.connection.Connection, service: str, path: str, key: str,
         source_id: str, what: str) -> dict[str, Any]:
    found = _list(conn, service, path, key, tags=source_tag(source_id))
    assert len(found) == 1, f"{what} (legacy {source_id}): {len(found)} on the target"
    return found[0]


def assert_migrated(world: World, plan: Plan, url: str, run_name: str) -> Report:
    """Every migrated resource's translated fields on the target, read through openstacksdk,
    against the legacy cloud as its admin reads it; the plan's steps are exactly those
    resources; every step done; the id map complete (each id exists on the target)."""
    legacy, target = world.legacy, world.target
    report = Report()
    checked = report.checked
    run_id, steps = run_steps(url, run_name)
    assert {s.state for s in steps.values()} == {"done"}, Counter(s.state
                                                                  for s in steps.values())
    expected_keys: set[str] = set()

    # Projects: a v3 project in the Default domain, the name and description kept, tagged.
    l_projects = {p["name"]: p for p in _list(legacy, "identity", "/projects", "projects")}
    projects: dict[str, str] = {}  # legacy project id -> target project id
    for name in TENANTS:
        lp = l_projects[name]
        tp = target.identity.get(f"/projects/{_one_project(target, lp['id'])}").json()[
            "project"]
        assert (tp["name"], tp["domain_id"], tp["description"], tp["enabled"]) == (
            name, "default", lp["description"], True), tp
        assert source_tag(lp["id"]) in tp["tags"]
        projects[lp["id"]] = tp["id"]
        expected_keys.add(f"project:{lp['id']}")
        checked["project"] += 1
    by_tenant = {l_projects[n]["id"]: n for n in TENANTS}

    # Users and role assignments: the user whose token read the tenant, with its source id
    # in an extra attribute, default project mapped, _member_ -> member; its password (from
    # the password file) logs in on the target.
    l_users = {u["name"]: u for u in _list(legacy, "identity", "/users", "users")}
    t_roles = {r["id"]: r["name"] for r in _list(target, "identity", "/roles", "roles")}
    l_roles = {r["id"]: r["name"] for r in _list(legacy, "identity", "/roles", "roles")}
    passwords = yaml.safe_load((world.root / "passwords.yaml").read_text())
    users: dict[str, str] = {}  # legacy user id -> target user id
    for tenant, name in READERS.items():
        lu = l_users[name]
        [tu] = [u for u in _list(target, "identity", "/users", "users", name=name)]
        assert tu["migrator_source_id"] == lu["id"]
        assert (tu["domain_id"], tu["enabled"], tu.get("email")) == (
            "default", True, lu.get("email")), tu
        assert tu["default_project_id"] == projects[lu["default_project_id"]]
        users[lu["id"]] = tu["id"]
        expected_keys.add(f"user:{lu['id']}")
        checked["user"] += 1
        project = l_projects[tenant]["id"]
        legacy_roles = [a for a in _list(legacy, "identity", "/role_assignments",
                                         "role_assignments", **{"user.id": lu["id"]})
                        if a["scope"].get("project", {}).get("id") == project]
        assert [l_roles[a["role"]["id"]] for a in legacy_roles] == ["_member_"]
        expected_keys.add(f"role_assignment:{lu['id']}:{project}:{legacy_roles[0]['role']['id']}")
        have = [(a["scope"]["project"]["id"], t_roles[a["role"]["id"]]) for a in _list(
            target, "identity", "/role_assignments", "role_assignments", **{"user.id": tu["id"]})]
        assert have == [(projects[project], "member")], (name, have)
        checked["role_assignment"] += 1
        auth_url = target.session.get_endpoint(service_type="identity")
        assert auth_url
        login = openstack.connect(
            auth_url=auth_url.rstrip("/"),
            username=name, password=passwords[name], project_id=projects[project],
            user_domain_id="default", project_domain_id="default", identity_api_version="3",
            load_yaml_config=False, load_envvars=False,
            cacert=str(world.sim.cacert) if world.sim.cacert else None)
        assert login.session.get_project_id() == projects[project]

    # Quotas: the policy applied (scale x2, instances fixed at 7) to every key both sides
    # know; what the target refuses (nova-network keys, per-type volume keys) left out and
    # listed in the step's checkpoint.
    for lpid, tpid in projects.items():
        for service, lpath, tget in (
                ("compute", f"/os-quota-sets/{lpid}", lambda p: target.compute.get(
                    f"/os-quota-sets/{p}", microversion="2.90")),
                ("volume", f"/os-quota-sets/{lpid}", lambda p: target.block_storage.get(
                    f"/os-quota-sets/{p}")),
                ("network", f"/quotas/{lpid}", lambda p: target.network.get(f"/quotas/{p}"))):
            proxy = {"compute": legacy.compute, "volume": legacy.block_storage,
                     "network": legacy.network}[service]
            raw = proxy.get(lpath).json()
            lq = {k: v for k, v in (raw.get("quota_set") or raw.get("quota")).items()
                  if k != "id"}
            body = tget(tpid).json()
            tq = body.get("quota_set") or body.get("quota")
            step = steps[f"quota:{service}:{lpid}"]
            dropped = step.checkpoint.get("dropped") or {}
            for key, value in lq.items():
                if key in tq:
                    assert tq[key] == scaled(service, key, value), (service, key, tq[key])
                else:
                    assert key in dropped, (service, key, dropped)
            expected_keys.add(f"quota:{service}:{lpid}")
            checked["quota"] += 1
        assert set(NOVA_NETWORK_KEYS) & set(steps[f"quota:compute:{lpid}"].checkpoint[
            "dropped"]) >= {"floating_ips", "security_groups", "security_group_rules"}
        # At microversion 2.1 the target still shows nova-network keys: untouched defaults.
        old = target.compute.get(f"/os-quota-sets/{tpid}").json()["quota_set"]
        assert old["floating_ips"] != scaled("compute", "floating_ips", 10)

    # Networks and subnets: tagged, in the mapped project; each IPv4 subnet became an IPv6
    # /64 of the address plan with the configured RA/address modes and DNS servers.
    l_nets = _list(legacy, "network", "/networks", "networks")
    l_subnets = _list(legacy, "network", "/subnets", "subnets")
    nets: dict[str, str] = {}
    subnets: dict[str, str] = {}
    subnet_cidrs: dict[str, str] = {}  # legacy IPv4 cidr -> target IPv6 cidr
    for ln in l_nets:
        if ln["tenant_id"] not in by_tenant:
            continue
        tn = _one(target, "network", "/networks", "networks", ln["id"], "network")
        assert (tn["name"], tn["project_id"], tn["admin_state_up"], tn["shared"],
                tn["router:external"]) == (ln["name"], projects[ln["tenant_id"]],
                                           ln["admin_state_up"], False, False), tn
        if ln.get("mtu"):
            assert tn["mtu"] == ln["mtu"]
        nets[ln["id"]] = tn["id"]
        expected_keys.add(f"network:{ln['id']}")
        checked["network"] += 1
    prefix = ipaddress.IPv6Network(IPV6_PREFIX)
    for ls in l_subnets:
        if ls["tenant_id"] not in by_tenant:
            continue
        ts = _one(target, "network", "/subnets", "subnets", ls["id"], "subnet")
        cidr = ipaddress.IPv6Network(ts["cidr"])
        assert cidr.prefixlen == 64 and cidr.subnet_of(prefix), ts
        planned = next(s for s in plan.steps if s.key == f"subnet:{ls['id']}")
        assert planned.spec["attrs"]["cidr"] == ts["cidr"]
        assert (ts["name"], ts["network_id"], ts["project_id"], ts["ip_version"],
                ts["ipv6_ra_mode"], ts["ipv6_address_mode"], ts["dns_nameservers"],
                ts["enable_dhcp"]) == (ls["name"], nets[ls["network_id"]],
                                       projects[ls["tenant_id"]], 6, IPV6_MODE, IPV6_MODE,
                                       DNS, True), ts
        assert ipaddress.ip_address(ts["gateway_ip"]) in cidr
        subnets[ls["id"]] = ts["id"]
        subnet_cidrs[ls["cidr"]] = ts["cidr"]
        expected_keys.add(f"subnet:{ls['id']}")
        checked["subnet"] += 1
    assert len(set(subnet_cidrs.values())) == len(subnet_cidrs)  # one /64 each
    # The admin's networks are mapped, not migrated.
    for ln in l_nets:
        if ln["name"] in ("public", "shared-net"):
            assert not _list(target, "network", "/networks", "networks",
                             tags=source_tag(ln["id"]))
    shared = next(s for s in l_subnets if s["name"] == "shared-subnet")
    subnets[shared["id"]] = world.shared_subnet_id

    # Routers: gateway on the mapped external network, an interface per legacy interface
    # (biology's on the target's shared-net).
    l_ports = _list(legacy, "network", "/ports", "ports",
                    device_owner="network:router_interface")
    for lr in _list(legacy, "network", "/routers", "routers"):
        if lr["tenant_id"] not in by_tenant:
            continue
        tr = _one(target, "network", "/routers", "routers", lr["id"], "router")
        assert (tr["name"], tr["project_id"], tr["admin_state_up"]) == (
            lr["name"], projects[lr["tenant_id"]], lr["admin_state_up"])
        assert tr["external_gateway_info"]["network_id"] == world.public_id
        attached = {subnets[ip["subnet_id"]] for p in l_ports if p["device_id"] == lr["id"]
                    for ip in p["fixed_ips"]}
        have = [ip["subnet_id"] for p in _list(target, "network", "/ports", "ports",
                                               device_id=tr["id"],
                                               device_owner="network:router_interface")
                for ip in p["fixed_ips"]]
        assert sorted(have) == sorted(attached), (lr["name"], have, attached)
        if by_tenant[lr["tenant_id"]] == SHARED_TENANT:
            assert world.shared_subnet_id in have
        expected_keys.add(f"router:{lr['id']}")
        expected_keys.update(f"router_interface:{lr['id']}:{ip['subnet_id']}"
                             for p in l_ports if p["device_id"] == lr["id"]
                             for ip in p["fixed_ips"])
        checked["router"] += 1
        checked["router_interface"] += len(attached)

    # Security groups and rules: every group (the default one adopted), every rule the
    # legacy group has beyond Neutron's own, translated to IPv6, remote groups mapped to the
    # target group (chemistry's db -> physics's web), marked with its source id.
    l_groups = [g for g in _list(legacy, "network", "/security-groups", "security_groups")
                if g["tenant_id"] in by_tenant]
    groups = {g["id"]: _one(target, "network", "/security-groups", "security_groups",
                            g["id"], "security group") for g in l_groups}
    group_ids = {lid: tg["id"] for lid, tg in groups.items()}
    remote_across = 0
    for lg in l_groups:
        tg = groups[lg["id"]]
        assert (tg["name"], tg["project_id"]) == (lg["name"], projects[lg["tenant_id"]])
        if lg["name"] != "default":
            assert tg["description"] == lg["description"]
        expected_keys.add(f"security_group:{lg['id']}")
        checked["security_group"] += 1
        want: dict[str, tuple[Any, ...]] = {}
        for rule in lg["security_group_rules"]:
            if _auto_rule(rule, lg):
                continue
            want[rule["id"]] = expected_rule(rule, subnet_cidrs, group_ids)
            if rule.get("remote_group_id") and groups[rule["remote_group_id"]][
                    "project_id"] != tg["project_id"]:
                remote_across += 1
        t_rules = _list(target, "network", "/security-group-rules", "security_group_rules",
                        security_group_id=tg["id"])
        mine = {r["description"].removeprefix("migrator-src:"): target_rule(r)
                for r in t_rules if (r.get("description") or "").startswith("migrator-src:")}
        others = [r for r in t_rules if not (r.get("description") or "").startswith(
            "migrator-src:")]
        assert mine == want, (lg["tenant_id"], lg["name"], mine, want)
        assert all(_auto_rule(r, tg) for r in others), others
        expected_keys.update(f"security_group_rule:{rid}" for rid in want)
        checked["security_group_rule"] += len(want)
    assert remote_across >= 1  # chemistry's db rule on physics's web group

    # Keypairs: recreated for the right (target) user, same public key and fingerprint.
    for tenant, name in READERS.items():
        lu = l_users[name]
        for entry in _keypairs(legacy, lu["id"]):
            lk = entry["keypair"]
            response = target.compute.get(f"/os-keypairs/{lk['name']}",
                                          params={"user_id": users[lu["id"]]},
                                          microversion="2.10")
            assert response.status_code == 200, (tenant, lk["name"], response.text)
            tk = response.json()["keypair"]
            assert (tk["public_key"], tk["fingerprint"], tk["user_id"], tk["type"]) == (
                lk["public_key"], lk["fingerprint"], users[lu["id"]], "ssh")
            assert fingerprint(tk["public_key"]) == lk["fingerprint"]
            expected_keys.add(f"keypair:{lu['id']}:{lk['name']}")
            checked["keypair"] += 1
    assert checked["keypair"] == 2  # chemistry's and biology's; the operator has none

    # The plan holds exactly these resources, and the id map every one of them.
    assert {s.key for s in plan.steps} == expected_keys
    assert set(steps) == expected_keys
    mapping = id_map_rows(url, run_id)
    assert {f"{k}:{s}" for k, s in mapping} == expected_keys
    for (kind, source_id), target_id in mapping.items():
        assert _exists(world, kind, target_id), (kind, source_id, target_id)
        checked["id_map"] += 1
    return report


def _one_project(conn: openstack.connection.Connection, source_id: str) -> str:
    found = _list(conn, "identity", "/projects", "projects", tags=source_tag(source_id))
    assert len(found) == 1, f"project {source_id}: {len(found)} on the target"
    return str(found[0]["id"])


def _exists(world: World, kind: str, target_id: str) -> bool:
    conn = world.target
    paths = {"project": ("identity", "/projects/{}"), "user": ("identity", "/users/{}"),
             "network": ("network", "/networks/{}"), "subnet": ("network", "/subnets/{}"),
             "router": ("network", "/routers/{}"), "router_interface": ("network", "/ports/{}"),
             "security_group": ("network", "/security-groups/{}"),
             "security_group_rule": ("network", "/security-group-rules/{}")}
    if kind in paths:
        service, path = paths[kind]
        return bool(getattr(conn, service).get(path.format(target_id)).status_code == 200)
    if kind == "quota":
        service, _, project = target_id.partition(":")
        return bool(conn.identity.get(f"/projects/{project}").status_code == 200
                    and service in ("compute", "volume", "network"))
    if kind == "role_assignment":
        user, project, role = target_id.split(":")
        return bool(conn.identity.head(
            f"/projects/{project}/users/{user}/roles/{role}").status_code == 204)
    if kind == "keypair":
        user, _, name = target_id.partition(":")
        return bool(conn.compute.get(f"/os-keypairs/{name}", params={"user_id": user},
                                     microversion="2.10").status_code == 200)
    raise AssertionError(f"unknown kind {kind}")
