"""Running ``migrator`` in a child process and measuring that child's own peak memory.

The child's ``ru_maxrss`` (from ``os.wait4``, which reaps exactly that child) is its own peak
only if its parent was small: Linux starts a forked (or vforked) child's high-water mark from
the parent's resident memory and keeps it across ``exec``, so a child of the test process
(hundreds of MiB after a few tests) would report the test process's peak. The child is
therefore started by a small launcher process (a bare Python, about 10 MiB) that waits for it
with ``wait4`` and writes its exit status and peak RSS to a file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MIGRATOR = [sys.executable, "-c", "from migrator.cli.main import main; main()"]
# Far above any honest run of these commands; only a hang meets it (then the test fails).
HANG_TIMEOUT_S = 600.0

_LAUNCHER = """
import json, os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"exit_code": os.waitstatus_to_exitcode(status),
               "peak_rss_kib": usage.ru_maxrss}, out)
"""


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
    """``migrator ARGS`` (after ``prefix``, e.g. an ``unshare`` wrapper) in a child process;
    its exit code, output and peak RSS."""
    environment = {**os.environ, **(env or {})}
    environment.pop("MIGRATOR_DB", None)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        done = subprocess.run([sys.executable, "-c", _LAUNCHER, str(report), *prefix,
                               *MIGRATOR, *args], cwd=cwd, env=environment,
                              capture_output=True, timeout=HANG_TIMEOUT_S)
        assert done.returncode == 0 and report.exists(), done.stderr[-2000:]
        measured = json.loads(report.read_text())
    return Finished(measured["exit_code"], done.stdout.decode(errors="replace"),
                    done.stderr.decode(errors="replace"), measured["peak_rss_kib"] / 1024)
