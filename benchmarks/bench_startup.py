"""Start-up: the CPU time (user + sys) of a fresh ``migrator`` process for the commands an
operator types first or runs in a loop, against the floor measured in the same run.

Each figure is the median over ``RUNS`` fresh processes of ``resource.getrusage(
RUSAGE_CHILDREN)`` before and after: CPU, not wall time, so that the other processes on a
busy machine do not count (contention still inflates it a little, which the floor measured
alongside shows). The floor is ``python -c pass`` (the interpreter) and ``python -c "import
click"`` (the least a click program imports). ``status`` reads a state database holding a
run of 25,000 steps over 1,000 tenants (a 1,000-tenant plan), so its queries count too.
``eager_imports_s`` is what every command paid before commands were loaded on first use: the
import of every command's operations.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import Metric, benchmark

RUNS = int(os.environ.get("MIGRATOR_BENCH_STARTUP_RUNS", "15"))
TARGET_CPU_S = 0.3
TENANTS = 1000
STEPS_PER_TENANT = 25
# What a command imported before it was loaded on first use (cli/main.py imported them all).
EAGER = ("import migrator.operations.demo, migrator.operations.execute, "
         "migrator.operations.status, migrator.operations.sim, migrator.operations.db")


def cpu_seconds(args: list[str], cwd: Path, env: dict[str, str], runs: int = RUNS) -> float:
    """Median CPU time (user + sys) of ``args`` as a fresh process, over ``runs`` runs."""
    samples = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(samples)


def _state_database(path: Path) -> str:
    """A state database at head with one run of TENANTS x STEPS_PER_TENANT steps."""
    from sqlalchemy import insert

    from migrator.store import schema
    from migrator.store.db import make_engine
    from migrator.store.models import Run, Step

    url = f"sqlite:///{path}"
    engine = make_engine(url, create_dir=True)
    schema.upgrade(engine)
    states = ("done", "done", "done", "pending", "running", "failed", "blocked", "skipped")
    with engine.begin() as conn:
        run = conn.execute(insert(Run).values(name="bench", status="running"))
        run_id = run.inserted_primary_key[0]
        conn.execute(insert(Step), [
            {"run_id": run_id, "key": f"s{t}-{i}", "kind": "network", "tenant": f"tenant-{t}",
             "state": states[(t + i) % len(states)]}
            for t in range(TENANTS) for i in range(STEPS_PER_TENANT)])
    engine.dispose()
    return url


def _migrator() -> list[str]:
    """The console script next to this interpreter, else the same entry point by -c."""
    script = Path(sys.executable).with_name("migrator")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from migrator.cli.main import main; main()"]


@benchmark("startup", "CPU time of a fresh process: migrator --version, --help, status "
                      "(median of fresh processes) against python -c pass and import click")
def startup() -> list[Metric]:
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="migrator-bench-startup-") as name:
        tmp = Path(name)
        url = _state_database(tmp / "state.db")
        env = {**os.environ, "MIGRATOR_DB": url}
        migrator = _migrator()
        # Once each before measuring: byte-code compiled, files in the page cache.
        for args in (["--version"], ["--help"], ["status"]):
            subprocess.run([*migrator, *args], cwd=tmp, env=env, check=True,
                           stdout=subprocess.DEVNULL)
        floor = cpu_seconds([py, "-c", "pass"], tmp, env)
        click = cpu_seconds([py, "-c", "import click"], tmp, env)
        version = cpu_seconds([*migrator, "--version"], tmp, env)
        helps = cpu_seconds([*migrator, "--help"], tmp, env)
        status = cpu_seconds([*migrator, "status"], tmp, env)
        status_json = cpu_seconds([*migrator, "status", "--format", "json"], tmp, env)
        eager = cpu_seconds([py, "-c", EAGER], tmp, env, runs=5)
    load = os.getloadavg()[0]

    def above(value: float) -> str:
        return f"{value - floor:.3f} s above python -c pass, {value - click:.3f} s above " \
               "import click"

    return [
        Metric("python_pass_s", floor, "s CPU", note=f"floor: the interpreter alone; median "
               f"of {RUNS} processes; 1-min load average {load:.1f} at the end"),
        Metric("import_click_s", click, "s CPU", note="floor of a click program"),
        Metric("version_s", version, "s CPU", target=TARGET_CPU_S, better="lower",
               note=above(version)),
        Metric("help_s", helps, "s CPU", target=TARGET_CPU_S, better="lower",
               note=above(helps) + "; imports every command module, none of their operations"),
        Metric("status_s", status, "s CPU", target=TARGET_CPU_S, better="lower",
               note=above(status) + f"; a run of {TENANTS * STEPS_PER_TENANT:,} steps over "
               f"{TENANTS:,} tenants, SQLite read through the standard library"),
        Metric("status_json_s", status_json, "s CPU", target=TARGET_CPU_S, better="lower",
               note=above(status_json)),
        Metric("eager_imports_s", eager, "s CPU", note="every command's operations imported "
               "(what each command paid before commands were loaded on first use); median of 5"),
    ]
