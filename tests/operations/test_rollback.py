"""What a rollback undoes and in which order (operations/rollback.py's ``decide`` and
``undo_dependencies``), over run steps as the state database holds them. The end-to-end
behaviour against the simulator is in tests/test_rollback_e2e.py."""

from __future__ import annotations

from typing import Any

import pytest

from migrator.operations.rollback import decide, undo_dependencies
from migrator.store.run_kinds import RunStep

_IDS = iter(range(1, 10_000))


def step(key: str, target: str | None, *, tenant: str = "physics", state: str = "done",
         refs: dict[str, str] | None = None, **checkpoint: Any) -> RunStep:
    kind, _, source = key.partition(":")
    return RunStep(next(_IDS), 1, key, kind, source, tenant, key, state, None,
                   dict(checkpoint), {"refs": refs or {}}, 1, 0, target)


def test_created_resources_are_undone_adopted_and_foreign_ones_kept() -> None:
    steps = [
        step("project:p", "P"),
        step("quota:compute:p", "compute:P"),
        step("user:u", "U"),
        step("keypair:k", "U:key", refs={"user_id": "user:u"}, adopted="in-doubt"),
        step("network:n", "N"),
        step("network:other", "N2", adopted="source"),
        step("role_assignment:u:p:r", "U:P:R", refs={"user_id": "user:u",
                                                     "project_id": "project:p"}),
        step("security_group_rule:r", "R", adopted_rule="identical rule"),
        step("image:i", None, state="pending"),
        step("volume:v", None, state="running", copy={"source_temp_image_id": "T"}),
    ]
    undo, kept = decide(steps, {("network", "N2")}, {})
    actions = {u.key: u.action for u in undo}
    assert actions == {
        "project:p": "delete", "quota:compute:p": "reset_quotas", "user:u": "delete",
        "network:n": "delete", "role_assignment:u:p:r": "revoke",
        "keypair:k": "delete",  # found in place, but its user is the run's
        "volume:v": "temporaries"}
    assert {k.key: k.reason for k in kept} == {
        "network:other": "another run made or adopted it (its id map holds it too)",
        "security_group_rule:r": "an identical rule was there already (it goes with its "
                                 "group)"}


def test_an_adopted_project_keeps_what_was_found_on_it() -> None:
    steps = [
        step("project:p", "P", adopted="decision"),
        step("quota:network:p", "network:P"),
        step("user:u", "U", adopted="decision"),
        step("role_assignment:u:p:r", "U:P:R", refs={"user_id": "user:u",
                                                     "project_id": "project:p"},
             adopted="source"),
        step("security_group:default", "SG", adopted="source"),
        step("network:n", "N"),
    ]
    undo, kept = decide(steps, set(), {})
    assert [u.key for u in undo] == ["network:n"]
    reasons = {k.key: k.reason for k in kept}
    assert reasons["project:p"] == "adopted by decision: it existed before the run"
    assert reasons["quota:network:p"].startswith("quotas of a project that existed before")
    assert reasons["security_group:default"] == "found on a project that existed before the run"
    assert reasons["role_assignment:u:p:r"] == "found on a project that existed before the run"


def test_a_step_left_in_doubt_is_undone_by_what_the_target_holds() -> None:
    steps = [step("project:p", None, state="running"),
             step("router:r", "R"), step("subnet:s", "S", adopted="decision"),
             step("router_interface:ri", None, state="running",
                  refs={"router_id": "router:r", "subnet_id": "subnet:s"}),
             step("router_interface:old", None, state="running",
                  refs={"router_id": "router:x", "subnet_id": "subnet:s"})]
    undo, kept = decide(steps, set(), {"project:p": "P", "router_interface:ri": "PORT",
                                       "router_interface:old": "PORT2"})
    assert [(u.key, u.target_id, u.action) for u in undo] == [
        ("project:p", "P", "delete"), ("router:r", "R", "delete"),
        ("router_interface:ri", "PORT", "remove_interface")]
    assert undo[0].why == "found on the target (step left in doubt)"
    # An interface found in doubt between a router and a subnet the run did not make: kept.
    assert [(k.key, k.target_id) for k in kept] == [("subnet:s", "S"),
                                                    ("router_interface:old", "PORT2")]


