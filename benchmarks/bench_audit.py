"""``migrator audit`` of a 250,000-step run streams: its peak RSS stays flat.

A synthetic run is registered with ``engine.runs.create_run`` (250,000 steps over 10,000
tenants, every 25th an image) and its history is bulk-inserted as a finished run leaves it:
per step start, checkpoint, verify and complete (one step in a hundred also failed once and
was retried), the id map, images' bytes and checksums in their checkpoints. Then, each in its
own process (peak RSS from ``wait4``, its own):

- ``migrator audit --run bench --format table`` (events and id map), ``--format csv`` and
  ``--format json``: peak RSS (target < 200 MiB) and wall time;
- the yardstick a first implementation would be: the same event query fetched whole
  (``.all()``) and written as CSV, in Python (peak RSS, wall time);
- the peak RSS of ``migrator --version`` (what importing the command costs, before any row).
- ``sqlite3 -csv`` dumping the events table (the speed of the database itself), when the
  ``sqlite3`` program is installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.harness import Metric, benchmark
from migrator.engine.runs import StepSpec, create_run
from migrator.engine.steps import EVENTS, STEPS, utcnow
from migrator.store import schema
from migrator.store.bulk import insert_many
from migrator.store.db import make_engine, session_factory
from migrator.store.models import IdMap

REPO = Path(__file__).resolve().parents[1]
STEPS_TOTAL = 250_000
TENANTS = 10_000
RSS_TARGET_MIB = 200.0
KINDS = ("project", "quota", "user", "role_assignment", "network", "subnet", "router",
         "router_interface", "security_group", "security_group_rule", "keypair", "image")
NAIVE = """
import csv, sys
from sqlalchemy import select
from migrator.store.db import make_engine
from migrator.store.models import Event, Step
engine = make_engine(sys.argv[-1])
with engine.connect() as conn:
    rows = conn.execute(select(Event.id, Event.at, Event.trigger, Event.from_state,
                               Event.to_state, Event.actor, Event.pid, Event.detail, Step.key,
                               Step.tenant, Step.kind, Step.name)
                        .outerjoin(Step, Step.id == Event.step_id).order_by(Event.id)).all()
writer = csv.writer(sys.stdout)
for row in rows:
    writer.writerow(row)
