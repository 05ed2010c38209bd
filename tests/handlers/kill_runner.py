"""Executes a run with the tenant handlers in its own process, for the SIGKILL test.

    python -m tests.handlers.kill_runner URL RUN CLOUDS_YAML [--resume]

Prints the run's result as one JSON line; exit status 0 finished, 3 interrupted, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from migrator.clouds.connection import open_cloud
from migrator.clouds.target import TargetCloud
from migrator.engine.handlers import HandlerRegistry
from migrator.handlers import register_handlers, services_for
from migrator.operations.execute import execute_run
from migrator.retry import Backoff, RetryPolicy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("run")
    parser.add_argument("clouds_yaml")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    handle = open_cloud("target", config_file=args.clouds_yaml, role="target")
    result = execute_run(
        args.url, args.run, workers=args.workers, resume=args.resume,
        registry=register_handlers(HandlerRegistry()),
        services=services_for(TargetCloud(handle, retry=RetryPolicy(backoff=Backoff(0.01)))),
        backoff_base=0.05,
    )
    sys.stdout.write(json.dumps({"status": result.status, "counts": result.counts}) + "\n")
    return {"finished": 0, "interrupted": 3}.get(result.status, 1)


if __name__ == "__main__":
    sys.exit(main())
