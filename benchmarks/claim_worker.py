"""A worker process for bench_claims: the real Executor with a no-op step kind.

    python -m benchmarks.claim_worker URL RUN SLOTS
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import Any

from migrator.engine.executor import Executor, ExecutorConfig
from migrator.engine.handlers import Handler, HandlerRegistry, StepContext
from migrator.engine.steps import StepSnapshot
from migrator.store.db import make_engine, session_factory


class Noop(Handler):
    """One phase that does nothing: the step costs exactly what the engine costs."""

    def run_phase(self, ctx: StepContext, step: StepSnapshot, phase: str
                  ) -> Mapping[str, Any] | None:
        return None


def main(url: str, run: str, slots: str) -> None:
    registry = HandlerRegistry()
    registry.register("noop", Noop())
    engine = make_engine(url, pool_size=int(slots) + 2)
    began = time.monotonic()
    # CPU before the run: the interpreter, the imports, the engine (about 1 s a process).
    startup_cpu = time.process_time()
    result = Executor(session_factory(engine), run, registry=registry,
                      config=ExecutorConfig(workers=int(slots))).run(join=True)
    print(json.dumps({"completed": result.completed, "seconds": time.monotonic() - began,
                      "cpu_s": time.process_time(), "startup_cpu_s": startup_cpu,
                      "status": result.status}))
    engine.dispose()


if __name__ == "__main__":
    main(*sys.argv[1:4])
