"""Benchmark registry, machine description and result files.

A benchmark is a function returning :class:`Metric` values, registered with ``@benchmark``
in any ``benchmarks/bench_*.py`` module (discovered on import, nothing to list by hand).
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import platform
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
# Prose about a benchmark's figures (what they mean, where the time goes), one file per
# benchmark, appended below the table so that a new run of the table keeps it.
NOTES = Path(__file__).resolve().parent / "notes"


@dataclass(frozen=True)
class Metric:
    name: str
    value: float | None  # None: could not be measured here (see note)
    unit: str
    target: float | None = None
    # "higher": value must be >= target; "lower": value must be <= target.
    better: str = "higher"
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if self.target is None or self.value is None:
            return None
        return self.value >= self.target if self.better == "higher" else self.value <= self.target


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    func: Callable[[], list[Metric]]


@dataclass
class Registry:
    benchmarks: dict[str, Benchmark] = field(default_factory=dict)

    def add(self, bench: Benchmark) -> None:
        if bench.name in self.benchmarks:
            raise ValueError(f"benchmark {bench.name!r} is registered twice")
        self.benchmarks[bench.name] = bench


REGISTRY = Registry()


def median_of(runs: list[list[Metric]]) -> list[Metric]:
    """The same metrics measured in several runs, one by one: each the median of its runs'
    values, with the note of the run that gave the median and every run's value after it.
    (An even number of runs gives the lower middle one, a value that was measured.)"""
    if len(runs) == 1:
        return runs[0]
    out: list[Metric] = []
    for same in zip(*runs, strict=True):
        names = {m.name for m in same}
        if len(names) != 1:
            raise ValueError(f"runs measured different metrics: {sorted(names)}")
        measured = sorted((m for m in same if m.value is not None), key=lambda m: m.value or 0)
        if not measured:
            out.append(same[0])
            continue
        middle = measured[(len(measured) - 1) // 2]
        values = ", ".join(f"{m.value:,.3g}" for m in same if m.value is not None)
        note = f"median of {len(same)} runs ({values})"
        note += f"; {middle.note}" if middle.note else ""
        out.append(replace(middle, note=note))
    return out


def benchmark(name: str, description: str) -> Callable[[Callable[[], list[Metric]]], Any]:
    """Register the decorated function as benchmark ``name``."""

    def decorate(func: Callable[[], list[Metric]]) -> Callable[[], list[Metric]]:
        REGISTRY.add(Benchmark(name, description, func))
        return func

    return decorate


def discover() -> dict[str, Benchmark]:
    """Import every ``benchmarks/bench_*.py`` module; return the registered benchmarks."""
    package = Path(__file__).resolve().parent
    for module in sorted(pkgutil.iter_modules([str(package)]), key=lambda m: m.name):
        if module.name.startswith("bench_"):
            importlib.import_module(f"benchmarks.{module.name}")
    return dict(REGISTRY.benchmarks)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(ram / 2**30, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "os": platform.platform(terse=True),
    }


def write_result(bench: Benchmark, metrics: list[Metric], elapsed_s: float) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": bench.name,
        "description": bench.description,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed_s, 2),
        "machine": machine(),
        "metrics": [{**asdict(m), "passed": m.passed} for m in metrics],
    }
    path = RESULTS / f"{bench.name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def write_table() -> Path:
    """``results/README.md`` from every result file (so ``--only`` keeps the others)."""
    rows = []
    for path in sorted(RESULTS.glob("*.json")):
        record = json.loads(path.read_text())
        m = record["machine"]
        where = f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB, Python {m['python']}"
        for metric in record["metrics"]:
            value = "n/a" if metric["value"] is None else f"{metric['value']:,.3g}"
            if metric["value"] is not None and metric["value"] >= 1000:
                value = f"{metric['value']:,.0f}"
            target = ""
            if metric["target"] is not None:
                sign = ">=" if metric["better"] == "higher" else "<="
                target = f"{sign} {metric['target']:,g}"
            verdict = {True: "pass", False: "FAIL", None: "-"}[metric["passed"]]
            rows.append(
                f"| {record['benchmark']} | {metric['name']} | {value} {metric['unit']} | "
                f"{target} | {verdict} | {where} | {record['date'][:10]} |"
            )
            if metric["note"]:
                rows.append(f"| | *{metric['note']}* | | | | | |")
    text = (
        "# Benchmark results\n\n"
        "Written by `python -m benchmarks` (one benchmark: `--only NAME`); one JSON file per "
        "benchmark next to this table holds the full record.\n\n"
        "| benchmark | metric | value | target | result | machine | date |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    for note in sorted(NOTES.glob("*.md")):
        text += "\n" + note.read_text()
    path = RESULTS / "README.md"
    path.write_text(text)
    return path
