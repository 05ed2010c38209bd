"""The cutover commands end to end, through the CLI against the simulator: a run of two Liberty
tenants with images and volumes in which one step fails once (a 400 on its create, retried)
and one step is interrupted mid-copy and resumed; then ``audit``, ``verify`` (a property
changed by hand on the target, an image's bytes changed on the target, a security group rule
deleted on the target, a volume added on the source after planning) and ``status``.

The run is made once for the module (tests/handlers/data_world.py's world, its own simulator):
the tests below read it in file order, and the verification tests change the clouds.
"""

from __future__ import annotations

import csv
import io
import json
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from migrator.cli.main import cli
from migrator.engine.executor import Progress
from migrator.operations.execute import ExecuteOptions, execute_plan
from migrator.store.db import make_engine
from migrator.store.models import Event, IdMap, Run, Step, Verification
from tests.handlers.data_world import DataWorld, start_world
from tests.sim.conftest import Admin

RUN = "cutover"
KEYPAIR_CREATE = "POST /compute/*/os-keypairs"


@dataclass
class Cutover:
    world: DataWorld
    url: str
    plan: Path
    root: Path
    runner: CliRunner

    def cli(self, *args: str) -> Result:
        extra = ["--clouds-yaml", str(self.world.sim.clouds_yaml)] if args[0] in (
            "plan", "execute", "verify") else []
        return self.runner.invoke(cli, ["--db", self.url, *args, *extra],
                                  prog_name="migrator")


class _InterruptOnVolume:
    """Presses Ctrl-C once, as soon as a volume step started: that step is then interrupted
    at its next phase and requeued (resumed by the next execute)."""

    def __init__(self) -> None:
        self.pressed = False

    def __call__(self, event: Progress) -> None:
        if not self.pressed and event.event == "step-started" and str(event.step).startswith(
                "volume:"):
            self.pressed = True
            signal.raise_signal(signal.SIGINT)


@pytest.fixture(scope="module")
def cutover(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cutover]:
    root = tmp_path_factory.mktemp("cutover")
    world = start_world(root)
    try:
        (root / "run").mkdir()
        url = world.url(root / "run")
        c = Cutover(world, url, root / "plans" / f"{RUN}.yaml", root, CliRunner())
        config = world.config(root)
        graph = root / "plan.dot"
        result = c.cli("plan", "--config", str(config), "-o", str(c.plan), "--graph",
                       str(graph))
        assert result.exit_code == 0, result.output
        steps = result.stdout.split(": ", 1)[1].split(" steps", 1)[0]
        assert result.stdout.endswith(
            f"Graph: {graph} ({steps} steps of 2 tenant(s), one node per step: {steps} nodes, "
            f"{len(re.findall(r'(?m)^  s[0-9]+ -> s[0-9]+;$', graph.read_text()))} edges)\n")
        target = Admin(world.sim, "target")
        target.add_fault(match=KEYPAIR_CREATE, status=400, times=1)
        # Slower volume calls: the interrupted volume is still between phases.
        target.add_fault(match="* /volume/*", latency_ms=30)
        first = execute_plan(url, c.plan, ExecuteOptions(
            clouds_yaml=world.sim.clouds_yaml, workers=4, backoff_base=0.05,
            observer=_InterruptOnVolume()))
        assert first.run is not None and first.run.status == "interrupted", first.run
        target.clear_faults()
        resumed = c.cli("execute", str(c.plan), "--resume")
        assert resumed.exit_code == 0, resumed.output
        assert f"Run {RUN}: finished" in resumed.stdout
        yield c
    finally:
        world.sim.stop()


def db_rows(url: str, query: Any) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(query))
    finally:
        engine.dispose()


