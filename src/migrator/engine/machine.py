"""The step state machine, as data.

One ``transitions.Machine`` definition is shared by every step. It is never attached to a
loaded row (``add_model`` would reset the row's state to the initial one); instead
:func:`destination` asks the definition where a trigger leads from a given state, and the
caller writes that state to the database in the same transaction as the audit event.

    pending -> running -> verifying -> done -> rolled_back
       |         |  \\         |
       |         |   \\-------+--> failed --retry--> pending
       |         +--> skipped  (already on the target and identical)
       +--> blocked --unblock--> pending  (a dependency failed for good / was retried)
    running|verifying --requeue--> pending  (interrupted at a checkpoint, or in doubt after a
                                             crash and reconciled as "resume"/"restart")
    running|verifying --reclaim--> itself   (another worker takes over an expired lease)
"""

from __future__ import annotations

from typing import Final

from transitions import Machine

PENDING: Final = "pending"
RUNNING: Final = "running"
VERIFYING: Final = "verifying"
DONE: Final = "done"
FAILED: Final = "failed"
BLOCKED: Final = "blocked"
SKIPPED: Final = "skipped"
ROLLED_BACK: Final = "rolled_back"

STATES: Final[tuple[str, ...]] = (
    PENDING,
    RUNNING,
    VERIFYING,
    DONE,
    FAILED,
    BLOCKED,
    SKIPPED,
    ROLLED_BACK,
)
INITIAL_STATE: Final = PENDING
# A dependency in one of these states lets its dependents start.
SATISFIED_STATES: Final[frozenset[str]] = frozenset({DONE, SKIPPED})
# A step in one of these states was in the middle of work when its executor stopped.
IN_DOUBT_STATES: Final[frozenset[str]] = frozenset({RUNNING, VERIFYING})

# The trigger recorded for a checkpoint: not a transition (from_state == to_state), but it
# changes the row (and its version) and so gets an audit event like every other change.
CHECKPOINT_TRIGGER: Final = "checkpoint"
# A worker takes over a step whose previous owner lost its lease (engine/leases.py): the state
# stays, the version and the fencing token change, and the audit shows who took it from whom.
RECLAIM_TRIGGER: Final = "reclaim"

TRANSITIONS: Final[list[dict[str, str | list[str]]]] = [
    {"trigger": "start", "source": PENDING, "dest": RUNNING},
    {"trigger": "verify", "source": RUNNING, "dest": VERIFYING},
    {"trigger": "complete", "source": VERIFYING, "dest": DONE},
    {"trigger": "fail", "source": [RUNNING, VERIFYING], "dest": FAILED},
    {"trigger": "retry", "source": FAILED, "dest": PENDING},
    {"trigger": "block", "source": PENDING, "dest": BLOCKED},
    {"trigger": "unblock", "source": BLOCKED, "dest": PENDING},
    {"trigger": "skip", "source": [PENDING, RUNNING], "dest": SKIPPED},
    {"trigger": "requeue", "source": [RUNNING, VERIFYING], "dest": PENDING},
    {"trigger": "rollback", "source": DONE, "dest": ROLLED_BACK},
    {"trigger": RECLAIM_TRIGGER, "source": RUNNING, "dest": RUNNING},
    {"trigger": RECLAIM_TRIGGER, "source": VERIFYING, "dest": VERIFYING},
]

MACHINE: Final = Machine(
    model=None,
    states=list(STATES),
    transitions=TRANSITIONS,
    auto_transitions=False,
    initial=None,
)


def destination(state: str, trigger: str) -> str | None:
    """The state ``trigger`` leads to from ``state``, or None when it is not allowed there."""
    if trigger not in MACHINE.events:
        return None
    found = MACHINE.get_transitions(trigger=trigger, source=state)
    if not found:
        return None
    # Our definition has no conditions, so the first (only) transition is the one taken.
    return str(found[0].dest)


def triggers_from(state: str) -> list[str]:
    """Every trigger allowed in ``state``, sorted (for error messages)."""
    return sorted(t for t in MACHINE.events if destination(state, t) is not None)