def test_quotas_left_in_doubt_on_a_created_project_are_reset() -> None:
    """A try killed between its quota PUT and the checkpoint leaves no id; on a project the
    run created the quotas are reset all the same, elsewhere nothing is touched."""
    steps = [step("project:p", "P"), step("project:q", "Q", adopted="decision"),
             step("quota:volume:p", None, state="running", refs={"project_id": "project:p"}),
             step("quota:compute:p", None, state="pending", refs={"project_id": "project:p"}),
             step("quota:volume:q", None, state="failed", refs={"project_id": "project:q"})]
    undo, kept = decide(steps, set(), {})
    assert [(u.key, u.target_id, u.action) for u in undo] == [
        ("project:p", "P", "delete"), ("quota:volume:p", "volume:P", "reset_quotas")]
    assert [k.key for k in kept] == ["project:q"]


def test_undo_order_is_the_reverse_of_the_dependencies_through_kept_steps() -> None:
    steps = [step("project:p", "P"), step("quota:network:p", "network:P"),
             step("network:n", "N"), step("subnet:s", "S"), step("router:r", "R"),
             step("router_interface:ri", "RI")]
    undo, _ = decide(steps, set(), {})
    deps = [("quota:network:p", "project:p"), ("network:n", "quota:network:p"),
            ("subnet:s", "network:n"), ("router:r", "quota:network:p"),
            ("router_interface:ri", "router:r"), ("router_interface:ri", "subnet:s")]
    order = set(undo_dependencies(undo, deps))
    assert order == {
        ("undo:project:p", "undo:quota:network:p"),
        ("undo:quota:network:p", "undo:network:n"), ("undo:quota:network:p", "undo:router:r"),
        ("undo:network:n", "undo:subnet:s"), ("undo:subnet:s", "undo:router_interface:ri"),
        ("undo:router:r", "undo:router_interface:ri")}


def test_a_run_still_executed_by_a_worker_is_not_rolled_back(db_url: str) -> None:
    from migrator.engine.runs import StepSpec, create_run
    from migrator.engine.workers import register_worker
    from migrator.errors import ConcurrencyError, ConfigError
    from migrator.operations.rollback import rollback
    from migrator.store.db import make_engine, session_factory

    engine = make_engine(db_url)
    try:
        factory = session_factory(engine)
        run_id = create_run(factory, "busy", [StepSpec("project:p", "project", source_id="p")],
                            [])
        create_run(factory, "busy-dry-run", [], [], options={"kind": "dry_run"})
        name = register_worker(factory, run_id, 4)  # this process: alive
    finally:
        engine.dispose()
    with pytest.raises(ConcurrencyError, match=rf"run 'busy' is being executed by worker\(s\) "
                                               rf"{name}; stop them first"):
        rollback(db_url, "busy")
    with pytest.raises(ConfigError, match="run 'busy-dry-run' is a dry run, not a migration "
                                          "or a rehearsal: only those are rolled back"):
        rollback(db_url, "busy-dry-run")


def test_server_steps_are_undone_with_what_their_cutover_made() -> None:
    lookup = {"ports": [{"source_id": "sp1"}, {"source_id": "sp2"}],
              "volumes": [{"source_id": "sv1"}]}

    def server(key: str, target: str | None, state: str, **checkpoint: Any) -> RunStep:
        s = step(key, target, state=state, refs={"project_id": "project:p"}, **checkpoint)
        s.spec["lookup"] = lookup
        return s

    steps = [
        step("project:p", "P"),
        server("server:booted", "S1", "done", power_state="ACTIVE", port_ids=["T1"]),
        # Stopped and copied, killed before its boot: no target server, but ports, image,
        # volumes and a stopped source to put back.
        server("server:stopped", None, "failed", power_state="ACTIVE",
               volumes={"sv1": {"target_volume_id": "V"}}),
        server("server:untouched", None, "pending"),
        server("server:waiting", None, "blocked"),
    ]
    undo, kept = decide(steps, set(), {})
    by_key = {u.key: u for u in undo}
    assert sorted(by_key) == ["project:p", "server:booted", "server:stopped"]
    assert not kept
    booted, stopped = by_key["server:booted"], by_key["server:stopped"]
    assert (booted.target_id, booted.action) == ("S1", "delete")
    assert (stopped.target_id, stopped.action) == ("-", "delete")
    for u in (booted, stopped):
        assert u.extra.get("project_id") == "P"
        assert u.extra.get("source_ports") == ["sp1", "sp2"]
        assert u.extra.get("source_volumes") == ["sv1"]
    assert booted.extra.get("original_checkpoint") == {"power_state": "ACTIVE",
                                                        "port_ids": ["T1"]}
    # The server goes before its project.
    deps = undo_dependencies(undo, [("server:booted", "project:p"),
                                    ("server:stopped", "project:p")])
    assert sorted(deps) == [("undo:project:p", "undo:server:booted"),
                            ("undo:project:p", "undo:server:stopped")]
