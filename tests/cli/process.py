"""Running ``migrator`` in a child process and measuring that child's own peak memory.

``os.wait4`` reaps exactly that child and returns its resource usage, so the peak RSS is the
command's, not the test process's (nor the largest of every child the test run started, which
is what ``RUSAGE_CHILDREN`` would give).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MIGRATOR = [sys.executable, "-c", "from migrator.cli.main import main; main()"]
# Far above any honest run of these commands; only a hang meets it (then the test fails).
HANG_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Finished:
    exit_code: int
    stdout: str
    stderr: str
    peak_rss_mib: float

    @property
    def error_lines(self) -> list[str]:
        return self.stderr.splitlines()


def run_migrator(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None,
                 prefix: tuple[str, ...] = ()) -> Finished:
    """``migrator ARGS`` (after ``prefix``, e.g. an ``unshare`` wrapper) in a child process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        environment = {**os.environ, **(env or {})}
        environment.pop("MIGRATOR_DB", None)
        proc = subprocess.Popen([*prefix, *MIGRATOR, *args], cwd=cwd, stdout=out, stderr=err,
                                env=environment)
        killer = threading.Timer(HANG_TIMEOUT_S, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Finished(proc.returncode, out.read().decode(errors="replace"),
                        err.read().decode(errors="replace"), usage.ru_maxrss / 1024)
