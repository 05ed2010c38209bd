"""Plan rules on a synthetic inventory (planned offline: no target): dependencies per kind,
translation, references leaving the selection, waves, quota policies, address plan."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from migrator.errors import PlanError
from migrator.operations.plan import make_plan
from migrator.plan.model import Plan, PlanStep
from migrator.plan.rules.security import rule_label
from tests.plan.conftest import write_config
from tests.plan.synthetic import hexid, uid


def plan_of(url: str, config: Path, tmp_path: Path, *tenants: str, deps: bool = False) -> Plan:
    return make_plan(url, config=config, tenants=list(tenants) or None, offline=True,
                     include_dependencies=deps, output=tmp_path / "plans" / "p.yaml").plan


def by_key(plan: Plan) -> dict[str, PlanStep]:
    return {s.key: s for s in plan.steps}


def test_one_tenant_steps_dependencies_and_translation(snapshot_url: str, config_file: Path,
                                                       tmp_path: Path) -> None:
    plan = plan_of(snapshot_url, config_file, tmp_path, "physics")
    assert plan.summary["per_kind"] == {
        "project": 1, "quota": 3, "user": 2, "role_assignment": 2, "network": 1, "subnet": 1,
        "router": 1, "router_interface": 1, "security_group": 2, "security_group_rule": 5,
        "keypair": 1}
    assert plan.summary["per_tenant"] == {"physics": 20} and plan.target["checked"] is False
    steps = by_key(plan)
    pid, net, sub, router = hexid("project", 0), uid("net", 0), uid("subnet", 0), uid("router", 0)
    project, netquota = f"project:{pid}", f"quota:network:{pid}"
    assert steps[project].spec["attrs"] == {"name": "physics", "domain_id": "default",
                                            "description": "physics department",
                                            "enabled": True}
    assert steps[netquota].depends_on == [project]
    assert steps[netquota].spec["attrs"]["network"] == 10
    assert "tenant_id" not in steps[netquota].spec["attrs"]
    assert set(steps[f"network:{net}"].depends_on) == {project, netquota}
    subnet = steps[f"subnet:{sub}"]
    assert f"network:{net}" in subnet.depends_on
    cidr = ipaddress.ip_network(subnet.spec["attrs"]["cidr"])
    assert cidr.prefixlen == 64 and cidr.subnet_of(ipaddress.ip_network("2001:db8:100::/48"))
    assert subnet.spec["attrs"]["ipv6_ra_mode"] == subnet.spec["attrs"]["ipv6_address_mode"] \
        == "slaac"
    assert steps[f"router:{router}"].spec["lookup"] == {"external_network": "public"}
    iface = steps[f"router_interface:{router}:{sub}"]
    assert set(iface.depends_on) == {f"router:{router}", f"subnet:{sub}"}
    user0 = hexid("user", 0, 0)
    assert steps[f"user:{user0}"].spec["lookup"]["password_policy"] == "random"
    assert "password" not in str(steps[f"user:{user0}"].spec["attrs"])
    role = next(s for s in plan.steps if s.kind == "role_assignment")
    assert role.spec["lookup"] == {"role_name": "member"}
    assert set(role.depends_on) == {role.spec["refs"]["user_id"], project}
    keypair = next(s for s in plan.steps if s.kind == "keypair")
    assert set(keypair.depends_on) == {f"user:{user0}", f"quota:compute:{pid}"}
    rules = [s for s in plan.steps if s.kind == "security_group_rule"]
    assert all(r.spec["attrs"]["ethertype"] == "IPv6" for r in rules)
    assert all(r.spec["attrs"]["direction"] == "ingress" for r in rules)  # egress defaults out
    prefixes = sorted(str(r.spec["attrs"].get("remote_ip_prefix")) for r in rules)
    assert prefixes == ["2001:db8:100::/48", "::/0", "::/0", "None", "None"]
    icmp = next(r for r in rules if r.spec["attrs"]["protocol"] == "ipv6-icmp")
    assert "port_range_min" not in icmp.spec["attrs"]
    remote = next(r for r in rules if "remote_group_id" in r.spec["refs"])
    web, db = f"security_group:{uid('web', 0)}", f"security_group:{uid('db', 0)}"
    assert remote.spec["refs"] == {"security_group_id": db, "remote_group_id": web}
    assert set(remote.depends_on) == {db, web}
    # Rules have no name of their own: their steps are named for people (progress, status).
    assert remote.name == "db: ingress IPv6 tcp 5432 from group web"
    assert icmp.name == "web: ingress IPv6 ipv6-icmp from anywhere"


def test_a_remote_group_of_an_unselected_tenant(snapshot_url: str, config_file: Path,
                                                tmp_path: Path) -> None:
    with pytest.raises(PlanError) as caught:
        plan_of(snapshot_url, config_file, tmp_path, "chemistry")
    rule = uid(uid("db", 1), "pg-remote")
    assert str(caught.value) == (
        f"security_group_rule {rule} of tenant chemistry refers to security group web "
        f"({uid('web', 0)}) of tenant physics, which is not selected; select physics or pass "
        "--include-dependencies")
    assert not (tmp_path / "plans" / "p.yaml").exists()
    plan = plan_of(snapshot_url, config_file, tmp_path, "chemistry", deps=True)
    assert plan.selection["pulled_in"] == ["physics"]
    assert plan.summary["per_tenant"] == {"chemistry": 21, "physics": 20}
    step = by_key(plan)[f"security_group_rule:{rule}"]
    assert step.spec["attrs"]["protocol"] == "tcp"  # Liberty's "6"
    assert step.spec["refs"]["remote_group_id"] == f"security_group:{uid('web', 0)}"


def test_unknown_tenant_and_missing_external_mapping(snapshot_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with pytest.raises(PlanError, match=r"^unknown tenant 'physic': not in inventory snapshot "
                                        r"1 of legacy \(known: admin, biology, chemistry"):
        plan_of(snapshot_url, config, tmp_path, "physic")
    config = write_config(tmp_path, **{"    public: public\n": ""})
    with pytest.raises(PlanError) as caught:
        plan_of(snapshot_url, config, tmp_path, "physics")
    assert str(caught.value) == (
        f"router physics-router ({uid('router', 0)}) of tenant physics has its gateway on "
        f"external network public ({uid('net', 'public')}), which has no mapping in "
        "mappings.external_networks (the target was not checked for a network of that name)")


def test_every_tenant_minus_excluded_and_waves(snapshot_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, **{"waves: []": "waves: [[physics], [chemistry, biology]]"})
    plan = plan_of(snapshot_url, config, tmp_path)
    assert plan.selection["tenants"] == ["biology", "chemistry", "physics"]
    assert plan.selection["waves"] == [["physics"], ["biology", "chemistry"]]
    assert {s.wave for s in plan.steps if s.tenant == "physics"} == {1}
    assert {s.wave for s in plan.steps if s.tenant != "physics"} == {2}
    assert plan.summary["per_wave"] == [20, 41]
    config = write_config(tmp_path, **{"waves: []": "waves: [[chemistry], [physics, biology]]"})
    with pytest.raises(PlanError, match="is in a later wave"):
        plan_of(snapshot_url, config, tmp_path)
    config = write_config(tmp_path, **{"waves: []": "waves: [[physics]]"})
    with pytest.raises(PlanError, match="tenant biology is selected but in no wave"):
        plan_of(snapshot_url, config, tmp_path)


def test_address_plan_is_stable_and_keep_ipv4(snapshot_url: str, db_url: str, config_file: Path,
                                              tmp_path: Path) -> None:
    def cidr(plan: Plan) -> str:
        return str(by_key(plan)[f"subnet:{uid('subnet', 0)}"].spec["attrs"]["cidr"])

    alone = cidr(plan_of(snapshot_url, config_file, tmp_path, "physics"))
    assert cidr(plan_of(snapshot_url, config_file, tmp_path)) == alone
    config = write_config(tmp_path, **{"keep_ipv4: false": "keep_ipv4: true",
                                       "ipv6_mode: slaac": "ipv6_mode: dhcpv6-stateful"})
    plan = plan_of(snapshot_url, config, tmp_path, "physics")
    steps = by_key(plan)
    sub, router = uid("subnet", 0), uid("router", 0)
    assert cidr(plan) == alone
    assert steps[f"subnet:{sub}"].spec["attrs"]["ipv6_address_mode"] == "dhcpv6-stateful"
    assert steps[f"subnet:{sub}:ipv4"].spec["attrs"]["cidr"] == "10.0.0.0/24"
    assert steps[f"router_interface:{router}:{sub}:ipv4"].spec["refs"]["subnet_id"] == \
        f"subnet:{sub}:ipv4"
    ipv4_rules = [s for s in plan.steps if s.kind == "security_group_rule"
                  and s.spec["attrs"]["ethertype"] == "IPv4"]
    assert len(ipv4_rules) == 5 and any(r.spec["attrs"].get("remote_ip_prefix") ==
                                        "10.0.0.0/8" for r in ipv4_rules)


def test_quota_policies(snapshot_url: str, tmp_path: Path) -> None:
    pid = hexid("project", 0)
    config = write_config(tmp_path, **{"policy: copy": "policy: scale", "factor: 1.0":
                                       "factor: 1.5", "fixed: {}":
                                       "fixed: {network: {router: 2}}"})
    steps = by_key(plan_of(snapshot_url, config, tmp_path, "physics"))
    compute = steps[f"quota:compute:{pid}"].spec["attrs"]
    assert (compute["cores"], compute["fixed_ips"]) == (60, -1)
    assert steps[f"quota:network:{pid}"].spec["attrs"]["router"] == 2
    config = write_config(tmp_path, **{"policy: copy": "policy: fixed", "fixed: {}":
                                       "fixed: {compute: {instances: 4}}"})
    steps = by_key(plan_of(snapshot_url, config, tmp_path, "physics"))
    assert steps[f"quota:compute:{pid}"].spec["attrs"] == {"instances": 4}
    assert steps[f"quota:network:{pid}"].spec["attrs"] == {}


@pytest.mark.parametrize(("attrs", "remote", "label"), [
    ({"direction": "ingress", "ethertype": "IPv6", "protocol": "tcp", "port_range_min": 22,
      "port_range_max": 22, "remote_ip_prefix": "::/0"}, None,
     "web: ingress IPv6 tcp 22 from ::/0"),
    ({"direction": "ingress", "ethertype": "IPv6", "protocol": "udp", "port_range_min": 5000,
      "port_range_max": 5010}, None, "web: ingress IPv6 udp 5000-5010 from anywhere"),
    ({"direction": "egress", "ethertype": "IPv4"}, "db", "web: egress IPv4 any to group db"),
    ({"direction": "ingress", "ethertype": "IPv6", "protocol": "ipv6-icmp",
      "port_range_min": 128, "port_range_max": 0}, None,
     "web: ingress IPv6 ipv6-icmp type 128 code 0 from anywhere"),
])
def test_rule_labels(attrs: dict[str, object], remote: str | None, label: str) -> None:
    assert rule_label("web", attrs, remote) == label
