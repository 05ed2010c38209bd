"""Runs ``execute_run`` in its own process for the crash and Ctrl-C tests.

    python -m tests.engine.runner URL RUN EFFECTS_FILE [--resume] [--workers N]

Prints the run's result as one JSON line; exit status 0 finished, 3 interrupted, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from migrator.engine.handlers import HandlerRegistry
from migrator.operations.execute import execute_run
from tests.engine.kinds import AppendHandler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("run")
    parser.add_argument("effects", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    registry = HandlerRegistry()
    registry.register("append", AppendHandler(args.effects))
    result = execute_run(
        args.url,
        args.run,
        workers=args.workers,
        resume=args.resume,
        registry=registry,
        backoff_base=0.01,
    )
    sys.stdout.write(json.dumps({"status": result.status, "counts": result.counts}) + "\n")
    return {"finished": 0, "interrupted": 3}.get(result.status, 1)


if __name__ == "__main__":
    sys.exit(main())
