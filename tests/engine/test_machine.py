from __future__ import annotations

import pytest

from migrator.engine import machine


def test_every_state_is_reachable_from_pending() -> None:
    seen, frontier = {machine.INITIAL_STATE}, [machine.INITIAL_STATE]
    while frontier:
        state = frontier.pop()
        for trigger in machine.triggers_from(state):
            dest = machine.destination(state, trigger)
            assert dest is not None
            if dest not in seen:
                seen.add(dest)
                frontier.append(dest)
    assert seen == set(machine.STATES)


@pytest.mark.parametrize(
    ("state", "trigger", "dest"),
    [
        ("pending", "start", "running"),
        ("running", "verify", "verifying"),
        ("verifying", "complete", "done"),
        ("running", "fail", "failed"),
        ("verifying", "fail", "failed"),
        ("failed", "retry", "pending"),
        ("pending", "block", "blocked"),
        ("blocked", "unblock", "pending"),
        ("pending", "skip", "skipped"),
        ("running", "skip", "skipped"),
        ("running", "requeue", "pending"),
        ("verifying", "requeue", "pending"),
        ("done", "rollback", "rolled_back"),
    ],
)
def test_destination(state: str, trigger: str, dest: str) -> None:
    assert machine.destination(state, trigger) == dest


@pytest.mark.parametrize(
    ("state", "trigger"),
    [
        ("pending", "complete"),
        ("done", "start"),
        ("done", "fail"),
        ("running", "complete"),  # verification cannot be skipped
        ("failed", "start"),
        ("blocked", "start"),
        ("skipped", "retry"),
        ("pending", "to_done"),  # auto_transitions are off
        ("pending", "no-such-trigger"),
    ],
)
def test_illegal(state: str, trigger: str) -> None:
    assert machine.destination(state, trigger) is None


def test_final_states_allow_only_operator_triggers() -> None:
    assert machine.triggers_from("done") == ["rollback"]
    assert machine.triggers_from("failed") == ["retry"]
    assert machine.triggers_from("blocked") == ["unblock"]
    assert machine.triggers_from("skipped") == []
    assert machine.triggers_from("rolled_back") == []