"""


def build_run(url: str, total: int = STEPS_TOTAL) -> tuple[int, int]:
    """The synthetic finished run ``bench`` of ``total`` steps; (steps, events)."""
    engine = make_engine(url, create_dir=True)
    schema.upgrade(engine)
    factory = session_factory(engine)
    per_tenant = STEPS_TOTAL // TENANTS
    specs = [StepSpec(key=f"{KINDS[i % per_tenant % len(KINDS)]}:{uuid.UUID(int=i)}",
                      kind=KINDS[i % per_tenant % len(KINDS)], source_id=str(uuid.UUID(int=i)),
                      tenant=f"tenant-{i // per_tenant:05d}", name=f"resource-{i}")
             for i in range(total)]
    run_id = create_run(factory, "bench", specs, [])
    md5, sha = "0" * 32, "f" * 128
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(STEPS.update().where(STEPS.c.run_id == run_id)
                     .values(state="done", checkpoint={"target_id": "t"}))
        conn.execute(STEPS.update().where(STEPS.c.run_id == run_id, STEPS.c.kind == "image")
                     .values(checkpoint={"target_id": "t", "bytes": 1 << 30, "md5": md5,
                                         "sha512": sha}))
        ids = [r for (r,) in conn.execute(STEPS.select().with_only_columns(STEPS.c.id)
                                          .where(STEPS.c.run_id == run_id)
                                          .order_by(STEPS.c.id))]

        def events() -> Iterator[tuple[Any, ...]]:
            for n, step_id in enumerate(ids):
                if n % 100 == 7:
                    yield (step_id, "pending", "running", "start", {})
                    yield (step_id, "running", "failed", "fail",
                           {"error": "CloudError: target: create network: HTTP 503",
                            "attempt": 1})
                    yield (step_id, "failed", "pending", "retry",
                           {"attempt": 1, "backoff_s": 2.0})
                yield (step_id, "pending", "running", "start", {})
                yield (step_id, "running", "running", "checkpoint",
                       {"phase": "create", "data": {"target_id": str(uuid.UUID(int=n)),
                                                    "create_calls": 2}})
                yield (step_id, "running", "verifying", "verify", {})
                yield (step_id, "verifying", "done", "complete", {})

        count = insert_many(conn, EVENTS, ("step_id", "from_state", "to_state", "trigger",
                                           "detail"), events(),
                            constants={"run_id": run_id, "actor": "operator@bench-host",
                                       "pid": 4242, "at": now})
        insert_many(conn, IdMap.__table__, ("kind", "source_id", "target_id"),
                    ((s.kind, s.source_id, str(uuid.UUID(int=i + 1 << 64)))
                     for i, s in enumerate(specs)),
                    constants={"run_id": run_id, "created_at": now})
    engine.dispose()
    return len(specs), count


# Each measured child reports its own peak: VmHWM of its address space, read at exit. Not
# wait4's ru_maxrss, which also counts the parent's pages that the fork copied before exec
# (this benchmark's process holds more than the audit it measures).
PEAK_AT_EXIT = ("import atexit, sys\n"
                "def peak():\n"
                "    for line in open('/proc/self/status'):\n"
                "        if line.startswith('VmHWM:'):\n"
                "            sys.stderr.write('PEAK_KIB ' + line.split()[1] + '\\n')\n"
                "atexit.register(peak)\n")


def measured(code: str, args: list[str], out: Path) -> tuple[float, float, int, int]:
    """(wall s, peak RSS MiB, exit code, output bytes) of ``python -c code args`` writing
    to ``out``."""
    with out.open("w") as sink:
        began = time.monotonic()
        child = subprocess.run([sys.executable, "-c", PEAK_AT_EXIT + code, *args],
                               stdout=sink, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               check=False)
        wall = time.monotonic() - began
    err = child.stderr.decode(errors="replace")
    peaks = [int(line.split()[1]) for line in err.splitlines() if line.startswith("PEAK_KIB ")]
    if child.returncode != 0 or not peaks:
        sys.stderr.write(err[-2000:])
    return wall, (peaks[-1] / 1024 if peaks else float("nan")), child.returncode, \
        out.stat().st_size


@benchmark("audit", "migrator audit of a 250,000-step run (1 million events): peak RSS of "
                    "the streamed table, CSV and JSON against a fetch-everything yardstick")
def bench_audit() -> list[Metric]:
    with tempfile.TemporaryDirectory(prefix="migrator-bench-audit-") as tmp:
        root = Path(tmp)
        db = root / "state.db"
        url = f"sqlite:///{db}"
        began = time.monotonic()
        # Built in a child process: this one stays small.
        made = subprocess.run([sys.executable, "-c", "import sys; from benchmarks.bench_audit "
                               "import build_run; print(*build_run(sys.argv[1]))", url],
                              capture_output=True, text=True, check=True, cwd=REPO)
        steps, events = map(int, made.stdout.split())
        built = time.monotonic() - began
        migrator = ("import sys; sys.argv[0] = 'migrator'; "
                    "from migrator.cli.main import main; main()")
        audit = ["--db", url, "audit", "--run", "bench"]
        metrics: list[Metric] = []
        results = {}
        for fmt in ("table", "csv", "json"):
            wall, rss, code, size = measured(migrator, [*audit, "--format", fmt],
                                             root / f"a.{fmt}")
            if code != 0:
                raise RuntimeError(f"migrator audit --format {fmt} exited {code}")
            results[fmt] = (wall, rss, size)
        naive_wall, naive_rss, code, naive_size = measured(NAIVE, [url], root / "naive.csv")
        if code != 0:
            raise RuntimeError("the yardstick script failed")
        sqlite_wall = None
        if shutil.which("sqlite3"):
            with (root / "sqlite.csv").open("w") as sink:
                mark = time.monotonic()
                subprocess.run(["sqlite3", "-csv", str(db), "SELECT * FROM events ORDER BY id"],
                               stdout=sink, check=True)
                sqlite_wall = time.monotonic() - mark
        note_yard = (f"yardstick (the event query fetched whole, then written as CSV): "
                     f"{naive_rss:.0f} MiB, {naive_wall:.1f} s")
        metrics.append(Metric("steps", steps, "steps",
                              note=f"{events:,} events, 10,000 tenants; built in {built:.1f} s"))
        for fmt, (wall, rss, size) in results.items():
            section = "events" if fmt == "csv" else "events and id map"
            metrics.append(Metric(f"{fmt}_peak_rss_mib", rss, "MiB", target=RSS_TARGET_MIB,
                                  better="lower",
                                  note=f"{section}, {size / 2**20:.0f} MiB written in "
                                       f"{wall:.1f} s; {note_yard}"))
        metrics.append(Metric("csv_seconds", results["csv"][0], "s", better="lower",
                              note=f"yardstick {naive_wall:.1f} s"
                                   + (f"; sqlite3 -csv of the bare events table "
                                      f"{sqlite_wall:.1f} s" if sqlite_wall else "")))
        metrics.append(Metric("yardstick_peak_rss_mib", naive_rss, "MiB", better="lower",
                              note=f"{naive_size / 2**20:.0f} MiB written"))
        _, idle, _, _ = measured(migrator, ["--version"], root / "version.txt")
        metrics.append(Metric("migrator_version_peak_rss_mib", idle, "MiB", better="lower",
                              note="migrator --version: the imports alone"))
        return metrics
