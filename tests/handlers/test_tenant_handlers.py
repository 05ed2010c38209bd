"""The tenant handlers against the modern simulator, through openstacksdk and a real SQLite
state database: create, adopt on re-run, reconcile in-doubt steps, survive 503s."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import openstack
import pytest
import requests
import yaml

from migrator.clouds.target import TargetCloud, source_tag
from migrator.engine.runs import find_run
from migrator.engine.steps import fire
from migrator.handlers.idmap import id_map
from tests.handlers.helpers import PUBLIC_KEY_B, Runner, Tenant, hexid, step, tenant_steps
from tests.sim.conftest import Admin, member_connection


def _project(conn: openstack.connection.Connection, tenant: Tenant) -> Any:
    found = list(conn.identity.projects(tags=source_tag(tenant.ids["project"])))
    assert len(found) == 1
    return found[0]


def _tagged(conn: openstack.connection.Connection, collection: str, source_id: str) -> list[Any]:
    body = conn.network.get(f"/{collection}", params={"tags": source_tag(source_id)}).json()
    return list(body[collection.replace("-", "_")])


def assert_tenant_on_target(conn: openstack.connection.Connection, t: Tenant,
                            public_id: str) -> None:
    project = _project(conn, t)
    assert (project.name, project.description, project.domain_id, project.is_enabled) == (
        t.name, f"{t.name} tenant", "default", True)
    # quotas, with the keys the target refuses left out
    compute = conn.compute.get(f"/os-quota-sets/{project.id}",
                               microversion="2.90").json()["quota_set"]
    assert (compute["instances"], compute["cores"], compute["ram"]) == (7, 14, 4096)
    assert "floating_ips" not in compute and "injected_files" not in compute
    volume = conn.block_storage.get(f"/os-quota-sets/{project.id}").json()["quota_set"]
    assert (volume["volumes"], volume["gigabytes"]) == (5, 50)
    network_quota = conn.network.get(f"/quotas/{project.id}").json()["quota"]
    assert (network_quota["network"], network_quota["port"]) == (4, 40)
    # user with its source id, default project and member role
    users = conn.identity.get("/users", params={"name": f"{t.name}-user0"}).json()["users"]
    assert len(users) == 1
    user = users[0]
    assert user["migrator_source_id"] == t.ids["user"]
    assert (user["email"], user["default_project_id"]) == (f"{t.name}-user0@example.org",
                                                           project.id)
    member = conn.identity.find_role("member")
    roles = conn.identity.get(f"/projects/{project.id}/users/{user['id']}/roles").json()
    assert [r["id"] for r in roles["roles"]] == [member.id]
    # network, IPv6 subnet, router with its gateway and interface
    [net] = _tagged(conn, "networks", t.ids["network"])
    assert (net["name"], net["project_id"]) == (f"{t.name}-net", project.id)
    assert net["description"] == f"migrated from legacy {t.ids['network']}"
    [subnet] = _tagged(conn, "subnets", t.ids["subnet"])
    assert (subnet["ip_version"], subnet["cidr"], subnet["ipv6_ra_mode"],
            subnet["ipv6_address_mode"], subnet["network_id"]) == (
        6, "2001:db8:100:1::/64", "slaac", "slaac", net["id"])
    [router] = _tagged(conn, "routers", t.ids["router"])
    assert router["external_gateway_info"]["network_id"] == public_id
    ports = list(conn.network.ports(device_id=router["id"],
                                    device_owner="network:router_interface"))
    assert [p.fixed_ips[0]["subnet_id"] for p in ports] == [subnet["id"]]
    # security groups and rules
    groups = {g["name"]: g for label in ("web", "db")
              for g in _tagged(conn, "security-groups", t.ids[label])}
    assert set(groups) == {"web", "db"}
    rules = list(conn.network.security_group_rules(security_group_id=groups["db"]["id"]))
    pg = [r for r in rules if r.port_range_min == 5432]
    assert len(pg) == 1 and pg[0].description == f"migrator-src:{t.ids['r2']}"
    egress6 = [r for r in rules if r.direction == "egress" and r.ether_type == "IPv6"]
    assert len(egress6) == 1  # adopted, not duplicated
    # keypair for the user, at 2.10
    kp = conn.compute.get(f"/os-keypairs/{t.name}-key", params={"user_id": user["id"]},
                          microversion="2.10").json()["keypair"]
    assert kp["user_id"] == user["id"]


def test_tenant_steps_create_everything(runner: Runner, conn: openstack.connection.Connection,
                                        public_net: dict[str, Any], tmp_path: Path,
                                        sim: Any) -> None:
    passwords = tmp_path / "state" / "passwords.yaml"
    a = tenant_steps(f"phys-{hexid()[:6]}", external=public_net, password_file=str(passwords))
    b = tenant_steps(f"chem-{hexid()[:6]}", external=public_net, password_file=str(passwords),
                     remote_group_of=a)
    result = runner.run(a.steps + b.steps, a.deps + b.deps)
    assert result.status == "finished", result.failed_steps
    assert result.counts == {"done": len(a.steps) + len(b.steps)}
    for t in (a, b):
        assert_tenant_on_target(conn, t, public_net["id"])
    # b's db rule names a's web group as remote group
    [a_web] = _tagged(conn, "security-groups", a.ids["web"])
    [b_db] = _tagged(conn, "security-groups", b.ids["db"])
    remote = [r for r in conn.network.security_group_rules(security_group_id=b_db["id"])
              if r.port_range_min == 5432]
    assert remote[0].remote_group_id == a_web["id"]
    # id map complete: one row per step
    mapping = id_map(runner.factory, result.run_id)
    assert len(mapping) == len(a.steps) + len(b.steps)
    # checkpoints: quota keys left out, with the reason
    steps = runner.steps(result.run_id)
    dropped = steps[f"quota:compute:{a.ids['project']}"].checkpoint["dropped"]
    assert set(dropped) == {"floating_ips", "injected_files"}
    assert "2.36" in dropped["floating_ips"] and "2.57" in dropped["injected_files"]
    assert "gigabytes_ssd" in steps[f"quota:volume:{a.ids['project']}"].checkpoint["dropped"]
    # the random password: file mode 0600, and it logs in
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    secrets = yaml.safe_load(passwords.read_text())
    member = member_connection(sim, "target", a.name, f"{a.name}-user0",
                               secrets[f"{a.name}-user0"])
    assert member.identity.get_project(_project(conn, a).id).name == a.name
    # the password is nowhere in the state database
    for event in runner.events(result.run_id):
        assert secrets[f"{a.name}-user0"] not in repr(event.detail)


def test_rerun_adopts_instead_of_duplicating(runner: Runner,
                                             conn: openstack.connection.Connection,
                                             public_net: dict[str, Any], tmp_path: Path) -> None:
    t = tenant_steps(f"bio-{hexid()[:6]}", external=public_net,
                     password_file=str(tmp_path / "pw.yaml"))
    first = runner.run(t.steps, t.deps)
    assert first.status == "finished", first.failed_steps
    second = runner.run(t.steps, t.deps)
    assert second.status == "finished", second.failed_steps
    steps = runner.steps(second.run_id)
    created = [k for k, s in steps.items() if s.kind in ("project", "user", "network", "subnet",
                                                         "router", "security_group", "keypair")]
    assert all(steps[k].checkpoint.get("adopted") == "source" for k in created), {
        k: steps[k].checkpoint for k in created}
    assert id_map(runner.factory, second.run_id) == id_map(runner.factory, first.run_id)
    assert_tenant_on_target(conn, t, public_net["id"])  # exactly one of each
    for label, collection in (("network", "networks"), ("subnet", "subnets"),
                              ("router", "routers"), ("web", "security-groups")):
        assert len(_tagged(conn, collection, t.ids[label])) == 1


def test_in_doubt_steps_are_reconciled(runner: Runner, tc: TargetCloud,
                                       conn: openstack.connection.Connection,
                                       public_net: dict[str, Any], tmp_path: Path) -> None:
    t = tenant_steps(f"geo-{hexid()[:6]}", external=public_net,
                     password_file=str(tmp_path / "pw.yaml"))
    run = runner.create(t.steps, t.deps)
    # The project step "crashed" after creating the project, before its checkpoint.
    project = tc.create_project(t.ids["project"], {"name": t.name, "domain_id": "default",
                                                   "description": f"{t.name} tenant",
                                                   "enabled": True})
    run_id = find_run(runner.factory, run).id
    steps = runner.steps(run_id)
    fire(runner.factory, steps[f"project:{t.ids['project']}"].id, "start")
    result = runner.execute(run, resume=True)
    assert result.status == "finished", result.failed_steps
    after = runner.steps(run_id)
    assert after[f"project:{t.ids['project']}"].checkpoint["target_id"] == project["id"]
    assert after[f"project:{t.ids['project']}"].checkpoint["adopted"] == "in-doubt"
    assert len(list(conn.identity.projects(tags=source_tag(t.ids["project"])))) == 1
    reconciled = [e for e in runner.events(run_id) if e.detail.get("reconciled")]
    assert reconciled and reconciled[0].detail["reconciled"] == "done"


def test_in_doubt_network_and_router_mid_phase(runner: Runner, tc: TargetCloud,
                                               conn: openstack.connection.Connection,
                                               public_net: dict[str, Any],
                                               tmp_path: Path) -> None:
    t = tenant_steps(f"astro-{hexid()[:6]}", external=public_net,
                     password_file=str(tmp_path / "pw.yaml"))
    run = runner.create(t.steps, t.deps)
    run_id = find_run(runner.factory, run).id
    # First pass: only what the network and the router need.
    wanted = {f"project:{t.ids['project']}", f"quota:network:{t.ids['project']}"}
    steps = runner.steps(run_id)
    # Run the project and quota steps for real, through a sub-run of the same specs.
    sub = [s for s in t.steps if s.key in wanted]
    pre = runner.run(sub, [(a, b) for a, b in t.deps if a in wanted and b in wanted])
    assert pre.status == "finished"
    project_id = id_map(runner.factory, pre.run_id)[("project", t.ids["project"])]
    # The network step crashed after its POST; the router step after its create phase but
    # before the gateway phase (no gateway yet on the target).
    net = tc.create_network(t.ids["network"], {"name": f"{t.name}-net", "admin_state_up": True,
                                               "shared": False, "project_id": project_id})
    router = tc.create_router(t.ids["router"], {"name": f"{t.name}-router",
                                                "admin_state_up": True,
                                                "project_id": project_id})
    for key in (f"network:{t.ids['network']}", f"router:{t.ids['router']}"):
        fire(runner.factory, steps[key].id, "start")
    result = runner.execute(run, resume=True)
    assert result.status == "finished", result.failed_steps
    after = runner.steps(run_id)
    assert after[f"network:{t.ids['network']}"].checkpoint["target_id"] == net["id"]
    assert after[f"router:{t.ids['router']}"].checkpoint["target_id"] == router["id"]
    assert len(_tagged(conn, "networks", t.ids["network"])) == 1
    [r] = _tagged(conn, "routers", t.ids["router"])
    assert r["external_gateway_info"]["network_id"] == public_net["id"]
    assert_tenant_on_target(conn, t, public_net["id"])


def test_faults_on_the_target_are_retried_and_audited(
        runner: Runner, conn: openstack.connection.Connection, public_net: dict[str, Any],
        admin_api: dict[str, Admin], tmp_path: Path) -> None:
    tenants = [tenant_steps(f"f{i}-{hexid()[:6]}", external=public_net,
                            password_file=str(tmp_path / "pw.yaml")) for i in range(2)]
    admin_api["target"].add_fault(match="* /network/*", rate=0.05, status=503, retry_after=0)
    admin_api["target"].add_fault(match="* /identity/v3/projects*", rate=0.05, status=500)
    # Connections cut after the request was carried out (a create whose answer is lost).
    admin_api["target"].add_fault(match="POST /network/*", rate=0.1, drop_after_bytes=0)
    admin_api["target"].add_fault(match="GET /network/*", rate=0.03, drop_after_bytes=0)
    result = runner.run([s for t in tenants for s in t.steps],
                        [d for t in tenants for d in t.deps])
    fired = sum(r["fired"] for r in
                requests.get(f"{admin_api['target'].base}/faults", timeout=10).json()["faults"])
    admin_api["target"].clear_faults()
    assert result.status == "finished", result.failed_steps
    assert fired > 0
    events = runner.events(result.run_id)
    retried = sum(v for e in events for k, v in (e.detail.get("data") or {}).items()
                  if k.endswith("_retries"))
    step_retries = [e for e in events if e.trigger == "retry"]
    assert retried + len(step_retries) > 0
    print(f"faults fired {fired}, in-call retries {retried}, step retries {len(step_retries)}")
    for t in tenants:
        assert_tenant_on_target(conn, t, public_net["id"])


def test_keypair_with_another_key_under_the_same_name_fails_clearly(
        runner: Runner, tc: TargetCloud, public_net: dict[str, Any], tmp_path: Path) -> None:
    t = tenant_steps(f"kp-{hexid()[:6]}", external=public_net,
                     password_file=str(tmp_path / "pw.yaml"))
    keep = {f"project:{t.ids['project']}", f"user:{t.ids['user']}"}
    first = runner.run([s for s in t.steps if s.key in keep],
                       [(a, b) for a, b in t.deps if a in keep and b in keep])
    assert first.status == "finished"
    user_id = id_map(runner.factory, first.run_id)[("user", t.ids["user"])]
    tc.create_keypair(user_id, {"name": f"{t.name}-key", "public_key": PUBLIC_KEY_B})
    kp = next(s for s in t.steps if s.kind == "keypair")
    result = runner.run([kp], [])
    assert result.status == "failed"
    error = runner.steps(result.run_id)[kp.key].last_error or ""
    assert f"already has a keypair '{t.name}-key'" in error and "another key" in error


def test_unresolved_reference_fails_the_step_naming_it(runner: Runner) -> None:
    sid = hexid()
    result = runner.run([step("network", sid, {"name": "orphan"},
                              {"project_id": "project:nope"})], [])
    assert result.status == "failed"
    error = runner.steps(result.run_id)[f"network:{sid}"].last_error or ""
    assert "'project:nope' has no target id yet" in error


def test_default_security_group_is_adopted(runner: Runner, conn: openstack.connection.Connection,
                                           tmp_path: Path) -> None:
    pid, gid = hexid(), hexid()
    name = f"dflt-{hexid()[:6]}"
    steps = [step("project", pid, {"name": name, "domain_id": "default"}),
             step("security_group", gid, {"name": "default",
                                          "description": "Default security group"},
                  {"project_id": f"project:{pid}"})]
    result = runner.run(steps, [(steps[1].key, steps[0].key)])
    assert result.status == "finished", result.failed_steps
    project_id = id_map(runner.factory, result.run_id)[("project", pid)]
    groups = list(conn.network.security_groups(project_id=project_id, name="default"))
    assert len(groups) == 1 and source_tag(gid) in groups[0].tags
    assert runner.steps(result.run_id)[f"security_group:{gid}"].checkpoint["adopted"] == "source"


@pytest.mark.parametrize("policy", ["fixed", "external"])
def test_password_policies(runner: Runner, monkeypatch: pytest.MonkeyPatch, sim: Any,
                           policy: str) -> None:
    pid, uid = hexid(), hexid()
    name = f"pw-{policy}-{hexid()[:6]}"
    monkeypatch.setenv("MIGRATOR_TEST_PW", "s3cret-" + hexid()[:8])
    lookup = {"password_policy": policy, "password_env": "MIGRATOR_TEST_PW"}
    steps = [step("project", pid, {"name": name, "domain_id": "default"}),
             step("user", uid, {"name": f"{name}-u", "domain_id": "default"},
                  {"default_project_id": f"project:{pid}"}, lookup),
             step("role_assignment", f"{uid}:{pid}:r", {},
                  {"user_id": f"user:{uid}", "project_id": f"project:{pid}"},
                  {"role_name": "member"})]
    result = runner.run(steps, [(steps[1].key, steps[0].key), (steps[2].key, steps[1].key)])
    assert result.status == "finished", result.failed_steps
    if policy == "fixed":
        member = member_connection(sim, "target", name, f"{name}-u",
                                   os.environ["MIGRATOR_TEST_PW"])
        assert member.identity.get_project(
            id_map(runner.factory, result.run_id)[("project", pid)]).name == name
