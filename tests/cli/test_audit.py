"""``migrator audit`` on a run made by the real executor with test handlers: the same log on
SQLite and PostgreSQL (window function, server-side cursor), its filters, and the table, JSON
and CSV saying the same."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from migrator.cli.audit import SHA512_SHOWN
from migrator.engine.handlers import HandlerRegistry
from migrator.engine.runs import StepSpec, create_run
from migrator.operations.audit import parse_since
from migrator.operations.execute import execute_run
from migrator.store.db import make_engine, session_factory
from tests.cli.conftest import Invoke
from tests.engine.kinds import FlakyHandler


def make_run(url: str) -> None:
    """Run ``r1``: two tenants; physics's network fails once (retried), chemistry's project
    fails for good (its network blocked)."""
    engine = make_engine(url)
    create_run(session_factory(engine), "r1", [
        StepSpec("project:p", "project", tenant="physics", name="physics", source_id="p"),
        StepSpec("network:n", "network", tenant="physics", name="physics-net", source_id="n"),
        StepSpec("project:c", "project", tenant="chemistry", name="chemistry", source_id="c"),
        StepSpec("network:m", "network", tenant="chemistry", name="chem-net", source_id="m"),
    ], [("network:n", "project:p"), ("network:m", "project:c")])
    engine.dispose()
    flaky = FlakyHandler()
    flaky.times["network:n"] = 1
    flaky.final.add("project:c")
    registry = HandlerRegistry()
    for kind in ("project", "network"):
        registry.register(kind, flaky)
    result = execute_run(url, "r1", registry=registry, handle_sigint=False,
                         backoff_base=0.01, workers=1)
    assert result.status == "failed"


def audit_json(invoke: Invoke, url: str, *args: str) -> dict:  # type: ignore[type-arg]
    result = invoke("--db", url, "audit", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    data: dict = json.loads(result.stdout)  # type: ignore[type-arg]
    return data


def _without_worker(detail: object) -> object:
    """A run event's detail without the worker's name (host:pid:random, new each time)."""
    if isinstance(detail, dict):
        return {k: v for k, v in detail.items() if k != "worker"}
    return detail


def comparable(data: dict) -> dict:  # type: ignore[type-arg]
    """Without what differs between two databases and two executions: times, ids, the
    database URL, and how the steps of two tenants interleaved (each step's events keep
    their order)."""
    out = dict(data)
    out.pop("database")
    events = [{k: _without_worker(v) if k == "detail" else v for k, v in e.items()
               if k not in ("id", "at")} for e in data["events"]]
    out["events"] = sorted(events, key=lambda e: str(e["step"]))
    out["id_map"] = [{k: v for k, v in r.items() if k != "completed_at"}
                     for r in data["id_map"]]
    return out


def test_the_log_of_a_run_with_a_retry_and_a_failure(invoke: Invoke, db_url: str) -> None:
    make_run(db_url)
    data = audit_json(invoke, db_url, "--run", "r1")
    steps = [(e["step"], e["trigger"], e["attempt"]) for e in data["events"]
             if e["step"] == "network:n"]
    assert steps == [("network:n", "start", 1), ("network:n", "fail", 1),
                     ("network:n", "retry", 1), ("network:n", "start", 2),
                     ("network:n", "checkpoint", 2), ("network:n", "verify", 2),
                     ("network:n", "complete", 2)]
    failed = [e for e in data["events"] if e["step"] == "project:c"]
    assert [e["trigger"] for e in failed] == ["start", "fail"]
    assert failed[1]["error"] == "project:c: the volume is attached"
    assert failed[1]["detail"] == {"error": "project:c: the volume is attached",
                                   "attempt": 1, "final": True}
    blocked = [e for e in data["events"] if e["step"] == "network:m"]
    assert [(e["trigger"], e["to_state"], e["detail"]) for e in blocked] == [
        ("block", "blocked", {"cause": "project:c"})]
    assert [(r["kind"], r["state"], r["target_id"]) for r in data["id_map"]] == [
        ("project", "done", None), ("network", "done", None), ("project", "failed", None),
        ("network", "blocked", None)]
    # The table: one line per event, the failure's detail with its error first.
    table = invoke("--db", db_url, "audit", "--run", "r1", "--tenant", "chemistry")
    lines = table.stdout.splitlines()
    assert lines[0] == "Events of run r1, tenant chemistry (times in UTC)"
    assert lines[1].split() == ["TIME", "RUN", "TENANT", "KIND", "NAME", "EVENT", "FROM",
                                "TO", "ATTEMPT", "ACTOR", "PID", "DETAIL"]
    assert lines[3].endswith("error: project:c: the volume is attached (final)")
    assert lines[4].endswith("cause=project:c")
    assert lines[6] == f"Source -> target of run r1, tenant chemistry (sha512: first " \
                       f"{SHA512_SHOWN} hex digits)"
    assert len(lines) == 10
    # The CSV of the id map parses into the JSON's records.
    map_csv = invoke("--db", db_url, "audit", "--run", "r1", "--format", "csv", "--section",
                     "id-map")
    rows = list(csv.DictReader(io.StringIO(map_csv.stdout)))
    assert rows == [{k: "" if v is None else str(v) for k, v in r.items()}
                    for r in data["id_map"]]


def test_filters(invoke: Invoke, db_url: str) -> None:
    make_run(db_url)
    networks = audit_json(invoke, db_url, "--kind", "network")
    assert {e["kind"] for e in networks["events"]} == {"network"}
    assert networks["runs"] == ["r1"] and networks["kind"] == "network"
    events = audit_json(invoke, db_url, "--section", "events")
    assert "id_map" not in events
    run_events = [e for e in events["events"] if e["step"] is None]
    assert [e["to_state"] for e in run_events if e["to_state"]] == [
        "created", "running", "failed"]
    # The executor took part as a worker: it joined, then left.
    assert [e["trigger"] for e in run_events if not e["to_state"]] == [
        "worker-joined", "worker-left"]
    middle = events["events"][len(events["events"]) // 2]["at"]
    since = audit_json(invoke, db_url, "--since", middle, "--section", "events")
    assert since["events"] == [e for e in events["events"] if e["at"] >= middle]
    assert audit_json(invoke, db_url, "--since", "1s", "--section", "events",
                      "--kind", "project")["events"] in ([], [e for e in events["events"]
                                                              if e["kind"] == "project"])


def test_parse_since() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert parse_since("90s", now) == now - timedelta(seconds=90)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("3d", now) == now - timedelta(days=3)
    assert parse_since("2026-12-02", now) == datetime(2026, 12, 2, tzinfo=UTC)
    assert parse_since("2026-12-02T14:30Z", now) == datetime(2026, 12, 2, 14, 30, tzinfo=UTC)
    assert parse_since("2026-12-02T14:30+01:00", now) == datetime(2026, 12, 2, 13, 30,
                                                                   tzinfo=UTC)


@pytest.mark.postgres
def test_the_same_log_on_postgresql(invoke: Invoke, db_url: str, pg_url: str) -> None:
    make_run(db_url)
    make_run(pg_url)
    for args in ((), ("--tenant", "physics"), ("--kind", "project")):
        on_sqlite = comparable(audit_json(invoke, db_url, *args))
        on_pg = comparable(audit_json(invoke, pg_url, *args))
        assert on_pg == on_sqlite
    table = invoke("--db", pg_url, "audit", "--run", "r1")
    assert table.exit_code == 0 and table.stdout.count("\n") == 1 + 1 + len(
        audit_json(invoke, pg_url)["events"]) + 1 + 2 + 4
