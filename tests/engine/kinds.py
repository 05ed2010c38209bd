"""Test-only step kinds (never registered by the package itself)."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from migrator.clouds.errors import CloudCallError
from migrator.engine.handlers import Handler, Reconciliation, StepContext
from migrator.engine.runs import StepSpec
from migrator.engine.steps import StepSnapshot
from migrator.transfer.errors import TransferError


def read_effects(path: Path) -> Counter[str]:
    """How many times each step key's side effect happened."""
    if not path.exists():
        return Counter()
    return Counter(line for line in path.read_text().splitlines() if line)


class AppendHandler(Handler):
    """Side effect: appends ``key\\n`` to a file (fsync'ed) in phase ``effect``.

    ``spec["sleep_ms"]`` is spread over both phases so that a kill lands at random points:
    before, during or after the side effect and its checkpoint.
    """

    phases = ("effect", "settle")

    def __init__(self, effects: Path) -> None:
        self.effects = effects

    def run_phase(
        self, ctx: StepContext, step: StepSnapshot, phase: str
    ) -> Mapping[str, Any] | None:
        time.sleep(step.spec.get("sleep_ms", 0) / 2000)
        if phase == "effect":
            fd = os.open(self.effects, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{step.key}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            return {"effect": True}
        return {"settled": True}

    def reconcile(self, ctx: StepContext, step: StepSnapshot) -> Reconciliation:
        # Like a real handler looking on the target for what it created: the effect file is
        # the "target". If the effect happened but its checkpoint did not commit, adopt it.
        if step.phase is None and read_effects(self.effects)[step.key] > 0:
            ctx.checkpoint("effect", {"effect": True, "adopted": True})
        return Reconciliation.RESUME


class FlakyHandler(Handler):
    """Fails the keys in ``always`` every time, the keys in ``times`` that many times."""

    phases = ("apply",)

    def __init__(self) -> None:
        self.always: set[str] = set()
        self.times: dict[str, int] = {}
        self.final: set[str] = set()  # fail with an error marked final (retrying cannot help)
        self.gone: set[str] = set()  # fail as a call to a cloud that cannot be connected to
        self.runs: Counter[str] = Counter()
        self._lock = threading.Lock()

    def run_phase(
        self, ctx: StepContext, step: StepSnapshot, phase: str
    ) -> Mapping[str, Any] | None:
        with self._lock:
            self.runs[step.key] += 1
            if step.key in self.final:
                raise TransferError(f"{step.key}: the volume is attached", retryable=False)
            if step.key in self.gone:
                raise CloudCallError(f"cloud target: create {step.key}: cannot connect: "
                                     "Connection refused", cloud="target",
                                     operation=f"create {step.key}", retryable=True,
                                     unreachable=True)
            if step.key in self.always:
                raise RuntimeError(f"{step.key} cannot be created: quota exceeded")
            if self.times.get(step.key, 0) > 0:
                self.times[step.key] -= 1
                raise RuntimeError(f"{step.key}: transient 503")
        return {"created": f"target-{step.key}"}


def chains_with_fan_in(
    chains: int, length: int, *, sleep_ms: tuple[int, int] = (0, 0), seed: int = 0
) -> tuple[list[StepSpec], list[tuple[str, str]]]:
    """``chains`` chains of ``length`` steps, a fan-in step per pair of chains needing both
    tails, and one final step needing every fan-in: chains + fan-in, like tenants whose
    resources converge on shared ones."""
    import random

    rng = random.Random(seed)
    steps: list[StepSpec] = []
    deps: list[tuple[str, str]] = []

    def add(key: str) -> None:
        steps.append(StepSpec(key, "append", {"sleep_ms": rng.randint(*sleep_ms)}))

    for c in range(chains):
        for i in range(length):
            add(f"c{c}-{i}")
            if i:
                deps.append((f"c{c}-{i}", f"c{c}-{i - 1}"))
    for c in range(0, chains - 1, 2):
        add(f"join{c}")
        deps += [(f"join{c}", f"c{c}-{length - 1}"), (f"join{c}", f"c{c + 1}-{length - 1}")]
    add("final")
    deps += [("final", s.key) for s in steps if s.key.startswith("join")]
    return steps, deps


EFFECTS_TABLE = "test_effects"


def create_effects_table(url: str) -> None:
    """The "target" of :class:`FencedEffectHandler`: a table in the state database itself,
    so that a side effect and the check of its step's lease commit in one transaction."""
    from sqlalchemy import text

    from migrator.store.db import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE {EFFECTS_TABLE} ("
                              "step_key VARCHAR(64) NOT NULL, token INTEGER NOT NULL, "
                              "worker VARCHAR(64) NOT NULL, at FLOAT NOT NULL)"))
    finally:
        engine.dispose()


class FencedEffectHandler(Handler):
    """Side effect: one row in the effects table, written in a fenced transaction (committed
    only while this worker still holds the step's lease) with the fencing token beside it.

    Like a real handler, it does not look before acting; ``reconcile`` adopts an effect a
    previous owner made (its checkpoint may not have committed). ``spec["sleep_ms"]`` is spread
    over both phases, so that kills and pauses land before, inside and after the effect.
    """

    phases = ("effect", "settle")

    def __init__(self, worker: str) -> None:
        self.worker = worker

    def run_phase(
        self, ctx: StepContext, step: StepSnapshot, phase: str
    ) -> Mapping[str, Any] | None:
        from sqlalchemy import text

        from migrator.engine.leases import fenced_transaction

        time.sleep(step.spec.get("sleep_ms", 0) / 2000)
        if phase == "effect":
            with fenced_transaction(ctx.factory, step) as conn:
                conn.execute(text(f"INSERT INTO {EFFECTS_TABLE} (step_key, token, worker, at) "
                                  "VALUES (:k, :t, :w, :at)"),
                             {"k": step.key, "t": step.lease_token, "w": self.worker,
                              "at": time.time()})
            return {"effect": True}
        return {"settled": True}

    def reconcile(self, ctx: StepContext, step: StepSnapshot) -> Reconciliation:
        from sqlalchemy import text

        if step.phase is None:
            with ctx.factory.kw["bind"].connect() as conn:
                found = conn.execute(text(f"SELECT count(*) FROM {EFFECTS_TABLE} "
                                          "WHERE step_key = :k"), {"k": step.key}).scalar()
            if found:
                ctx.checkpoint("effect", {"effect": True, "adopted": True})
        return Reconciliation.RESUME