def table_rows(text: str, title_prefix: str) -> list[list[str]]:
    """The cells of a plain table (columns are two or more spaces apart) under its title."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title_prefix))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("  "):
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def table_time(iso: str | None) -> str:
    return "-" if iso is None else iso.replace("T", " ")[:23]


# -- audit -------------------------------------------------------------------------------------


def test_audit_of_a_tenant_lists_every_transition_with_actor_and_the_id_map(
        cutover: Cutover) -> None:
    whole = cutover.cli("audit", "--run", RUN, "--format", "json", "--section", "events")
    assert whole.exit_code == 0, whole.output
    every = json.loads(whole.stdout)["events"]
    # The tenant whose keypair create failed once (a 400): its audit is the one read here.
    failed = [e for e in every if e["trigger"] == "fail"]
    assert len(failed) == 1 and failed[0]["kind"] == "keypair"
    tenant = failed[0]["tenant"]
    result = cutover.cli("audit", "--run", RUN, "--tenant", tenant, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["runs"], data["tenant"]) == ([RUN], tenant)
    events, id_map = data["events"], data["id_map"]

    # Every event of every step of the tenant, in order, each with its actor and pid.
    expected = db_rows(cutover.url, select(Event.id, Event.trigger, Event.actor, Event.pid)
                       .join(Step, Step.id == Event.step_id)
                       .where(Step.tenant == tenant).order_by(Event.id))
    assert [(e["id"], e["trigger"], e["actor"], e["pid"]) for e in events] == [
        tuple(r) for r in expected]
    assert all(re.fullmatch(r"[^@\s]+@\S+", e["actor"]) for e in events)
    assert {e["tenant"] for e in events} == {tenant}
    # The keypair failed on attempt 1, was retried and completed on attempt 2.
    keypair = [e for e in events if e["kind"] == "keypair"]
    assert [e["trigger"] for e in keypair] == ["start", "fail", "retry", "start",
                                                "checkpoint", "verify", "complete"]
    fail = keypair[1]
    assert fail["attempt"] == 1 and "HTTP 400" in fail["error"]
    assert fail["detail"]["attempt"] == 1
    assert [e["attempt"] for e in keypair[3:]] == [2, 2, 2, 2]
    # A volume interrupted between phases was requeued and started again (attempt 2).
    requeued = [e for e in every if e["trigger"] == "requeue"]
    assert requeued and requeued[0]["detail"] == {"reason": "interrupted"}
    of_step = [e for e in every if e["step"] == requeued[0]["step"]]
    after = of_step[of_step.index(requeued[0]) + 1]
    assert (after["trigger"], after["attempt"]) == ("start", 2)
    assert of_step[-1]["trigger"] == "complete"

    # The id map: every step of the tenant with its target id as recorded.
    mapped = dict(((k, s), t) for k, s, t in db_rows(
        cutover.url, select(IdMap.kind, IdMap.source_id, IdMap.target_id)))
    steps = db_rows(cutover.url, select(Step.kind, Step.source_id, Step.name, Step.state)
                    .where(Step.tenant == tenant).order_by(Step.id))
    assert [(r["kind"], r["source_id"], r["target_id"], r["state"]) for r in id_map] == [
        (k, s, mapped[(k, s)], state) for k, s, _n, state in steps]
    images = [r for r in id_map if r["kind"] == "image"]
    assert images and all(r["bytes"] is not None and len(r["sha512"]) == 128 for r in images)
    volumes = [r for r in id_map if r["kind"] == "volume"]
    assert volumes and all(len(r["md5"]) == 32 and r["completed_at"] for r in volumes)

    # The table says the same, row for row.
    table = cutover.cli("audit", "--run", RUN, "--tenant", tenant)
    assert table.exit_code == 0, table.output
    rows = table_rows(table.stdout, f"Events of run cutover, tenant {tenant}")
    assert len(rows) == len(events)
    for cells, e in zip(rows, events, strict=True):
        assert cells[:11] == [table_time(e["at"]), RUN, tenant, e["kind"], e["name"],
                              e["trigger"], e["from_state"], e["to_state"],
                              str(e["attempt"]), e["actor"], str(e["pid"])]
        if e["error"]:
            assert cells[11].startswith(f"error: {e['error']}")
    rows = table_rows(table.stdout, f"Source -> target of run cutover, tenant {tenant}")
    assert rows == [
        [RUN, tenant, r["kind"], r["name"], r["source_id"], r["target_id"], r["state"],
         str(r["bytes"]) if r["bytes"] is not None else "-", r["md5"] or "-",
         (r["sha512"] or "-")[:16], table_time(r["completed_at"])] for r in id_map]

    # And the CSV: the same records (detail as JSON text, empty cells for none).
    events_csv = cutover.cli("audit", "--run", RUN, "--tenant", tenant, "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(events_csv.stdout)))
    assert len(parsed) == len(events)
    for row, e in zip(parsed, events, strict=True):
        assert json.loads(row.pop("detail")) == e["detail"]
        assert row == {k: "" if v is None else str(v) for k, v in e.items() if k != "detail"}
    map_csv = cutover.cli("audit", "--run", RUN, "--tenant", tenant, "--format", "csv",
                          "--section", "id-map")
    parsed = list(csv.DictReader(io.StringIO(map_csv.stdout)))
    assert parsed == [{k: "" if v is None else str(v) for k, v in r.items()} for r in id_map]


def test_audit_filters_and_refusals(cutover: Cutover) -> None:
    kinds = json.loads(cutover.cli("audit", "--kind", "volume", "--format", "json").stdout)
    assert kinds["events"] and {e["kind"] for e in kinds["events"]} == {"volume"}
    assert {r["kind"] for r in kinds["id_map"]} == {"volume"}
    # Run events (the run started, interrupted, resumed, finished) belong to no step.
    run_events = [e for e in json.loads(cutover.cli("audit", "--format", "json", "--section",
                                                    "events").stdout)["events"]
                  if e["step"] is None]
    assert [e["to_state"] for e in run_events if e["to_state"]] == [
        "created", "running", "interrupted", "running", "finished"]
    # Each execution took part as a worker: it joined the run, then left it.
    assert [e["trigger"] for e in run_events if not e["to_state"]] == [
        "worker-joined", "worker-left", "worker-joined", "worker-left"]
    assert all(e["attempt"] is None for e in run_events)
    later = cutover.cli("audit", "--since", "2999-01-01", "--format", "json")
    assert json.loads(later.stdout)["events"] == []
    for args, message in [
        (("--run", "nosuch"), "Error: no run named 'nosuch' in the state database\n"),
        (("--tenant", "nosuch"), "Error: no steps for tenant 'nosuch'\n"),
        (("--since", "last week"), "Error: --since 'last week': expected an ISO 8601 time "
                                   "(2026-12-02 or 2026-12-02T14:30Z) or a duration back from "
                                   "now (90s, 15m, 2h, 3d)\n")]:
        result = cutover.cli("audit", *args)
        assert (result.exit_code, result.stdout, result.stderr) != (0, "", "")
        assert result.stderr == message
    both = cutover.cli("audit", "--format", "csv", "--section", "all")
    assert both.exit_code == 2 and "csv holds one table" in both.stderr


# -- verify ------------------------------------------------------------------------------------


def _migrated(world: DataWorld, kind: str) -> list[dict[str, Any]]:
    state = world.sim.cloud("target").state
    return [dict(r) for r in state.values(kind)]


def test_verify_finds_what_changed_on_the_target_and_drift_on_the_source(
        cutover: Cutover) -> None:
    clean = cutover.cli("verify", "--run", RUN, "--format", "json")
    assert clean.exit_code == 0, clean.output
    report = json.loads(clean.stdout)
    assert report["outcome"] == "match" and report["findings"] == []
    assert report["totals"]["match"] == sum(1 for _ in db_rows(
        cutover.url, select(Step.id).where(Step.state == "done")))
    assert report["drift_note"].endswith("no drift")

    world = cutover.world
    target = world.target
    images = {i["name"]: i for i in target.image.get("/images").json()["images"]}
    # 1. A property changed by hand on the target.
    patched = images["physics-x86-1"]
    response = target.image.patch(
        f"/images/{patched['id']}", json=[{"op": "replace", "path": "/os_distro",
                                           "value": "hacked"}],
        headers={"Content-Type": "application/openstack-images-v2.1-json-patch"})
    assert response.status_code == 200, response.text
    # 2. An image whose bytes changed on the target (same size; its record is unchanged).
    corrupted = images["physics-odd"]
    blob = world.sim.cloud("target").blob_dir / corrupted["id"]
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0xFF
    blob.write_bytes(bytes(data))
    # 3. A security group rule deleted on the target.
    rules = [r for r in target.network.get("/security-group-rules").json()[
        "security_group_rules"] if str(r.get("description")).startswith("migrator-src:")]
    deleted = rules[0]
    assert target.network.delete(f"/security-group-rules/{deleted['id']}").status_code == 204
    # 4. A volume added on the source after planning (physics's own credentials).
    from tests.handlers.data_world import openstack

    physics_user = openstack.connect(cloud="legacy-physics-user0")
    added = physics_user.block_storage.post("/volumes", json={"volume": {
        "size": 1, "name": "late-volume"}})
    assert added.status_code == 202, added.text

    # 5. A role assignment of physics revoked on the target: missing, not different.
    grant = db_rows(cutover.url, select(Step.key, Step.name, IdMap.target_id).join(
        IdMap, (IdMap.run_id == Step.run_id) & (IdMap.kind == Step.kind)
        & (IdMap.source_id == Step.source_id)).where(
        Step.kind == "role_assignment", Step.tenant == "physics").order_by(Step.id))[0]
    user_id, project_id, role_id = grant.target_id.split(":")
    revoked = target.identity.delete(f"/projects/{project_id}/users/{user_id}/roles/{role_id}")
    assert revoked.status_code == 204, revoked.text

    shallow = cutover.cli("verify", "--run", RUN, "--format", "json")
    assert shallow.exit_code == 1, shallow.output
    found = {(f["kind"], f["name"], f["result"]): f["detail"]
             for f in json.loads(shallow.stdout)["findings"]}
    rule_step = db_rows(cutover.url, select(Step.tenant, Step.name).where(
        Step.kind == "security_group_rule", Step.source_id == str(
            deleted["description"]).split(":", 1)[1]))[0]
    assert found == {
        ("image", "physics-x86-1", "differs"):
            "property os_distro: wanted 'centos', target has 'hacked'",
        ("security_group_rule", rule_step.name, "missing"):
            f"target: security group rule {deleted['id']} does not exist",
        ("role_assignment", grant.name, "missing"):
            f"step {grant.key!r}: role {role_id} of user {user_id} on project "
            f"{project_id} is missing on target",
        ("volume", "late-volume", "drift-new"):
            "volume late-volume appeared on the source after planning",
    }
    deep = cutover.cli("verify", "--run", RUN, "--deep", "--format", "json")
    assert deep.exit_code == 1, deep.output
    deep_findings = json.loads(deep.stdout)["findings"]
    deep_found = {(f["kind"], f["name"], f["result"]): f["detail"] for f in deep_findings}
    corrupt = deep_found.pop(("image", "physics-odd", "differs"))
    assert corrupt.startswith("bytes on the target: md5 ") and "sha512" in corrupt
    assert deep_found == found

    # The table shows the same findings; the verifications are recorded with their time.
    table = cutover.cli("verify", "--run", RUN, "--tenant", "physics", "--deep",
                        "--no-drift")
    assert table.exit_code == 1
    rows = table_rows(table.stdout, "Differences on the target")
    assert sorted(rows) == sorted(
        [f["tenant"], f["kind"], f["name"], f["result"], f["detail"]] for f in deep_findings
        if f["tenant"] == "physics" and not f["result"].startswith("drift-"))
    assert "Drift: not checked (--no-drift)." in table.stdout
    recorded = db_rows(cutover.url, select(Verification.outcome, Verification.deep,
                                           Verification.tenant, Verification.finished_at,
                                           Run.name).join(Run).order_by(Verification.id))
    assert [(r[0], r[1], r[2], r[4]) for r in recorded] == [
        ("match", False, None, RUN), ("differences", False, None, RUN),
        ("differences", True, None, RUN), ("differences", True, "physics", RUN)]
    assert all(r[3] is not None for r in recorded)


# -- report and status after the verifications --------------------------------------------------


def test_report_and_status_after_the_verifications(cutover: Cutover) -> None:
    out = cutover.root / "cutover.html"
    result = cutover.cli("report", "--run", RUN, "-o", str(out))
    assert result.exit_code == 0, result.output
    html = out.read_text()
    verification = html.split('<section id="verification">', 1)[1].split("</section>", 1)[0]
    assert "property os_distro: wanted &#x27;centos&#x27;, target has &#x27;hacked&#x27;" \
        in verification
    # physics's latest verification (--tenant physics --no-drift) did not read the source.
    assert "late-volume" not in verification
    data = json.loads(cutover.cli("report", "--run", RUN, "--format", "json").stdout)
    tenants = {t["tenant"]: t for t in data["tenants"]}
    assert tenants["physics"]["verification"]["result"] == "differences"
    assert data["error_count"] == 1 and data["failed_steps"] == 0
    assert [e["to_state"] for e in data["timeline"]["events"] if e["to_state"]] == [
        "created", "running", "interrupted", "running", "finished"]
    assert data["bytes_moved"] > 0 and data["bytes_left"] == 0
    status = cutover.cli("status", "--run", RUN, "--format", "json")
    report = json.loads(status.stdout)
    (run,) = report["runs"]
    assert run["status"] == "finished" and run["data"]["left"] == 0
    assert run["data"]["moved"] == data["bytes_moved"] and report["failed"] == []
