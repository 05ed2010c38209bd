"""Building runs from hand-written specs (the plan format of issue 4) and executing them with
the tenant handlers against the simulator."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select

from migrator.clouds.target import TargetCloud
from migrator.engine.executor import RunResult
from migrator.engine.handlers import HandlerRegistry
from migrator.engine.runs import StepSpec, create_run
from migrator.handlers import register_handlers, services_for
from migrator.operations.execute import execute_run
from migrator.store.db import make_engine, session_factory
from migrator.store.models import Event, Step

_RUNS = itertools.count(1)


def public_key(comment: str) -> str:
    """A real OpenSSH ed25519 public key (Nova computes its fingerprint from the blob)."""
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    text = key.public_bytes(serialization.Encoding.OpenSSH,
                            serialization.PublicFormat.OpenSSH).decode()
    return f"{text} {comment}"


PUBLIC_KEY_A = public_key("alice@legacy")
PUBLIC_KEY_B = public_key("bob@legacy")


def hexid() -> str:
    return uuid.uuid4().hex


def step(kind: str, source_id: str, attrs: dict[str, Any] | None = None,
         refs: dict[str, Any] | None = None, lookup: dict[str, Any] | None = None,
         *, name: str | None = None, tenant: str | None = None) -> StepSpec:
    return StepSpec(
        key=f"{kind}:{source_id}", kind=kind, source_id=source_id, tenant=tenant, name=name,
        spec={"attrs": attrs or {}, "refs": refs or {}, "lookup": lookup or {},
              "source": {"cloud": "legacy", "id": source_id, "name": name}},
    )


@dataclass
class Tenant:
    """The source ids and steps of one hand-written tenant."""

    name: str
    ids: dict[str, str] = field(default_factory=dict)
    steps: list[StepSpec] = field(default_factory=list)
    deps: list[tuple[str, str]] = field(default_factory=list)

    def key(self, kind: str, label: str) -> str:
        return f"{kind}:{self.ids[label]}"

    def add(self, spec: StepSpec, *needs: str) -> None:
        self.steps.append(spec)
        self.deps.extend((spec.key, n) for n in needs)


def tenant_steps(name: str, *, external: dict[str, Any], password_file: str,
                 remote_group_of: Tenant | None = None) -> Tenant:
    """One tenant as the planner would translate it: project, 3 quotas, user, role, network,
    IPv6 subnet (SLAAC), router with gateway and interface, groups web/db with rules, keypair."""
    t = Tenant(name)
    for label in ("project", "user", "network", "subnet", "router", "web", "db", "r1", "r2",
                  "r3"):
        t.ids[label] = hexid()
    pid, uid = t.ids["project"], t.ids["user"]
    t.ids["role"] = f"{uid}:{pid}:{hexid()}"
    t.ids["keypair"] = f"{uid}:{name}-key"
    t.ids["iface"] = f"{t.ids['router']}:{t.ids['subnet']}"
    project_ref = {"project_id": f"project:{pid}"}
    t.add(step("project", pid, {"name": name, "domain_id": "default",
                                "description": f"{name} tenant", "enabled": True},
               name=name, tenant=name))
    pk = f"project:{pid}"
    quotas = {"compute": {"instances": 7, "cores": 14, "ram": 4096, "floating_ips": 3,
                          "injected_files": 2},
              "volume": {"volumes": 5, "gigabytes": 50, "gigabytes_ssd": 10},
              "network": {"network": 4, "subnet": 4, "port": 40, "router": 2,
                          "security_group": 6, "security_group_rule": 60}}
    for service, values in quotas.items():
        t.ids[f"quota-{service}"] = f"{service}:{pid}"
        t.add(step("quota", f"{service}:{pid}", values, project_ref, {"service": service},
                   tenant=name), pk)
    t.add(step("user", uid, {"name": f"{name}-user0", "domain_id": "default",
                             "email": f"{name}-user0@example.org", "enabled": True},
               {"default_project_id": pk}, {"password_policy": "random",
                                            "password_file": password_file},
               name=f"{name}-user0", tenant=name), pk)
    t.add(step("role_assignment", t.ids["role"], {},
               {"user_id": f"user:{uid}", "project_id": pk}, {"role_name": "member"},
               tenant=name), f"user:{uid}", pk)
    t.add(step("network", t.ids["network"], {"name": f"{name}-net", "admin_state_up": True,
                                             "shared": False},
               project_ref, name=f"{name}-net", tenant=name), pk, f"quota:network:{pid}")
    nk = t.key("network", "network")
    t.add(step("subnet", t.ids["subnet"],
               {"name": f"{name}-subnet", "ip_version": 6, "cidr": "2001:db8:100:1::/64",
                "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac", "enable_dhcp": True},
               {"network_id": nk, **project_ref}, name=f"{name}-subnet", tenant=name), nk)
    t.add(step("router", t.ids["router"], {"name": f"{name}-router", "admin_state_up": True},
               project_ref, {"external_network_id": external["id"]}, name=f"{name}-router",
               tenant=name), pk, f"quota:network:{pid}")
    rk, sk = t.key("router", "router"), t.key("subnet", "subnet")
    t.add(step("router_interface", t.ids["iface"], {}, {"router_id": rk, "subnet_id": sk},
               tenant=name), rk, sk)
    for label in ("web", "db"):
        t.add(step("security_group", t.ids[label], {"name": label,
                                                   "description": f"{label} servers"},
                   project_ref, name=label, tenant=name), pk, f"quota:network:{pid}")
    wk, dk = t.key("security_group", "web"), t.key("security_group", "db")
    t.add(step("security_group_rule", t.ids["r1"],
               {"direction": "ingress", "ethertype": "IPv6", "protocol": "tcp",
                "port_range_min": 443, "port_range_max": 443, "remote_ip_prefix": "::/0"},
               {"security_group_id": wk}, tenant=name), wk)
    remote = remote_group_of.key("security_group", "web") if remote_group_of else wk
    t.add(step("security_group_rule", t.ids["r2"],
               {"direction": "ingress", "ethertype": "IPv6", "protocol": "tcp",
                "port_range_min": 5432, "port_range_max": 5432},
               {"security_group_id": dk, "remote_group_id": remote}, tenant=name), dk, remote)
    # The egress rule Neutron creates by itself in every new group: adopted, not duplicated.
    t.add(step("security_group_rule", t.ids["r3"], {"direction": "egress",
                                                    "ethertype": "IPv6"},
               {"security_group_id": dk}, tenant=name), dk)
    t.add(step("keypair", t.ids["keypair"], {"name": f"{name}-key", "public_key": PUBLIC_KEY_A,
                                             "type": "ssh"},
               {"user_id": f"user:{uid}"}, name=f"{name}-key", tenant=name), f"user:{uid}")
    return t


class Runner:
    """Creates runs in the test's state database and executes them with the handlers."""

    def __init__(self, db_url: str, tc: TargetCloud) -> None:
        self.db_url = db_url
        self.tc = tc
        self.engine = make_engine(db_url)
        self.factory = session_factory(self.engine)
        self.registry = register_handlers(HandlerRegistry())

    def create(self, steps: list[StepSpec], deps: list[tuple[str, str]],
               name: str | None = None) -> str:
        run = name or f"run-{next(_RUNS)}-{hexid()[:6]}"
        create_run(self.factory, run, steps, deps)
        return run

    def execute(self, run: str, *, resume: bool = False, workers: int = 4) -> RunResult:
        return execute_run(self.db_url, run, workers=workers, resume=resume,
                           registry=self.registry, services=services_for(self.tc),
                           handle_sigint=False, backoff_base=0.05)

    def run(self, steps: list[StepSpec], deps: list[tuple[str, str]]) -> RunResult:
        return self.execute(self.create(steps, deps))

    def steps(self, run_id: int) -> dict[str, Step]:
        with self.factory() as session:
            rows = session.scalars(select(Step).where(Step.run_id == run_id)).all()
            return {r.key: r for r in rows}

    def events(self, run_id: int) -> list[Event]:
        with self.factory() as session:
            return list(session.scalars(select(Event).where(Event.run_id == run_id)
                                        .order_by(Event.id)).all())
