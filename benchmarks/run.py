"""Run the registered benchmarks: ``python -m benchmarks [--only NAME ...] [--list]``."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from benchmarks.harness import discover, write_result, write_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this one")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    benchmarks = discover()
    if args.list:
        for bench in benchmarks.values():
            sys.stdout.write(f"{bench.name}: {bench.description}\n")
        return 0
    unknown = set(args.only or []) - set(benchmarks)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    failed = False
    for name, bench in benchmarks.items():
        if args.only and name not in args.only:
            continue
        sys.stdout.write(f"== {name}: {bench.description}\n")
        began = time.perf_counter()
        metrics = bench.func()
        path = write_result(bench, metrics, time.perf_counter() - began)
        for m in metrics:
            value = "n/a" if m.value is None else f"{m.value:,.3f}"
            verdict = {True: "pass", False: "FAIL", None: "-"}[m.passed]
            sys.stdout.write(f"   {m.name}: {value} {m.unit} [{verdict}] {m.note}\n")
            failed |= m.passed is False
        sys.stdout.write(f"   -> {path}\n")
    sys.stdout.write(f"table: {write_table()}\n")
    return 1 if failed else 0
