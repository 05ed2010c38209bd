"""A worker process for the multi-worker tests: joins a run with the test kinds registered.

    python -m tests.engine.worker_runner URL RUN [--slots N] [--lease S] [--resume]

Prints the run's result as one JSON line; exit status 0 when the run finished.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from migrator.engine.executor import Executor, ExecutorConfig
from migrator.engine.handlers import HandlerRegistry
from migrator.engine.interrupt import graceful_sigint
from migrator.store.db import make_engine, session_factory
from tests.engine.kinds import FencedEffectHandler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("run")
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    registry = HandlerRegistry()
    registry.register("fenced", FencedEffectHandler(f"pid{os.getpid()}"))
    engine = make_engine(args.url)
    executor = Executor(session_factory(engine), args.run, registry=registry,
                        config=ExecutorConfig(workers=args.slots, backoff_base=0.01,
                                              lease_seconds=args.lease))
    with graceful_sigint(executor.request_stop):
        result = executor.run(resume=args.resume, join=not args.resume)
    engine.dispose()
    sys.stdout.write(json.dumps({"status": result.status, "counts": result.counts,
                                 "completed": result.completed}) + "\n")
    return 0 if result.status == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
